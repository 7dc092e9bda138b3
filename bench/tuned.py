"""``tuned.yaml``: the values ``python -m bench tune`` chose, and how ``run --tuned`` applies them.

One entry per (dataset, encoder, backbone, scenario, method) of the tuned matrix: the chosen
values, the trial count, the objective's best (with each tuning seed's Avg Gap), default and
spread, the tuning seeds and the tuning wall time. Format 2 lists the tuning seeds under
``seeds:``; a format-1 file (one tuning seed under ``seed:``, written before tuning scored
several cells) still loads, as a tune on that one seed. Applying it to a matrix's cells
is a pure function (:func:`apply`): the tuned values replace the method's defaults, and a
value the matrix sets explicitly still wins and is reported (:func:`notes`, logged and
stamped on the rows as the ``bench.tuned`` tag). :func:`check` is config validation's call:
a file that names an unknown method, a hyperparameter outside the method's search space, or
a value the method refuses is a :class:`~bench.config.ConfigError` before any work.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from bench import registry
from bench.config import Cell, ConfigError, Matrix, MethodSpec
from bench.hparams import HParamError, search_space
from bench.hparams import check as check_hparams

FORMAT = 2
FORMATS = (1, 2)  # 1: a single tuning seed (``seed:``), read as ``seeds: [seed]``
FILE = "tuned.yaml"
TAG = "bench.tuned"  # row tag: what tuning gave the row (JSON of a note; bench/report/tuning.py reads it)

Key = tuple[str, str, str, str]  # dataset, encoder label, backbone, scenario


def cell_key(cell: Cell) -> Key:
    return (cell.dataset, cell.encoder_label, cell.backbone, cell.scenario)


@dataclass
class MethodTuning:
    """One study's outcome. ``values`` is empty when no trial completed (the method then runs
    at its defaults); ``objective`` holds min / q25 / median / q75 / max over complete trials."""

    values: dict[str, Any]
    trials: int
    complete: int
    failed: int
    best: float | None
    default: float | None  # the objective at the defaults (the study's first trial), if it completed
    objective: dict[str, float]
    wall_s: float
    fixed: dict[str, Any] = field(default_factory=dict)  # the matrix's explicit params, held during tuning
    study: str = ""
    best_gaps: dict[int, float] = field(default_factory=dict)  # tuning seed -> the chosen trial's Avg Gap there


@dataclass
class CellTuning:
    dataset: str
    encoder: str  # Cell.encoder_label
    backbone: str
    scenario: str
    seeds: list[int]
    models_s: float  # the tuning cell's original, retrain and references (trained or loaded)
    methods: dict[str, MethodTuning] = field(default_factory=dict)

    @property
    def key(self) -> Key:
        return (self.dataset, self.encoder, self.backbone, self.scenario)


@dataclass
class Tuned:
    matrix: str
    seeds: list[int]
    trials: int
    sampler: str
    cells: list[CellTuning] = field(default_factory=list)
    source: str = ""
    objective: str = ""  # what a trial's score is, in words

    def lookup(self, cell: Cell) -> CellTuning | None:
        return next((c for c in self.cells if c.key == cell_key(cell)), None)

    def merge(self, cell: CellTuning) -> None:
        """``cell``'s methods replace the same ones of an earlier entry for that key (``--methods``)."""
        old = next((c for c in self.cells if c.key == cell.key), None)
        if old is None:
            self.cells.append(cell)
        else:
            old.methods.update(cell.methods)
            old.seeds, old.models_s = cell.seeds, cell.models_s


# --------------------------------------------------------------------------- file


