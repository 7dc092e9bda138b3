"""The whole report (bench/report/build.py) from hand-made results frames with known answers:
headline shape, yardstick rows, verdicts, like-with-like rankings, details pages, pictures, links."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench.audit import metric_specs
from bench.report import paths
from bench.report.build import build_report, write_report
from bench.report.roles import FLOOR

SIZES = json.dumps({"forget": 200, "retain": 1000, "test": 1000})
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def table_widths(md: str) -> list[int]:
    """Columns of every markdown table (counted on the row above each |---| separator)."""
    lines = md.splitlines()
    sep = re.compile(r"\|(\s*:?-+:?\s*\|)+")
    return [lines[i - 1].count("|") - 1 for i, ln in enumerate(lines) if i and sep.fullmatch(ln.strip())]


def broken_links(page: Path) -> list[str]:
    """Relative links (and images) of a markdown page that resolve to no file."""
    out = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (page.parent / target.split("#")[0]).is_file():
            out.append(target)
    return out


def frame(cells: dict[str, dict[str, float]], seeds: int = 3, noise: float = 0.2, seed: int = 0,
          scenario: str = "random:0.1", requests: int = 1) -> pd.DataFrame:
    """A results frame: per encoder (cell) the mean Avg Gap of each method; the floor's is 1.0 and
    the original's 4.0 unless given. Each row also has TA (gap / 2 below retrain's 80) and a
    cMIA-AUC; per-seed values are the mean plus N(0, noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for enc, methods in cells.items():
        means = {"original": 4.0, FLOOR: 1.0, **methods}
        for r in range(requests):
            for s in range(seeds):
                base = {"dataset": "digits", "encoder": enc, "backbone": "convnet-s", "scenario": scenario,
                        "request": r, "seed": s, "start_time": 100 + s, "reason": "", "flags": "",
                        "cell_flags": "", "sizes": SIZES, "figures_run": "", "cell_slug": ""}
                rows.append({**base, "method": "retrain", "status": "finished", "m.avg_gap": 0.0, "m.TA": 80.0,
                             "m.cMIA-AUC": 0.5, "m.rte_frac": 1.0, "m.peak_mem_mb": 0.0})
                for m, mean in means.items():
                    gap = max(0.0, mean + rng.normal(0, noise))
                    rows.append({**base, "method": m, "status": "reference" if m in ("original", FLOOR) else
                                 "finished", "m.avg_gap": gap, "m.TA": 80.0 - gap / 2,
                                 "m.cMIA-AUC": 0.5 + gap / 100,
                                 **({} if m == "original" else {"m.rte_frac": 0.1, "m.peak_mem_mb": 0.0})})
    return pd.DataFrame(rows)


def headline_rows(md: str, heading: str) -> dict[str, list[str]]:
    part = md.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in part.splitlines() if ln.startswith("| ") and not ln.startswith("| method")]
    return {r.split(" | ")[0][2:]: [c.strip() for c in r.strip("|").split("|")] for r in rows}


CELL = "digits · simclr/convnet-s · random:0.1"


def board(df: pd.DataFrame) -> str:
    """The headline alone (no pictures: faster)."""
    return build_report(df, metric_specs(), "t", pictures=False).files[paths.LEADERBOARD]


def test_headline_shows_yardsticks_verdicts_and_fits_eight_columns():
    df = frame({"simclr": {"good": 1.0, "bad": 9.0, "close": 1.05}, "byol": {"good": 1.0, "bad": 9.0}},
               seeds=3, noise=0.8)
    md = board(df)
    assert max(table_widths(md)) <= 8
    rows = headline_rows(md, CELL)
    assert list(rows)[:3] == ["original (doing nothing)", "retrain (target)", FLOOR]
    assert re.match(r"[34]\.\d\d ± ", rows["original (doing nothing)"][3])  # the original's Avg Gap is shown
    assert rows["bad"][2] == "worse than retrain, worse than doing nothing"
    assert rows["good"][2].startswith("undecided at 3 seeds")
    assert rows["good"][3].startswith("**") and rows["close"][3].startswith("**")  # overlapping: both top
    assert not rows["bad"][3].startswith("**")
    assert "- good: undecided at 3 seeds: a difference of" in md  # the seeds-needed sentence
    assert "Margin of *matches*: ±1." in md


