"""Known-answer tests of every auditor on synthetic ModelFeatures (no model, no training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audits.alignment_gap import FIGURE, view_matrix, within_image
from audits.calibrated_mia import calibrate
from audits.cmia import entropy, modified_entropy, svc_attack
from audits.emia import auc, fit_threshold
from audits.knn import knn_predict
from audits.representation_distance import linear_cka
from bench import AuditContext, ModelFeatures, registry
from bench.config import AuditOptions
from bench.features import _mean_pairwise_cos

SPLITS = ("forget", "retain", "test")


def mf(name: str = "m", **fields: dict[str, np.ndarray]) -> ModelFeatures:
    """A ModelFeatures with the given per-split arrays; the rest filled with harmless defaults."""
    n = {s: len(next(iter(v[s] for v in fields.values() if isinstance(v, dict) and s in v), []))
         for s in SPLITS}
    zeros = {s: np.zeros(n[s]) for s in SPLITS}
    feats = dict(fields.get("feats", {s: np.zeros((n[s], 4)) for s in SPLITS}))
    labels = dict(fields.get("labels", {s: np.zeros(n[s], dtype=int) for s in SPLITS}))
    if "val" not in feats:  # D_v joins D_r in the probe's fit set; empty unless a test gives one
        feats["val"] = np.zeros((0, next(iter(feats.values())).shape[1]))
        labels["val"] = np.zeros(0, dtype=int)
    return ModelFeatures(
        name=name,
        feats=feats,
        labels=labels,
        align_head=fields.get("align_head", zeros),
        align_backbone=fields.get("align_backbone", zeros),
        loss=fields.get("loss", zeros),
        align_views=fields.get("align_views", np.zeros((0, 2, 1))),
        class_scores=fields.get("class_scores", {}),
    )


def actx(model: ModelFeatures, refs: list[ModelFeatures] | None = None, retrain=None,
         num_classes: int = 10) -> AuditContext:
    return AuditContext(original=model, retrain=retrain or model, references=refs or [model],
                        num_classes=num_classes, options=AuditOptions(), seed=0)


def run(auditor: str, model: ModelFeatures, ctx: AuditContext) -> dict[str, float]:
    return registry.auditors.get(auditor)().audit(model, ctx)


# --- EMIA ---------------------------------------------------------------------
def test_emia_separable_members_and_member_like_forget_set():
    rng = np.random.default_rng(0)
    scores = {"retain": rng.normal(0.8, 0.03, 800), "test": rng.normal(0.4, 0.03, 1500),
              "forget": rng.normal(0.8, 0.03, 300)}
    m = run("emia", mf(align_backbone=scores, align_head=scores), actx(mf(align_head=scores)))
    assert m["EMIA_AUC"] > 0.95 and m["EMIA_head_AUC"] > 0.95
    assert m["EMIA_fit"] > 95 and m["EMIA"] < 5  # D_f is classified member
    assert m["EMIA_Dt"] > 95


def test_emia_forget_set_like_nonmembers_is_forgotten():
    rng = np.random.default_rng(1)
    scores = {"retain": rng.normal(0.8, 0.03, 500), "test": rng.normal(0.4, 0.03, 500),
              "forget": rng.normal(0.4, 0.03, 300)}
    m = run("emia", mf(align_backbone=scores), actx(mf()))
    assert m["EMIA"] > 95 and abs(m["EMIA_AUC"] - 0.5) < 0.1


def test_identically_distributed_scores_give_chance():
    rng = np.random.default_rng(2)
    scores = {s: rng.normal(0.6, 0.1, 4000) for s in SPLITS}
    m = run("emia", mf(align_backbone=scores, align_head=scores), actx(mf()))
    assert abs(m["EMIA_AUC"] - 0.5) < 0.05 and abs(m["EMIA_head_AUC"] - 0.5) < 0.05
    assert m["EMIA_fit"] < 55  # the fit says the attack sees nothing
    assert abs(m["EMIA"] - m["EMIA_Dt"]) < 5


def test_threshold_uses_balanced_accuracy():
    # 10 members at 0.9, 1000 non-members: 990 at 0.1 and 10 at 0.95. Plain accuracy would call
    # everything non-member (t > 0.95); balanced accuracy separates the members (t in (0.1, 0.9]).
    t, acc = fit_threshold(np.full(10, 0.9), np.r_[np.full(990, 0.1), np.full(10, 0.95)])
    assert 0.1 < t <= 0.9 and acc == pytest.approx((1.0 + 0.99) / 2)


def test_auc_orientation():
    assert auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auc(np.array([0.0]), np.array([1.0])) == 0.0


# --- calibrated MIA -------------------------------------------------------------
def _difficulty_world(member_shift: float, k_refs: int, seed: int = 3):
    """Per-sample difficulty offsets (sd 0.2) shared by every model; D_f shifted by ``member_shift``
    under the audited model only; per-model noise sd 0.01."""
    rng = np.random.default_rng(seed)
    n = {"forget": 500, "retain": 500, "test": 1000}
    diff = {s: rng.normal(0.5, 0.2, n[s]) for s in SPLITS}

    def model(shift: dict[str, float]) -> dict[str, np.ndarray]:
        return {s: diff[s] + shift.get(s, 0.0) + rng.normal(0, 0.01, n[s]) for s in SPLITS}

    audited = mf("m", align_head=model({"forget": member_shift, "retain": member_shift}))
    refs = [mf(f"ref{k}", align_head=model({"retain": member_shift})) for k in range(k_refs)]
    return audited, refs


@pytest.mark.parametrize("k_refs", [1, 3])
def test_calibration_removes_per_sample_difficulty(k_refs):
    audited, refs = _difficulty_world(member_shift=0.05, k_refs=k_refs)
    m = run("calibrated_mia", audited, actx(audited, refs))
    assert m["MIA-AUC"] < 0.65  # the offset drowns the member shift
    assert m["cMIA-AUC"] > 0.95  # calibration recovers it


@pytest.mark.parametrize("k_refs", [1, 3])
def test_calibrated_attack_on_a_retrain_is_at_chance(k_refs):
    audited, refs = _difficulty_world(member_shift=0.0, k_refs=k_refs)
    m = run("calibrated_mia", audited, actx(audited, refs))
    assert abs(m["cMIA-AUC"] - 0.5) < 0.05


def test_loss_score_is_sign_flipped():
    rng = np.random.default_rng(4)
    base = {s: rng.normal(2.0, 0.3, 400) for s in SPLITS}
    low = {s: base[s] - (0.2 if s == "forget" else 0.0) for s in SPLITS}  # members: lower loss
    m = run("calibrated_mia", mf(loss=low), actx(mf(), [mf(loss=base)]))
    assert m["cMIA-AUC_loss"] > 0.95


def test_z_score_floor_and_missing_reference():
    z = calibrate(np.array([1.0, 1.0]), [np.array([0.0, 0.0]), np.array([0.0, 2.0])])
    # per-sample std: 0 and sqrt(2); the floor (median std, sqrt(2)/2) keeps sample 0 finite
    assert np.allclose(z, [1.0 / (np.sqrt(2) / 2), 0.0])
    with pytest.raises(ValueError, match="reference"):
        calibrate(np.zeros(3), [])


def test_retain_signal_is_uncalibrated():
    rng = np.random.default_rng(5)
    a = {"forget": rng.normal(0.5, 0.05, 300), "retain": rng.normal(0.6, 0.05, 300),
         "test": rng.normal(0.5, 0.05, 300)}
    m = run("calibrated_mia", mf(align_head=a), actx(mf(), [mf(align_head=a)]))
    assert m["MIA-AUC_Dr"] > 0.9 and abs(m["cMIA-AUC"] - 0.5) < 1e-9


# --- CMIA -----------------------------------------------------------------------
def test_cmia_separable_confidences():
    rng = np.random.default_rng(6)
    mem, non = rng.uniform(0.9, 1.0, 600), rng.uniform(0.0, 0.5, 600)
    like_members = svc_attack(mem, non, rng.uniform(0.9, 1.0, 200), seed=0)
    like_nonmembers = svc_attack(mem, non, rng.uniform(0.0, 0.5, 200), seed=0)
    assert like_members["cmia"] < 5 and like_nonmembers["cmia"] > 95
    assert like_members["fit"] > 95 and like_members["test"] > 95


def test_cmia_auditor_on_probe_probabilities():
    rng = np.random.default_rng(7)
    c = 4
    labels = {s: rng.integers(0, c, 300) for s in SPLITS}

    def probs(split: str, p_true: tuple[float, float]) -> np.ndarray:
        rows, true = np.arange(300), rng.uniform(*p_true, 300)
        p = rng.dirichlet(np.ones(c), 300)
        p[rows, labels[split]] = 0.0
        p *= ((1 - true) / p.sum(1))[:, None]  # the other classes share 1 - p_true
        p[rows, labels[split]] = true
        return p

    model = mf(labels=labels, feats={s: np.zeros((300, 2)) for s in SPLITS})
    table = {"retain": probs("retain", (0.9, 1.0)), "test": probs("test", (0.05, 0.5)),
             "forget": probs("forget", (0.9, 1.0))}
    model.memo("probe_probs", lambda: table)  # what bench.probe.probe_probs would have fit
    m = run("cmia", model, actx(model, num_classes=c))
    assert m["CMIA"] < 5 and m["CMIA_fit"] > 95
    assert m["CMIA_entropy"] < 10 and m["CMIA_mentropy"] < 10


def test_entropy_features():
    p = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.0, 1.0, 0.0]])
    y = np.array([0, 0, 0])
    assert np.allclose(entropy(p, y), [0.0, np.log(3), 0.0])
    me = modified_entropy(p, y)
    assert me[0] == pytest.approx(0.0)  # confident and right
    assert me[2] > 60  # confident and wrong: -log(1e-30)
    # the paper's formula on the uniform row: -(2/3) log(1/3) - 2 (1/3) log(2/3)
    assert me[1] == pytest.approx(-(2 / 3) * np.log(1 / 3) - (2 / 3) * np.log(2 / 3))


# --- alignment ------------------------------------------------------------------
def test_identical_views_have_alignment_one():
    z = torch.randn(5, 1, 16).repeat(1, 7, 1)
    assert torch.allclose(_mean_pairwise_cos(z), torch.ones(5), atol=1e-5)
    m = view_matrix(z.numpy())
    assert within_image(m, 7) == pytest.approx(1.0, abs=1e-6)


def test_within_image_matches_feature_alignment():
    z = torch.randn(4, 6, 8)
    m = view_matrix(z.numpy())
    assert within_image(m, 6) == pytest.approx(float(_mean_pairwise_cos(z).mean()), abs=1e-5)


def test_alignment_gap_metrics_and_figure():
    a = {"forget": np.full(10, 0.8), "retain": np.full(20, 0.9), "test": np.full(30, 0.5)}
    views = np.random.default_rng(8).normal(size=(3, 4, 8)).astype(np.float32)
    model = mf(align_head=a, align_views=views)
    m = run("alignment_gap", model, actx(model))
    assert m == pytest.approx({"align_Df": 0.8, "align_Dr": 0.9, "align_Dt": 0.5, "align_gap": 0.3})
    figs = registry.auditors.get("alignment_gap")().figures(
        {"original": model, "retrain": model, "finetune": model}, actx(model))
    assert set(figs) == {FIGURE} and figs[FIGURE].startswith(b"\x89PNG")


def test_alignment_figure_marks_image_blocks_and_labels_its_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from audits.alignment_gap import _blocks

    fig, ax = plt.subplots()
    ax.imshow(np.eye(12))
    _blocks(ax, images=3, views=4)
    lines = sorted({round(float(ln.get_xdata()[0]), 2) for ln in ax.lines if ln.get_xdata()[0] == ln.get_xdata()[1]})
    assert lines == [3.5, 7.5]  # between the 4-view blocks of images 1|2 and 2|3
    assert list(ax.get_xticks()) == [1.5, 5.5, 9.5] and [t.get_text() for t in ax.get_yticklabels()] == ["1", "2", "3"]
    assert ax.get_xlabel() == ax.get_ylabel() == "forget image (4 views each)"
    plt.close(fig)


# --- kNN, CKA, zero-shot ----------------------------------------------------------
def test_knn_on_clustered_data():
    rng = np.random.default_rng(9)
    centres = rng.normal(size=(3, 16)) * 5

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 3, n)
        return centres[y] + rng.normal(size=(n, 16)), y

    f, y = zip(*(draw(n) for n in (50, 300, 100)))
    model = mf(feats=dict(zip(SPLITS, f)), labels=dict(zip(SPLITS, y)))
    m = run("knn", model, actx(model, num_classes=3))
    assert m == {"kNN_RA": 100.0, "kNN_FA": 100.0, "kNN_TA": 100.0}


def test_knn_leave_one_out_ignores_self_vote():
    bank = np.r_[np.tile([1.0, 0.0], (20, 1)) + 0.01 * np.arange(20)[:, None], [[1.0, 0.02]]]
    y = np.r_[np.zeros(20, dtype=int), [1]]  # a lone class-1 point inside the class-0 cluster
    assert knn_predict(bank, y, bank[-1:], 2, k=1)[0] == 1  # its own vote wins
    assert knn_predict(bank, y, bank, 2, k=1, leave_one_out=True)[-1] == 0
    assert knn_predict(bank, y, bank, 2, leave_one_out=True)[-1] == 0  # k capped at 20


def test_cka_invariances():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(500, 32))
    q, _ = np.linalg.qr(rng.normal(size=(32, 32)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, x @ q) == pytest.approx(1.0)
    assert linear_cka(x, 3 * x + 7) == pytest.approx(1.0)
    assert linear_cka(x, rng.normal(size=(500, 32))) < 0.2


def test_representation_distance_auditor():
    rng = np.random.default_rng(11)
    feats = {s: rng.normal(size=(100, 8)) for s in SPLITS}
    retrain = mf(feats=feats)
    other = mf(feats={s: rng.normal(size=(100, 8)) for s in SPLITS})
    assert run("representation_distance", retrain, actx(retrain)) == pytest.approx(
        {"CKA_Df": 1.0, "CKA_Dt": 1.0})
    assert run("representation_distance", other, actx(other, retrain=retrain))["CKA_Df"] < 0.5


def test_zero_shot_accuracy_from_scores():
    labels = {s: np.arange(10) % 5 for s in SPLITS}
    right = np.eye(5)[labels["test"]]
    wrong = np.eye(5)[(labels["test"] + 1) % 5]
    scores = {"retain": right, "forget": wrong, "test": np.r_[right[:7], wrong[7:]]}
    model = mf(labels=labels, class_scores=scores)
    m = run("zero_shot", model, actx(model, num_classes=5))
    assert m == {"ZS_RA": 100.0, "ZS_FA": 0.0, "ZS_TA": 70.0}
    assert registry.auditors.get("zero_shot").requires == {"text"}


def test_every_metric_declares_a_direction_and_avg_gap_set():
    specs = {s.name: s for e in registry.auditors if not e.name.startswith("_") for s in e.obj.metrics}
    assert all(s.higher_is_better is not None or s.ideal_retrain for s in specs.values())
    gap = {n for n, s in specs.items() if s.avg_gap}
    assert gap == {"RA", "TA", "TA_rest", "UA", "EMIA", "CMIA", "cMIA-AUC"}
    assert {n: s.replaces for n, s in specs.items() if s.replaces} == {"TA_rest": "TA"}
    assert specs["cMIA-AUC"].scale == 100.0


def test_loss_score_does_not_depend_on_split_size():
    """NT-Xent per sample depends on the number of in-batch negatives: scored split by split, a
    small forget split would look 'member-like' on any model. Pooled scoring gives forget
    and test images drawn alike the same loss distribution, and every sample one score."""
    from bench.features import extract
    from tests.conftest import random_simclr

    enc, views = random_simclr({"forget": 6, "retain": 40, "test": 90})
    opts = AuditOptions(views=2, batch_size=64)
    out = extract(enc, "m", views, opts, torch.device("cpu"), "fp32", seed=0)
    assert {k: len(v) for k, v in out.loss.items()} == {"forget": 6, "retain": 40, "test": 90}
    # log(2B - 1) negatives: 6-image batches would give ~log(11) = 2.4, 64-image ones ~log(127) = 4.8
    assert abs(out.loss["forget"].mean() - out.loss["test"].mean()) < 0.3
    assert out.loss["forget"].mean() > 4.0
    again = extract(enc, "m", views, opts, torch.device("cpu"), "fp32", seed=0)
    np.testing.assert_array_equal(out.loss["test"], again.loss["test"])
