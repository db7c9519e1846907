"""The Settings screen, derived from the settings' metadata: which settings the page shows, with
their help, choices, range, default and whether a change starts a new model."""

from __future__ import annotations

from typing import Any

from faceloom.config.meta import SettingInfo, settings_of
from faceloom.workspace.settings_file import section_classes


def _kind(info: SettingInfo) -> str:
    if info.choices is not None:
        return "choice"
    if info.is_bool:
        return "boolean"
    if info.inner in (int, float):
        return "integer" if info.inner is int else "number"
    return "text"


def settings_schema() -> dict[str, list[dict[str, Any]]]:
    """Per section of faceloom.toml, the settings the UI may change (paths never), in field order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for section, classes in section_classes().items():
        rows = []
        for cls in classes:
            for info in settings_of(cls):
                if not info.meta.ui:
                    continue
                rows.append(
                    {
                        "key": info.name,
                        "kind": _kind(info),
                        "optional": info.optional,
                        "choices": list(info.choices) if info.choices is not None else None,
                        "low": info.meta.low,
                        "high": info.meta.high,
                        "default": info.default,
                        "help": info.describe(),
                        "shapes_model": info.meta.shapes_model,
                    }
                )
        out[section] = rows
    return out


def editable(section: str, key: str) -> bool | None:
    """True when the UI may change ``section.key``, False for a setting it may not (a path), None
    when there is no such setting."""
    for cls in section_classes().get(section, ()):
        for info in settings_of(cls):
            if info.name == key:
                return info.meta.ui
    return None
