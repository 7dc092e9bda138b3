"""Zero-shot classification accuracy of image-text encoders (CLIP).

An image's class is the prompt whose text embedding is most similar
(``ModelFeatures.class_scores``, filled by encoders with the "text" capability
from the same templates as training, averaged per class). The utility measure
CLIP unlearning papers report (CLIPErase, SALMUBench, MUC's CLIP runs).
"""

from __future__ import annotations

import numpy as np

from bench import AuditContext, Auditor, MetricSpec, ModelFeatures, register_auditor
from bench.metrics import PERCENT


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float((scores.argmax(1) == labels).mean())


@register_auditor("zero_shot")
class ZeroShot(Auditor):
    """Zero-shot top-1 accuracy on D_r, D_f, D_t from the encoder's class-prompt scores."""

    reads = frozenset({"class_scores"})
    requires = frozenset({"text"})
    metrics = (
        MetricSpec("ZS_RA", "zero-shot accuracy (%) on D_r members", higher_is_better=True,
                   ideal_retrain=True, bounds=PERCENT, source="CLIP; CLIPErase; SALMUBench", headline=False),
        MetricSpec("ZS_FA", "zero-shot accuracy (%) on D_f", ideal_retrain=True,
                   bounds=PERCENT, source="CLIP; CLIPErase; SALMUBench", headline=False),
        MetricSpec("ZS_TA", "zero-shot accuracy (%) on D_t", higher_is_better=True,
                   ideal_retrain=True, bounds=PERCENT, source="CLIP; CLIPErase; SALMUBench"),
    )

    def audit(self, model: ModelFeatures, ctx: AuditContext) -> dict[str, float]:
        s = model.class_scores
        missing = [k for k in ("retain", "forget", "test") if k not in s]
        if missing:
            raise ValueError(f"a 'text' encoder gave no class scores on {missing}")
        return {"ZS_RA": top1(s["retain"], model.labels["retain"]),
                "ZS_FA": top1(s["forget"], model.labels["forget"]),
                "ZS_TA": top1(s["test"], model.labels["test"])}
