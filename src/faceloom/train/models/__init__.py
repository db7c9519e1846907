"""Model registry: one file per architecture, each registering itself with ``@register(name)``.

from faceloom.train.models import create_model, model_names
model = create_model("lite")
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, TypeVar

from faceloom.train.models.base import FaceSwapModel, TrainDefaults

__all__ = ["FaceSwapModel", "TrainDefaults", "create_model", "get_model_class", "model_names", "register"]

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
    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("base",) and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def model_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[FaceSwapModel]:
    _load_all()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, **kwargs: Any) -> FaceSwapModel:
    """Build a registered architecture; kwargs override its defaults (see ``arch_config()``)."""
    return get_model_class(name)(**kwargs)
