"""The FA control scores retrain with the linear-probe auditor's own probe on a disjoint pool."""

from __future__ import annotations

import math

import numpy as np

from bench.config import load_matrix
from bench.control import control, draw_stats, main, outside_pool
from bench.probe import probe_probs
from bench.runner import CellRunner

DATA = {"n_val": 100, "n_train": 600}  # digits has 1,201 training images: ~500 lie outside


def test_control_matches_the_auditor_and_uses_an_outside_pool(write_matrix, results_dir, capsys):
    path = write_matrix("control", data=DATA)
    cell = load_matrix(str(path)).cells()[0]
    cache = results_dir / "cache"
    got = control(cell, cache)

    cr = CellRunner(cell, cache)
    pool = outside_pool(cr)
    assert len(pool) == 1201 - 700
    assert not set(pool) & set(cr.split.members) and not set(pool) & set(cr.split.val)
    forgotten, retain = cr.split.after_request(0)
    enc, _ = cr.trained(retain, cell.seed, "retrain")  # the cached model the control scored
    mf = cr.features(enc, "retrain", cr.audit_views(forgotten, retain), 0)
    probs = probe_probs(mf, cr.data.num_classes)
    fa = 100 * (probs["forget"].argmax(1) == mf.labels["forget"]).mean()
    ta = 100 * (probs["test"].argmax(1) == mf.labels["test"]).mean()
    assert got.fa == fa and got.ta == ta  # the same probe on the same features as the auditor
    assert got.n_forget == len(forgotten) == 60
    assert got.pool_lo <= got.pool_hi and 0 <= got.fa_percentile <= 100

    assert main(["--matrix", str(path), "--cache-dir", str(cache)]) == 0
    table = capsys.readouterr().out
    assert cell.label in table and f"{got.fa:.1f} (n=60)" in table and "| D_v |" not in table
    assert main(["--matrix", str(path), "--cache-dir", str(cache), "--encoder", "byol"]) == 2

    page = path.parent / "BENCHMARKS.md"
    page.write_text("# B\n\n<!-- control:control:start -->\nold\n<!-- control:control:end -->\ntail\n")
    assert main(["--matrix", str(path), "--cache-dir", str(cache), "--benchmarks", str(page)]) == 0
    text = page.read_text()
    assert "old" not in text and text.endswith("tail\n") and f"{got.fa:.1f} (n=60)" in text
    assert f"Written by `python -m bench.control --matrix {path}" in text


def test_draw_stats_known_answers():
    half = np.arange(1000) % 2 == 0  # a pool that is right on half its images
    lo, hi, pct = draw_stats(half, 200, 50.0)
    se = 100 * math.sqrt(0.25 / 200 * (1000 - 200) / 999)  # finite-population SE: 3.16 points
    assert abs(lo - (50 - 1.96 * se)) < 1.0 and abs(hi - (50 + 1.96 * se)) < 1.0
    assert 50 < pct < 60  # P(X <= the mean) of a symmetric discrete law: a little over half
    assert draw_stats(half, 200, 30.0)[2] < 1e-6  # 20 points below: far in the tail
    assert draw_stats(np.ones(300, bool), 200, 100.0) == (100.0, 100.0, 100.0)
    assert all(math.isnan(v) for v in draw_stats(half[:100], 200, 50.0))
