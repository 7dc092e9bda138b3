"""Executors run cells and hand their results back to the driver, which alone writes MLflow.

An executor is a class with ``map(cells, cache_root, done) -> Iterator[CellResult]``
yielding results as cells complete; heavy engines (Ray, submitit) are imported only
when their executor is chosen.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from bench.config import Cell, ConfigError
from bench.runner import CellResult

EXECUTORS = {"local": "bench.executors.local:LocalExecutor"}


class Executor(Protocol):
    def map(self, cells: list[Cell], cache_root: Path, done: frozenset[str]) -> Iterator[CellResult]: ...


def get_executor(name: str, **options: Any) -> Executor:
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor '{name}': use one of {', '.join(sorted(EXECUTORS))}")
    module, _, attr = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), attr)(**options)
