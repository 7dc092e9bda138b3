"""EncoderMI threshold attack (encoder-level MIA, as MUC evaluates it).

A member's augmented views sit closer together than a non-member's, so the score
of an image is the mean pairwise cosine of its V views' embeddings (computed once
per model in :mod:`bench.features`). A threshold on that score is fit on the
audited model's own members (the retain audit split) vs non-members (D_t) and
applied to D_f. Sizes differ (members are capped, D_t is not), so the fit
maximises *balanced* accuracy, (TPR + TNR) / 2: each class weighs the same
without discarding samples.

Two variants: on backbone features (MUC's choice; the metric named ``EMIA``)
and on projection-head outputs (``EMIA_head``). At CPU scale both are weak, so
each reports its fit accuracy and AUC: a fit near 50 % means the EMIA column
measures noise.
"""

from __future__ import annotations

import numpy as np

from bench import AuditContext, Auditor, MetricSpec, ModelFeatures, register_auditor
from bench.metrics import PERCENT, UNIT

EDGES = np.linspace(0.0, 1.0, 501)  # MUC / EncoderMI: 501 candidate thresholds on [0, 1]


def fit_threshold(members: np.ndarray, nonmembers: np.ndarray) -> tuple[float, float]:
    """The edge maximising balanced accuracy of "member iff score >= t"; returns (t, accuracy)."""
    tpr = (members[None, :] >= EDGES[:, None]).mean(1)
    tnr = (nonmembers[None, :] < EDGES[:, None]).mean(1)
    acc = (tpr + tnr) / 2
    best = int(np.argmax(acc))
    return float(EDGES[best]), float(acc[best])


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a ``pos`` sample > score of a ``neg`` sample); 0.5 = indistinguishable."""
    # sklearn.metrics loads when scores exist: validate imports this auditor without it
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    return float(roc_auc_score(y, np.r_[pos, neg]))


def threshold_attack(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """EMIA (% of D_f below the threshold), the same rate on D_t, AUC D_f vs D_t, fit accuracy."""
    t, acc = fit_threshold(scores["retain"], scores["test"])
    return {
        "emia": 100.0 * float((scores["forget"] < t).mean()),
        "emia_test": 100.0 * float((scores["test"] < t).mean()),
        "auc": auc(scores["forget"], scores["test"]),
        "fit": 100.0 * acc,
    }


@register_auditor("emia")
class EncoderMI(Auditor):
    """EncoderMI threshold attack on view alignment, backbone (EMIA) and head (EMIA_head)."""

    kind = "privacy"
    reads = frozenset({"views"})
    metrics = (
        MetricSpec("EMIA", "% of D_f the backbone-alignment threshold calls non-member",
                   ideal_retrain=True, avg_gap=True, bounds=PERCENT, source="EncoderMI (Liu et al. 2021); MUC"),
        MetricSpec("EMIA_Dt", "% of D_t the same threshold calls non-member (EMIA's chance level)",
                   ideal_retrain=True, bounds=PERCENT, source="EncoderMI; MUC", headline=False),
        MetricSpec("EMIA_AUC", "AUC of backbone alignment, D_f vs D_t (0.5: D_f looks unseen)",
                   ideal_retrain=True, bounds=UNIT, source="EncoderMI; MUC"),
        MetricSpec("EMIA_fit", "balanced accuracy (%) of the backbone threshold on D_r vs D_t",
                   ideal_retrain=True, bounds=PERCENT, source="EncoderMI; MUC", headline=False),
        MetricSpec("EMIA_head", "% of D_f the head-alignment threshold calls non-member",
                   ideal_retrain=True, bounds=PERCENT, source="EncoderMI; MUC (head variant)", headline=False),
        MetricSpec("EMIA_head_AUC", "AUC of head alignment, D_f vs D_t", ideal_retrain=True,
                   bounds=UNIT, source="EncoderMI; MUC (head variant)", headline=False),
        MetricSpec("EMIA_head_fit", "balanced accuracy (%) of the head threshold on D_r vs D_t",
                   ideal_retrain=True, bounds=PERCENT, source="EncoderMI; MUC (head variant)", headline=False),
    )

    def audit(self, model: ModelFeatures, ctx: AuditContext) -> dict[str, float]:
        bb = threshold_attack(model.align_backbone)
        hd = threshold_attack(model.align_head)
        return {
            "EMIA": bb["emia"], "EMIA_Dt": bb["emia_test"], "EMIA_AUC": bb["auc"],
            "EMIA_fit": bb["fit"],
            "EMIA_head": hd["emia"], "EMIA_head_AUC": hd["auc"], "EMIA_head_fit": hd["fit"],
        }
