"""The cost estimate counts a matrix's work exactly as worked out by hand."""

from __future__ import annotations

import pytest

from bench.config import matrix_from_dict
from bench.estimate import count_work, describe

BASE = {
    "datasets": ["digits"],  # 1,201 train / 596 test images, 16 px -> area (16/32)^2 = 0.25
    "encoders": [{"name": "simclr", "backbone": "convnet-s"}],
    "scenarios": ["sequential:2x0.1"],
    "seeds": [0],
    "methods": ["retrain", {"finetune": {"epochs": 2}}, {"gradient_ascent": {"epochs": 5}}],
    "auditors": ["linear_probe"],
    "train": {"epochs": 3},
    "data": {"n_val": 101},  # members 1,100; 110 forgotten per request
    "audit": {"views": 4, "max_members": 300, "references": 1},
}


def test_sequential_cell_by_hand() -> None:
    w = count_work(matrix_from_dict(BASE))
    # original 3 x 1100; per request a retrain and a reference on 990, then 880 members
    assert w.trainings == 1 + 2 * 2
    assert w.train_images == pytest.approx(0.25 * 3 * (1100 + 2 * 990 + 2 * 880))
    # finetune 2 epochs of D_r, gradient ascent 5 of this request's D_f; retrain costs nothing
    assert w.unlearn_images == pytest.approx(0.25 * (2 * 990 + 5 * 110 + 2 * 880 + 5 * 110))
    # 5 models (original, retrain, reference, 2 methods) x (D_f so far + 300 + 596) x forwards per image
    # the linear probe reads clean features only: one forward per image (no views, no losses)
    assert w.audit_views == pytest.approx(0.25 * 5 * 1 * ((110 + 300 + 596) + (220 + 300 + 596)))
    every = count_work(matrix_from_dict({**BASE, "auditors": ["linear_probe", "calibrated_mia"]}))
    assert every.audit_views == pytest.approx(0.25 * 5 * (1 + 4 + 4) * ((110 + 300 + 596) + (220 + 300 + 596)))
    secs = w.seconds(train_img_s=100, infer_views_s=1000)
    assert secs == pytest.approx((w.train_images + w.unlearn_images) / 100 + w.audit_views / 1000)


def test_scenarios_share_the_original_and_seeds_do_not() -> None:
    w = count_work(matrix_from_dict({**BASE, "scenarios": ["random:0.1", "class:3"], "seeds": [0, 1]}))
    assert w.trainings == 2 * 1 + 2 * 2 * 2  # one original per seed; retrain + reference per cell


def test_describe_states_time_only_with_throughputs() -> None:
    m = matrix_from_dict({**BASE, "estimate": {"device": "x", "train_img_s": 100, "infer_views_s": 1000}})
    assert "-> ~1 min on x" in describe(m)
    assert "->" not in describe(matrix_from_dict(BASE))
    unknown = matrix_from_dict({**BASE, "datasets": ["imagefolder:/nowhere"]})
    assert "size unknown for imagefolder:/nowhere" in describe(unknown)


def test_measure_throughput_times_training_and_audit_passes() -> None:
    import math

    from bench.estimate import measure_throughput

    train, infer = measure_throughput(size=16, batch_size=16, steps=1, repeats=1, precision="fp32", device="cpu")
    assert 0 < train < math.inf and 0 < infer < math.inf
