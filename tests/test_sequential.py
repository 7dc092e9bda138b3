"""``sequential:<k>x<frac>`` end to end on digits: k disjoint requests served one after another.

The method runs once per request on its own previous output, the auditors run after
each request on everything forgotten so far, retrain is a different (cached) model per
request, and MLflow and the leaderboard carry one row / one table per request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bench import (
    AuditContext,
    Auditor,
    Method,
    MetricSpec,
    ModelFeatures,
    UnlearnContext,
    register_auditor,
    register_method,
)
from bench.data import load_dataset
from bench.driver import RunOptions, report, run_matrix
from bench.features import state_hash
from bench.runner import run_cell
from bench.splits import make_split, parse_scenario
from bench.tracking import Tracker

K = 2
SCENARIO = f"sequential:{K}x0.05"
N_VAL = 20


@register_method("_test_chain", needs=("forget", "retain"))
@dataclass
class Chain(Method):
    """Test-only: one SGD step on D_r; records the weights it started from and ended with."""

    def unlearn(self, ctx: UnlearnContext) -> None:
        ctx.info["start"] = state_hash(ctx.encoder)
        ctx.info["forget_idx"] = sorted(ctx.forget.idx.tolist())
        opt = ctx.optimizer("sgd", lr=0.01)
        ctx.step(opt, ctx.objective(next(ctx.cycle(ctx.retain, 64))).mean())
        ctx.info["end"] = state_hash(ctx.encoder)


@register_auditor("_test_sizes")
class Sizes(Auditor):
    """Test-only: how many images each audit split holds."""

    metrics = (MetricSpec("n_forget_audited", "|D_f| audited"),
               MetricSpec("n_test_audited", "|D_t| audited"))

    def audit(self, model: ModelFeatures, ctx: AuditContext) -> dict[str, float]:
        return {"n_forget_audited": len(model.labels["forget"]),
                "n_test_audited": len(model.labels["test"])}


@pytest.fixture(scope="module")
def matrix_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import yaml

    from tests.conftest import TINY

    path = tmp_path_factory.mktemp("seq") / "seq.yaml"
    path.write_text(yaml.safe_dump({
        **TINY, "name": "seq", "scenarios": [SCENARIO],
        "methods": ["retrain", "_test_chain"], "auditors": ["linear_probe", "_test_sizes"],
        "train": {**TINY["train"], "batch_size": 64},
        "data": {"n_val": N_VAL, "n_train": 200, "n_test": 100},
        "audit": {"views": 2, "max_members": 100, "references": 1},
    }))
    return path


@pytest.fixture(scope="module")
def seq_run(matrix_path: Path, results_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One driver run of the matrix; the executor also hands the CellResult to the test."""
    from bench import driver
    from bench.executors.local import LocalExecutor

    cache = tmp_path_factory.mktemp("seqcache")
    results: list = []

    def capture(cell, cache_root, done):
        results.append(run_cell(cell, cache_root, done))
        return results[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(driver, "get_executor", lambda name, **kw: LocalExecutor(fn=capture))
        summary = run_matrix(RunOptions(matrix=str(matrix_path), results_dir=results_dir,
                                        cache_dir=cache))
    assert summary.exit_code == 0 and len(results) == 1
    return results[0], cache, results_dir


def test_requests_are_disjoint_and_cumulative() -> None:
    data = load_dataset("digits")
    split = make_split(data.train_y.numpy(), data.test_y.numpy(), parse_scenario(SCENARIO), 0, N_VAL,
                       200, 100)
    assert len(split.requests) == K
    n = round(0.05 * len(split.members))
    for i, a in enumerate(split.requests):
        assert len(a) == n
        assert not set(a) & set(split.val) and not set(a) & set(split.retain)
        for b in split.requests[i + 1:]:
            assert not set(a) & set(b)
    assert np.array_equal(np.sort(np.concatenate(split.requests)), split.forget)
    for r in range(K):
        gone, retain = split.after_request(r)
        assert len(gone) == n * (r + 1) and not set(gone) & set(retain)
        assert np.array_equal(np.sort(np.concatenate([gone, retain])), split.members)


def test_method_chains_and_auditors_run_after_each_request(seq_run) -> None:
    result, _, _ = seq_run
    assert not result.error
    rows = {(r.method, r.request): r for r in result.rows}
    for m in ("original", "retrain", "_test_chain"):
        assert {q for (mm, q) in rows if mm == m} == set(range(K))
    data = load_dataset("digits")
    split = make_split(data.train_y.numpy(), data.test_y.numpy(), parse_scenario(SCENARIO), 0, N_VAL,
                       200, 100)
    for r in range(K):
        chain = rows[("_test_chain", r)]
        assert chain.status == "finished"
        # the method saw only this request's forget set ...
        assert chain.info["forget_idx"] == split.requests[r].tolist()
        # ... and started from its own output of the previous request (the original at r = 0)
        if r:
            assert chain.info["start"] == rows[("_test_chain", r - 1)].info["end"]
        # the auditors ran after this request, on everything forgotten so far
        for m in ("original", "retrain", "_test_chain"):
            assert rows[(m, r)].metrics["n_forget_audited"] == len(split.after_request(r)[0])
            assert "TA" in rows[(m, r)].metrics
    assert rows[("_test_chain", 0)].info["start"] != rows[("_test_chain", 1)].info["start"]


def test_retrain_is_a_different_cached_model_per_request(seq_run) -> None:
    result, cache, _ = seq_run
    metas = [json.loads(p.read_text()) for p in cache.glob("*.json")]
    roles = sorted(m["role"] for m in metas)
    # one original; per request one retrain and one reference retrain, each its own checkpoint
    assert roles == sorted(["original"] + ["retrain"] * K + ["reference-0"] * K)
    assert len({p.stem for p in cache.glob("*.pt")}) == 1 + 2 * K
    trained = [e for e in result.events if e.startswith("trained retrain")]
    assert len(trained) == K
    # the retrain method is charged the cached model of its own request
    rte = [next(r for r in result.rows if r.method == "retrain" and r.request == q).metrics["rte_s"]
           for q in range(K)]
    secs = {m["seconds"] for m in metas if m["role"] == "retrain"}
    assert all(any(abs(t - s) < 0.5 for s in secs) for t in rte)


def test_mlflow_rows_and_a_leaderboard_table_per_request(seq_run, tmp_path: Path) -> None:
    _, _, results = seq_run
    df = Tracker(results).results_frame("seq")
    for m in ("original", "retrain", "_test_chain"):
        assert sorted(df[df.method == m].request) == list(range(K))
    board = (results / "seq" / "leaderboard.md").read_text()
    for r in range(K):
        assert f"## digits · simclr/convnet-s · {SCENARIO} · after request {r}" in board
    # provenance on the parent run: per request a retrain and a reference were trained;
    # the retrain method fetched its request's retrain from the cache
    (inv,) = Tracker(results).invocations("seq")
    tags = inv["tags"]
    assert tags["bench.models_trained"] == str(1 + 2 * K) and tags["bench.cache_hits"] == str(K)
    assert float(tags["bench.wall_s"]) > 0 and tags["bench.commit"] and "torch" in tags["bench.machine"]
    page = tmp_path / "BENCHMARKS.md"
    page.write_text("# x\n\n## Leaderboards\n\n<!-- section: leaderboards -->\n")
    report("seq", results, benchmarks=page)
    text = page.read_text()
    assert "<!-- leaderboard:seq:start -->" in text and "<!-- leaderboard:seq:end -->" in text
    assert f"#### digits · simclr/convnet-s · {SCENARIO} · after request {K - 1}" in text
    assert tags["bench.command"] in text and tags["bench.commit"] in text
