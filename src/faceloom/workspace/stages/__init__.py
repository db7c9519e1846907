"""The stages of a workspace run, one class each, found by name (the registry of the chain).

Every module of this package defines stage classes deriving from :class:`Stage`; they register
themselves when their module is imported, and :data:`STAGES` holds one instance of each in chain
order. A new stage is a new class in a new module here: faceloom.toml, the runner, the status, the
CLI's ``--only`` and the UI all derive from this list. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import pkgutil

from faceloom.workspace.stages.base import Outcome, Stage, StageRun

_CLASSES: dict[str, type[Stage]] = {}


def _register_all() -> tuple[Stage, ...]:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    for cls in _subclasses(Stage):
        if getattr(cls, "name", None):
            if cls.name in _CLASSES and _CLASSES[cls.name] is not cls:
                raise ValueError(f"stage name {cls.name!r} defined twice")
            _CLASSES[cls.name] = cls
    stages = tuple(cls() for cls in sorted(_CLASSES.values(), key=lambda c: c.order))
    seen: set[str] = set()
    for stage in stages:
        for up in stage.upstream:
            if up not in seen:
                raise ValueError(f"stage {stage.name!r} reads {up!r}, which does not run before it")
        seen.add(stage.name)
    return stages


def _subclasses(cls: type[Stage]) -> list[type[Stage]]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


STAGES: tuple[Stage, ...] = _register_all()
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def get_stage(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")


__all__ = ["STAGES", "STAGE_NAMES", "Outcome", "Stage", "StageRun", "get_stage"]
