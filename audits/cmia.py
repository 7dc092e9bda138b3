"""Classifier-level confidence attack (Song & Mittal 2021, as OPTML's SVC_MIA).

A feature of the shared linear probe's output (true-class probability; entropy;
modified entropy) feeds an SVC (C 3, RBF, gamma "auto") trained on members (the
retain audit split) vs non-members (D_t); CMIA = % of D_f it predicts non-member
(SalUn's MIA-Efficacy). As in OPTML the two classes have equal size: the larger
is subsampled (seeded). Modified entropy follows the paper's formula,
-(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i); OPTML's code indexes the
label column for every row and is not reproduced.

Diagnostics from a 2-fold cross-fit of the same SVC on the same balanced set,
so no sample is scored by an SVC trained on it: the fit accuracy and the rate at
which D_t itself is called non-member (CMIA's chance level; retrain's CMIA
should match it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bench import AuditContext, Auditor, MetricSpec, ModelFeatures, register_auditor
from bench.metrics import PERCENT
from bench.probe import probe_probs

if TYPE_CHECKING:
    from sklearn.svm import SVC

EPS = 1e-30


def confidence(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return p[np.arange(len(y)), y]


def entropy(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.maximum(p, EPS))).sum(1)


def modified_entropy(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    rows = np.arange(len(y))
    py = p[rows, y]
    terms = -p * np.log(np.maximum(1.0 - p, EPS))
    terms[rows, y] = -(1.0 - py) * np.log(np.maximum(py, EPS))
    return terms.sum(1)


FEATURES = {"": confidence, "_entropy": entropy, "_mentropy": modified_entropy}


def _svc() -> SVC:
    # sklearn.svm loads at the first fit: validate imports this auditor without it
    from sklearn.svm import SVC

    return SVC(C=3, kernel="rbf", gamma="auto")


def svc_attack(members: np.ndarray, nonmembers: np.ndarray, target: np.ndarray,
               seed: int) -> dict[str, float]:
    """CMIA on ``target`` (% predicted non-member), cross-fit accuracy and D_t's non-member rate."""
    rng = np.random.default_rng(seed)
    n = min(len(members), len(nonmembers))
    mem = rng.permutation(members)[:n]
    non = rng.permutation(nonmembers)[:n]
    x = np.r_[mem, non].reshape(-1, 1)
    y = np.r_[np.ones(n), np.zeros(n)]
    cmia = 100.0 * float(1.0 - _svc().fit(x, y).predict(target.reshape(-1, 1)).mean())
    fold = rng.permutation(2 * n) % 2
    pred = np.empty(2 * n)
    for k in (0, 1):
        pred[fold == k] = _svc().fit(x[fold != k], y[fold != k]).predict(x[fold == k])
    return {
        "cmia": cmia,
        "fit": 100.0 * float((pred == y).mean()),
        "test": 100.0 * float(1.0 - pred[n:].mean()),
    }


@register_auditor("cmia")
class ConfidenceMIA(Auditor):
    """SVC confidence attack on the linear probe: CMIA and its entropy variants."""

    kind = "privacy"
    reads = frozenset({"feats"})
    metrics = (
        MetricSpec("CMIA", "% of D_f the SVC on true-class probability calls non-member",
                   ideal_retrain=True, avg_gap=True, bounds=PERCENT, source="Song & Mittal 2021; OPTML SVC_MIA"),
        MetricSpec("CMIA_Dt", "% of D_t called non-member, cross-fit (CMIA's chance level)",
                   ideal_retrain=True, bounds=PERCENT, source="Song & Mittal 2021; OPTML SVC_MIA", headline=False),
        MetricSpec("CMIA_fit", "cross-fit accuracy (%) of that SVC on D_r vs D_t",
                   ideal_retrain=True, bounds=PERCENT, source="Song & Mittal 2021; OPTML SVC_MIA", headline=False),
        MetricSpec("CMIA_entropy", "% of D_f called non-member, prediction-entropy feature",
                   ideal_retrain=True, bounds=PERCENT, source="Song & Mittal 2021; OPTML SVC_MIA", headline=False),
        MetricSpec("CMIA_entropy_fit", "cross-fit accuracy (%) of the entropy SVC",
                   ideal_retrain=True, bounds=PERCENT, source="Song & Mittal 2021; OPTML SVC_MIA", headline=False),
        MetricSpec("CMIA_mentropy", "% of D_f called non-member, modified-entropy feature",
                   ideal_retrain=True, bounds=PERCENT, source="Song & Mittal 2021", headline=False),
        MetricSpec("CMIA_mentropy_fit", "cross-fit accuracy (%) of the modified-entropy SVC",
                   ideal_retrain=True, bounds=PERCENT, source="Song & Mittal 2021", headline=False),
    )

    def audit(self, model: ModelFeatures, ctx: AuditContext) -> dict[str, float]:
        probs = probe_probs(model, ctx.num_classes)
        out: dict[str, float] = {}
        for suffix, feature in FEATURES.items():
            f = {s: feature(probs[s], model.labels[s]) for s in ("retain", "test", "forget")}
            r = svc_attack(f["retain"], f["test"], f["forget"], ctx.seed)
            out[f"CMIA{suffix}"] = r["cmia"]
            out[f"CMIA{suffix}_fit"] = r["fit"]
            if not suffix:
                out["CMIA_Dt"] = r["test"]
        return out
