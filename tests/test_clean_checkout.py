"""A plain run never dirties the checkout: everything it writes by default lies in an ignored folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("argv", [["run", "--matrix", "smoke"], ["tune", "--matrix", "smoke"],
                                  ["report", "--matrix", "smoke"]])
def test_commands_write_under_runs_by_default(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).results_dir == Path("runs")


def test_what_a_default_run_writes_is_ignored_by_git() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    written = ["runs/mlflow.db", "runs/smoke/leaderboard.md", "runs/smoke/rows.csv", "runs/cache/0123.pt",
               "runs/cache/decoded/x.npz", "runs/mlartifacts/smoke/1/a.png", "runs/.bench-driver.lock"]
    out = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", *written],
                         capture_output=True, text=True, check=False).stdout.split()
    assert out == written
