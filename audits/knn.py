"""Weighted kNN accuracy on frozen backbone features (InstDisc / MoCo monitor).

The bank is the L2-normalised clean features of D_r members plus D_v, the linear
probe's fit set (bench/probe.py): every class is in it, the forgotten one included,
and no forget sample. A query's k most cosine-similar bank entries (k 200, capped
at the bank size) vote for their label with weight exp(sim / tau), tau 0.1 (Wu et
al. 2018), divided by the label's bank count. Deviation: Wu et al. do not divide; on
a class-balanced bank (random scenarios) that changes nothing, but in a class scenario
the forgotten class is in the bank through D_v alone (about |D_v| / C entries), and
200 undivided votes would outvote it by sheer numbers (kNN_FA 0 for the original on
digits class:3, measured). Members are scored leave-one-out (a member never votes for
itself), so kNN_RA is not trivially 100 %. A label-free utility check next to the probe.
"""

from __future__ import annotations

import numpy as np

from bench import AuditContext, Auditor, MetricSpec, ModelFeatures, register_auditor
from bench.metrics import PERCENT
from bench.probe import fit_set

K = 200
TAU = 0.1
CHUNK = 1024


def _normalise(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_predict(bank: np.ndarray, bank_y: np.ndarray, query: np.ndarray, num_classes: int,
                k: int = K, tau: float = TAU, leave_one_out: bool = False) -> np.ndarray:
    """Predicted labels of ``query``; with ``leave_one_out`` query i is bank entry i. A vote
    weighs exp(sim / tau) / (its label's count in the bank)."""
    b, q = _normalise(bank), _normalise(query)
    k = min(k, len(b) - (1 if leave_one_out else 0))
    per_class = 1.0 / np.maximum(np.bincount(bank_y, minlength=num_classes), 1)
    out = np.empty(len(q), dtype=np.int64)
    for s in range(0, len(q), CHUNK):
        sim = q[s : s + CHUNK] @ b.T
        if leave_one_out:
            rows = np.arange(len(sim))
            sim[rows, s + rows] = -np.inf
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        w = np.exp(np.take_along_axis(sim, top, 1) / tau) * per_class[bank_y[top]]
        votes = np.zeros((len(sim), num_classes))
        np.add.at(votes, (np.repeat(np.arange(len(sim)), k), bank_y[top].ravel()), w.ravel())
        out[s : s + CHUNK] = votes.argmax(1)
    return out


@register_auditor("knn")
class WeightedKNN(Auditor):
    """Weighted kNN (k 200, tau 0.1) with D_r members + D_v as the bank: accuracy per split."""

    reads = frozenset({"feats"})
    metrics = (
        MetricSpec("kNN_RA", "weighted-kNN accuracy (%) on D_r members, leave-one-out",
                   higher_is_better=True, ideal_retrain=True, bounds=PERCENT, source="Wu et al. 2018; MoCo",
                   headline=False),
        MetricSpec("kNN_FA", "weighted-kNN accuracy (%) on D_f", ideal_retrain=True,
                   bounds=PERCENT, source="Wu et al. 2018; MoCo", headline=False),
        MetricSpec("kNN_TA", "weighted-kNN accuracy (%) on D_t", higher_is_better=True,
                   ideal_retrain=True, bounds=PERCENT, source="Wu et al. 2018; MoCo"),
    )

    def audit(self, model: ModelFeatures, ctx: AuditContext) -> dict[str, float]:
        bank, bank_y = fit_set(model.feats, model.labels)  # D_r rows first: leave-one-out indexes them

        def acc(split: str) -> float:
            pred = knn_predict(bank, bank_y, model.feats[split], ctx.num_classes,
                               leave_one_out=split == "retain")
            return 100.0 * float((pred == model.labels[split]).mean())

        return {"kNN_RA": acc("retain"), "kNN_FA": acc("forget"), "kNN_TA": acc("test")}
