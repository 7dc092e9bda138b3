"""Resume: a driver killed by SIGKILL mid-matrix and started again loses no finished result,
repeats none, and discards what it left half-written; a raising method fails alone."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow.entities import Metric, RunTag, ViewType

from bench import Method, UnlearnContext, register_method
from bench.cli import main
from bench.config import load_matrix
from bench.tracking import ROW_KIND, Tracker
from tests.conftest import TINY


@register_method("_test_raises", needs=("retain",))
@dataclass
class Raises(Method):
    """Test-only: raises inside unlearn() (a bad hyperparameter no longer gets that far: validation
    refuses it), so the runner must record the failure and go on."""

    def unlearn(self, ctx: UnlearnContext) -> None:
        raise ValueError("raised inside unlearn()")


NAME = "resume-kill"
MATRIX = {
    **TINY, "name": NAME, "seeds": [0, 1],
    "methods": ["retrain", "_test_raises", {"gradient_ascent": {"epochs": 1}}],
    "data": {"n_val": 100, "n_train": 200, "n_test": 100},
    "audit": {"views": 2, "max_members": 100, "references": 1},
}


def status_rows(db: Path) -> int:
    """Rows the driver has marked with a status so far (read straight from sqlite while it runs)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute(
                "SELECT COUNT(*) FROM tags t JOIN runs r ON t.run_uuid = r.run_uuid "
                "JOIN experiments e ON r.experiment_id = e.experiment_id "
                "WHERE t.key = 'bench.status' AND e.name = ? AND r.lifecycle_stage = 'active'", (NAME,),
            ).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or locked by the writer
        return 0


def rows(tracker: Tracker, exp_id: str) -> list:
    return tracker.client.search_runs([exp_id], f"tags.`bench.kind` = '{ROW_KIND}'", ViewType.ACTIVE_ONLY, 1000)


def test_sigkill_mid_matrix_then_resume(results_dir: Path, tmp_path: Path):
    path = tmp_path / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(MATRIX))
    env = {**os.environ, "TQDM_DISABLE": "1"}
    driver = "import sys, tests.test_resume; from bench.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", driver, "run", "--matrix", str(path),  # _test_raises known
                             "--results-dir", str(results_dir)], env=env, cwd=Path(__file__).parents[1],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while status_rows(results_dir / "mlflow.db") == 0:  # the first cell is being logged
            assert proc.poll() is None and time.time() < deadline, "driver ended before any row"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()

    tracker = Tracker(results_dir)
    exp_id = tracker.experiment_id(NAME, create=False)
    killed = rows(tracker, exp_id)
    kept = {r.data.tags["bench.config_hash"]: r.info.run_id for r in killed
            if r.info.status == "FINISHED" and r.data.tags.get("bench.status") not in (None, "failed")}
    assert 0 < len(killed) < 10  # killed mid-matrix: the second cell never started

    # the two half-written states a kill can leave: metrics but no status, status but not FINISHED
    second = load_matrix(str(path)).cells()[1]
    h = second.method_hash(second.methods[2])
    for tags in ({}, {"bench.status": "finished"}):
        rid = tracker.client.create_run(exp_id, tags={"bench.kind": ROW_KIND, "bench.config_hash": h}).info.run_id
        tracker.client.log_batch(rid, metrics=[Metric("TA", 1.0, 0, 0)], tags=[RunTag(k, v) for k, v in tags.items()])

    assert main(["run", "--matrix", str(path), "--results-dir", str(results_dir)]) == 1  # _test_raises raised
    final = rows(tracker, exp_id)
    hashes = [r.data.tags["bench.config_hash"] for r in final]
    assert len(final) == 10 and len(set(hashes)) == 10  # every (cell, method) exactly once, the floor too
    assert all(r.info.status == "FINISHED" and "bench.status" in r.data.tags for r in final)
    assert {hash_: rid for hash_, rid in zip(hashes, (r.info.run_id for r in final))
            if hash_ in kept} == kept  # finished before the kill: kept, not recomputed
    by_method = {}
    for r in final:
        by_method.setdefault(r.data.tags["bench.method"], []).append(r.data.tags["bench.status"])
    assert by_method == {"original": ["reference"] * 2, "retrain (seed')": ["reference"] * 2,
                         "retrain": ["finished"] * 2, "gradient_ascent": ["finished"] * 2,
                         "_test_raises": ["failed"] * 2}
    reasons = {r.data.tags["bench.reason"] for r in final if r.data.tags["bench.method"] == "_test_raises"}
    assert reasons == {"ValueError: raised inside unlearn()"}
