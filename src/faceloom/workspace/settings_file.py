"""faceloom.toml: every setting of every stage, typed by :mod:`faceloom.config`, written with tomlkit.

The sections are the stages' (each stage declares its config classes), plus ``[workspace]`` and
``[inputs]``. A new file gets each setting's help text as a comment above it; rewriting a file the
user edited keeps their comments, order and layout and changes only the values that changed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Table

from faceloom.config.meta import SettingError, Settings, coerce, plain_dict, settings_of
from faceloom.errors import FormatError
from faceloom.fsutil import atomic_write_text
from faceloom.workspace.stages import STAGES

HEADER = (
    "faceloom workspace: every setting of every stage. Edit it, then run",
    "  faceloom run --workspace DIR",
    "again: only the stages a change affects are redone; a setting that shapes the model keeps the",
    "old model as model.prev-... . Comments and edits here are kept when faceloom rewrites the file.",
)
INPUTS_NOTE = (
    "A = the person in the target video (the target is A footage too); B = the face put in. "
    "Local paths, folders or http(s) URLs."
)


def section_classes() -> dict[str, tuple[type[Settings], ...]]:
    """The typed configs behind each stage's section of faceloom.toml, in stage order."""
    return {stage.name: stage.configs for stage in STAGES}


def section_of(name: str) -> str:
    """The one section that has a setting called ``name``; SettingError when none or several do."""
    holders = [
        s
        for s, classes in section_classes().items()
        for c in classes
        for i in settings_of(c)
        if i.name == name
    ]
    if len(holders) != 1:
        where = f"several sections ({', '.join(holders)})" if holders else "no section"
        raise SettingError(name, f"is a setting of {where}; give it as section.{name}")
    return holders[0]


def section_notes() -> dict[str, str]:
    return {"inputs": INPUTS_NOTE, **{stage.name: stage.note for stage in STAGES}}


def normalize_section(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """Every setting of ``section`` (defaults filled in), coerced and validated by its typed config.

    Raises SettingError (a ValueError) for an unknown section or key or an invalid value.
    """
    classes = section_classes().get(section)
    if classes is None:
        raise SettingError.unknown(section, section_classes())
    out: dict[str, Any] = {}
    used: set[str] = set()
    for cls in classes:
        infos = {i.name: i for i in settings_of(cls)}
        kwargs = {k: coerce(v, infos[k]) for k, v in values.items() if k in infos}
        used |= set(kwargs)
        out.update(plain_dict(cls(**kwargs)))
    unknown = sorted(set(values) - used)
    if unknown:
        raise SettingError.unknown(f"{section}.{unknown[0]}", out)
    return out


def _toml_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _comment_lines(text: str, width: int = 100) -> list[str]:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    if line:
        lines.append(line)
    return lines


def _help_of(section: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for cls in section_classes().get(section, ()):
        for info in settings_of(cls):
            out[info.name] = info.describe()
    return out


def _new_table(section: str, values: dict[str, Any], note: str | None) -> Table:
    table = tomlkit.table()
    if note:
        for line in _comment_lines(note):
            table.add(tomlkit.comment(line))
    helps = _help_of(section)
    for key, value in values.items():
        if key in helps:
            for line in _comment_lines(helps[key]):
                table.add(tomlkit.comment(line))
        if value is None:
            table.add(tomlkit.comment(f"{key} is not set"))
        else:
            table.add(key, _toml_value(value))
    return table


def dump_toml(settings: dict[str, dict[str, Any]], notes: dict[str, str] | None = None) -> str:
    """A new TOML document of one level of tables, each setting under its help text; None values are
    left out (they mean "not set")."""
    doc = tomlkit.document()
    for line in HEADER:
        doc.add(tomlkit.comment(line))
    for section, values in settings.items():
        doc.add(tomlkit.nl())
        doc.add(section, _new_table(section, values, (notes or {}).get(section)))
    return tomlkit.dumps(doc)


def write_settings(path: Path, settings: dict[str, dict[str, Any]]) -> None:
    """Write ``settings`` to ``path``, keeping what the user wrote there (comments, order, layout)."""
    if not path.is_file():
        atomic_write_text(path, dump_toml(settings, section_notes()))
        return
    try:
        doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    except Exception:  # damaged by hand: start a fresh file rather than lose the settings
        atomic_write_text(path, dump_toml(settings, section_notes()))
        return
    notes = section_notes()
    for section, values in settings.items():
        if section not in doc:
            doc.add(tomlkit.nl())
            doc.add(section, _new_table(section, values, notes.get(section)))
            continue
        table = doc[section]
        for key, value in values.items():
            if value is None:
                if key in table:
                    del table[key]
            elif key not in table or table[key] != _toml_value(value):
                table[key] = _toml_value(value)
        for key in [k for k in table if k not in values]:
            del table[key]
    atomic_write_text(path, tomlkit.dumps(doc))


def read_settings(path: Path) -> dict[str, Any]:
    """The raw tables of a settings file; FormatError when it is not TOML."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        text = str(exc).strip().splitlines()
        raise FormatError(f"damaged settings file ({text[0] if text else type(exc).__name__})", path) from exc
