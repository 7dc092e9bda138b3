"""The front page's generated summary (bench/report/frontpage.py) from a hand-made frame with known
verdicts: a method clearly above the floor is worse, one inside the margin with little spread
matches, a noisy one is undecided with the seeds verdict.py computes; the writer keeps the page
around its markers."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.report.frontpage import END, NO_ROWS, START, front_page, main, splice
from bench.report.roles import FLOOR
from bench.report.verdict import seeds_to_show_match, seeds_to_show_worse, verdict

FLOOR_GAPS = {0: 2.0, 1: 2.2, 2: 1.8}  # margin 2.0
GAPS = {
    "original": {0: 9.0, 1: 9.5, 2: 8.5},
    FLOOR: FLOOR_GAPS,
    "bad": {0: 6.0, 1: 6.3, 2: 5.9},  # d = +4.0, +4.1, +4.1: worse
    "good": {0: 2.0, 1: 2.3, 2: 1.8},  # d = 0, +0.1, 0: |d| << 2.0 with little spread: matches
    "noisy": {0: 1.0, 1: 5.0, 2: 2.5},  # d = -1.0, +2.8, +0.7: undecided
}


def frame(encoder: str = "simclr", gaps: dict = GAPS) -> pd.DataFrame:
    rows = []
    for m, per in {**gaps, "retrain": {s: 0.0 for s in range(3)}}.items():
        for s, g in per.items():
            rows.append({"dataset": "cifar10", "encoder": encoder, "backbone": "convnet-s",
                         "scenario": "random:0.1", "request": 0, "seed": s, "method": m, "start_time": s,
                         "status": "reference" if m in ("original", FLOOR) else "finished",
                         "m.avg_gap": g, "commit": "abc1234def567890", "date": f"2026-12-0{s + 1}T10:00"})
    return pd.DataFrame(rows)


def summary_row(md: str, encoder: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if f"| `{encoder}` |" in ln)
    return [c.strip() for c in line.strip("|").split("|")][1:]  # from the encoder on


def test_verdicts_per_encoder_with_known_answers():
    md = front_page({"cpu": frame()})
    enc, nothing, match, worse, undecided = summary_row(md, "simclr")
    assert (match, worse) == ("good", "bad")
    assert nothing == "worse than retrain"  # the original, 9 against the floor's 2: the cells can tell
    blind = front_page({"cpu": frame(gaps={**GAPS, "original": GAPS["good"]})})
    assert summary_row(blind, "simclr")[1] == "matches retrain too: these cells cannot tell a method from doing nothing"
    d = [GAPS["noisy"][s] - FLOOR_GAPS[s] for s in range(3)]
    v = verdict(GAPS["noisy"], FLOOR_GAPS)
    assert not v.worse and not v.matches
    mean, sd = sum(d) / 3, pd.Series(d).std()
    need = min(seeds_to_show_worse(mean, sd), seeds_to_show_match(mean, sd, 2.0))
    assert undecided == f"noisy: ~{int(need)} seeds"
    assert "commit `abc1234def56`" in md and "rows dated up to 2026-12-03 10:00" in md


def test_counts_over_cells_and_headline_links():
    two = pd.concat([frame(), frame().assign(dataset="svhn")])
    md = front_page({"cpu": two})
    assert summary_row(md, "simclr")[2:4] == ["good (2/2)", "bad (2/2)"]
    assert "### Headline: [cpu](results/cpu/leaderboard.md)" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| ") and "| bad |" in ln)
    assert [c.strip() for c in line.strip("|").split("|")][3:] == ["0/2", "2/2", "0/2"]
    widths = [ln.count("|") - 1 for ln in md.splitlines() if ln.startswith("|---")]
    assert max(widths) <= 8


def test_no_rows_and_the_writer(tmp_path):
    assert front_page({}) == NO_ROWS
    page = tmp_path / "BENCHMARKS.md"
    page.write_text(f"# Title\n\nintro\n\n{START}\nold\n{END}\n\n## Rest\nkept\n")
    assert main([str(page)]) == 0
    text = page.read_text()
    assert text == f"# Title\n\nintro\n\n{START}\n{NO_ROWS}\n{END}\n\n## Rest\nkept\n"
    assert splice("# T\n\nbody\n", "x") == f"# T\n\n{START}\nx\n{END}\n\nbody\n"
    assert main([str(page), str(tmp_path / "missing.csv")]) == 2 and page.read_text() == text


def test_the_command_reads_published_rows_files(tmp_path):
    rows = pytest.importorskip("bench.rows")
    df = frame()
    df["config_hash"] = [f"h{i}" for i in range(len(df))]
    for col in ("precision", "data.fingerprint", "code", "checkpoints", "invocation", "machine", "wall_s",
                "command"):
        df[col] = ""
    csv = rows.write(df, tmp_path / "results" / "cpu" / "rows.csv")
    page = tmp_path / "BENCHMARKS.md"
    page.write_text(f"# B\n\n{START}\n{END}\n")
    assert main([str(page), str(csv)]) == 0
    text = page.read_text()
    assert summary_row(text, "simclr")[1:4] == ["worse than retrain", "good", "bad"]
    assert "### Headline: [cpu](results/cpu/leaderboard.md)" in text


def test_seeds_to_decide_over_an_encoders_cells():
    from bench.report.frontpage import _seeds_text

    inf = float("inf")
    assert (_seeds_text([3, 7]), _seeds_text([5, inf]), _seeds_text([inf])) == (
        "~7 seeds", "~5 seeds (1 cell: no number)", "no number of seeds")


def test_tuning_under_the_headline_with_known_outcomes():
    """Two methods tuned on tuning seeds 7 and 8, paired with their default rows on seeds 0-2:
    "good" tuned 1.0 lower on every seed (d = -1.0, -1.1, -0.9: tuned better, Holm 2 x p), "bad"
    tuned clearly higher (tuned worse); "noisy" stays at its defaults, so the header names it."""
    import json

    note = json.dumps({"values": {"lr": 0.02}, "trials": 8, "seeds": [7, 8], "best": 1.0, "default": 2.0})
    df = frame()
    shift = {"good": (-1.0, -1.1, -0.9), "bad": (1.0, 1.1, 0.9)}
    tuned = [df[df.method == m].assign(tuned=note, start_time=lambda d: d.start_time + 10,
                                       **{"m.avg_gap": lambda d, m=m: d["m.avg_gap"] + list(shift[m])})
             for m in shift]
    both = pd.concat([df.assign(tuned=""), *tuned], ignore_index=True)
    md = front_page({"cpu": both})
    assert "Hyperparameters: tuned: 8 trials x 2 tuning seeds (7, 8) per method; at defaults: noisy." in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| `simclr` | good"))
    assert line == "| `simclr` | good | – | bad | – |"
    assert "Hyperparameters: defaults, untuned." in front_page({"cpu": frame()})
    kept = json.dumps({"values": {}, "trials": 8, "seeds": [7, 8], "complete": 0, "failed": 8})
    md = front_page({"cpu": both.assign(tuned=both.tuned.where((both.method != "bad") | (both.tuned == ""), kept))})
    assert next(ln for ln in md.splitlines() if ln.startswith("| `simclr` | good")) == (
        "| `simclr` | good | – | – | bad (kept its defaults) |")  # it ran its defaults: nothing to test
