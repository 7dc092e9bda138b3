"""Linear CKA between the audited model's and retrain's backbone features (Kornblith et al. 2019).

CKA (Kornblith et al. 2019) compares two representations of the same samples
up to rotation and isotropic scaling, so it asks "does this encoder represent
D_f the way retrain does?" without aligning feature axes. Retrain's own row is 1;
an independent-seed retrain is below 1, which sets the scale of "close".
"""

from __future__ import annotations

import numpy as np

from bench import AuditContext, Auditor, MetricSpec, ModelFeatures, register_auditor
from bench.metrics import UNIT


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) on column-centred [n, d] matrices."""
    xc = x.astype(np.float64) - x.mean(0)
    yc = y.astype(np.float64) - y.mean(0)
    cross = np.linalg.norm(yc.T @ xc) ** 2
    return float(cross / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))


@register_auditor("representation_distance")
class RepresentationDistance(Auditor):
    """Linear CKA to retrain's features on D_f and on D_t."""

    kind = "representation"
    reads = frozenset({"feats"})
    metrics = (
        MetricSpec("CKA_Df", "linear CKA of backbone features with retrain's, on D_f",
                   higher_is_better=True, bounds=UNIT, source="Kornblith et al. 2019"),
        MetricSpec("CKA_Dt", "linear CKA of backbone features with retrain's, on D_t",
                   higher_is_better=True, bounds=UNIT, source="Kornblith et al. 2019"),
    )

    def audit(self, model: ModelFeatures, ctx: AuditContext) -> dict[str, float]:
        r = ctx.retrain.feats
        return {"CKA_Df": linear_cka(model.feats["forget"], r["forget"]),
                "CKA_Dt": linear_cka(model.feats["test"], r["test"])}
