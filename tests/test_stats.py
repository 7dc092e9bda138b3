"""Leaderboard statistics on a hand-made table: mean ± std, the t-interval, bold best, n/a, failures."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.audit import MetricSpec
from bench.report.analysis import analyse, analyse_table, cell_values
from bench.report.build import build_report
from bench.report.details import metrics_table
from bench.report.frame import latest
from bench.report.publish import command_line, leaderboard_block, splice, wall_seconds
from bench.report.stats import best_methods, column_digits, fmt_stats, seed_stats, t_critical

UP = MetricSpec("TA", "test accuracy", higher_is_better=True)
DOWN = MetricSpec("avg_gap", "gap", higher_is_better=False)
GAP = MetricSpec("UA", "unlearning accuracy", ideal_retrain=True)
METRIC_DIRECTIONS = {"TA": UP, "UA": GAP, "avg_gap": DOWN}


def test_seed_stats_by_hand() -> None:
    s = seed_stats([1.0, 2.0, 3.0])
    assert s.mean == 2.0 and s.n == 3
    assert s.std == pytest.approx(1.0)  # sqrt(((1-2)^2 + 0 + (3-2)^2) / 2)
    assert t_critical(3) == pytest.approx(4.302653, abs=1e-6)  # t_{0.975, 2} from tables
    assert s.half_width == pytest.approx(4.302653 / math.sqrt(3), abs=1e-6)
    assert (s.low, s.high) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)
    assert t_critical(5) == pytest.approx(2.776445, abs=1e-6)  # five seeds: 4 degrees of freedom


def test_seed_stats_edges() -> None:
    one = seed_stats([4.0, float("nan")])  # non-finite values are dropped, not averaged
    assert (one.mean, one.std, one.n) == (4.0, 0.0, 1) and math.isnan(one.half_width)
    assert seed_stats([]).n == 0 and fmt_stats(seed_stats([])) == "–"
    assert fmt_stats(one) == "4.00"
    assert fmt_stats(seed_stats([1, 2, 3])) == "2.00 ± 1.00 [-0.48, 4.48]"
    assert fmt_stats(seed_stats([1, 2, 3]), bold=True, ci=False) == "**2.00** ± 1.00"


def test_best_is_direction_aware_and_excludes_yardsticks() -> None:
    means = {"original": 99.0, "retrain": 50.0, "a": 60.0, "b": 70.0, "c": 48.0}
    assert best_methods(means, UP) == {"b"}  # original's 99 is not eligible
    assert best_methods(means, DOWN) == {"c"}  # retrain's 50 would not count either
    assert best_methods(means, GAP, retrain=50.0) == {"c"}  # |48 - 50| < |60 - 50|
    assert best_methods({"a": 52.0, "c": 48.0}, GAP, retrain=50.0) == {"a", "c"}  # a tie
    assert best_methods({"a": 70.004, "b": 70.001}, UP) == {"a", "b"}  # equal when printed
    assert best_methods(means, MetricSpec("x", "no direction")) == set()
    assert best_methods(means, GAP, retrain=None) == set()


def test_columns_below_one_get_three_decimals() -> None:
    assert column_digits([0.512, 0.743, float("nan")]) == 3  # AUCs: 0.51 vs 0.51 would hide a gap
    assert column_digits([0.5, 12.0]) == 2 and column_digits([]) == 2
    aucs = {"a": 0.5134, "b": 0.5116}
    assert best_methods(aucs, UP, digits=3) == {"a"} and best_methods(aucs, UP, digits=2) == {"a", "b"}


def _rows() -> pd.DataFrame:
    """Hand-made MLflow frame: 3 seeds; method b fails on seed 2; ssd n/a; one stale rerun."""
    rows = []
    ta = {"original": [80, 82, 84], "retrain": [70, 72, 74], "a": [60, 62, 64], "b": [75, 77, None]}
    ua = {"original": [10, 12, 14], "retrain": [30, 31, 32], "a": [40, 41, 42], "b": [29, 31, None]}
    for m in ta:
        for seed in range(3):
            failed = ta[m][seed] is None
            status = "reference" if m == "original" else ("failed" if failed else "finished")
            row = {"dataset": "cifar10", "encoder": "simclr", "backbone": "convnet-s",
                   "scenario": "random:0.1", "request": 0, "seed": seed, "method": m,
                   "status": status, "reason": "loss became nan" if failed else "",
                   "start_time": 10 + seed}
            if not failed:
                row.update({"m.TA": ta[m][seed], "m.UA": ua[m][seed]})
                if m in ("a", "b"):
                    row["m.avg_gap"] = abs(ta[m][seed] - ta["retrain"][seed])
            rows.append(row)
        rows.append({**rows[-1], "seed": 0, "start_time": 1, "m.TA": 0.0} if m == "a" else rows[-1])
    for seed in range(3):
        rows.append({"dataset": "cifar10", "encoder": "simclr", "backbone": "convnet-s",
                     "scenario": "random:0.1", "request": 0, "seed": seed, "method": "ssd",
                     "status": "skipped", "reason": "ssd requires encoder capabilities ['logits']",
                     "start_time": 10})
    return pd.DataFrame(rows).drop_duplicates(subset=["method", "seed", "start_time"])


def cell_table(df: pd.DataFrame, specs: dict) -> list[str]:
    t = analyse_table(("cifar10", "simclr", "convnet-s", "random:0.1", 0), df, specs)
    return metrics_table(t.rows, specs, t.order)


def test_cell_table_on_a_hand_made_table() -> None:
    lines = cell_table(_rows(), METRIC_DIRECTIONS)
    assert lines[0] == "| method | seeds | TA ↑ | UA ≈R | avg_gap ↓ |"
    body = {ln.split(" | ")[0][2:]: ln for ln in lines[2:]}
    assert list(body) == ["original", "retrain", "b", "a", "ssd"]  # yardsticks, then by Avg Gap
    # a: the stale seed-0 row (TA 0, older) is superseded by the newer one
    assert "62.00 ± 2.00 [57.03, 66.97]" in body["a"]
    # b: two finished seeds, one failure with its reason; best TA (76 > 62) in bold
    assert "| b | 2 (1 failed: loss became nan) | **76.00** ± 1.41" in body["b"]
    # UA ≈R: retrain 31; b's mean 30 is closer than a's 41 -> b bold, a not
    assert "**30.00**" in body["b"] and "**41.00" not in body["a"]
    # avg_gap ↓: b (|75-70|, |77-72| -> 5) beats a (10)
    assert "**5.00**" in body["b"] and "10.00" in body["a"]
    assert "**" not in body["original"] and "**" not in body["retrain"]
    assert "n/a: ssd requires encoder capabilities ['logits']" in body["ssd"]


def test_device_artefacts_are_never_bold() -> None:
    mem = MetricSpec("peak_mem_mb", "memory", higher_is_better=False, ranked=False)
    assert best_methods({"a": 0.0, "b": 5.0}, mem) == set()
    df = _rows().assign(**{"m.peak_mem_mb": 0.0})
    table = cell_table(df, {**METRIC_DIRECTIONS, "peak_mem_mb": mem})
    assert "**" not in "".join(ln.split(" | ")[-1] for ln in table[2:])


def test_overall_ranks_methods_within_cells_and_ties_are_ties() -> None:
    df = _rows()
    other = df.copy()
    other["scenario"] = "random:0.5"
    other.loc[other.method == "a", "m.avg_gap"] = 1.0  # a wins this cell, b the first
    an = analyse(pd.concat([df, other]), METRIC_DIRECTIONS, "t")
    assert len(an.rankings) == 1
    r = an.rankings[0]
    assert r.mean_rank["a"] == r.mean_rank["b"] == 1.5  # one first place each: a tie, whatever the raw gaps
    assert r.positions() == {"a": "1=", "b": "1="}


def test_markdown_has_a_table_per_request_and_the_legend() -> None:
    df = _rows()
    later = df.copy()
    later["scenario"] = df["scenario"] = "sequential:2x0.1"
    later["request"] = 1
    md = build_report(pd.concat([df, later]), METRIC_DIRECTIONS, "t", pictures=False).markdown()
    assert "· after request 0" in md and "· after request 1" in md
    assert "95 % t-interval, clipped to the metric's range" in md and "*top group* of a table is relative" in md


def test_publish_splices_between_markers() -> None:
    page = ("# B\n\n## Leaderboards\n\n<!-- section: leaderboards -->\nintro quoting "
            "`<!-- leaderboard:cpu:start -->` and `<!-- leaderboard:cpu:end -->`\n\n## Next\nx\n")
    inv = [{"start_time": 0, "status": "FINISHED",
            "tags": {"bench.command": "python -m bench run --matrix cpu", "bench.commit": "abc",
                     "bench.machine": "EPYC (2 cores)", "bench.wall_s": "3725",
                     "bench.models_trained": "18", "bench.cache_hits": "0"}}]
    block = leaderboard_block("cpu", "# Leaderboard: cpu\n\n## cifar10\n|x|", inv)
    assert "| 1970-01-01 00:00 | `python -m bench run --matrix cpu` | abc | EPYC (2 cores) | " \
           "1h 02m 05s | 18 / 0 |" in block
    assert "### Leaderboard: cpu" in block and "#### cifar10" in block
    assert block.startswith("Written by `python -m bench report --matrix cpu --benchmarks docs/leaderboards.md`")
    once = splice(page, "cpu", block)
    lines = once.splitlines()
    assert lines.index("<!-- leaderboard:cpu:start -->") < lines.index("## Next")
    assert once.index("intro") < once.index("\n<!-- leaderboard:cpu:start -->\n")
    twice = splice(once, "cpu", block.replace("abc", "def"))
    assert twice.splitlines().count("<!-- leaderboard:cpu:start -->") == 1
    assert "| def |" in twice and "| abc |" not in twice
    assert twice.endswith("## Next\nx\n") and "intro quoting `<!-- leaderboard:cpu:start -->` and" in twice


def test_interrupted_invocations_show_the_time_to_their_last_result() -> None:
    tags = {"bench.command": "c", "bench.commit": "abc", "bench.machine": "m"}
    killed_old = {"start_time": 60_000, "status": "RUNNING", "tags": tags, "last_result": 780_000}
    killed_new = {"start_time": 0, "status": "RUNNING", "last_result": 1,
                  "tags": {**tags, "bench.wall_s": "125", "bench.models_trained": "2", "bench.cache_hits": "4"}}
    lost = {"start_time": 0, "status": "RUNNING", "tags": tags}
    assert (wall_seconds(killed_old), wall_seconds(killed_new), wall_seconds(lost)) == (720.0, 125.0, None)
    block = leaderboard_block("cpu", "# Leaderboard: cpu", [killed_old, killed_new, lost])
    assert "| 12m 00s to its last result (interrupted or still running) | ? / ? |" in block
    assert "| 2m 05s to its last result (interrupted or still running) | 2 / 4 |" in block
    assert "| no wall time (RUNNING) |" in block and "total wall time 14m 05s" in block


def test_command_line_is_what_a_user_retypes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_DATA", "/data/x y")
    argv = ["/repo/bench/__main__.py", "run", "--matrix", "cpu"]
    assert command_line(argv) == "BENCH_DATA='/data/x y' python -m bench run --matrix cpu"


def test_latest_keeps_one_row_per_cell_not_per_method():
    rows = []
    for t, enc in enumerate(["simclr", "byol", "simclr"]):  # the second simclr row is a rerun
        rows.append({"dataset": "digits", "encoder": enc, "backbone": "convnet-s", "scenario": "random:0.1",
                     "request": 0, "method": "finetune", "seed": 0, "start_time": t, "status": "finished",
                     "m.avg_gap": float(t)})
    df = pd.DataFrame(rows)
    kept = latest(df)
    assert sorted(kept.encoder) == ["byol", "simclr"] and kept[kept.encoder == "simclr"]["m.avg_gap"].item() == 2.0
    values = cell_values(analyse(df, METRIC_DIRECTIONS, "t").tables)
    assert values["finetune"].to_dict() == {("digits", "byol", "convnet-s", "random:0.1"): 1.0,
                                            ("digits", "simclr", "convnet-s", "random:0.1"): 2.0}
