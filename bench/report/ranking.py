"""Ranking methods across cells, like with like (Demšar 2006).

Raw Avg Gaps are never averaged across cells: cells differ in scale, and methods that run
on a subset of encoders would be compared over other cells than the rest. Instead:

- methods are grouped by the set of cells where they have a finished Avg Gap; each distinct
  set S (largest first) gets one table over exactly the cells S, with every method that ran
  on all of S;
- within a cell, methods are ranked by their mean Avg Gap at the printed precision; equal
  values share the average of their ranks (a tie is a tie, never alphabetical);
- across the table's cells: the mean rank, the Friedman test (scipy) when there are at least
  3 methods and 2 cells, and from MIN_CD_CELLS cells the Nemenyi post-hoc test
  (scikit-posthocs) with its critical difference q_alpha sqrt(k(k + 1) / (6 N)).

Friedman assumes the cells are independent blocks and ranks within each; with few cells
its chi-square approximation is rough, and Nemenyi's all-pairs test is conservative.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
MIN_CD_CELLS = 4  # a critical-difference diagram below this says little
DIGITS = 2  # Avg Gap is printed with 2 decimals: values equal there are tied


@dataclass(frozen=True)
class RankTable:
    cells: list[Hashable]  # the cells the table covers
    values: pd.DataFrame  # cells x methods: the mean Avg Gap in each cell (rounded to DIGITS)
    ranks: pd.DataFrame  # cells x methods: 1 = lowest gap, ties share the average rank
    mean_rank: pd.Series  # methods, best first
    friedman: tuple[float, float] | None  # (chi-square, p)
    nemenyi: pd.DataFrame | None  # methods x methods p-values
    cd: float | None  # Nemenyi's critical difference of mean ranks at ALPHA

    @property
    def methods(self) -> list[str]:
        return list(self.mean_rank.index)

    def positions(self) -> dict[str, str]:
        """Each method's place by mean rank; tied places read "2=" for every method sharing them."""
        r = self.mean_rank.round(6)
        low = r.rank(method="min").astype(int)
        counts = r.value_counts()
        return {m: f"{low[m]}" + ("=" if counts[r[m]] > 1 else "") for m in r.index}


def comparable_sets(values: pd.DataFrame, joiners: Iterable[str] = ()) -> list[tuple[list, list[str]]]:
    """(cells, methods) per distinct cell set, largest first.

    ``values`` is cells x methods with NaN where a method has no result. A method's cell set is
    where it has one; ``joiners`` (the yardsticks) join every table whose cells they cover but
    define no set of their own."""
    join = set(joiners)
    has = values.notna()
    sets: dict[frozenset, None] = {}
    for m in values.columns:
        if m not in join and has[m].any():
            sets.setdefault(frozenset(values.index[has[m]]), None)
    order = sorted(sets, key=lambda s: (-len(s), sorted(map(str, s))))
    out = []
    for s in order:
        cells = [c for c in values.index if c in s]
        methods = [m for m in values.columns if has.loc[cells, m].all()]
        if len([m for m in methods if m not in join]) >= 2:  # one method alone has no ranking
            out.append((cells, methods))
    return out


def nemenyi_cd(k: int, n: int, alpha: float = ALPHA) -> float:
    """Nemenyi's critical difference of mean ranks for ``k`` methods over ``n`` cells (Demšar 2006):
    q_alpha / sqrt(2) * sqrt(k (k + 1) / (6 n)), q from the studentized range with infinite df."""
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n)))


def rank_table(values: pd.DataFrame, digits: int = DIGITS, alpha: float = ALPHA) -> RankTable:
    """Ranks, mean ranks and the tests of a complete cells x methods table (no NaN)."""
    vals = values.astype(float).round(digits)
    ranks = vals.rank(axis=1, method="average")
    mean = ranks.mean(axis=0)
    order = sorted(mean.index, key=lambda m: (round(mean[m], 6), str(m)))  # ties: see positions()
    mean = mean[order]
    n, k = vals.shape
    friedman = None
    if k >= 3 and n >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-tied cells: scipy warns, returns NaN
            try:
                res = stats.friedmanchisquare(*(vals[m].to_numpy() for m in vals.columns))
                friedman = (float(res.statistic), float(res.pvalue))
            except ValueError:
                friedman = None
    nemenyi = cd = None
    if n >= MIN_CD_CELLS and k >= 3:
        import scikit_posthocs as sp

        p = sp.posthoc_nemenyi_friedman(vals.to_numpy())
        p.index = p.columns = list(vals.columns)
        nemenyi, cd = p, nemenyi_cd(k, n, alpha)
    return RankTable(list(vals.index), vals, ranks, mean, friedman, nemenyi, cd)
