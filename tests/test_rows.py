"""Raw rows (bench/rows.py): the file round-trips, bad files are refused in one line, the report
from the file alone is the report from MLflow, `run --from` computes only the cell-seeds the file
lacks in full, verdicts pair only rows of the same checkpoints, and one Avg Gap composition
holds for every seed of a cell."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench import rows
from bench.audit import metric_specs
from bench.cli import main
from bench.config import MethodSpec
from bench.report import paths
from bench.report.build import build_report
from bench.report.roles import FLOOR
from bench.runner import CellResult, CellRunner, MethodResult, code_versions, row_hashes
from bench.tracking import default_uri
from tests.conftest import TINY
from tests.test_report_build import CELL, broken_links, frame, headline_rows

SIZES = {"forget": 200, "retain": 1000, "test": 1000}
CKPT = {"original": "a" * 64, "retrain": "b" * 64, "reference-0": "c" * 64}


def synthetic(seeds: int = 3, **kw) -> pd.DataFrame:
    """A results frame with the identity columns the store adds (test_report_build's frame)."""
    df = frame({"simclr": {"good": 1.0, "bad": 6.0}}, seeds=seeds, **kw)
    df["config_hash"] = [f"h{i:04d}" for i in range(len(df))]
    df["checkpoints"] = json.dumps(CKPT)
    df["code"] = json.dumps({"encoder": 1})
    df["precision"], df["data.fingerprint"], df["parent_run"], df["run_id"] = "fp32", "abc", "p1", "r"
    return df


INVOCATIONS = [{"run_id": "p1", "start_time": 1000, "status": "FINISHED",
                "tags": {"bench.commit": "c0ffee", "bench.machine": "box", "bench.wall_s": "12.5",
                         "bench.command": "python -m bench run --matrix t"}}]


def test_rows_round_trip_byte_for_byte_with_provenance(tmp_path: Path):
    df = synthetic()
    path = rows.write(rows.export(df, INVOCATIONS), tmp_path / "rows.csv")
    back = rows.read(path)
    assert len(back) == len(df) and "run_id" not in back
    row = back.iloc[0]
    assert (row.commit, row.machine, row.date, row.wall_s, row.invocation, row.parent_run) == (
        "c0ffee", "box", "1970-01-01 00:00:01", "12.5", "p1", "p1")
    assert back.seed.dtype == "int64" and back["m.avg_gap"].dtype == float
    text = path.read_text()
    rows.write(back, path)
    assert path.read_text() == text  # a rerun rewrites the same bytes
    shuffled = rows.export(df.sample(frac=1, random_state=1), INVOCATIONS)
    assert rows.write(shuffled, tmp_path / "again.csv").read_text() == text


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.drop(columns="config_hash"), "missing column(s) config_hash"),
    (lambda d: d.assign(config_hash="same"), "config_hash same appears"),
    (lambda d: d.assign(**{"m.TA": "lots"}), "column m.TA holds 'lots' on line 2, not a number"),
])
def test_a_bad_rows_file_is_one_line_exit_2_and_nothing_written(edit, message, tmp_path, capsys):
    path = tmp_path / "rows.csv"
    edit(rows.export(synthetic(), INVOCATIONS)).to_csv(path, index=False)
    with pytest.raises(rows.RowsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rows.read(path)
    out = tmp_path / "out"
    assert main(["report", "--rows", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not out.exists()


@pytest.fixture
def no_drawing(monkeypatch):
    """Stand-in PNGs for the report's own pictures (matplotlib is slow; the pages link to them alike)."""
    import bench.report.build as build

    monkeypatch.setattr(build, "rank_png", lambda *a, **k: b"png")
    monkeypatch.setattr(build, "tradeoff_png", lambda *a, **k: b"png")


def test_report_from_rows_alone_equals_the_frame_s_report(tmp_path: Path, no_drawing):
    df = synthetic()
    path = rows.write(rows.export(df, INVOCATIONS), tmp_path / "t" / "rows.csv")
    assert main(["report", "--rows", str(path), "--out", str(tmp_path / "out")]) == 0
    board = (tmp_path / "out" / paths.LEADERBOARD).read_text()
    assert board.startswith("# Leaderboard: t\n\nHyperparameters: defaults, untuned.\n")  # titled by its folder
    assert headline_rows(board, CELL)["bad"][2] == "worse than retrain, worse than doing nothing"
    assert (tmp_path / "out" / paths.details(("digits", "simclr", "convnet-s", "random:0.1"))).is_file()


def test_a_row_from_other_checkpoints_is_not_paired_and_is_named():
    df = synthetic(seeds=4, noise=0.0)
    other = {**CKPT, "original": "d" * 64}
    df.loc[(df.method == "bad") & (df.seed == 1), "checkpoints"] = json.dumps(other)
    rep = build_report(df, metric_specs(), "t", pictures=False)
    t = next(iter(rep.analysis.tables.values()))
    assert t.verdicts["bad"].n == 3 and t.verdicts["good"].n == 4
    assert t.unpaired == {"bad": {1: f"computed from other checkpoints (original {'d' * 12} vs the floor's "
                                        f"{'a' * 12})"}}
    page = rep.files[paths.details(t.cell)]
    assert f"- bad, seed 1: computed from other checkpoints (original {'d' * 12}" in page
    assert headline_rows(rep.files[paths.LEADERBOARD], CELL)["bad"][1] == "4"  # still shown
    df.loc[:, "checkpoints"] = ""  # rows of stores without checkpoints pair as before
    t = next(iter(build_report(df, metric_specs(), "t", pictures=False).analysis.tables.values()))
    assert t.verdicts["bad"].n == 4 and t.unpaired == {}


def test_merge_keeps_default_and_tuned_rows_of_the_same_models_only():
    """A default run in a file and a tuned run in the store, on one model cache: per cell-seed
    the store's rows (yardsticks and tuned methods) plus the file's default method rows, since
    both come from the same checkpoints; a file whose seed used other models adds nothing."""
    store = rows.export(synthetic(seeds=2), INVOCATIONS)
    methods = ~store.method.isin(["original", "retrain", FLOOR])
    note = json.dumps({"values": {"lr": 0.1}, "trials": 4, "seeds": [7, 8]})
    tuned = store.assign(tuned=pd.Series("", index=store.index).where(~methods, note),
                         config_hash=store.config_hash.where(~methods, store.config_hash + "-t"))
    default = store.assign(invocation="p0", parent_run="p0")  # same hashes for the yardsticks, default methods
    merged = rows.merge(tuned, [default])
    assert len(merged) == len(store) + methods.sum()  # yardsticks once, each method tuned and at defaults
    kept = merged[merged.method.isin(["good", "bad"])]
    assert (kept.groupby(["method", "seed"]).size() == 2).all()
    assert set(merged[~merged.method.isin(["good", "bad"])].invocation) == {"p1"}  # the store's yardsticks
    other = default.assign(checkpoints=json.dumps({**CKPT, "original": "d" * 64}))
    assert len(rows.merge(tuned, [other])) == len(store)  # other models: the store's cell-seeds alone


def test_one_avg_gap_composition_for_every_seed_of_a_cell():
    """EMIA's attack is at chance on the originals of seeds 0 and 1, not 2; CMIA's on seed 0 only:
    every seed's Avg Gap leaves EMIA out and keeps CMIA (at least half the seeds decide)."""
    base = {"dataset": "digits", "encoder": "simclr", "backbone": "convnet-s", "scenario": "random:0.1",
            "request": 0, "start_time": 1, "sizes": json.dumps(SIZES), "flags": "", "cell_flags": "",
            "reason": ""}
    recs = []
    for s in range(3):
        emia_fit, cmia_fit = (50.0 if s < 2 else 70.0), (50.0 if s == 0 else 70.0)
        recs += [
            {**base, "seed": s, "method": "retrain", "status": "finished", "m.TA": 80.0, "m.EMIA": 10.0,
             "m.CMIA": 10.0, "m.avg_gap": 0.0},
            {**base, "seed": s, "method": "original", "status": "reference", "m.TA": 84.0, "m.EMIA": 30.0,
             "m.CMIA": 16.0, "m.EMIA_fit": emia_fit, "m.CMIA_fit": cmia_fit, "m.avg_gap": -1.0},
            {**base, "seed": s, "method": FLOOR, "status": "reference", "m.TA": 81.0, "m.EMIA": 13.0,
             "m.CMIA": 13.0, "m.avg_gap": -1.0},
            {**base, "seed": s, "method": "m", "status": "finished", "m.TA": 78.0, "m.EMIA": 22.0,
             "m.CMIA": 16.0, "m.avg_gap": -1.0},
        ]
    df = pd.DataFrame(recs)
    # the runner stored each seed's own composition: seed 2 kept EMIA, so its stored value (-1 here) is wrong
    df.loc[df.seed < 2, "m.avg_gap"] = df.loc[df.seed < 2].method.map(
        {"retrain": 0.0, "original": 5.0, FLOOR: 2.0, "m": 4.0})
    rep = build_report(df, metric_specs(), "t", pictures=False)
    t = next(iter(rep.analysis.tables.values()))
    assert t.composition.noisy == ("EMIA",) and t.composition.averaged == ("TA", "CMIA")
    # (|TA - 80| + |CMIA - 10|) / 2 on every seed
    assert t.gaps == {"original": {0: 5.0, 1: 5.0, 2: 5.0}, "retrain": {0: 0.0, 1: 0.0, 2: 0.0},
                      FLOOR: {0: 2.0, 1: 2.0, 2: 2.0}, "m": {0: 4.0, 1: 4.0, 2: 4.0}}
    assert ("Avg Gap averages: TA, CMIA; left out as noise: EMIA (2/3 seeds), on every seed."
            in rep.files[paths.details(t.cell)])


# --- run --from: the file's complete cell-seeds are done, the rest computed here -------------

def fake_result(cell, done: frozenset[str]) -> CellResult:
    """A cell's rows without training: metrics from the seed, one figure, its checkpoints."""
    result = CellResult(cell, artifacts={"alignment_matrix.png": b"\x89PNG fake"})
    specs = [MethodSpec(CellRunner.ORIGINAL), MethodSpec(FLOOR), *cell.methods]
    for spec, h in zip(specs, row_hashes(cell)):
        if h in done:
            continue
        gap = {"original": 5.0, FLOOR: 1.0, "retrain": 0.0}.get(spec.name, 2.0) + cell.seed / 10
        status = "reference" if spec.name in (CellRunner.ORIGINAL, FLOOR) else "finished"
        result.rows.append(MethodResult(
            spec.name, status, h, metrics={"TA": 80.0 - gap, "avg_gap": gap, "rte_frac": 0.1},
            info={"sizes": SIZES, "checkpoints": {**CKPT, "seed": str(cell.seed)},
                  "code": code_versions(cell, spec)}))
    return result


class Recorder:
    """An executor that trains nothing and records the cells it was given."""

    def __init__(self) -> None:
        self.cells: list = []

    def map(self, cells, cache_root, done):
        for cell in cells:
            self.cells.append(cell)
            yield fake_result(cell, done)


def run_on(machine: Path, name: str, seeds: list[int], uri: str, monkeypatch, *extra: str) -> Recorder:
    from bench import driver

    rec = Recorder()
    monkeypatch.setattr(driver, "executor_for", lambda opts, matrix: rec)
    path = machine / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({**TINY, "name": name, "seeds": seeds, "methods": ["retrain"]}))
    assert main(["run", "--matrix", str(path), "--results-dir", str(machine), "--tracking-uri", uri, *extra]) == 0
    return rec


def test_run_from_adds_seeds_and_the_report_merges_both_machines(results_dir, tmp_path, monkeypatch, no_drawing):
    uri = default_uri(results_dir)  # one sqlite store (migrations are slow); matrices differ by name
    a, b = tmp_path / "a", tmp_path / "b"
    assert [c.seed for c in run_on(a, "rows-a", [0, 1, 2], uri, monkeypatch).cells] == [0, 1, 2]
    published = a / "rows-a" / "rows.csv"
    assert sorted(set(rows.read(published).seed)) == [0, 1, 2]
    partial = rows.read(published)
    partial = partial[~((partial.seed == 2) & (partial.method == FLOOR))]  # seed 2 lacks a row
    rows.write(partial, tmp_path / "shared" / "rows.csv")
    shutil.copytree(a / "rows-a" / "figures", tmp_path / "shared" / "figures")  # published beside it

    rec = run_on(b, "rows-b", [0, 1, 2, 3, 4], uri, monkeypatch, "--from", str(tmp_path / "shared" / "rows.csv"))
    assert [c.seed for c in rec.cells] == [2, 3, 4]  # seed 2 in part: computed here entirely
    merged = rows.read(b / "rows-b" / "rows.csv")
    assert sorted(set(merged.seed)) == [0, 1, 2, 3, 4] and len(merged) == 15
    by_seed = merged.groupby("seed").invocation.nunique()
    assert (by_seed == 1).all()  # every cell-seed from one source
    a_inv = set(partial.invocation)
    assert set(merged[merged.seed < 2].invocation) == a_inv
    assert not set(merged[merged.seed >= 2].invocation) & a_inv

    # the report of rows.csv alone is the MLflow report, page for page
    out = tmp_path / "from-rows"
    assert main(["report", "--rows", str(b / "rows-b" / "rows.csv"), "--out", str(out)]) == 0
    for rel in ["leaderboard.md", *(p.relative_to(b / "rows-b").as_posix() for p in (b / "rows-b").glob("cells/*"))]:
        assert (out / rel).read_bytes() == (b / "rows-b" / rel).read_bytes(), rel
    assert len(list(out.glob("figures/*/s*-alignment_matrix.png"))) == 5  # seeds 0-1 beside the file, 2-4 in MLflow
    assert "| 5 |" in (out / "leaderboard.md").read_text()

    # publishing copies rows.csv and the pages into the tracked folder; the provenance names both machines' runs
    bench_md = tmp_path / "BENCHMARKS.md"
    assert main(["report", "--matrix", "rows-b", "--results-dir", str(b), "--tracking-uri", uri,
                 "--publish", str(tmp_path / "results"), "--benchmarks", str(bench_md)]) == 0
    pub = tmp_path / "results" / "rows-b"
    assert (pub / "rows.csv").read_bytes() == (b / "rows-b" / "rows.csv").read_bytes()
    assert (pub / "leaderboard.md").read_bytes() == (b / "rows-b" / "leaderboard.md").read_bytes()
    text = bench_md.read_text()
    table = text.split("| date (UTC) |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    assert len(table) == 2 and broken_links(bench_md) == []  # machine a's run (from the file) and b's
    assert "--publish " in text and "](results/rows-b/cells/" in text

    # the --from file moved away: a plain report leaves its rows out (with a warning), but publishing
    # would shrink the published rows, so it is refused in one line and nothing is written
    shutil.move(tmp_path / "shared" / "rows.csv", tmp_path / "moved.csv")
    before = (pub / "rows.csv").read_bytes()
    assert main(["report", "--matrix", "rows-b", "--results-dir", str(b), "--tracking-uri", uri,
                 "--publish", str(tmp_path / "results")]) == 2
    assert (pub / "rows.csv").read_bytes() == before
    assert main(["report", "--matrix", "rows-b", "--results-dir", str(b), "--tracking-uri", uri]) == 0
    assert sorted(set(rows.read(b / "rows-b" / "rows.csv").seed)) == [2, 3, 4]  # the store's seeds alone


def test_bad_arguments_of_rows_commands_exit_2_with_nothing_written(write_matrix, tmp_path, capsys):
    path = write_matrix("rows-args")
    res = tmp_path / "res"
    for argv, expected in [
        (["run", "--matrix", str(path), "--results-dir", str(res), "--from", str(tmp_path / "none.csv")],
         "none.csv does not exist"),
        (["run", "--matrix", str(path), "--results-dir", str(res), "--fresh", "--from", str(tmp_path / "x.csv")],
         "--fresh recomputes every row"),
        (["report", "--matrix", "rows-args", "--results-dir", str(res), "--out", str(tmp_path / "o")],
         "--out goes with"),
        (["report", "--rows", str(tmp_path / "x.csv"), "--publish", str(tmp_path / "p")], "use them with --matrix"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows-args.yaml"]  # nothing written
