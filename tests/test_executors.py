"""Executors: the same two-cell slice gives bitwise-equal metrics in-process, in a worker pool,
on a local Ray instance and under submitit's local executor; a dead worker fails only its cell."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cloudpickle
import pytest
import ray
import submitit
import yaml

from bench.config import ConfigError, matrix_from_dict
from bench.driver import RunOptions, run_matrix
from bench.executors import failed_rows, get_executor
from bench.executors.local import LocalExecutor
from bench.executors.ray import RayExecutor
from bench.executors.slurm import SlurmExecutor
from bench.runner import CellResult, row_hashes
from bench.tracking import Tracker
from tests.conftest import TINY

TWO = {**TINY, "seeds": [0, 1], "data": {"n_val": 100, "n_train": 200, "n_test": 100},
       "audit": {"views": 2, "max_members": 100, "references": 1}}
TIMING = {"rte_s", "rte_frac", "peak_mem_mb"}  # wall-clock measurements, not results


def metrics_of(results: list[CellResult]) -> dict[tuple[int, str], dict[str, float]]:
    out = {}
    for res in results:
        assert not res.error, res.error
        for row in res.rows:
            assert row.status in ("finished", "reference"), row.reason
            out[(res.cell.seed, row.method)] = {k: v for k, v in row.metrics.items() if k not in TIMING}
    return out


def checkpoints(cache: Path) -> dict[str, str]:
    """Cache key -> sha256 of the checkpoint's bytes: equal iff the trained weights are equal."""
    return {p.stem: json.loads(p.read_text())["sha256"] for p in cache.glob("*.json")}


def crash_on_seed_1(cell, cache_root, done) -> CellResult:
    """Stands in for run_cell: the worker of seed 1 dies the way a segfault or OOM kill would."""
    if cell.seed == 1:
        os._exit(3)
    return CellResult(cell, events=["ran"])


def echo(cell, cache_root, done) -> CellResult:
    return CellResult(cell, events=[f"ran in {os.getpid()}"])


# workers of Ray and submitit cannot import this file: ship the function by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cells():
    return matrix_from_dict({**TWO, "name": "two"}).cells()


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def reference(cells, cache):
    """The in-process run (default executor), which trains the models into ``cache``."""
    return metrics_of(list(LocalExecutor().map(cells, cache, frozenset())))


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the whole file: ray.init costs several seconds."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    yield
    ray.shutdown()


def test_ray_matches_local_through_the_driver(reference, cache, local_ray, results_dir, tmp_path):
    """A fresh cache: Ray workers train the models too; the driver logs their rows to MLflow."""
    path = tmp_path / "two-ray.yaml"
    path.write_text(yaml.safe_dump({**TWO, "name": "two-ray"}))
    summary = run_matrix(RunOptions(matrix=str(path), results_dir=results_dir, cache_dir=tmp_path / "c",
                                    executor="ray"))
    assert summary.exit_code == 0 and summary.finished == 10  # 2 seeds x (original, floor, 3 methods)
    assert checkpoints(tmp_path / "c") == checkpoints(cache) and len(checkpoints(cache)) == 6
    df = Tracker(results_dir).results_frame("two-ray")
    assert len(df) == 10
    for _, row in df.iterrows():
        got = {k[2:]: v for k, v in row.items() if k.startswith("m.") and k[2:] not in TIMING and v == v}
        assert got == reference[(row.seed, row.method)], (row.seed, row.method)


def test_submitit_local_matches_local(reference, cells, cache, tmp_path):
    ex = SlurmExecutor(cluster="local", folder=str(tmp_path / "jobs"), array_parallelism=2, poll_s=0.2)
    assert metrics_of(list(ex.map(cells, cache, frozenset()))) == reference


def test_worker_pool_matches_local(reference, cells, cache):
    assert metrics_of(list(LocalExecutor(workers=2).map(cells, cache, frozenset()))) == reference


@pytest.mark.parametrize("make", [
    lambda tmp: LocalExecutor(workers=1, fn=crash_on_seed_1),
    lambda tmp: RayExecutor(fn=crash_on_seed_1),
    lambda tmp: SlurmExecutor(cluster="local", folder=str(tmp / "jobs"), array_parallelism=2, poll_s=0.2,
                              fn=crash_on_seed_1),
], ids=["pool", "ray", "submitit"])
def test_dead_worker_fails_only_its_cell(make, cells, local_ray, tmp_path, monkeypatch):
    # submitit waits 15 s for the result file of a dead job (slow NFS); this one is local
    monkeypatch.setattr(submitit.core.core.Job, "_results_timeout_s", 0)
    results = {r.cell.seed: r for r in make(tmp_path).map(cells, tmp_path, frozenset())}
    assert results[0].events == ["ran"] and not results[0].error
    assert results[1].error and not results[1].rows
    assert any(w in results[1].error for w in ("exit code 3", "WorkerCrashedError", "job ")), results[1].error


def test_pool_replaces_a_worker_that_died_idle(cells, tmp_path):
    import multiprocessing as mp

    results = LocalExecutor(workers=1, fn=echo).map(cells, tmp_path, frozenset())
    first = next(results)
    for child in mp.active_children():  # the OOM killer picks the idle worker
        child.kill()
        child.join()
    second = next(results)
    assert not second.error and second.cell.seed == 1 and second.events != first.events


def test_dead_cell_is_logged_failed_and_exit_code_is_1(results_dir, tmp_path, monkeypatch):
    import bench.driver

    def seed_1_died(cell, cache_root, done) -> CellResult:
        return CellResult(cell, error="worker process died (exit code 3)" if cell.seed else "")

    path = tmp_path / "two-crash.yaml"
    path.write_text(yaml.safe_dump({**TWO, "name": "two-crash"}))
    monkeypatch.setattr(bench.driver, "get_executor", lambda name, **o: LocalExecutor(fn=seed_1_died))
    summary = run_matrix(RunOptions(matrix=str(path), results_dir=results_dir))
    assert summary.exit_code == 1 and len(summary.failed) == 1 and "seed=1" in summary.failed[0]
    df = Tracker(results_dir).results_frame("two-crash")
    assert sorted(df.method) == ["finetune", "gradient_ascent", "retrain"]
    assert (df.status == "failed").all() and df.reason.str.contains("worker process died").all()


def test_failed_rows_carry_the_runners_hashes(cells):
    rows = failed_rows(cells[0], "boom", frozenset())
    yardsticks = set(row_hashes(cells[0])) - {r.config_hash for r in rows}
    assert len(rows) == 3 and len(yardsticks) == 2  # every method's hash; only the original's and the floor's left
    assert failed_rows(cells[0], "boom", frozenset({rows[0].config_hash}))[0].method == rows[1].method


def test_ray_fails_fast_when_no_node_fits(cells, local_ray, tmp_path):
    ex = get_executor("ray", resources={"num_cpus": 1, "num_gpus": 1})
    with pytest.raises(ConfigError, match="num_gpus=1 per cell"):
        next(iter(ex.map(cells, tmp_path, frozenset())))


def test_unknown_option_is_a_config_error():
    with pytest.raises(ConfigError, match="no option partitin"):
        get_executor("slurm", partitin="gpu")
    with pytest.raises(ConfigError, match="workers must be a positive integer"):
        get_executor("local", workers=0)
