"""Shared fixtures: one MLflow store per session (fresh sqlite migrations cost ~2 s) and tiny matrices."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

os.environ.setdefault("TQDM_DISABLE", "1")
torch.set_num_threads(1)  # tiny models: a second thread only adds contention

TINY: dict[str, Any] = {
    "datasets": ["digits"],
    "encoders": [{"name": "simclr", "backbone": "convnet-s"}],
    "scenarios": ["random:0.1"],
    "seeds": [0],
    "methods": ["retrain", {"finetune": {"epochs": 1}}, {"gradient_ascent": {"epochs": 1}}],
    "auditors": ["linear_probe"],
    "train": {"epochs": 1, "batch_size": 128, "lr": 0.002},
    "data": {"n_val": 100},
    "audit": {"views": 4, "max_members": 300, "references": 1},
    "device": "cpu",
}


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One results folder (MLflow store + model cache) for the whole session; matrices differ by name."""
    return tmp_path_factory.mktemp("results")


@pytest.fixture
def write_matrix(tmp_path: Path):
    """Write a tiny digits matrix YAML named ``name`` with overrides; returns its path."""

    def write(name: str, **overrides: Any) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**TINY, "name": name, **overrides}))
        return path

    return write


def random_simclr(sizes: dict[str, int]):
    """A seeded 16 px SimCLR convnet-s and random uint8 views of the given sizes (split -> n):
    for tests of feature extraction that need a real encoder but no training."""
    from bench.data import DataView
    from bench.encoders.base import DataInfo, build_encoder

    torch.manual_seed(0)
    info = DataInfo(10, tuple(map(str, range(10))), (3, 16, 16), (0.5,) * 3, (0.25,) * 3)
    enc = build_encoder("simclr", "convnet-s", info, {})
    g = torch.Generator().manual_seed(0)

    def view(n: int, name: str) -> DataView:
        x = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g)
        return DataView(x, torch.arange(n) % 10, torch.arange(n), name)

    return enc, {name: view(n, name) for name, n in sizes.items()}


class LogLines(logging.Handler):
    """Collects the messages of the ``bench`` loggers (what a user sees on stderr)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def run_logged(argv: list[str]) -> tuple[int, list[str]]:
    """``python -m bench <argv>`` in-process: its exit code and the log lines it wrote."""
    from bench.cli import main

    h = LogLines()
    logging.getLogger("bench").addHandler(h)
    try:
        return main(argv), h.lines
    finally:
        logging.getLogger("bench").removeHandler(h)
