"""Decorator registries that know their names before importing anything, with "did you mean" errors.

Modelled on lm-evaluation-harness's ``api/registry.py`` and timm's ``@register_model``:
each kind of component (method, encoder, backbone, dataset, auditor) has one
:class:`Registry`; a component registers itself with a decorator in its own file.
The registry reads the names those decorators declare from the package's source
(``ast``, no import), so a name check, "did you mean" and ``--help`` never pay for
torch; a module is imported only when one of its entries is used. A module that
fails to import is named in one line (:class:`BrokenComponentError`) where it is
needed and listed as broken elsewhere, so one bad file never hides the others.
Third-party packages add entries through the entry-point group named in the README;
those are loaded when a name is not found among the scanned ones, or on a full listing.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that no registry entry carries; the message suggests the closest one."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class BrokenComponentError(RuntimeError):
    """A component's module (or plugin) fails to import; the message names its file and the error."""


@dataclass
class Entry(Generic[T]):
    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scan:
    """What one package's source declares, read without importing it."""

    declared: dict[str, str] = field(default_factory=dict)  # name -> module
    opaque: list[str] = field(default_factory=list)  # modules registering names the scan cannot read
    unreadable: dict[str, str] = field(default_factory=dict)  # module -> why its source cannot be parsed
    files: dict[str, str] = field(default_factory=dict)  # module -> file, for messages


def _decorator_names(tree: ast.Module, decorator: str) -> tuple[list[str], bool]:
    """The literal first arguments of every ``@decorator("name", ...)`` call in ``tree``, and
    whether some call's name is not a literal (then only an import can tell)."""
    names, opaque = [], False
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if called != decorator:
            continue
        first = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "name"), None)
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.append(first.value)
        else:
            opaque = True
    return names, opaque


def scan_package(package: str, decorator: str) -> Scan:
    """Every public module of ``package`` (as :mod:`pkgutil` lists it) read with :mod:`ast`:
    the names ``@decorator("name")`` registers there. Imports nothing but the package's parents."""
    out = Scan()
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return out
    for info in pkgutil.iter_modules(list(spec.submodule_search_locations)):
        if info.name.startswith("_"):
            continue
        module = f"{package}.{info.name}"
        folder = Path(getattr(info.module_finder, "path", ""))
        path = folder / info.name / "__init__.py" if info.ispkg else folder / f"{info.name}.py"
        out.files[module] = str(path)
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (OSError, SyntaxError, ValueError) as e:
            out.unreadable[module] = _one_line(e)
            out.opaque.append(module)
            continue
        names, opaque = _decorator_names(tree, decorator)
        for name in names:
            out.declared.setdefault(name, module)
        if opaque:
            out.opaque.append(module)
    return out


