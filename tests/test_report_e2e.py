"""The report's acceptance on a tiny digits run, so CI guards it: a small leaderboard, no table
wider than 8 columns, the floor and the original's Avg Gap in every cell, like-with-like rankings,
pictures beside the markdown with every relative link resolving (also from a published page), the
report run in MLflow, and resume adding the floor row to a store that lacks it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bench.cli import main
from bench.report.roles import FLOOR
from bench.tracking import Tracker
from tests.conftest import TINY
from tests.test_report_build import broken_links, table_widths

NAME = "report-e2e"
MATRIX = {
    **TINY, "name": NAME,
    "encoders": [{"name": "simclr", "backbone": "convnet-s"}, {"name": "supervised", "backbone": "convnet-s"}],
    # random_labels needs logits: it runs on the supervised cell only, so it gets a ranking of its own
    "methods": ["retrain", {"finetune": {"epochs": 1}}, {"random_labels": {"epochs": 1}}],
    "auditors": ["linear_probe", "calibrated_mia", "alignment_gap"],
    "data": {"n_val": 100, "n_train": 400, "n_test": 200},
    "audit": {"views": 2, "max_members": 200, "references": 1},
}


@pytest.fixture(scope="module")
def store(results_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    path = tmp_path_factory.mktemp("m") / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(MATRIX))
    assert main(["run", "--matrix", str(path), "--results-dir", str(results_dir)]) == 0
    return path, results_dir


def sections(md: str) -> dict[str, str]:
    return {s.split("\n", 1)[0]: s for s in md.split("\n## ")[1:]}


def test_leaderboard_is_small_narrow_and_shows_both_yardsticks(store):
    _, results = store
    board = results / NAME / "leaderboard.md"
    md = board.read_text()
    assert len(md.encode()) <= 15_000
    assert max(table_widths(md)) <= 8
    cells = {h: s for h, s in sections(md).items() if h.startswith("digits")}
    assert len(cells) == 2
    for text in cells.values():
        assert f"| {FLOOR} | 1 | the floor | " in text
        orig = next(ln for ln in text.splitlines() if ln.startswith("| original (doing nothing) |"))
        assert re.match(r"\d+\.\d\d$", orig.split(" | ")[3])  # the original's Avg Gap, not "–"
    ranking = sections(md)["Ranking across cells"]
    # yardsticks are never ranked, so the simclr cell (finetune alone) has nothing to rank; the
    # supervised cell ranks finetune with random_labels, which runs there only (like with like)
    assert "### Ranking 2" not in ranking and "### Ranking 1: 1 cell, 2 methods" in ranking
    assert "| random_labels |" in ranking and "| original" not in ranking


def test_pictures_exist_and_every_relative_link_resolves(store, tmp_path):
    _, results = store
    folder = results / NAME
    pages = [folder / "leaderboard.md", *sorted((folder / "cells").glob("*.md"))]
    assert len(pages) == 3
    for page in pages:
        assert broken_links(page) == [], page
    assert len(list(folder.glob("figures/*/tradeoff.png"))) == 2
    assert not (folder / "figures" / "ranks-1.png").exists()  # one cell: ranks within it, no diagram
    assert list(folder.glob("figures/*/s0-*.png"))  # the auditors' alignment matrices, copied
    assert "mlartifacts" not in "".join(p.read_text() for p in pages)
    bench_md = tmp_path / "BENCHMARKS.md"
    bench_md.write_text("# B\n\n## Leaderboards\n\n<!-- section: leaderboards -->\n")
    assert main(["report", "--matrix", NAME, "--results-dir", str(results),
                 "--benchmarks", str(bench_md)]) == 0
    assert broken_links(bench_md) == [] and "| date (UTC) | command |" in bench_md.read_text()


def test_one_report_run_carries_the_files_and_counts_as_nothing_else(store):
    _, results = store
    tracker = Tracker(results)
    exp = tracker.experiment_id(NAME, create=False)
    hashes = tracker.finished_hashes(exp)
    assert main(["report", "--matrix", NAME, "--results-dir", str(results)]) == 0
    runs = tracker.client.search_runs([exp], "tags.`bench.kind` = 'report'")
    assert len(runs) == 1  # replaced, not added
    art = tracker.artifact_dir(runs[0].info.run_id)
    assert (art / "leaderboard.md").is_file() and list(art.glob("figures/*/tradeoff.png"))
    assert all(i["run_id"] != runs[0].info.run_id for i in tracker.invocations(NAME))
    assert tracker.finished_hashes(exp) == hashes and len(tracker.results_frame(NAME)) == len(
        tracker.results_frame(NAME).run_id.unique())


def test_resume_adds_the_floor_row_to_a_store_without_it(store):
    path, results = store
    tracker = Tracker(results)
    df = tracker.results_frame(NAME)
    floor = df[df.method == FLOOR]
    assert len(floor) == 2 and (floor.status == "reference").all() and floor["m.avg_gap"].notna().all()
    assert df.loc[df.method == "original", "m.avg_gap"].notna().all()
    others = set(df[df.method != FLOOR].run_id)
    for rid in floor.run_id:  # as a store written before the floor was audited
        tracker.client.delete_run(rid)
    assert main(["run", "--matrix", str(path), "--results-dir", str(results)]) == 0
    again = tracker.results_frame(NAME)
    assert set(again[again.method != FLOOR].run_id) == others  # nothing else recomputed
    assert len(again[again.method == FLOOR]) == 2


def test_auditor_figures_are_found_in_both_store_layouts(tmp_path):
    """On the row run under figures/ (Tracker.figure_paths), or, in stores written before, on
    the parent run under <cell_slug>/."""
    import pandas as pd

    from bench.driver import auditor_figures

    new = tmp_path / "new" / "figures" / "r1"
    new.mkdir(parents=True)
    (new / "alignment_matrix.png").write_bytes(b"png")
    old = tmp_path / "old" / "digits_simclr_s1"
    old.mkdir(parents=True)
    (old / "alignment_matrix.png").write_bytes(b"png")

    class Store:  # the two Tracker calls auditor_figures makes
        def figure_paths(self, run_id: str) -> list[Path]:
            return sorted((tmp_path / run_id / "figures").glob("**/*.png")) if run_id == "new" else []

        def artifact_dir(self, run_id: str) -> Path:
            return tmp_path / run_id

    cell = {"dataset": "digits", "encoder": "simclr", "backbone": "convnet-s", "scenario": "random:0.1",
            "request": 0, "method": "finetune", "start_time": 1}
    df = pd.DataFrame([{**cell, "seed": 0, "figures_run": "new", "cell_slug": "digits_simclr_s0"},
                       {**cell, "seed": 1, "figures_run": "old", "cell_slug": "digits_simclr_s1"},
                       {**cell, "seed": 2, "figures_run": "", "cell_slug": "digits_simclr_s2"}])
    found = auditor_figures(Store(), df)
    key = ("digits", "simclr", "convnet-s", "random:0.1")
    assert {k: [n for n, _ in v] for k, v in found.items()} == {
        (key, 0): ["r1/alignment_matrix.png"], (key, 1): ["alignment_matrix.png"]}
