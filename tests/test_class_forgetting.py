"""Class forgetting is measurable: the probe and the kNN bank are fit on D_r + D_v, which hold
every class, TA_rest scores the remaining classes, and the scenario shows its class by name."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench import AuditContext, ModelFeatures, registry
from bench.audit import metric_specs
from bench.cli import main
from bench.config import AuditOptions
from bench.probe import fit_probe, fit_set
from bench.report.flags import cell_flags
from bench.report.summary import avg_gap
from bench.tracking import Tracker

FORGOTTEN = 2


def clustered(n: dict[str, int], classes: dict[str, tuple[int, ...]], seed: int = 0) -> ModelFeatures:
    """Three well-separated Gaussian classes in 16-d; split s holds n[s] samples of classes[s]."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 16)) * 6
    feats, labels = {}, {}
    for s, k in n.items():
        y = np.asarray(classes[s])[np.arange(k) % len(classes[s])]
        feats[s], labels[s] = centres[y] + rng.normal(size=(k, 16)), y
    zeros = {s: np.zeros(k) for s, k in n.items()}
    return ModelFeatures(name="m", feats=feats, labels=labels, align_head=zeros, align_backbone=zeros,
                         loss=zeros, align_views=np.zeros((0, 2, 1)))


def class_scenario(val: int = 30) -> ModelFeatures:
    """D_r lacks class 2 (it is D_f); D_v and D_t hold all three classes."""
    return clustered({"retain": 300, "val": val, "forget": 60, "test": 150},
                     {"retain": (0, 1), "val": (0, 1, 2), "forget": (FORGOTTEN,), "test": (0, 1, 2)})


def actx(model: ModelFeatures, forgotten: tuple[int, ...] = ()) -> AuditContext:
    return AuditContext(original=model, retrain=model, references=[model], num_classes=3,
                        options=AuditOptions(), seed=0, forgotten_classes=forgotten)


def audit(name: str, model: ModelFeatures, ctx: AuditContext) -> dict[str, float]:
    return registry.auditors.get(name)().audit(model, ctx)


def test_probe_and_knn_learn_the_forgotten_class_from_val():
    m = audit("linear_probe", class_scenario(), actx(class_scenario(), (FORGOTTEN,)))
    assert m["FA"] == 100.0 and m["UA"] == 0.0 and m["TA"] == 100.0
    k = audit("knn", class_scenario(), actx(class_scenario(), (FORGOTTEN,)))
    assert k == {"kNN_RA": 100.0, "kNN_FA": 100.0, "kNN_TA": 100.0}
    # the old fit set (D_r alone: an empty D_v) never saw class 2: FA 0 whatever the features
    blind = class_scenario(val=0)
    assert audit("linear_probe", blind, actx(blind, (FORGOTTEN,)))["FA"] == 0.0
    assert audit("knn", blind, actx(blind, (FORGOTTEN,)))["kNN_FA"] == 0.0


def test_fit_set_is_retain_then_val_and_requires_val():
    mf = class_scenario()
    x, y = fit_set(mf.feats, mf.labels)
    np.testing.assert_array_equal(x[:300], mf.feats["retain"])  # leave-one-out kNN indexes D_r first
    np.testing.assert_array_equal(y[300:], mf.labels["val"])
    with pytest.raises(KeyError, match="val"):
        fit_set({"retain": x}, {"retain": y})


def test_probe_weighs_classes_by_inverse_count():
    """A class seen 20 times against 500: the boundary sits halfway between the means (not
    shifted by the prior), so a point just past halfway is the small class's."""
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(0.0, 0.3, 500), rng.normal(1.0, 0.3, 20)][:, None]
    y = np.r_[np.zeros(500, int), np.ones(20, int)]
    assert fit_probe(x, y).predict([[0.62]])[0] == 1
    assert fit_probe(x, y).predict([[0.38]])[0] == 0


def test_ta_rest_leaves_the_forgotten_classes_out_of_d_t():
    mf = class_scenario()
    wrong = np.flatnonzero(mf.labels["test"] == FORGOTTEN)[:25]  # 25 of 50 class-2 test images
    mf.feats["test"][wrong] = mf.feats["retain"][:25]  # ... look like class 0 or 1
    m = audit("linear_probe", mf, actx(mf, (FORGOTTEN,)))
    assert m["TA"] == pytest.approx(100 * (150 - 25) / 150)
    assert m["TA_rest"] == 100.0  # the 100 test images of classes 0 and 1 are all right
    assert "TA_rest" not in audit("linear_probe", mf, actx(mf))  # random scenario: omitted


def test_avg_gap_takes_ta_rest_instead_of_ta():
    specs = metric_specs()
    retrain = {"RA": 100.0, "TA": 90.0, "TA_rest": 95.0, "UA": 10.0}
    method = {"RA": 98.0, "TA": 80.0, "TA_rest": 91.0, "UA": 16.0}
    assert avg_gap(method, retrain, specs) == pytest.approx((2 + 4 + 6) / 3)
    plain = {k: v for k, v in method.items() if k != "TA_rest"}
    assert avg_gap(plain, retrain, specs) == pytest.approx((2 + 10 + 6) / 3)


