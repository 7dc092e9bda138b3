"""Executors run cells and hand their results back to the driver, which alone writes MLflow.

An executor is a class with ``map(cells, cache_root, done) -> Iterator[CellResult]``
yielding results as cells complete, in any order. Every executor runs a cell through
:func:`run_in_worker`, so a cell computes the same numbers wherever it runs, and turns
a dead worker into a failed :class:`CellResult` instead of an exception: one cell's
crash never stops the others. Heavy engines (Ray, submitit) are imported only when
their executor is chosen.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pickle
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from bench.config import Cell, ConfigError
from bench.runner import CellResult, MethodResult, row_hash
from bench.splits import parse_scenario

EXECUTORS = {
    "local": "bench.executors.local:LocalExecutor",
    "ray": "bench.executors.ray:RayExecutor",
    "slurm": "bench.executors.slurm:SlurmExecutor",
}

CellFn = Callable[[Cell, Path, frozenset], CellResult]


class Executor(Protocol):
    def map(self, cells: list[Cell], cache_root: Path, done: frozenset[str]) -> Iterator[CellResult]: ...


def get_executor(name: str, **options: Any) -> Executor:
    """The executor ``name`` built with ``options`` (``--executor-options`` plus the matrix's
    ``resources``); an unknown name or option is a :class:`ConfigError` before any work."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor '{name}': use one of {', '.join(sorted(EXECUTORS))}")
    module, _, attr = EXECUTORS[name].partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise ConfigError(
            f"executor '{name}' needs an optional package ({e.name}): pip install 'unlearn-bench[{name}]'"
        ) from None
    params = [p for p in inspect.signature(cls).parameters if not p.startswith("_") and p != "fn"]
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ConfigError(f"executor '{name}' has no option {', '.join(unknown)} (options: {', '.join(params)})")
    return cls(**options)


def cell_threads(resources: dict[str, Any] | None) -> int:
    """torch CPU threads of one cell: the ``num_cpus`` it was given (at least 1).

    CPU kernels (oneDNN convolutions, BLAS reductions) split work by thread count, so
    the same seed gives bitwise-equal metrics only at the same count; pinning it to
    the cell's CPU request makes every executor compute the same numbers."""
    return max(1, int((resources or {}).get("num_cpus", 1)))


def setup_worker_logging() -> None:
    """INFO logs of the runner and cache in a fresh worker process (nothing configured yet)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                            datefmt="%H:%M:%S", stream=sys.stderr)
        for noisy in ("filelock", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def error_text(e: BaseException) -> str:
    """One line naming what killed a cell (a worker crash, a lost node, a timed-out job)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:500]


def portable(result: CellResult) -> CellResult:
    """``result`` made safe to pickle: a method may leave arbitrary objects in ``ctx.info``,
    which would otherwise lose the whole cell on its way back to the driver."""
    try:
        pickle.dumps(result)
        return result
    except Exception:
        for row in result.rows:
            row.info = {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
                        for k, v in row.info.items()}
        return result


def failed_rows(cell: Cell, reason: str, done: frozenset[str]) -> list[MethodResult]:
    """One failed row per (method, request) of a cell that died before producing any, so
    MLflow and the leaderboard show the failure and its reason; resume retries them."""
    k = parse_scenario(cell.scenario).k
    rows = []
    for r in range(k):
        for spec in cell.methods:
            h = row_hash(cell, spec, r)
            if h not in done:
                rows.append(MethodResult(spec.name, "failed", h, dict(spec.params), reason=reason, request=r))
    return rows


def run_in_worker(fn: CellFn, cell: Cell, cache_root: Path | str, done: frozenset[str],
                  threads: int) -> CellResult:
    """Run ``fn`` (normally :func:`bench.runner.run_cell`) on ``cell`` with torch's CPU
    threads pinned to ``threads``; never raises."""
    import torch

    setup_worker_logging()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return portable(fn(cell, Path(cache_root), done))
    except Exception as e:  # run_cell never raises; an injected fn may
        logging.getLogger("bench.executors").exception("cell %s failed", cell.label)
        return CellResult(cell, error=error_text(e))
    finally:
        torch.set_num_threads(before)
