"""The CLI's listings count cells as the leaderboard does (dataset x encoder x scenario), seeds apart."""

from __future__ import annotations

from pathlib import Path

from bench.config import EncoderSpec, Matrix, MethodSpec
from bench.driver import describe_cells, size_text


def matrix(seeds: list[int]) -> Matrix:
    return Matrix("m", datasets=["digits", "cifar10"], encoders=[EncoderSpec("simclr"), EncoderSpec("byol")],
                  scenarios=["random:0.1", "class:2", "random:0.5"], seeds=seeds,
                  methods=[MethodSpec("finetune")], auditors=["linear_probe"])


def test_size_counts_cells_and_seeds_apart():
    assert size_text(matrix([0, 1, 2, 3, 4]).cells()) == \
        "12 cells (dataset x encoder x scenario) x 5 seeds = 60 runs"
    assert size_text(matrix([7]).cells()[:1]) == "1 cell (dataset x encoder x scenario) x 1 seed = 1 run"


def test_dry_run_listing_groups_cells_with_their_seeds():
    out = describe_cells(matrix([0, 1, 2, 5]), Path("/nonexistent")).splitlines()
    assert out[0] == ("matrix m: 12 cells (dataset x encoder x scenario) x 4 seeds = 48 runs; "
                      "each run: 1 method, 1 auditor")
    assert out[1:] == [
        "  digits:",
        "    simclr/convnet-s · random:0.1, class:2, random:0.5: 4 seeds each (0-2, 5)",
        "    byol/convnet-s · random:0.1, class:2, random:0.5: 4 seeds each (0-2, 5)",
        "  cifar10:",
        "    simclr/convnet-s · random:0.1, class:2, random:0.5: 4 seeds each (0-2, 5)",
        "    byol/convnet-s · random:0.1, class:2, random:0.5: 4 seeds each (0-2, 5)",
    ]
    assert "seeds each (0-9)" in describe_cells(matrix(list(range(10))), Path("/nonexistent"))
