"""End to end on digits through the CLI's main(): run, resume, cache, report, failures, exit codes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import Method, UnlearnContext, register_method
from bench.cli import main
from bench.tracking import Tracker
from tests.conftest import run_logged


@register_method("_test_explodes", needs=("forget",))
@dataclass
class Explodes(Method):
    """Test-only: diverges, so the runner must record a failure and go on."""

    def unlearn(self, ctx: UnlearnContext) -> None:
        opt = ctx.optimizer("sgd", lr=0.1)
        for batch in ctx.batches(ctx.forget):
            ctx.step(opt, ctx.objective(batch).mean() * float("nan"))


@pytest.fixture(scope="module")
def e2e(results_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    import yaml

    from tests.conftest import TINY

    path = tmp_path_factory.mktemp("m") / "e2e.yaml"
    methods = [*TINY["methods"], "_test_explodes"]
    path.write_text(yaml.safe_dump({**TINY, "name": "e2e", "methods": methods}))
    cache = tmp_path_factory.mktemp("e2e-cache")  # its own: other tests train the same digits models
    code, lines = run_logged(["run", "--matrix", str(path), "--results-dir", str(results_dir),
                              "--cache-dir", str(cache)])
    return path, results_dir, code, lines, cache


def test_run_writes_leaderboard_and_mlflow_rows(e2e):
    path, results, code, lines, _ = e2e
    assert code == 1  # the exploding method failed; everything else finished
    board = (results / "e2e" / "leaderboard.md").read_text()
    header = next(line for line in board.splitlines() if line.startswith("| method"))
    assert header.startswith("| method | seeds | verdict | Avg Gap ↓ | TA − retrain |")
    details = next((results / "e2e" / "cells").glob("*.md")).read_text()  # every metric lives there
    header = next(line for line in details.splitlines() if line.startswith("| method | seeds | RA"))
    for col in ("RA ↑", "TA ↑", "FA ≈R", "UA ≈R", "avg_gap ↓"):
        assert col in header
    for m in ("| original (doing nothing) |", "| retrain (target) |", "| retrain (seed') |", "| finetune |",
              "| gradient_ascent |"):
        assert m in board
    assert "| _test_explodes | 0 | failed: bench.training.NonFiniteLossError: loss became nan |" in board
    df = Tracker(results).results_frame("e2e")
    assert sorted(df.method) == sorted(["original", "retrain", "retrain (seed')", "finetune", "gradient_ascent",
                                        "_test_explodes"])
    ok = df[df.status == "finished"]
    assert (ok["m.TA"] > 50).all()  # a trained encoder's probe is far above 10 % chance on digits
    assert df.loc[df.method == "retrain", "m.avg_gap"].item() == 0.0
    failed = df[df.method == "_test_explodes"].iloc[0]
    assert failed.status == "failed" and "nan" in failed.reason.lower()


def test_second_run_resumes_and_fresh_run_hits_the_cache(e2e):
    path, results, _, first_lines, cache = e2e
    assert any(line.startswith("trained original") for line in first_lines)
    code, lines = run_logged(["run", "--matrix", str(path), "--results-dir", str(results), "--cache-dir", str(cache)])
    assert code == 1  # only the failed method reran (and failed again)
    df = Tracker(results).results_frame("e2e")
    assert df[df.status == "finished"].method.value_counts().max() == 1  # nothing logged twice
    code, lines = run_logged(["run", "--matrix", str(path), "--results-dir", str(results), "--cache-dir", str(cache),
                              "--fresh"])
    assert any("cache hit: original" in line for line in lines)
    assert any("cache hit: retrain" in line for line in lines)
    assert not any(line.startswith("trained ") for line in lines)


def test_report_rebuilds_leaderboard_from_mlflow(e2e):
    _, results, _, _, _ = e2e
    board = results / "e2e" / "leaderboard.md"
    before = board.read_text()
    board.unlink()
    assert main(["report", "--matrix", "e2e", "--results-dir", str(results)]) == 0
    assert board.read_text().splitlines()[0] == before.splitlines()[0]
    assert "| retrain (target) |" in board.read_text()


def _exit2(argv: list[str], capsys, where: Path) -> str:
    before = set(where.rglob("*"))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert set(where.rglob("*")) == before  # nothing written
    return err[0]


def test_unknown_matrix_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    msg = _exit2(["validate", "--matrix", "nosuch"], capsys, tmp_path)
    assert "unknown matrix 'nosuch'" in msg
    msg = _exit2(["run", "--matrix", "smok"], capsys, tmp_path)
    assert "did you mean 'smoke'" in msg


@pytest.mark.parametrize(
    "override,expected",
    [
        ({"methods": ["retrain", "fintune"]}, "did you mean 'finetune'"),
        ({"scenarios": ["random:1.2"]}, "bad forget scenario"),
        ({"datasets": ["cifar10"]}, "CIFAR-10 not found"),
        ({"methods": ["retrain", {"finetune": {"lrr": 1}}]}, "unknown key 'lrr'"),
        ({"auditors": ["linear_prob"]}, "did you mean 'linear_probe'"),
    ],
)
def test_bad_matrix_exits_2_with_one_line(override, expected, write_matrix, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "nodata"))
    path = write_matrix("bad", **override)
    msg = _exit2(["run", "--matrix", str(path), "--results-dir", str(tmp_path / "res")], capsys, tmp_path)
    assert expected in msg
    assert not (tmp_path / "res").exists()


def test_ls_and_validate(capsys):
    assert main(["ls", "methods"]) == 0
    out = capsys.readouterr().out
    assert "finetune" in out and "needs=['retain']" in out
    assert main(["validate", "--matrix", "smoke"]) == 0
    assert "is valid" in capsys.readouterr().out


def test_encoder_train_overrides_name_their_own_table(write_matrix):
    """Two entries of one encoder that differ only in their train recipe never share a label."""
    from bench.config import load_matrix

    encs = [{"name": "moco_v2", "backbone": "convnet-s", "params": {"memory_bank": 64}},
            {"name": "moco_v2", "backbone": "convnet-s", "params": {"memory_bank": 64},
             "train": {"batch_size": 64}}]
    base, small = load_matrix(str(write_matrix("overrides", encoders=encs))).cells()
    assert base.encoder_label == "moco_v2(memory_bank=64)"
    assert small.encoder_label == "moco_v2(memory_bank=64)[batch_size=64]"
    assert (base.train.batch_size, small.train.batch_size) == (128, 64)
    assert base.identity() != small.identity()


def test_rows_carry_split_sizes_and_backfill_restores_them(e2e):
    import json

    from bench.backfill import backfill
    from bench.report.sanity import BACKFILLED_TAG, SIZES_TAG

    path, results, _, _, cache = e2e
    tracker = Tracker(results)
    df = tracker.results_frame("e2e")
    sizes = {json.dumps(json.loads(s), sort_keys=True) for s in df.sizes}
    assert len(sizes) == 1  # one cell, one request
    recorded = json.loads(sizes.pop())
    assert recorded["forget"] > 0 and recorded["test"] > 0 and recorded["retain"] <= 300  # max_members
    run = df[df.method == "retrain"].iloc[0].run_id
    tracker.client.delete_tag(run, SIZES_TAG)  # as a row written before sizes were stored
    assert backfill(str(path), results, None, cache) == 1
    row = tracker.client.get_run(run).data.tags
    assert json.loads(row[SIZES_TAG]) == recorded and row[BACKFILLED_TAG] == "1"
    assert main(["report", "--matrix", "e2e", "--results-dir", str(results)]) == 0
    board = next((results / "e2e" / "cells").glob("*.md")).read_text()  # the cell's details page
    assert "Sanity facts" in board and "Split sizes backfilled" in board
    assert "| 0 | " in board.split("Sanity facts", 1)[1]


@pytest.mark.parametrize(("text", "seeds"), [("4-7", [4, 5, 6, 7]), ("0,2,5", [0, 2, 5]), ("1-2,9", [1, 2, 9]),
                                             (None, None)])
def test_seeds_flag_parses_lists_and_ranges(text: str | None, seeds: list[int] | None) -> None:
    from bench.cli import seed_list

    assert seed_list(text) == seeds


@pytest.mark.parametrize("text", ["a", "7-4", "1,1", "", "3-x"])
def test_bad_seeds_flag_is_refused_with_exit_2(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--matrix", "smoke", "--seeds", text, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --seeds")