def test_uncalibrated_flag_never_fires_on_class_forgetting():
    orig = {"FA": 20.0, "TA": 90.0, "EMIA": 50.0}
    retrain = {"FA": 10.0, "TA": 90.0, "EMIA": 50.0}
    sizes = {"forget": 200, "retain": 2000, "test": 2000}
    flag = "uncalibrated auditors cannot separate members"
    assert any(flag in f for f in cell_flags({}, orig, retrain, sizes).cell)
    assert not any(flag in f for f in cell_flags({}, orig, retrain, sizes, class_forgetting=True).cell)


def test_extract_gives_val_clean_features_only_and_leaves_losses_alone():
    from bench.features import extract
    from tests.conftest import random_simclr

    enc, views = random_simclr({"forget": 6, "retain": 20, "test": 30, "val": 12})
    val = views.pop("val")
    opts = AuditOptions(views=2, batch_size=64)
    cpu = torch.device("cpu")
    without = extract(enc, "m", views, opts, cpu, "fp32", seed=0)
    with_val = extract(enc, "m", {**views, "val": val}, opts, cpu, "fp32", seed=0)
    assert with_val.feats["val"].shape == (12, enc.feat_dim) and len(with_val.labels["val"]) == 12
    assert "val" not in with_val.align_head and "val" not in with_val.loss
    for s in views:  # D_v joins no pooled loss batch: every member/non-member score is unchanged
        np.testing.assert_array_equal(with_val.loss[s], without.loss[s])
        np.testing.assert_array_equal(with_val.align_head[s], without.align_head[s])


def test_class_matrix_end_to_end(write_matrix, results_dir):
    """class:3 of digits through the CLI: FA is measurable for the original and for retrain,
    TA_rest replaces TA in Avg Gap, and MLflow shows the class by name."""
    path = write_matrix("classforget", scenarios=["class:3"], auditors=["linear_probe", "knn"],
                        methods=["retrain", {"finetune": {"epochs": 1}}])
    assert main(["run", "--matrix", str(path), "--results-dir", str(results_dir)]) == 0
    df = Tracker(results_dir).results_frame("classforget").set_index("method")
    orig, retrain, ft = df.loc["original"], df.loc["retrain"], df.loc["finetune"]
    assert orig["m.FA"] > 50 and orig["m.kNN_FA"] > 50  # was 0 with a probe fit on D_r alone
    assert math.isfinite(retrain["m.FA"]) and retrain["m.FA"] > 0
    assert all(math.isfinite(r["m.TA_rest"]) for r in (orig, retrain, ft))
    gap = (abs(ft["m.RA"] - retrain["m.RA"]) + abs(ft["m.TA_rest"] - retrain["m.TA_rest"])
           + abs(ft["m.UA"] - retrain["m.UA"])) / 3
    assert ft["m.avg_gap"] == pytest.approx(gap)
    assert set(df.scenario) == {"class:3"} and set(df.scenario_name) == {"class:3 (3)"}
    assert "uncalibrated" not in orig["cell_flags"]
    runs = Tracker(results_dir).client.search_runs(
        [Tracker(results_dir).experiment_id("classforget")], "tags.`bench.kind` = 'row'")
    assert {r.info.run_name.split(" | ")[0] for r in runs} >= {"finetune", "original", "retrain"}
    assert all(" class:3 (3) seed=0" in r.info.run_name for r in runs)


def test_results_frame_names_old_rows_by_their_scenario(results_dir):
    from mlflow.entities import Param, RunTag

    t = Tracker(results_dir)
    exp = t.experiment_id("classforget_old")
    rid = t.client.create_run(exp, tags={"bench.kind": "row"}).info.run_id
    t.client.log_batch(rid, params=[Param("scenario", "class:1"), Param("seed", "0"), Param("request", "0")],
                       tags=[RunTag("bench.status", "finished")])
    t.client.set_terminated(rid, "FINISHED")
    assert t.results_frame("classforget_old").scenario_name.tolist() == ["class:1"]


def test_knn_votes_are_divided_by_class_count():
    """5 bank entries of class 1 nearest the query, 100 of class 0 a little farther: by count class
    0 would win (100 x e^9.8 against 5 x e^10); per entry, class 1 is the nearer."""
    from audits.knn import knn_predict

    bank = np.r_[np.tile([1.0, 0.1], (5, 1)), np.tile([1.0, 0.3], (100, 1))]
    y = np.r_[np.ones(5, int), np.zeros(100, int)]
    assert knn_predict(bank, y, np.array([[1.0, 0.1]]), 2)[0] == 1
    assert knn_predict(bank, y, np.array([[1.0, 0.3]]), 2)[0] == 0
