"""Statistics over seeds for the leaderboard: mean ± std, a Student-t 95 % CI, and "best".

Kept apart from the markdown so it is tested on hand-made numbers. With n seeds
the interval is mean ± t_{0.975, n-1} · std / sqrt(n) (std with ddof 1); one
seed has no interval. The interval is clipped to the range the metric declares
(``MetricSpec.bounds``: a percentage stays in 0-100, an AUC in 0-1, a time or a gap at or
above 0): the t-interval is symmetric, the metric is not. "Best" follows each metric's declared direction: ↑ the
largest mean, ↓ the smallest, ≈R the mean closest to retrain's; a metric declared
``ranked=False`` (a device artefact: CPU peak memory) has no best. The original,
retrain and the floor are yardsticks, never "best"; ties at the printed precision
are all best.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bench.metrics import MetricSpec
from bench.report import roles

LEVEL = 0.95
YARDSTICKS = roles.YARDSTICKS


@dataclass(frozen=True)
class SeedStats:
    mean: float
    std: float  # sample standard deviation (ddof 1); 0 for a single seed
    n: int
    half_width: float  # half-width of the 95 % CI; nan below two seeds
    bounds: tuple[float, float] = (-math.inf, math.inf)  # the metric's range: the interval stays inside

    @property
    def low(self) -> float:
        return max(self.mean - self.half_width, self.bounds[0])

    @property
    def high(self) -> float:
        return min(self.mean + self.half_width, self.bounds[1])


def t_critical(n: int, level: float = LEVEL) -> float:
    """Two-sided Student-t quantile for ``n`` samples (n - 1 degrees of freedom)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, n - 1))


def seed_stats(values: Iterable[float], bounds: tuple[float, float] = (-math.inf, math.inf)) -> SeedStats:
    """Mean, std and 95 % CI of the finite values (NaN/inf and None are dropped); the CI is
    clipped to ``bounds``, the range of the metric (its spec's ``bounds``)."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    n = len(v)
    if n == 0:
        return SeedStats(math.nan, math.nan, 0, math.nan, bounds)
    mean = sum(v) / n
    if n == 1:
        return SeedStats(mean, 0.0, 1, math.nan, bounds)
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1))
    return SeedStats(mean, std, n, t_critical(n) * std / math.sqrt(n), bounds)


def difference_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    """The range of a difference of two values of a metric with range ``bounds`` (TA - retrain's TA)."""
    width = bounds[1] - bounds[0]
    return -width, width


def fmt_stats(s: SeedStats, digits: int = 2, bold: bool = False, ci: bool = True, signed: bool = False) -> str:
    """``mean ± std [low, high]`` (the CI only from two seeds on); ``–`` when there is no value;
    ``signed``: the mean with its sign (a difference)."""
    if s.n == 0 or math.isnan(s.mean):
        return "–"
    mean = f"{s.mean:{'+' if signed else ''}.{digits}f}"
    text = f"**{mean}**" if bold else mean
    if s.n > 1:
        text += f" ± {s.std:.{digits}f}"
        if ci and not math.isnan(s.half_width):
            text += f" [{s.low:.{digits}f}, {s.high:.{digits}f}]"
    return text


def column_digits(means: Iterable[float]) -> int:
    """Decimals for a column: 3 when every |mean| is below 1 (AUCs, alignments, CKA), else 2."""
    finite = [abs(v) for v in means if v is not None and math.isfinite(v)]
    return 3 if finite and max(finite) < 1 else 2


def direction(spec: MetricSpec) -> str | None:
    """``"max"``, ``"min"``, ``"retrain"`` (closest to retrain's value) or None (unranked)."""
    if spec.higher_is_better is True:
        return "max"
    if spec.higher_is_better is False:
        return "min"
    return "retrain" if spec.ideal_retrain else None


def best_methods(
    means: Mapping[str, float],
    spec: MetricSpec,
    retrain: float | None = None,
    digits: int = 2,
    exclude: Iterable[str] = YARDSTICKS,
) -> set[str]:
    """The method(s) with the best mean in one column, compared at the printed precision."""
    how = direction(spec) if spec.ranked else None
    skip = set(exclude)
    cand = {m: v for m, v in means.items() if m not in skip and v is not None and math.isfinite(v)}
    if how is None or not cand:
        return set()
    if how == "retrain":
        if retrain is None or not math.isfinite(retrain):
            return set()
        r = round(retrain, digits)
        score = {m: round(abs(round(v, digits) - r), digits) for m, v in cand.items()}
        target = min(score.values())
    else:
        score = {m: round(v, digits) for m, v in cand.items()}
        target = max(score.values()) if how == "max" else min(score.values())
    return {m for m, s in score.items() if s == target}
