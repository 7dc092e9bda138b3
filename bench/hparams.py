"""Hyperparameters that say what they accept and where tuning may look, beside the field itself.

A method's dataclass field declares, through :func:`hp`, its valid range (used by config
validation: a value of the wrong type or outside the range is refused before any work)
and, optionally, its tuning search space (used by ``python -m bench tune``,
docs/tuning.md). One declaration serves both, so validation and tuning never disagree::

    @dataclass
    class Finetune(Method):
        epochs: int = hp(10, ge=1, tune=integer(2, 20))
        lr: float = hp(0.01, gt=0, tune=log_uniform(1e-3, 1e-1))

A leaf module: it imports nothing of ``bench`` (config and tune import it).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

META = "bench.hp"


class HParamError(ValueError):
    """A hyperparameter value that cannot run; the message is one line naming the fix."""


@dataclass(frozen=True)
class Space:
    """Where tuning samples one hyperparameter: ``float`` / ``int`` in [low, high] (log scale
    if ``log``), or one of ``choices``."""

    kind: str  # "float" | "int" | "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def __str__(self) -> str:
        if self.kind == "categorical":
            return "{" + ", ".join(map(str, self.choices)) + "}"
        scale = "log-uniform" if self.log else "uniform"
        kind = "int " if self.kind == "int" else ""
        return f"{kind}{scale} [{self.low:g}, {self.high:g}]"

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and int(value) != value:
            return False
        return self.low <= value <= self.high  # type: ignore[operator]

    def suggest(self, trial: Any, name: str) -> Any:
        """The value an Optuna ``trial`` proposes for ``name`` (duck-typed: no optuna import)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)


def log_uniform(low: float, high: float) -> Space:
    return Space("float", low, high, log=True)


def uniform(low: float, high: float) -> Space:
    return Space("float", low, high)


def integer(low: int, high: int, log: bool = False) -> Space:
    return Space("int", low, high, log=log)


def categorical(*choices: Any) -> Space:
    return Space("categorical", choices=tuple(choices))


@dataclass(frozen=True)
class HP:
    """A field's valid range (``ge``/``gt``/``le``/``lt`` bounds or ``choices``) and tuning space."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] = ()
    tune: Space | None = None
    doc: str = ""

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(map(repr, self.choices))
        parts = [f">= {self.ge:g}" if self.ge is not None else "", f"> {self.gt:g}" if self.gt is not None else "",
                 f"<= {self.le:g}" if self.le is not None else "", f"< {self.lt:g}" if self.lt is not None else ""]
        return " and ".join(p for p in parts if p) or "any value"

    def admits(self, v: Any) -> bool:
        if self.choices:
            return v in self.choices
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return True
        if isinstance(v, float) and not math.isfinite(v):
            return False
        return not ((self.ge is not None and v < self.ge) or (self.gt is not None and v <= self.gt)
                    or (self.le is not None and v > self.le) or (self.lt is not None and v >= self.lt))


def hp(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
       lt: float | None = None, choices: Sequence[Any] = (), tune: Space | None = None, doc: str = "") -> Any:
    """A dataclass field with its valid range and (optionally) its tuning search space."""
    meta = HP(ge, gt, le, lt, tuple(choices), tune, doc)
    if tune is not None and tune.kind != "categorical" and not (meta.admits(tune.low) and meta.admits(tune.high)):
        raise ValueError(f"search space {tune} lies outside the valid range ({meta.describe()})")
    return field(default=default, metadata={META: meta})


# --------------------------------------------------------------------------- reading declarations

@dataclass(frozen=True)
class Param:
    name: str
    type: Any  # the annotation (int, float, str, bool, float | None, ...)
    default: Any
    spec: HP

    @property
    def type_name(self) -> str:
        return _type_name(self.type)


def params(cls: type) -> dict[str, Param]:
    """Every hyperparameter of a dataclass method: name -> type, default and declared range."""
    if not dataclasses.is_dataclass(cls):
        return {}
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        out[f.name] = Param(f.name, hints.get(f.name, Any), default, f.metadata.get(META, HP()))
    return out


def search_space(cls: type) -> dict[str, Space]:
    """The declared tuning space of a method: name -> :class:`Space` (empty: runs at defaults)."""
    return {n: p.spec.tune for n, p in params(cls).items() if p.spec.tune is not None}


def _options(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return (annotation,)


def _type_name(annotation: Any) -> str:
    return " | ".join("None" if a is type(None) else getattr(a, "__name__", str(a)) for a in _options(annotation))


def _coerce(value: Any, annotation: Any) -> tuple[bool, Any]:
    """(ok, value) for one annotation: ints pass as floats; bools are not numbers."""
    for t in _options(annotation):
        if t is Any:
            return True, value
        if t is type(None) and value is None:
            return True, None
        if t is bool and isinstance(value, bool):
            return True, value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return True, value
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if t is str and isinstance(value, str):
            return True, value
        if typing.get_origin(t) in (tuple, list) and isinstance(value, (list, tuple)):
            return True, tuple(value)
    return False, value


def check(cls: type, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` checked against ``cls``'s fields: known name, declared type, valid range.
    Returns them coerced (ints given for floats become floats); raises :class:`HParamError`."""
    known = params(cls)
    out = {}
    for name, value in values.items():
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise HParamError(f"unknown key '{name}' in {where}{hint} (allowed: {', '.join(known)})")
        p = known[name]
        ok, v = _coerce(value, p.type)
        if not ok:
            raise HParamError(f"{where}: '{name}' must be {p.type_name}, got {value!r} "
                              f"(default {p.default!r})")
        if v is not None and not p.spec.admits(v):
            raise HParamError(f"{where}: '{name}' = {value!r} is out of range: use {p.spec.describe()} "
                              f"(default {p.default!r})")
        out[name] = v
    return out
