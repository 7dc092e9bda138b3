"""In-process executor: one cell at a time, in order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.config import Cell
from bench.runner import CellResult, run_cell


class LocalExecutor:
    def __init__(self, **options: Any):
        self.options = options

    def map(self, cells: list[Cell], cache_root: Path, done: frozenset[str]) -> Iterator[CellResult]:
        for cell in cells:
            yield run_cell(cell, cache_root, done)