def test_a_method_equal_to_the_floor_over_many_seeds_matches_retrain():
    df = frame({"simclr": {"twin": 1.0}}, seeds=30, noise=0.1)
    rows = headline_rows(board(df), CELL)
    assert rows["twin"][2] == "matches retrain"


def test_one_seed_says_no_test_and_bolds_nothing():
    df = frame({"simclr": {"a": 1.0, "b": 2.0}}, seeds=1)
    md = board(df)
    rows = headline_rows(md, CELL)
    assert rows["a"][2] == rows["b"][2] == "–" and "**" not in rows["a"][3]
    assert "1 seed: no test, so no verdict (–)." in md and "Top group" not in md
    assert "Margin of" not in md  # no claim, so no margin


def test_like_with_like_rankings_and_ties():
    cells = {e: {"a": 1.0, "b": 2.0} for e in ("simclr", "byol", "moco_v2")}
    cells["supervised"] = {"a": 1.0, "b": 2.0, "sup_only": 0.5}
    df = frame(cells, seeds=2, noise=0.0)
    md = board(df)
    big, small = md.split("### Ranking 1: ", 1)[1].split("### Ranking 2: ", 1)
    assert big.startswith("4 cells") and "sup_only" not in big
    assert small.startswith("1 cell") and "| sup_only |" in small
    df2 = frame({"simclr": {"x": 2.0, "y": 2.0}, "byol": {"x": 2.0, "y": 2.0}}, seeds=2, noise=0.0)
    md2 = board(df2)
    assert "| 1= | x |" in md2 and "| 1= | y |" in md2  # a tie, not alphabetical


def test_the_original_avg_gap_is_computed_for_stores_without_it():
    df = frame({"simclr": {"a": 1.0}}, seeds=2, noise=0.0)
    orig = df.method == "original"
    df.loc[orig, "m.avg_gap"] = np.nan
    df.loc[orig, "m.TA"], df.loc[orig, "m.cMIA-AUC"] = 76.0, 0.56  # |80 - 76| = 4, |0.5 - 0.56| x 100 = 6
    rows = headline_rows(board(df), CELL)
    assert rows["original (doing nothing)"][3].startswith("5.00 ± 0.00")


