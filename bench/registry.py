"""Decorator registries with lazy discovery, entry points and "did you mean" errors.

Modelled on lm-evaluation-harness's ``api/registry.py`` and timm's ``@register_model``:
each kind of component (method, encoder, backbone, dataset, auditor) has one
:class:`Registry`; a component registers itself with a decorator in its own file,
and the registry imports the package that holds those files only when a name is
first looked up, so ``python -m bench ls`` stays cheap and third-party packages
can add entries through the entry-point group named in the README.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that no registry entry carries; the message suggests the closest one."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass
class Entry(Generic[T]):
    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> component, filled by ``@registry.register(name, **meta)``.

    ``packages`` are imported (every module in them) on first lookup;
    ``group`` is the ``importlib.metadata`` entry-point group scanned as well.
    """

    def __init__(self, kind: str, packages: tuple[str, ...] = (), group: str | None = None):
        self.kind = kind
        self.packages = packages
        self.group = group
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries and self._entries[name].obj is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = Entry(name, obj, dict(meta))
            return obj

        return deco

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for pkg_name in self.packages:
            pkg = importlib.import_module(pkg_name)
            for mod in pkgutil.iter_modules(pkg.__path__):
                if not mod.name.startswith("_"):
                    importlib.import_module(f"{pkg_name}.{mod.name}")
        if self.group:
            for ep in importlib.metadata.entry_points(group=self.group):
                ep.load()

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        self._load()
        return iter([self._entries[n] for n in sorted(self._entries)])

    def entry(self, name: str) -> Entry[T]:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        known = ", ".join(sorted(self._entries)) or "none"
        return f"unknown {self.kind} '{name}'{hint} (known: {known})"


methods: Registry[Any] = Registry("method", ("methods",), "unlearn_bench.methods")
auditors: Registry[Any] = Registry("auditor", ("audits",), "unlearn_bench.auditors")
encoders: Registry[Any] = Registry("encoder", ("bench.encoders",), "unlearn_bench.encoders")
backbones: Registry[Any] = Registry("backbone", ("bench.backbones",), "unlearn_bench.backbones")
datasets: Registry[Any] = Registry("dataset", ("bench.datasets",), "unlearn_bench.datasets")


def register_method(name: str, **meta: Any) -> Callable[[T], T]:
    return methods.register(name, **meta)


def register_auditor(name: str, **meta: Any) -> Callable[[T], T]:
    return auditors.register(name, **meta)


def register_encoder(name: str, **meta: Any) -> Callable[[T], T]:
    return encoders.register(name, **meta)


def register_backbone(name: str, **meta: Any) -> Callable[[T], T]:
    return backbones.register(name, **meta)


def register_dataset(name: str, **meta: Any) -> Callable[[T], T]:
    return datasets.register(name, **meta)
