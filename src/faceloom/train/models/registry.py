"""The architecture registry: one file per architecture in this package, each registering its class
with ``@register(name)`` (timm's habit).

The names are also the ``Literal`` type :data:`faceloom.config.choices.ModelName`, which the CLI, the
settings file and the UI read without importing torch; loading the registry checks that the two
agree, so an architecture cannot be added to one and forgotten in the other.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from faceloom.config.choices import MODEL_NAMES
from faceloom.train.models.base import FaceSwapModel

NOT_ARCHITECTURES = frozenset({"base", "layers", "registry", "factory"})
"""Modules of this package that hold no architecture."""

_REGISTRY: dict[str, type[FaceSwapModel]] = {}
M = TypeVar("M", bound=type[FaceSwapModel])


def register(name: str) -> Callable[[M], M]:
    """Class decorator: make an architecture available under ``name`` (``--model NAME``)."""

    def deco(cls: M) -> M:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_all() -> None:
    package = __name__.rpartition(".")[0]
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name not in NOT_ARCHITECTURES and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
    if set(_REGISTRY) != set(MODEL_NAMES):
        raise TypeError(
            f"registered architectures {sorted(_REGISTRY)} differ from faceloom.config.choices.ModelName "
            f"{sorted(MODEL_NAMES)}: add the new name to ModelName"
        )


def model_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[FaceSwapModel]:
    _load_all()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]
