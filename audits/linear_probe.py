"""Linear probe on frozen backbone features: RA, TA, FA, UA (SPECS section 4; MUC, SalUn)."""

from __future__ import annotations

from bench import AuditContext, Auditor, MetricSpec, ModelFeatures, register_auditor
from bench.probe import probe_probs


@register_auditor("linear_probe")
class LinearProbe(Auditor):
    metrics = (
        MetricSpec("RA", "probe accuracy on D_r (%)", higher_is_better=True, ideal_retrain=True,
                   avg_gap=True, source="MUC; SalUn"),
        MetricSpec("TA", "probe accuracy on D_t (%)", higher_is_better=True, ideal_retrain=True,
                   avg_gap=True, source="MUC; SalUn"),
        MetricSpec("FA", "probe accuracy on D_f (%); retrain's is the target", ideal_retrain=True,
                   source="MUC; SalUn"),
        MetricSpec("UA", "100 - FA (%); ideal = retrain's", ideal_retrain=True, avg_gap=True,
                   source="MUC; SalUn"),
    )

    def audit(self, model: ModelFeatures, ctx: AuditContext) -> dict[str, float]:
        probs = probe_probs(model, ctx.num_classes)

        def acc(split: str) -> float:
            p = probs[split]
            return 100.0 * float((p.argmax(1) == model.labels[split]).mean()) if len(p) else float("nan")

        fa = acc("forget")
        return {"RA": acc("retain"), "TA": acc("test"), "FA": fa, "UA": 100.0 - fa}
