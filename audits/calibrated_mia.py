"""Reference-calibrated membership inference: the suite's main privacy metric.

Beyond MUC. Per-sample difficulty (some images align well under any encoder)
dominates the uncalibrated score, so each sample's score under the audited
model is compared with the same sample's score under reference models that
never saw D_f: independent-seed retrains (``ctx.references``), scored on the
same augmentation draws. With one reference, d(x) = s_M(x) - s_ref(x); with
K >= 2, the per-sample z-score (s_M - mean_ref) / std_ref as in offline LiRA
(Carlini et al. 2022), std floored at the median per-sample std so that a few
samples whose K references happen to agree do not dominate.

Scores: head alignment (``cMIA-AUC``) and minus the per-sample objective
(``cMIA-AUC_loss``). Retrain audited this way compares two models that never
saw D_f, so its AUC is ~0.5 by construction: the ideal.

The retain set's own membership signal (``MIA-AUC_Dr``, used by the
over-unlearning flag) is deliberately *uncalibrated*: every reference trained on
D_r, so calibrating would cancel exactly the signal it is meant to show.
"""

from __future__ import annotations

import numpy as np

from audits.emia import auc
from bench import AuditContext, Auditor, MetricSpec, ModelFeatures, register_auditor
from bench.metrics import UNIT


def calibrate(model: np.ndarray, refs: list[np.ndarray]) -> np.ndarray:
    """Per-sample calibrated score: difference to one reference, z-score against several."""
    if not refs:
        raise ValueError("calibrated_mia needs a reference model (audit.references >= 1)")
    r = np.stack(refs)
    if len(refs) == 1:
        return model - r[0]
    std = r.std(axis=0, ddof=1)
    floor = max(float(np.median(std)), 1e-6)
    return (model - r.mean(axis=0)) / np.maximum(std, floor)


def calibrated_auc(score: str, model: ModelFeatures, refs: list[ModelFeatures], pos: str) -> float:
    """AUC of calibrated ``score`` (a ModelFeatures field) on split ``pos`` vs D_t."""
    sign = -1.0 if score == "loss" else 1.0  # a low loss is the member-like direction
    d = {
        split: calibrate(sign * getattr(model, score)[split],
                         [sign * getattr(ref, score)[split] for ref in refs])
        for split in (pos, "test")
    }
    return auc(d[pos], d["test"])


@register_auditor("calibrated_mia")
class CalibratedMIA(Auditor):
    """Reference-calibrated alignment / loss attack: AUC of D_f vs D_t after calibration."""

    kind = "privacy"
    reads = frozenset({"views", "loss"})
    metrics = (
        MetricSpec("cMIA-AUC", "AUC of head alignment minus the reference's (z-score if K >= 2), "
                   "D_f vs D_t", ideal_retrain=True, avg_gap=True, scale=100.0,
                   bounds=UNIT, source="beyond MUC; reference calibration as in LiRA (Carlini et al. 2022)"),
        MetricSpec("cMIA-AUC_loss", "the same with minus the per-sample objective as the score",
                   ideal_retrain=True, bounds=UNIT, source="beyond MUC; LiRA-style calibration"),
        MetricSpec("MIA-AUC", "uncalibrated head-alignment AUC, D_f vs D_t (for comparison)",
                   ideal_retrain=True, bounds=UNIT, source="EncoderMI score", headline=False),
        MetricSpec("MIA-AUC_Dr", "uncalibrated head-alignment AUC, D_r members vs D_t: the retain "
                   "set's own membership signal", ideal_retrain=True, bounds=UNIT,
                   source="this benchmark (the erased-retain-signal check)"),
    )

    def audit(self, model: ModelFeatures, ctx: AuditContext) -> dict[str, float]:
        refs = ctx.references
        a = model.align_head
        return {
            "cMIA-AUC": calibrated_auc("align_head", model, refs, "forget"),
            "cMIA-AUC_loss": calibrated_auc("loss", model, refs, "forget"),
            "MIA-AUC": auc(a["forget"], a["test"]),
            "MIA-AUC_Dr": auc(a["retain"], a["test"]),
        }
