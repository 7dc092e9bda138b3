"""What the report concludes, computed once from the results frame: per table (a cell's request)
the per-seed gaps, verdicts and top group; across cells the like-with-like rankings.

The markdown (bench/report/leaderboard.py, details.py) and the pictures (plots.py) only
format what this module decides, so every number they show comes from one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.metrics import MetricSpec
from bench.report.frame import (
    CELL,
    GAP,
    GROUP,
    GapComposition,
    done,
    gap_composition,
    latest,
    methods_of,
    per_seed,
    recompute_gaps,
)
from bench.report.pairing import unpaired
from bench.report.ranking import RankTable, comparable_sets, rank_table
from bench.report.roles import FLOOR, ORIGINAL, RETRAIN, YARDSTICKS
from bench.report.verdict import TopGroup, Verdict, top_group, verdict

FORGETTING = ("cMIA-AUC", "EMIA", "UA")  # the forgetting column: the first the table has
UTILITY = "TA"  # the utility column: TA - retrain's TA (or the metric that replaces TA, e.g. TA_rest)
REFERENCES = (ORIGINAL, FLOOR)  # yardsticks shown beside a ranking (never placed in it)


@dataclass
class Table:
    """One cell's request over its seeds."""

    key: tuple
    rows: pd.DataFrame  # latest row per (method, seed)
    gaps: dict[str, dict[int, float]]  # method -> seed -> Avg Gap (yardsticks included)
    margin: float  # the floor's mean Avg Gap: the declared equivalence margin
    verdicts: dict[str, Verdict]  # the original and every method with a gap
    top: TopGroup | None
    order: list[str]  # row order: yardsticks, then methods by mean Avg Gap, then those without
    utility: str | None
    forgetting: str | None
    composition: GapComposition | None = None  # what every seed's Avg Gap averages here
    unpaired: dict[str, dict[int, str]] = field(default_factory=dict)  # method -> seed -> why (left out of tests)
    _memo: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict, repr=False)

    @property
    def cell(self) -> tuple:
        return self.key[: len(CELL)]

    def mean_gap(self, method: str) -> float:
        v = list(self.gaps.get(method, {}).values())
        return float(np.mean(v)) if v else math.nan

    def seeds(self, method: str, column: str) -> dict[int, float]:
        if (method, column) not in self._memo:
            self._memo[(method, column)] = per_seed(self.rows, method, column)
        return self._memo[(method, column)]

    def utility_gap(self, method: str) -> dict[int, float]:
        """seed -> utility - retrain's utility, paired by seed."""
        if self.utility is None:
            return {}
        col = f"m.{self.utility}"
        m, r = self.seeds(method, col), self.seeds(RETRAIN, col)
        return {s: m[s] - r[s] for s in m.keys() & r.keys()}

    def forgetting_gap(self, method: str, specs: Mapping[str, MetricSpec]) -> dict[int, float]:
        """seed -> |forgetting - retrain's| (scaled like Avg Gap: AUCs x 100), paired by seed."""
        if self.forgetting is None:
            return {}
        col, scale = f"m.{self.forgetting}", specs[self.forgetting].scale if self.forgetting in specs else 1.0
        m, r = self.seeds(method, col), self.seeds(RETRAIN, col)
        return {s: abs(m[s] - r[s]) * scale for s in m.keys() & r.keys()}


@dataclass
class Analysis:
    title: str
    specs: Mapping[str, MetricSpec]
    tables: dict[tuple, Table] = field(default_factory=dict)  # GROUP key -> table, sorted
    rankings: list[RankTable] = field(default_factory=list)  # methods only: yardsticks are never placed
    values: pd.DataFrame = field(default_factory=pd.DataFrame)  # cells x rows: mean Avg Gap, yardsticks included

    def cells(self) -> dict[tuple, list[Table]]:
        """cell key -> its tables (one per request)."""
        out: dict[tuple, list[Table]] = {}
        for t in self.tables.values():
            out.setdefault(t.cell, []).append(t)
        return out


def _has(rows: pd.DataFrame, metric: str) -> bool:
    col = f"m.{metric}"
    return col in rows and pd.to_numeric(done(rows)[col], errors="coerce").notna().any()


def _utility(rows: pd.DataFrame, specs: Mapping[str, MetricSpec]) -> str | None:
    stand_in = [k for k, s in specs.items() if s.replaces == UTILITY and _has(rows, k)]
    return stand_in[0] if stand_in else UTILITY if _has(rows, UTILITY) else None


def analyse_table(key: tuple, sub: pd.DataFrame, specs: Mapping[str, MetricSpec]) -> Table:
    rows = latest(sub)
    names = sorted(set(rows.method))
    gaps = {m: per_seed(rows, m, GAP) for m in names}
    gaps = {m: g for m, g in gaps.items() if g}
    floor = gaps.get(FLOOR, {})
    margin = float(np.mean(list(floor.values()))) if floor else math.nan
    broken = unpaired(rows)  # rows from other checkpoints than the floor's: shown, never tested
    tested = {m: {s: v for s, v in g.items() if s not in broken.get(m, {})} for m, g in gaps.items()}
    original = tested.get(ORIGINAL)
    verdicts = {m: verdict(g, floor, None if m == ORIGINAL else original, margin)
                for m, g in tested.items() if m not in (RETRAIN, FLOOR)}
    ranked = {m: g for m, g in gaps.items() if m not in YARDSTICKS}
    top = top_group({m: tested[m] for m in ranked})
    mean = {m: float(np.mean(list(g.values()))) for m, g in ranked.items()}
    methods = methods_of(rows)
    order = [m for m in (ORIGINAL, RETRAIN, FLOOR) if m in names]
    order += sorted(mean, key=lambda m: (round(mean[m], 6), m))
    order += [m for m in methods if m not in mean]
    forgetting = next((f for f in FORGETTING if _has(rows, f)), None)
    return Table(key, rows, gaps, margin, verdicts, top, order, _utility(rows, specs), forgetting,
                 gap_composition(sub, specs), broken)


def cell_values(tables: Mapping[tuple, Table]) -> pd.DataFrame:
    """cells x methods (yardsticks included): the mean Avg Gap over seeds, then over requests."""
    per: dict[tuple, dict[str, list[float]]] = {}
    for t in tables.values():
        for m in t.gaps:
            if m != RETRAIN:
                per.setdefault(t.cell, {}).setdefault(m, []).append(t.mean_gap(m))
    cells = sorted(per)
    methods = sorted({m for ms in per.values() for m in ms})
    data = [[float(np.mean(per[c][m])) if m in per[c] else math.nan for m in methods] for c in cells]
    return pd.DataFrame(data, index=pd.Index(cells, tupleize_cols=False), columns=methods)


def analyse(df: pd.DataFrame, specs: Mapping[str, MetricSpec], title: str) -> Analysis:
    an = Analysis(title, specs)
    if df.empty:
        return an
    df = recompute_gaps(df, specs)  # one Avg Gap composition per table
    for key, sub in df.groupby(GROUP, sort=True):
        an.tables[key] = analyse_table(key, sub, specs)
    an.values = cell_values(an.tables)
    methods = an.values.drop(columns=[m for m in YARDSTICKS if m in an.values])
    if len(methods):
        for cells, names in comparable_sets(methods):
            an.rankings.append(rank_table(methods.loc[cells, names]))
    return an
