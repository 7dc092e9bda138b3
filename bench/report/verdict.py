"""The verdict of one method in one cell, paired by seed against the noise floor (docs/statistics.md).

Methods of a cell share each seed's original, retrain and reference retrain, so a
method's Avg Gap on seed s is compared with the floor's (the reference retrain's Avg
Gap) on the same seed: d_s = gap_method,s - gap_floor,s. Absence of evidence is not
equivalence, so there are three outcomes:

- "worse than retrain": mean d > 0, one-sided paired t-test (scipy) at ALPHA;
- "matches retrain": two one-sided tests (TOST) bound mean d inside (-margin, +margin),
  the margin being the floor's own mean Avg Gap in the cell (what exact unlearning scores);
- "undecided at n seeds" otherwise, with the seeds a difference of the observed size would
  need at power POWER: statsmodels' TTestPower for the one-sided test, and the noncentral-t
  power of TOST (scipy) for the equivalence.

"worse than doing nothing" is the one-sided paired test of the method's gap against the
original's. One seed gives no test. The top group of a cell is every method not
significantly worse than the lowest-mean one (one-sided paired t, Holm-corrected,
statsmodels' multipletests). A paired t-test assumes the seed-wise differences are
independent draws from a normal distribution; with 3 seeds it has 2 degrees of freedom.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 10_000  # beyond this a sentence says "more than"

Seeds = Mapping[int, float]  # seed -> value


def paired(a: Seeds, b: Seeds) -> tuple[np.ndarray, np.ndarray]:
    """The finite values of ``a`` and ``b`` on the seeds both have, in seed order."""
    common = sorted(s for s in a.keys() & b.keys() if math.isfinite(a[s]) and math.isfinite(b[s]))
    return np.array([a[s] for s in common], float), np.array([b[s] for s in common], float)


def one_sided_p(d: np.ndarray, popmean: float, alternative: str) -> float:
    """One-sided one-sample t-test p-value of mean(d) vs ``popmean`` (``greater`` / ``less``).

    NaN below two values. Differences without spread (identical on every seed) make the t
    statistic infinite: p is 0 when the mean lies on the alternative's side, else 1."""
    if len(d) < 2:
        return math.nan
    diff = float(d.mean()) - popmean
    if float(d.std(ddof=1)) <= 1e-12 * max(1.0, abs(float(d.mean()))):
        return 0.0 if (diff > 0 if alternative == "greater" else diff < 0) else 1.0
    return float(stats.ttest_1samp(d, popmean, alternative=alternative).pvalue)


def tost_p(d: np.ndarray, margin: float) -> float:
    """TOST p-value that mean(d) lies inside (-margin, margin): the larger of the two one-sided p."""
    if len(d) < 2 or not margin > 0:
        return math.nan
    return max(one_sided_p(d, -margin, "greater"), one_sided_p(d, margin, "less"))


