"""Linear probe on frozen backbone features: RA, TA, TA_rest, FA, UA (MUC, SalUn).

The probe is fit on D_r members plus D_v (bench/probe.py), so it knows every class,
the forgotten one included. TA_rest is TA over the classes that remain
(``AuditContext.forgotten_classes`` left out of D_t), SalUn's TA for class-wise
unlearning; it is reported only when a class is forgotten (in a random scenario it
would equal TA). In Avg Gap it replaces TA: TA over all classes also scores the
forgotten class, which UA already does.
"""

from __future__ import annotations

import numpy as np

from bench import AuditContext, Auditor, MetricSpec, ModelFeatures, register_auditor
from bench.metrics import PERCENT
from bench.probe import probe_probs


@register_auditor("linear_probe")
class LinearProbe(Auditor):
    reads = frozenset({"feats"})
    metrics = (
        MetricSpec("RA", "probe accuracy on D_r (%)", higher_is_better=True, ideal_retrain=True,
                   avg_gap=True, bounds=PERCENT, source="MUC; SalUn"),
        MetricSpec("TA", "probe accuracy on D_t (%)", higher_is_better=True, ideal_retrain=True,
                   avg_gap=True, bounds=PERCENT, source="MUC; SalUn"),
        MetricSpec("TA_rest", "probe accuracy on D_t without the forgotten classes (%); class "
                   "scenarios only; replaces TA in Avg Gap", higher_is_better=True, ideal_retrain=True,
                   avg_gap=True, replaces="TA", bounds=PERCENT, source="SalUn (class-wise TA)"),
        MetricSpec("FA", "probe accuracy on D_f (%); retrain's is the target", ideal_retrain=True,
                   bounds=PERCENT, source="MUC; SalUn"),
        MetricSpec("UA", "100 - FA (%); ideal = retrain's", ideal_retrain=True, avg_gap=True,
                   bounds=PERCENT, source="MUC; SalUn"),
    )

    def audit(self, model: ModelFeatures, ctx: AuditContext) -> dict[str, float]:
        probs = probe_probs(model, ctx.num_classes)

        def acc(split: str, keep: np.ndarray | None = None) -> float:
            p, y = probs[split], model.labels[split]
            if keep is not None:
                p, y = p[keep], y[keep]
            return 100.0 * float((p.argmax(1) == y).mean()) if len(p) else float("nan")

        fa = acc("forget")
        out = {"RA": acc("retain"), "TA": acc("test"), "FA": fa, "UA": 100.0 - fa}
        if ctx.forgotten_classes:
            out["TA_rest"] = acc("test", ~np.isin(model.labels["test"], ctx.forgotten_classes))
        return out