def test_details_pages_pictures_and_links_resolve(tmp_path: Path):
    df = frame({"simclr": {"a": 1.0, "b": 3.0}, "byol": {"a": 1.0, "b": 3.0}}, seeds=3)
    fig = tmp_path / "src.png"
    fig.write_bytes(b"\x89PNG\r\n\x1a\n fake")
    rep = build_report(df, metric_specs(), "t", {(("digits", "simclr", "convnet-s", "random:0.1"), 0):
                                                  [("alignment_matrix.png", fig)]})
    out = write_report(rep, tmp_path / "t")
    pages = [out, *sorted((tmp_path / "t" / "cells").glob("*.md"))]
    assert len(pages) == 3
    for page in pages:
        assert broken_links(page) == [], page
    details = (tmp_path / "t" / paths.details(("digits", "simclr", "convnet-s", "random:0.1"))).read_text()
    assert "p matches (TOST)" in details and "Holm-adjusted p" in details and "### Per seed" in details
    assert "s0-alignment_matrix.png" in details
    peak = [ln for ln in details.splitlines() if ln.startswith("| a | 3 |")][0]
    assert "**0.00**" not in peak  # CPU peak memory is never ranked (MetricSpec.ranked=False)
    pngs = list((tmp_path / "t" / "figures").glob("**/tradeoff.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert (tmp_path / "t" / paths.ranks(1)).is_file()
    # a rebuild with fewer cells removes the pages and pictures it no longer has
    write_report(build_report(df[df.encoder == "byol"], metric_specs(), "t", pictures=False), tmp_path / "t")
    assert len(list((tmp_path / "t" / "cells").glob("*.md"))) == 1
    assert not (tmp_path / "t" / "figures").exists()  # and empty folders


def test_published_links_resolve_from_benchmarks(tmp_path: Path):
    df = frame({"simclr": {"a": 1.0}, "byol": {"a": 2.0}}, seeds=2)
    rep = build_report(df, metric_specs(), "t")
    write_report(rep, tmp_path / "results" / "t")
    page = tmp_path / "BENCHMARKS.md"
    page.write_text(rep.markdown("results/t/"))
    assert broken_links(page) == [] and "](results/t/cells/" in page.read_text()


def test_sequential_scenarios_get_a_table_per_request_and_one_details_page():
    df = frame({"simclr": {"a": 1.0}}, seeds=2, scenario="sequential:2x0.1", requests=2)
    rep = build_report(df, metric_specs(), "t", pictures=False)
    md = rep.files[paths.LEADERBOARD]
    assert "· after request 0" in md and "· after request 1" in md
    assert [k for k in rep.files if k.startswith("cells/")] == [
        paths.details(("digits", "simclr", "convnet-s", "sequential:2x0.1"))]


def test_an_empty_store_says_so():
    assert "No finished rows yet." in board(pd.DataFrame())


def test_a_store_without_the_floor_row_says_so():
    df = frame({"simclr": {"a": 1.0}}, seeds=2)
    md = board(df[df.method != FLOOR])
    assert headline_rows(md, CELL)["a"][2] == "no floor"
    assert "No `retrain (seed')` row: no verdict" in md


def test_cell_notes_see_superseded_rows_the_tables_drop():
    """A tuned method's notes compare its tuned rows with the default rows of an earlier run."""
    df = frame({"simclr": {"a": 1.0}}, seeds=2)
    later = df[df.method == "a"].assign(start_time=lambda d: d.start_time + 1000)
    rep = build_report(pd.concat([df, later]), metric_specs(), "t", pictures=False,
                       cell_notes=lambda rows: [f"rows of a: {(rows.method == 'a').sum()}"])
    page = rep.files[paths.details(("digits", "simclr", "convnet-s", "random:0.1"))]
    assert "rows of a: 4" in page  # both runs' rows, not only the newest the table shows
    rep = build_report(df, metric_specs(), "t", pictures=False, cell_summary=lambda rows: ["tuned line"])
    assert rep.files[paths.LEADERBOARD].count("tuned line") == 1  # under the cell's headline table


def ranking_rows(md: str) -> list[list[str]]:
    """Every row of every ranking table (place, method, ...)."""
    out = []
    for part in md.split("### Ranking ")[1:]:
        body = part.split("\n## ", 1)[0]
        out += [[c.strip() for c in ln.strip("|").split("|")] for ln in body.splitlines()
                if ln.startswith("| ") and not ln.startswith("| place")]
    return out


def test_a_top_group_method_worse_than_retrain_is_never_bold():
    df = frame({"simclr": {"a": 3.0, "b": 3.05, "c": 1.0}}, seeds=6, noise=0.05)
    md = board(df)
    rows = headline_rows(md, CELL)
    assert rows["a"][2].startswith("worse than retrain")
    assert "**" not in rows["a"][3] and "**" not in rows["b"][3]  # worse than retrain: no bold
    assert rows["c"][3].startswith("**")  # in the top group and not worse than retrain
    df2 = frame({"simclr": {"a": 3.0, "b": 3.0}}, seeds=6, noise=0.3)
    md2 = board(df2)
    assert "**" not in "".join(r[3] for r in headline_rows(md2, CELL).values())
    assert "of these worse than retrain, so not bold: a, b." in md2


def test_yardsticks_never_get_a_place_in_a_ranking():
    cells = {e: {"a": 1.0, "b": 5.0, "c": 3.0} for e in ("simclr", "byol", "moco_v2")}
    for seeds in (1, 3):
        df = frame(cells, seeds=seeds, noise=0.0)
        an = build_report(df, metric_specs(), "t", pictures=False).analysis
        assert an.rankings and all(set(r.methods) == {"a", "b", "c"} for r in an.rankings)
        rows = ranking_rows(board(df))
        assert [r[:2] for r in rows] == [["1", "a"], ["2", "c"], ["3", "b"]]
        assert not {r[1] for r in rows} & {"original", "original (doing nothing)", FLOOR}
    # one seed: the yardsticks as reference counts (original 4.0, floor 1.0): a 1.0, c 3.0, b 5.0
    assert [r[3:] for r in ranking_rows(board(frame(cells, seeds=1, noise=0.0)))] == [
        ["3/3", "3/3"], ["3/3", "0/3"], ["0/3", "0/3"]]


def test_intervals_stay_inside_the_metric_range():
    from bench.metrics import NON_NEGATIVE
    from bench.report.stats import fmt_stats, seed_stats

    s = seed_stats([0.0, 0.1, 5.0], NON_NEGATIVE)
    assert s.mean - s.half_width < 0 and s.low == 0.0
    assert fmt_stats(s) == "1.70 ± 2.86 [0.00, 8.80]"
    df = frame({"simclr": {"a": 0.3}}, seeds=3, noise=2.0, seed=3)  # gaps near 0 with a wide spread
    gaps = df.loc[df.method == "a", "m.avg_gap"]
    assert gaps.mean() - 4.3 * gaps.std() / 3 ** 0.5 < 0  # the raw t-interval would cross 0
    rows = headline_rows(board(df), CELL)
    low = float(re.search(r"\[(-?\d+\.\d+),", rows["a"][3])[1])
    assert low == 0.0
    from bench import registry

    shipped = [s for e in registry.auditors if e.obj.__module__.startswith("audits.") for s in e.obj.metrics]
    assert shipped and all(s.bounds != (-np.inf, np.inf) for s in shipped)  # every shipped metric declares one


def test_one_seed_tables_emphasise_nothing():
    df = frame({"simclr": {"a": 1.0, "b": 1.0, "c": 2.0}}, seeds=1, noise=0.0)
    rep = build_report(df, metric_specs(), "t", pictures=False)
    page = rep.files[paths.details(("digits", "simclr", "convnet-s", "random:0.1"))]
    assert "**" not in page and "no group is claimed" in page
    assert "**" not in headline_rows(rep.files[paths.LEADERBOARD], CELL)["a"][3]


def test_the_utility_column_holds_differences_only():
    rows = headline_rows(md := board(frame({"simclr": {"a": 2.0}}, seeds=2, noise=0.0)), CELL)
    assert rows["retrain (target)"][4] == "–" and rows["a"][4].startswith("-1.00")
    assert "Retrain's TA (the zero of TA − retrain): 80.00" in md


def test_every_flag_shown_is_explained_on_its_page():
    df = frame({"simclr": {"a": 1.0, "b": 2.0}}, seeds=2, noise=0.0)
    df.loc[df.method == "a", "flags"] = ("over-unlearning: retrain-level privacy (cMIA-AUC 0.536 vs retrain "
                                         "0.507) only with retain signal MIA-AUC_Dr 0.594 -> 0.503 (within "
                                         "noise of 0.5)")
    df["cell_flags"] = "retrain: CMIA 6.4 vs CMIA_Dt 52.0 beyond noise (SE 5.2)"  # every row of the cell has them
    rep = build_report(df, metric_specs(), "t", pictures=False)
    md, page = rep.files[paths.LEADERBOARD], rep.files[paths.details(("digits", "simclr", "convnet-s",
                                                                       "random:0.1"))]
    assert headline_rows(md, CELL)["a"][7] == "erased the retain set's membership signal (2/2 seeds)"
    for text in (md, page):
        assert "over-unlearning" not in text
        assert "- ⚑ *erased the retain set's membership signal*: the method reached" in text
        assert "- ⚑ *retrain CMIA vs CMIA_Dt beyond noise*: retrain, which never trained on D_f" in text
        assert text.count("- ⚑ *") == 2  # the legend explains the flags shown, and only those