def seeds_to_show_worse(mean: float, sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Seeds for a one-sided paired t-test to detect ``mean`` > 0 at this paired ``sd``
    (inf when it never would)."""
    from statsmodels.stats.power import TTestPower

    if not (mean > 0 and sd > 0):
        return math.inf
    tp, es = TTestPower(), mean / sd
    if tp.power(effect_size=es, nobs=2, alpha=alpha, alternative="larger") >= power:
        return 2  # the solver looks only above two
    try:
        with warnings.catch_warnings():  # no convergence (a tiny effect) comes back as NaN
            warnings.simplefilter("ignore")
            n = tp.solve_power(effect_size=es, alpha=alpha, power=power, alternative="larger")
    except (ValueError, RuntimeError):
        return math.inf
    n = float(np.asarray(n).item())
    return math.ceil(n) if math.isfinite(n) and n <= MAX_SEEDS else math.inf


def tost_power(n: int, mean: float, sd: float, margin: float, alpha: float = ALPHA) -> float:
    """Power of TOST with ``n`` paired seeds when the true difference is ``mean`` with spread ``sd``.

    Each one-sided statistic is noncentral t with n - 1 degrees of freedom; both must exceed
    t_{1-alpha}. P(both) >= P(first) + P(second) - 1 (a lower bound, tight when power is high)."""
    df, se = n - 1, sd / math.sqrt(n)
    tc = stats.t.ppf(1 - alpha, df)
    p1 = stats.nct.sf(tc, df, (mean + margin) / se)
    p2 = stats.nct.sf(tc, df, (margin - mean) / se)
    return max(0.0, float(p1 + p2 - 1))


def seeds_to_show_match(mean: float, sd: float, margin: float, alpha: float = ALPHA,
                        power: float = POWER) -> float:
    """Fewest seeds for TOST to reach ``power`` (inf when the difference lies outside the margin)."""
    if not (sd > 0 and margin > 0 and abs(mean) < margin):
        return math.inf
    if tost_power(MAX_SEEDS, mean, sd, margin, alpha) < power:
        return math.inf
    lo, hi = 2, MAX_SEEDS  # power grows with n: bisect for the first n that reaches it
    while lo < hi:
        mid = (lo + hi) // 2
        if tost_power(mid, mean, sd, margin, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass(frozen=True)
class Verdict:
    """One method in one cell against the floor (d = gap - floor gap, paired by seed)."""

    n: int  # paired seeds
    mean: float  # mean d
    sd: float  # paired std of d (ddof 1); nan below 2 seeds
    margin: float  # the declared equivalence margin: the floor's mean Avg Gap
    p_worse: float  # one-sided paired t: d > 0
    p_match: float  # TOST: |d| < margin
    n_original: int  # seeds paired with the original
    p_worse_than_nothing: float  # one-sided paired t: gap > the original's gap
    seeds_worse: float  # seeds to show a difference of this size worse (inf: never)
    seeds_match: float  # seeds to show it within the margin (inf: never)
    alpha: float = ALPHA

    @property
    def worse(self) -> bool:
        return self.p_worse < self.alpha

    @property
    def matches(self) -> bool:
        return not self.worse and self.p_match < self.alpha

    @property
    def worse_than_nothing(self) -> bool:
        return self.p_worse_than_nothing < self.alpha

    @property
    def testable(self) -> bool:
        return self.n >= 2

    @property
    def label(self) -> str:
        """The verdict in words, as the headline shows it."""
        if self.n == 0:
            return "no floor"
        if not self.testable:
            return f"{self.n} seed: no test"
        word = ("worse than retrain" if self.worse else "matches retrain" if self.matches
                else f"undecided at {self.n} seeds")
        return word + (", worse than doing nothing" if self.worse_than_nothing else "")

    def seeds_sentence(self) -> str:
        """For an undecided verdict: how many seeds a difference of the observed size would need."""
        if not self.testable or self.worse or self.matches:
            return ""
        at = f"a difference of {self.mean:+.2f} (paired std {self.sd:.2f})"
        parts = []
        if self.mean > 0:
            parts.append(f"{_seeds(self.seeds_worse)} to show it worse than retrain")
        if abs(self.mean) < self.margin:
            parts.append(f"{_seeds(self.seeds_match)} to show it within ±{self.margin:.2f}")
        else:
            parts.append(f"no number of seeds to show it within ±{self.margin:.2f} (it lies outside)")
        return (f"{at} would need " + " and ".join(parts)
                + f" (α {self.alpha:g}, power {POWER:g}).")


def _seeds(n: float) -> str:
    return f"more than {MAX_SEEDS:,} seeds" if not math.isfinite(n) else f"about {int(n)} seeds"


def verdict(method: Seeds, floor: Seeds, original: Seeds | None = None, margin: float | None = None,
            alpha: float = ALPHA) -> Verdict:
    """The verdict of a method's per-seed Avg Gaps against the floor's (and the original's).

    ``margin`` defaults to the floor's mean Avg Gap over its seeds."""
    m, f = paired(method, floor)
    if margin is None:
        vals = [v for v in floor.values() if math.isfinite(v)]
        margin = float(np.mean(vals)) if vals else math.nan
    d = m - f
    mean = float(d.mean()) if len(d) else math.nan
    sd = float(d.std(ddof=1)) if len(d) > 1 else math.nan
    mo, o = paired(method, original or {})
    return Verdict(
        n=len(d), mean=mean, sd=sd, margin=margin,
        p_worse=one_sided_p(d, 0.0, "greater"), p_match=tost_p(d, margin),
        n_original=len(mo), p_worse_than_nothing=one_sided_p(mo - o, 0.0, "greater"),
        seeds_worse=seeds_to_show_worse(mean, sd, alpha) if len(d) > 1 else math.inf,
        seeds_match=seeds_to_show_match(mean, sd, margin, alpha) if len(d) > 1 else math.inf,
        alpha=alpha,
    )


@dataclass(frozen=True)
class TopGroup:
    """Methods not significantly worse than the lowest-mean one."""

    best: str  # the lowest mean
    members: frozenset[str]  # best included
    p_raw: dict[str, float]  # one-sided paired p of "worse than best", per other method
    p_holm: dict[str, float]  # Holm-adjusted
    testable: bool  # False: the best has fewer than two seeds; no group is claimed


def top_group(gaps: Mapping[str, Seeds], alpha: float = ALPHA) -> TopGroup | None:
    """The top group among ``gaps`` (method -> seed -> Avg Gap); None without any method.

    A method with fewer than two seeds paired with the best cannot be tested and is left out."""
    from statsmodels.stats.multitest import multipletests

    means = {m: float(np.mean([v for v in g.values() if math.isfinite(v)]))
             for m, g in gaps.items() if any(math.isfinite(v) for v in g.values())}
    if not means:
        return None
    best = min(means, key=lambda k: (means[k], k))  # a tied best joins the group anyway
    raw = {}
    for m in means:
        if m == best:
            continue
        a, b = paired(gaps[m], gaps[best])
        if len(a) >= 2:
            raw[m] = one_sided_p(a - b, 0.0, "greater")
    testable = sum(math.isfinite(v) for v in gaps[best].values()) >= 2
    if not testable:
        return TopGroup(best, frozenset(), raw, {}, False)
    names = list(raw)
    holm = dict(zip(names, multipletests([raw[k] for k in names], alpha=alpha, method="holm")[1])) \
        if names else {}
    members = {best} | {m for m, p in holm.items() if not p < alpha}
    return TopGroup(best, frozenset(members), raw, {k: float(v) for k, v in holm.items()}, True)
