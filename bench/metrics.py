"""What a metric declares about itself: direction, whether its ideal is retrain's, its Avg Gap role.

A leaf module (it imports nothing of ``bench``), so the auditor contract (bench/audit.py),
the runner's summary metrics and the report room (bench/report/) can all share it
without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PERCENT = (0.0, 100.0)  # accuracies and attack rates
UNIT = (0.0, 1.0)  # AUCs, CKA
COSINE = (-1.0, 1.0)  # mean cosines
NON_NEGATIVE = (0.0, math.inf)  # times, memory, gaps


@dataclass(frozen=True)
class MetricSpec:
    name: str
    description: str
    higher_is_better: bool | None = None  # None: neither; see ideal_retrain
    ideal_retrain: bool = False  # the ideal value is retrain's (a "gap" metric)
    avg_gap: bool = False  # part of Avg Gap (docs/metrics.md)
    replaces: str = ""  # in Avg Gap, stands in for this metric where both are reported (TA_rest for TA)
    scale: float = 1.0  # multiply before taking the gap (AUCs x 100)
    source: str = ""
    headline: bool = True  # False: a diagnostic, shown only on the cell's details page
    ranked: bool = True  # False: an artefact of the device (CPU peak memory): shown, never ranked
    bounds: tuple[float, float] = (-math.inf, math.inf)  # the values it can take: intervals are clipped to it

    @property
    def arrow(self) -> str:
        if self.higher_is_better is True:
            return "↑"
        if self.higher_is_better is False:
            return "↓"
        return "≈R" if self.ideal_retrain else ""
