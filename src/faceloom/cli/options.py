"""Command-line options derived from the settings' own metadata (:mod:`faceloom.config.meta`).

A command declares which settings it offers with :func:`settings_options`; the decorator adds one
Typer option per setting (flag, help text with choices, range and default, all from the field) and
hands the command a :class:`Given`: the values the user typed, and nothing else. Every option
defaults to "not given", so the config class's default is the one default there is, and a resumed
model can tell what was asked for from what was not.

``Given.config`` builds the typed config and reports a refused value by its flag
(``--size must be between 64 and 2048, got 10``), where the library names it ``extract.size``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from faceloom.config.meta import SettingError, SettingInfo, Settings, settings_of

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S", bound=Settings)
GIVEN_PARAM = "given"


@dataclass(frozen=True)
class OptionSpec:
    """Which settings of one config class a command offers, with per-command help where needed."""

    cls: type[Settings]
    only: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    help: dict[str, str] = field(default_factory=dict)

    def infos(self) -> list[SettingInfo]:
        infos = [i for i in settings_of(self.cls) if i.meta.cli and i.name not in self.exclude]
        if self.only is not None:
            by_name = {i.name: i for i in infos}
            infos = [by_name[n] for n in self.only]
        return infos


def offer(
    cls: type[Settings],
    *,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    help: dict[str, str] | None = None,
) -> OptionSpec:
    return OptionSpec(cls, tuple(only) if only is not None else None, tuple(exclude), dict(help or {}))


def _param_name(info: SettingInfo) -> str:
    return f"{info.section}__{info.name}"


def _default_text(info: SettingInfo) -> str:
    d = info.default
    if info.is_bool:
        return info.flag if d else "--no-" + info.flag.removeprefix("--")
    if d is None:
        return info.meta.unset or "not set"
    if info.is_list:
        return "none" if not d else ", ".join(map(str, d))
    return str(d)


def _option(info: SettingInfo, help_text: str | None) -> inspect.Parameter:
    text = (help_text or info.describe()) + f" [default: {_default_text(info)}]"
    if info.is_bool:
        flags: tuple[str, ...] = (f"{info.flag}/--no-{info.flag.removeprefix('--')}",)
        tp: Any = bool | None
    elif info.is_list:
        flags = (info.flag, *info.meta.aliases)
        tp = list[Path] | None
    else:
        flags = (info.flag, *info.meta.aliases)
        tp = info.inner | None
    annotation = Annotated[tp, typer.Option(*flags, help=text, show_default=False)]
    return inspect.Parameter(
        _param_name(info), inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


class Given:
    """The settings a user typed on the command line, per config class."""

    def __init__(self, values: dict[type[Settings], dict[str, Any]]) -> None:
        self._values = values

    def of(self, cls: type[Settings]) -> dict[str, Any]:
        """``{field: value}`` of what was typed for ``cls``."""
        return dict(self._values.get(cls, {}))

    def config(self, cls: type[S], base: Settings | dict[str, Any] | None = None, **fixed: Any) -> S:
        """``cls`` built from ``base`` (values, else its defaults), then what was typed, then ``fixed``.

        A value the config refuses is reported by its flag, as one line (exit code 2).
        """
        start = base.to_dict() if isinstance(base, Settings) else dict(base or {})
        values = {**start, **self.of(cls), **fixed}
        try:
            return cls.from_values(values)
        except SettingError as exc:
            raise as_flag_error(exc, cls) from None


def as_flag_error(exc: SettingError, cls: type[Settings]) -> SettingError:
    """The same error, naming the command-line flag of the setting instead of ``section.key``."""
    for info in settings_of(cls):
        if info.key == exc.key:
            return SettingError(info.flag, exc.reason)
    return exc


def settings_options(*specs: OptionSpec) -> Callable[[F], F]:
    """Decorator: add the options of ``specs`` to a command whose last parameter is ``given: Given``."""

    def deco(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != GIVEN_PARAM]
        added: list[tuple[OptionSpec, SettingInfo]] = [(s, i) for s in specs for i in s.infos()]
        params = own + [_option(i, s.help.get(i.name)) for s, i in added]

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            values: dict[type[Settings], dict[str, Any]] = {}
            for spec, info in added:
                value = kwargs.pop(_param_name(info))
                if value is not None:
                    if info.is_list:
                        value = tuple(str(v) for v in value)
                    values.setdefault(spec.cls, {})[info.name] = value
            return fn(**kwargs, **{GIVEN_PARAM: Given(values)})

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__  # Typer must read the new signature, not the wrapped one
        return wrapper  # type: ignore[return-value]

    return deco
