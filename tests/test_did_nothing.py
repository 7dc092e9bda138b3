"""A method whose output is the original is flagged "did nothing", by what was measured: its
weights (the runner compares state dicts) or, failing that, every audit metric."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

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
from bench.config import load_matrix
from bench.report.flags import cell_flags
from bench.runner import CellRunner, same_state

SIZES = {"forget": 100, "retain": 400, "test": 400}
ORIGINAL = {"TA": 50.0, "FA": 60.0, "EMIA": 30.0}
RETRAIN = {"TA": 50.0, "FA": 50.0, "EMIA": 40.0}


def test_unchanged_weights_are_flagged_as_such():
    f = cell_flags({"noop": {**ORIGINAL, "rte_s": 0.1}, "other": {**ORIGINAL, "FA": 55.0}}, ORIGINAL, RETRAIN,
                   SIZES, unchanged={"noop"})
    assert f.methods["noop"] == ["did nothing (weights): every tensor of its state dict equals the model it "
                                 "started from"]
    assert f.methods["other"] == []


def test_identical_audit_metrics_are_flagged_and_cost_columns_do_not_count():
    same = {**ORIGINAL, "rte_s": 3.0, "peak_mem_mb": 12.0, "avg_gap": 4.2}  # only cost columns differ
    f = cell_flags({"same": same, "moved": {**ORIGINAL, "EMIA": 30.5}, "empty": {"rte_s": 1.0}},
                   ORIGINAL, RETRAIN, SIZES)
    assert f.methods["same"] == ["did nothing (metrics): all 3 audit metrics equal the original's"]
    assert f.methods["moved"] == [] and f.methods["empty"] == []  # nothing shared: nothing claimed


def test_same_state_compares_every_tensor():
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    b = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    b.load_state_dict(a.state_dict())
    assert same_state(a, b)
    b[1].running_mean += 1e-6  # a buffer, not a parameter: still a different model
    assert not same_state(a, b)
    assert not same_state(a, torch.nn.Linear(3, 2))  # other names


@register_method("_test_noop", needs=("forget",))
@dataclass
class Noop(Method):
    """Test-only: returns the model it was given."""

    def unlearn(self, ctx: UnlearnContext) -> None:
        pass


@register_method("_test_one_step", needs=("forget",))
@dataclass
class OneStep(Method):
    """Test-only: one SGD step on a forget batch."""

    def unlearn(self, ctx: UnlearnContext) -> None:
        ctx.step(ctx.optimizer("sgd", lr=0.05), ctx.objective(next(ctx.cycle(ctx.forget, 32))).mean())


@register_auditor("_test_mean_feature")
class MeanFeature(Auditor):
    """Test-only: the mean backbone feature on D_f (moves with any weight that matters)."""

    metrics = (MetricSpec("mean_feat_Df", "mean backbone feature on D_f"),)

    def audit(self, model: ModelFeatures, ctx: AuditContext) -> dict[str, float]:
        return {"mean_feat_Df": float(np.mean(model.feats["forget"]))}


def test_the_runner_flags_a_method_that_returns_the_original(write_matrix, tmp_path):
    path = write_matrix("noop", methods=["retrain", "_test_noop", "_test_one_step"], auditors=["_test_mean_feature"],
                        encoders=[{"name": "supervised", "backbone": "convnet-s"}],
                        train={"epochs": 1, "batch_size": 50, "lr": 0.002},
                        data={"n_val": 10, "n_train": 100, "n_test": 50},
                        audit={"views": 2, "max_members": 50, "references": 1})
    result = CellRunner(load_matrix(str(path)).cells()[0], tmp_path / "cache").run()
    flags = {row.method: row.info["flags"] for row in result.rows if row.status == "finished"}
    assert flags["_test_noop"] == ["did nothing (weights): every tensor of its state dict equals the model "
                                   "it started from"]
    assert flags["_test_one_step"] == [] and flags["retrain"] == []


def test_both_did_nothing_flags_are_explained_in_the_legend():
    from bench.report.flag_names import explain, flag_name, legend

    texts = ["did nothing (weights): every tensor of its state dict equals the model it started from",
             "did nothing (metrics): all 3 audit metrics equal the original's"]
    assert {flag_name(t) for t in texts} == {"did nothing"}
    assert "state dict is unchanged" in explain("did nothing")
    assert legend(flag_name(t) for t in texts) == [f"- ⚑ *did nothing*: {explain('did nothing')}"]