def _one_line(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


class Registry(Generic[T]):
    """Name -> component, filled by ``@registry.register(name, **meta)``.

    ``packages``: their modules' declared names are read from source (:func:`scan_package`,
    decorator ``register_<kind>``) and a module is imported when one of its names is first
    used; ``group``: the ``importlib.metadata`` entry-point group, loaded when a name is not
    found otherwise or when everything is listed.
    """

    def __init__(self, kind: str, packages: tuple[str, ...] = (), group: str | None = None):
        self.kind = kind
        self.packages = packages
        self.group = group
        self._entries: dict[str, Entry[T]] = {}
        self._scans: dict[str, Scan] = {}
        self._failed: dict[str, str] = {}  # module or plugin -> one-line reason it cannot be imported
        self._plugins_loaded = False

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries and self._entries[name].obj is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = Entry(name, obj, dict(meta))
            return obj

        return deco

    # --- what the source declares (no import) --------------------------------
    def _scan(self) -> list[Scan]:
        for pkg in self.packages:
            if pkg not in self._scans:
                self._scans[pkg] = scan_package(pkg, f"register_{self.kind}")
        return [self._scans[pkg] for pkg in self.packages]

    def _declared(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for scan in self._scan():
            for name, module in scan.declared.items():
                out.setdefault(name, module)
        return out

    def _file(self, module: str) -> str:
        for scan in self._scan():
            if module in scan.files:
                return _relative(scan.files[module])
        return module

    # --- imports ---------------------------------------------------------------
    def _import(self, module: str) -> None:
        """Import ``module`` once; a failure is remembered and raised as one line naming the file."""
        if module not in self._failed:
            try:
                importlib.import_module(module)
            except Exception as e:
                # a half-executed module may have registered entries before it failed: drop them
                for name in [n for n, e_ in self._entries.items() if getattr(e_.obj, "__module__", None) == module]:
                    del self._entries[name]
                self._failed[module] = f"{self._file(module)}: {_one_line(e)}"
        if module in self._failed:
            raise BrokenComponentError(f"{self.kind} module {self._failed[module]}")

    def _load_plugins(self) -> None:
        if self._plugins_loaded or not self.group:
            return
        self._plugins_loaded = True
        import importlib.metadata  # ~0.1 s: only when a plugin could matter

        for ep in importlib.metadata.entry_points(group=self.group):
            try:
                ep.load()
            except Exception as e:
                self._failed[f"entry point {ep.name} = {ep.value}"] = (
                    f"entry point {ep.name} = {ep.value} ({self.group}): {_one_line(e)}")

    def _load_rest(self) -> None:
        """What a name not declared in the scanned source could come from: plugins and the
        modules whose names the scan could not read."""
        self._load_plugins()
        for scan in self._scan():
            for module in scan.opaque:
                try:
                    self._import(module)
                except BrokenComponentError:
                    pass

    def load_all(self) -> None:
        """Import every module and plugin (a full listing); failures are kept in :attr:`broken`."""
        for module in sorted(set(self._declared().values())):
            try:
                self._import(module)
            except BrokenComponentError:
                pass
        self._load_rest()

    @property
    def broken(self) -> list[str]:
        """One line per module of this registry's packages (or plugin) that could not be imported
        or parsed: ``<file>: <error>``."""
        out = []
        for scan in self._scan():
            for module in scan.files:
                if module in self._failed:
                    out.append(self._failed[module])
                elif module in scan.unreadable:
                    out.append(f"{_relative(scan.files[module])}: {scan.unreadable[module]}")
        return out + [v for k, v in self._failed.items() if k.startswith("entry point ")]

    # --- lookups ----------------------------------------------------------------
    def names(self) -> list[str]:
        """Every known name: declared in the packages' source, registered, or from a plugin
        (plugins are loaded; package modules are not)."""
        self._load_plugins()
        return sorted(set(self._declared()) | set(self._entries))

    def __contains__(self, name: str) -> bool:
        if name in self._entries or name in self._declared():
            return True
        self._load_rest()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        self.load_all()
        return iter([self._entries[n] for n in sorted(self._entries)])

    def entry(self, name: str) -> Entry[T]:
        """The entry ``name``, importing only the module that declares it (or, for a name the
        source does not declare, plugins and unreadable modules). Raises
        :class:`UnknownNameError` or :class:`BrokenComponentError`."""
        if name not in self._entries:
            module = self._declared().get(name)
            if module is not None:
                self._import(module)
            if name not in self._entries:
                self._load_rest()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def unknown_message(self, name: str) -> str:
        known = sorted(set(self._declared()) | set(self._entries))
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        broken = self.broken
        extra = f"; could not import: {'; '.join(broken)}" if broken else ""
        return f"unknown {self.kind} '{name}'{hint} (known: {', '.join(known) or 'none'}{extra})"


def _relative(path: str) -> str:
    """``path`` relative to the working directory where it lies below it (shorter messages)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


methods: Registry[Any] = Registry("method", ("methods",), "unlearn_bench.methods")
auditors: Registry[Any] = Registry("auditor", ("audits",), "unlearn_bench.auditors")
encoders: Registry[Any] = Registry("encoder", ("bench.encoders",), "unlearn_bench.encoders")
backbones: Registry[Any] = Registry("backbone", ("bench.backbones",), "unlearn_bench.backbones")
datasets: Registry[Any] = Registry("dataset", ("bench.datasets",), "unlearn_bench.datasets")
BY_LISTING = {"methods": methods, "encoders": encoders, "backbones": backbones, "datasets": datasets,
              "auditors": auditors}  # `python -m bench ls <kind>`


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