def dump(tuned: Tuned, path: Path) -> Path:
    raw = {
        "format": FORMAT, "matrix": tuned.matrix, "seeds": list(tuned.seeds), "trials": tuned.trials,
        "sampler": tuned.sampler, "objective": tuned.objective,
        "cells": [{"dataset": c.dataset, "encoder": c.encoder, "backbone": c.backbone, "scenario": c.scenario,
                   "seeds": list(c.seeds), "models_s": round(c.models_s, 1),
                   "methods": {m: _method_raw(t) for m, t in sorted(c.methods.items())}} for c in tuned.cells],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    head = "# written by `python -m bench tune`; used by `python -m bench run --tuned <this file>`\n"
    tmp.write_text(head + yaml.safe_dump(raw, sort_keys=False))
    os.replace(tmp, path)
    return path


def _method_raw(t: MethodTuning) -> dict[str, Any]:
    return {"values": t.values, "fixed": t.fixed, "trials": t.trials, "complete": t.complete, "failed": t.failed,
            "best": t.best, "best_gaps": dict(t.best_gaps), "default": t.default, "objective": t.objective,
            "wall_s": round(t.wall_s, 1), "study": t.study}


def _get(raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in raw:
        raise ConfigError(f"{where}: missing '{key}' (write the file with `python -m bench tune`)")
    value = raw[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{where}: '{key}' has the wrong type ({value!r})")
    return value


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _seeds(raw: Mapping[str, Any], where: str, version: int) -> list[int]:
    """``seeds:`` (format 2: a list of distinct integers) or ``seed:`` (format 1: one integer)."""
    if version == 1:
        return [int(_get(raw, "seed", int, where))]
    seeds = _get(raw, "seeds", list, where)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: 'seeds' must be a list of distinct integers, got {seeds!r}")
    return [int(s) for s in seeds]


def load(path: str | Path) -> Tuned:
    """Read a tuned.yaml; a missing file or a malformed entry is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"tuned file {path} not found: write it with `python -m bench tune --matrix <name>`")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"tuned file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict) or raw.get("format") not in FORMATS:
        raise ConfigError(f"tuned file {path} is not a format-{FORMAT} tuned.yaml (write it with `bench tune`)")
    version = int(raw["format"])
    where = f"tuned file {path}"
    cells = []
    for i, c in enumerate(_get(raw, "cells", list, where)):
        cw = f"{where} cell {i}"
        if not isinstance(c, dict):
            raise ConfigError(f"{cw}: must be a mapping")
        methods = {}
        for name, m in (_get(c, "methods", dict, cw) or {}).items():
            mw = f"{cw} method {name}"
            if not isinstance(m, dict):
                raise ConfigError(f"{mw}: must be a mapping")
            try:
                methods[str(name)] = MethodTuning(
                    values=dict(_get(m, "values", dict, mw)), trials=int(_get(m, "trials", int, mw)),
                    complete=int(m.get("complete", 0)), failed=int(m.get("failed", 0)),
                    best=_number(m.get("best")), default=_number(m.get("default")),
                    objective={str(k): float(v) for k, v in (m.get("objective") or {}).items()},
                    wall_s=float(m.get("wall_s", 0.0)), fixed=dict(m.get("fixed") or {}), study=str(m.get("study", "")),
                    best_gaps={int(k): float(v) for k, v in (m.get("best_gaps") or {}).items()})
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{mw}: {e}") from None
        cells.append(CellTuning(str(_get(c, "dataset", str, cw)), str(_get(c, "encoder", str, cw)),
                                str(_get(c, "backbone", str, cw)), str(_get(c, "scenario", str, cw)),
                                _seeds(c, cw, version), float(c.get("models_s", 0.0)), methods))
    return Tuned(str(raw.get("matrix", "")), _seeds(raw, where, version), int(_get(raw, "trials", int, where)),
                 str(raw.get("sampler", "")), cells, source=str(path), objective=str(raw.get("objective", "")))


# --------------------------------------------------------------------------- checking and applying


def check_values(method: str, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` of ``method`` as tuning may have chosen them: a registered method, names in its
    search space, each value inside it and accepted by the method's own ranges."""
    if method not in registry.methods:
        raise ConfigError(f"{where}: {registry.methods.unknown_message(method)}")
    cls = registry.methods.get(method)
    space = search_space(cls)
    for name, value in values.items():
        if name not in space:
            tunable = ", ".join(sorted(space)) or "none"
            raise ConfigError(f"{where}: '{name}' is not in {method}'s search space (tunable: {tunable})")
        if not space[name].contains(value):
            raise ConfigError(f"{where}: {method} {name}={value!r} is outside its search space {space[name]}")
    try:
        return check_hparams(cls, values, f"{where} {method}")
    except HParamError as e:
        raise ConfigError(str(e)) from None


def check(matrix: Matrix) -> list[str]:
    """Config validation of ``matrix.tuned`` (raises ConfigError); returns warnings: cells of the
    matrix the file does not cover, and explicit matrix values that override tuned ones."""
    tuned = load(matrix.tuned)
    for c in tuned.cells:
        for name, t in c.methods.items():
            check_values(name, t.values, f"tuned file {tuned.source} ({c.dataset} {c.encoder} {c.scenario})")
    warnings = []
    covered = {c.key for c in tuned.cells}
    for key in sorted({cell_key(c) for c in matrix.cells()} - covered):
        warnings.append(f"{tuned.source} has no tuning cell for {' '.join(key)}: its methods run at defaults")
    for (key, method), note in sorted(notes(matrix, tuned).items()):
        where = f"{' '.join(key)} {method}"
        for name, value in note["overridden"].items():
            warnings.append(f"{where}: the matrix sets {name} explicitly; tuned {name}={value!r} is not used")
        if note["fixed"] != note["tuned_with"]:
            warnings.append(f"{where}: tuned with {note['tuned_with'] or 'nothing'} held fixed, but the matrix sets "
                            f"{note['fixed'] or 'nothing'}: the tuned values were chosen for another setting")
    return warnings


def _tuned_values(spec: MethodSpec, cell: CellTuning | None) -> MethodTuning | None:
    t = cell.methods.get(spec.name) if cell else None
    return t if t is not None and t.values else None


def apply(cells: list[Cell], tuned: Tuned) -> list[Cell]:
    """``cells`` with each method's tuned values under its explicit matrix params (those win)."""
    out = []
    for cell in cells:
        entry = tuned.lookup(cell)
        specs = []
        for spec in cell.methods:
            t = _tuned_values(spec, entry)
            values = spec.params if t is None else tuple(sorted({**t.values, **spec.kwargs}.items()))
            specs.append(MethodSpec(spec.name, values))
        out.append(replace(cell, methods=tuple(specs)))
    return out


def notes(matrix: Matrix, tuned: Tuned) -> dict[tuple[Key, str], dict[str, Any]]:
    """(cell key, method) -> what tuning gave its rows: the values used, those the matrix
    overrode, the matrix's other explicit values against those the study held fixed, and the
    study's trial count, tuning seeds, best, default and spread (the row tag)."""
    out = {}
    for cell in {cell_key(c): c for c in matrix.cells()}.values():
        entry = tuned.lookup(cell)
        for spec in matrix.methods:
            # a study that chose nothing (every trial failed) is noted too: its rows ran at the
            # defaults because of the tune, and the report says so
            t = entry.methods.get(spec.name) if entry else None
            if t is None:
                continue
            explicit = spec.kwargs
            out[(cell_key(cell), spec.name)] = {
                "values": {k: v for k, v in t.values.items() if k not in explicit},
                "overridden": {k: v for k, v in t.values.items() if k in explicit},
                "fixed": {k: v for k, v in explicit.items() if k not in t.values},  # the matrix's other values
                "tuned_with": t.fixed,  # what the study held fixed
                "trials": t.trials, "seeds": list(entry.seeds), "best": t.best, "default": t.default,
                "best_gaps": {str(k): v for k, v in t.best_gaps.items()},
                "objective": t.objective, "complete": t.complete, "failed": t.failed, "wall_s": t.wall_s,
                "file": tuned.source,
            }
    return out


def stamp(result: Any, table: Mapping[tuple[Key, str], dict[str, Any]]) -> None:
    """Put each row's note (or nothing: untuned) into ``row.info['tuned']`` of a CellResult."""
    for row in result.rows:
        note = table.get((cell_key(result.cell), row.method))
        if note is not None:
            row.info["tuned"] = note


def tag(note: Mapping[str, Any] | None) -> str:
    """The ``bench.tuned`` row tag: the note as JSON, empty for an untuned row."""
    return json.dumps(note, sort_keys=True, default=str) if note else ""


def invocation_tags(matrix: Matrix) -> dict[str, str]:
    """Tags of a ``run`` invocation's parent run: which tuned.yaml, its budget and tuning seeds."""
    if not matrix.tuned:
        return {}
    tuned = load(matrix.tuned)
    return {TAG: tuned.source, f"{TAG}.trials": str(tuned.trials), f"{TAG}.seeds": ",".join(map(str, tuned.seeds))}
