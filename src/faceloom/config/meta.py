"""Settings that declare themselves: each config field carries its metadata once.

A stage's settings are a frozen dataclass deriving from :class:`Settings`; each field is made with
:func:`setting`, which stores a :class:`SettingMeta` (help text, range, whether it shapes a trained
model, whether it changes the stage's output, its command-line flag) in the field's metadata, the
way faceswap's plugin defaults carry ``default``, ``choices`` and ``fixed``. Everything else is
derived from it: the CLI options (:mod:`faceloom.cli.options`), ``faceloom.toml`` and its comments,
the UI's settings screen, the stage fingerprints and the trainer's resume rule.

Choices come from ``Literal`` types (``typing.get_args``), never from a second list.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

META_KEY = "faceloom"

S = TypeVar("S", bound="Settings")


class SettingError(ValueError):
    """A setting with a value it cannot take. ``str()`` names it as ``section.key``; the CLI shows
    the flag instead (:attr:`key`, :attr:`reason`)."""

    def __init__(self, key: str, reason: str, message: str | None = None) -> None:
        self.key = key
        self.reason = reason
        super().__init__(message or f"{key} {reason}")

    @classmethod
    def unknown(cls, key: str, known: Iterable[str]) -> SettingError:
        """A key that is no setting; the message lists the ones there are."""
        section = key.rpartition(".")[0] or key
        names = ", ".join(known)
        if "." not in key:
            return cls(
                key, "is not a settings section", f"unknown settings section {key!r}; sections: {names}"
            )
        return cls(key, "is not a setting", f"unknown setting {key}; {section} has: {names}")

    @property
    def name(self) -> str:
        """The field name (``size`` of ``extract.size``)."""
        return self.key.rpartition(".")[2]


@dataclass(frozen=True)
class SettingMeta:
    """What one setting declares about itself.

    Attributes:
        help: one line for ``--help``, the TOML comment and the UI.
        low, high: allowed range (inclusive unless ``low_open`` / ``high_open``).
        shapes_model: changing it makes another model (faceswap's ``fixed``): a trained model is never
            continued with a new value; everything else continues from the last checkpoint.
        affects_output: takes part in the stage's fingerprint (device and threads do not).
        flag: the command-line flag when not ``--field-name``; bools get ``--x/--no-x``.
        aliases: more flags for the same option (``--lr``).
        cli: offered as a command-line option.
        ui: may be changed from the web UI's settings screen (paths never are).
        unset: what ``None`` means, for settings that may be unset ("the model's default").
        per_run: belongs to one run (a stop rule): `faceloom train --resume` does not carry it over.
    """

    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    shapes_model: bool = False
    affects_output: bool = True
    flag: str | None = None
    aliases: tuple[str, ...] = ()
    cli: bool = True
    ui: bool = True
    unset: str | None = None
    per_run: bool = False


def setting(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    shapes_model: bool = False,
    affects_output: bool = True,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
    cli: bool = True,
    ui: bool = True,
    unset: str | None = None,
    per_run: bool = False,
) -> Any:
    """A dataclass field with its :class:`SettingMeta`."""
    meta = SettingMeta(
        help,
        low,
        high,
        low_open,
        high_open,
        shapes_model,
        affects_output,
        flag,
        aliases,
        cli,
        ui,
        unset,
        per_run,
    )
    return dataclasses.field(default=default, metadata={META_KEY: meta})


def optional_inner(tp: Any) -> tuple[bool, Any]:
    """(True, X) for ``X | None``, else (False, tp)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


@dataclass(frozen=True)
class SettingInfo:
    """One setting of a config class, with its type resolved."""

    section: str
    name: str
    type: Any
    inner: Any
    optional: bool
    default: Any
    meta: SettingMeta

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def choices(self) -> tuple[Any, ...] | None:
        return typing.get_args(self.inner) if typing.get_origin(self.inner) is Literal else None

    @property
    def is_bool(self) -> bool:
        return self.inner is bool

    @property
    def is_list(self) -> bool:
        return typing.get_origin(self.inner) is tuple

    @property
    def flag(self) -> str:
        return self.meta.flag or "--" + self.name.replace("_", "-")

    def range_text(self) -> str:
        m = self.meta
        if m.low is not None and m.high is not None:
            lo = "(" if m.low_open else "["
            hi = ")" if m.high_open else "]"
            return f"{lo}{_num(m.low)}, {_num(m.high)}{hi}"
        if m.low is not None:
            return f"{'>' if m.low_open else '>='} {_num(m.low)}"
        if m.high is not None:
            return f"{'<' if m.high_open else '<='} {_num(m.high)}"
        return ""

    def describe(self) -> str:
        """Help text with choices or range and what "unset" means, for --help, TOML and the UI."""
        parts = [self.meta.help.rstrip(".")]
        if self.choices:
            parts.append("one of " + ", ".join(map(str, self.choices)))
        elif self.range_text():
            parts.append("range " + self.range_text())
        if self.optional and self.meta.unset:
            parts.append(f"unset: {self.meta.unset}")
        if self.meta.shapes_model:
            parts.append("shapes the model: a new value trains a new model")
        return "; ".join(parts) + "."


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


class Settings:
    """Base of every stage's settings dataclass: checks, conversion and fingerprints from the metadata.

    Subclasses are ``@dataclass(frozen=True)`` with every field made by :func:`setting`, set
    ``SECTION`` (their table in faceloom.toml) and may override :meth:`check` for rules between
    fields (raising :class:`SettingError`).
    """

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for info in settings_of(type(self)):
            check_value(info, getattr(self, info.name))
        self.check()

    def check(self) -> None:
        """Rules that involve more than one field."""

    def error(self, name: str, reason: str) -> SettingError:
        return SettingError(f"{self.SECTION}.{name}", reason)

    # ---- conversion ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[S], data: dict[str, Any]) -> S:
        """From stored values (model.json, faceloom.toml); unknown keys are ignored, values coerced."""
        known = {i.name: i for i in settings_of(cls)}
        kwargs = {k: coerce(v, known[k]) for k, v in data.items() if k in known}
        return cls(**kwargs)

    @classmethod
    def from_values(cls: type[S], values: dict[str, Any]) -> S:
        """From user input (``--set``, the UI, the CLI): unknown keys are an error."""
        known = {i.name: i for i in settings_of(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise SettingError.unknown(f"{cls.SECTION}.{unknown[0]}", known)
        return cls(**{k: coerce(v, known[k]) for k, v in values.items()})

    def replace(self: S, **changes: Any) -> S:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    # ---- derived views ------------------------------------------------------------------------
    def output_fingerprint(self) -> str:
        """Hash of the settings that change what the stage writes (device and threads do not)."""
        return fingerprint(
            {i.name: _plain(getattr(self, i.name)) for i in settings_of(type(self)) if i.meta.affects_output}
        )

    def model_shape(self) -> dict[str, Any]:
        """The settings that shape a trained model (``shapes_model``)."""
        return {i.name: _plain(getattr(self, i.name)) for i in settings_of(type(self)) if i.meta.shapes_model}


_INFOS: dict[type, tuple[SettingInfo, ...]] = {}


def settings_of(cls: type) -> tuple[SettingInfo, ...]:
    """Every setting of a :class:`Settings` dataclass, in field order."""
    known = _INFOS.get(cls)
    if known is None:
        known = _INFOS[cls] = _read_settings(cls)
    return known


def _read_settings(cls: type) -> tuple[SettingInfo, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(META_KEY)
        if meta is None:
            raise TypeError(f"{cls.__name__}.{f.name} has no setting metadata; make it with setting()")
        optional, inner = optional_inner(hints[f.name])
        out.append(
            SettingInfo(getattr(cls, "SECTION", ""), f.name, hints[f.name], inner, optional, f.default, meta)
        )
    return tuple(out)


def check_value(info: SettingInfo, value: Any) -> None:
    """Raise SettingError when ``value`` is outside ``info``'s choices or range."""
    if value is None:
        if not info.optional:
            raise SettingError(info.key, "cannot be empty")
        return
    choices = info.choices
    if choices is not None:
        if value not in choices:
            raise SettingError(info.key, f"must be one of {', '.join(map(str, choices))}, got {value!r}")
        return
    if info.is_bool or not isinstance(value, int | float):
        return
    m = info.meta
    too_low = m.low is not None and (value <= m.low if m.low_open else value < m.low)
    too_high = m.high is not None and (value >= m.high if m.high_open else value > m.high)
    if too_low or too_high:
        raise SettingError(info.key, f"must be {_range_words(info)}, got {value}")


def _range_words(info: SettingInfo) -> str:
    m = info.meta
    if m.low is not None and m.high is not None:
        if not m.low_open and not m.high_open:
            return f"between {_num(m.low)} and {_num(m.high)}"
        return f"in {info.range_text()}"
    if m.low is not None:
        if m.low_open:
            return f"more than {_num(m.low)}"
        return f"at least {_num(m.low)}"
    assert m.high is not None
    return f"less than {_num(m.high)}" if m.high_open else f"at most {_num(m.high)}"


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def coerce(value: Any, info: SettingInfo) -> Any:
    """``value`` (typed, or a string from ``--set``, TOML or the UI) as the type of setting ``info``."""
    name, inner = info.key, info.inner
    if info.optional and (
        value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))
    ):
        return None
    if value is None:
        raise SettingError(name, "cannot be empty")
    if info.choices is not None:
        if value not in info.choices:
            raise SettingError(name, f"must be one of {', '.join(map(str, info.choices))}, got {value!r}")
        return value
    if inner is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise SettingError(name, f"must be true or false, got {value!r}")
    try:
        if inner is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if inner is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
    except (TypeError, ValueError):
        raise SettingError(name, f"must be a number ({inner.__name__}), got {value!r}") from None
    if inner is str:
        return str(value)
    if info.is_list:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return tuple(str(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def plain_dict(config: Settings) -> dict[str, Any]:
    """The settings as JSON/TOML-ready values (tuples as lists)."""
    return {k: _plain(v) for k, v in config.to_dict().items()}


def fingerprint(data: Any) -> str:
    """Stable short hash of JSON-able data."""
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def carried_over(saved: S) -> dict[str, Any]:
    """What a resumed run takes from the saved settings unless told otherwise: everything that
    changes the result, but not stop rules (``per_run``) nor machine settings (device, threads,
    cadences: ``affects_output=False``)."""
    return {
        i.name: getattr(saved, i.name)
        for i in settings_of(type(saved))
        if i.meta.affects_output and not i.meta.per_run
    }


def continue_with(saved: S, wanted: S) -> S:
    """The settings a trained model continues with: ``wanted``'s, where they do not shape the model.

    Raises SettingError naming the first setting that shapes the model and differs.
    """
    changed = changed_shape(saved, wanted)
    if changed:
        info = changed[0]
        raise SettingError(
            info.key,
            f"shapes the model and cannot change on a trained one "
            f"(trained with {getattr(saved, info.name)!r}, asked for {getattr(wanted, info.name)!r})",
        )
    return wanted


def changed_shape(saved: Settings, wanted: Settings) -> list[SettingInfo]:
    """The settings that shape the model and differ between ``saved`` and ``wanted``."""
    return [
        i
        for i in settings_of(type(saved))
        if i.meta.shapes_model and _plain(getattr(saved, i.name)) != _plain(getattr(wanted, i.name))
    ]
