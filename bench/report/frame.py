"""The MLflow results frame as the report reads it: latest rows, cells, per-seed values.

``bench.tracking.Tracker.results_frame`` returns one row per (cell, method, seed[, request])
run with params, ``m.<metric>`` columns and tags. Everything in the report is computed from
that frame alone, so these helpers are its only reader.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from bench.metrics import MetricSpec
from bench.report.flags import noisy_metrics
from bench.report.roles import ORIGINAL, RETRAIN, YARDSTICKS
from bench.report.sanity import parse_sizes
from bench.report.summary import avg_gap, gap_metrics

GROUP = ["dataset", "encoder", "backbone", "scenario", "request"]  # one table (a cell's request)
CELL = GROUP[:-1]  # one cell over its seeds (and requests)
DONE = ("finished", "reference")  # statuses with metrics
GAP = "m.avg_gap"


def latest(sub: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, method, seed): the most recent (a --fresh rerun supersedes)."""
    if "start_time" not in sub:
        return sub
    keys = [k for k in (*GROUP, "method", "seed") if k in sub]
    return sub.sort_values("start_time").groupby(keys, sort=False).tail(1)


def done(sub: pd.DataFrame) -> pd.DataFrame:
    return sub[sub.status.isin(DONE)]


def per_seed(sub: pd.DataFrame, method: str, column: str) -> dict[int, float]:
    """seed -> the finite value of ``column`` for ``method`` in one table's latest rows."""
    if column not in sub:
        return {}
    g = done(sub[sub.method == method])
    vals = pd.to_numeric(g[column], errors="coerce")
    return {int(s): float(v) for s, v in zip(g.seed, vals) if pd.notna(v) and math.isfinite(v)}


def methods_of(sub: pd.DataFrame) -> list[str]:
    """The table's non-yardstick methods."""
    return sorted(m for m in set(sub.method) if m not in YARDSTICKS)


def slug(key: tuple) -> str:
    """A file name for a cell (dataset, encoder, backbone, scenario): characters safe in a URL."""
    text = "_".join(str(k) for k in key[: len(CELL)])
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def scenario_shown(sub: pd.DataFrame) -> str:
    """The scenario as headings show it: ``scenario_name`` ("class:2 (delta)") where stored."""
    if "scenario_name" in sub:
        names = [n for n in sub.scenario_name if isinstance(n, str) and n]
        if names:
            return names[0]
    return str(sub.scenario.iloc[0])


def heading(key: tuple, sub: pd.DataFrame) -> str:
    ds, enc, bb, sc = key[:4]
    text = f"{ds} · {enc}/{bb} · {scenario_shown(sub)}"
    if len(key) > 4 and (str(sc).startswith("sequential") or key[4]):
        text += f" · after request {key[4]}"
    return text


def _metrics(row: pd.Series) -> dict[str, float]:
    out = {}
    for c, v in row.items():
        if isinstance(c, str) and c.startswith("m."):
            v = pd.to_numeric(v, errors="coerce")
            if pd.notna(v) and math.isfinite(v):
                out[c[2:]] = float(v)
    return out


@dataclass(frozen=True)
class GapComposition:
    """What every seed's Avg Gap averages in one table (a cell's request)."""

    averaged: tuple[str, ...]  # the metrics averaged (present on the original and retrain)
    noisy: tuple[str, ...]  # privacy metrics left out as noise, on every seed
    votes: Mapping[str, int]  # metric -> on how many seeds' originals it measured noise
    seeds: int  # seeds whose original could be judged (it has metrics and split sizes)

    def sentence(self) -> str:
        """The composition as the details page states it."""
        text = f"Avg Gap averages: {', '.join(self.averaged) or 'nothing'}"
        if self.noisy:
            why = ", ".join(f"{m} ({self.votes[m]}/{self.seeds} seeds)" for m in self.noisy)
            return text + f"; left out as noise: {why}, on every seed."
        return text + "; left out as noise: none."


def _yardstick_rows(sub: pd.DataFrame, method: str) -> dict[int, pd.Series]:
    """seed -> the newest finished row of ``method`` in one table."""
    rows = latest(sub)
    rows = rows[(rows.method == method) & rows.status.isin(DONE)]
    return {int(r.seed): r for _, r in rows.iterrows()}


def _seed_noise(orig: pd.Series) -> set[str] | None:
    """The privacy metrics the original of one seed marks as noise (None: no split sizes)."""
    sizes = parse_sizes(orig.get("sizes"))
    return noisy_metrics(_metrics(orig), sizes) if sizes and "retain" in sizes else None


def gap_composition(sub: pd.DataFrame, specs: Mapping[str, MetricSpec]) -> GapComposition:
    """One composition of Avg Gap for every seed of a table: a privacy metric is left out when
    it measures noise (bench.report.flags.noisy_metrics) on at least half of the seeds' originals,
    so a metric that is noise on most seeds averages noise into none of them, and all seeds
    average the same quantities."""
    originals, retrains = _yardstick_rows(sub, ORIGINAL), _yardstick_rows(sub, RETRAIN)
    votes: dict[str, int] = {}
    judged = 0
    for orig in originals.values():
        noisy = _seed_noise(orig)
        if noisy is not None:
            judged += 1
            for m in noisy:
                votes[m] = votes.get(m, 0) + 1
    noisy = tuple(sorted(m for m, n in votes.items() if 2 * n >= judged))
    averaged: list[str] = []
    for seed, orig in originals.items():
        if seed in retrains:
            for k in gap_metrics(_metrics(orig), _metrics(retrains[seed]), specs, noisy):
                if k not in averaged:
                    averaged.append(k)
    order = list(specs)
    return GapComposition(tuple(sorted(averaged, key=order.index)), noisy, votes, judged)


def recompute_gaps(df: pd.DataFrame, specs: Mapping[str, MetricSpec]) -> pd.DataFrame:
    """``df`` with every finished row's Avg Gap over its table's one :func:`gap_composition`,
    from its metrics and its seed's retrain row (the runner stored each seed's own composition).
    A row whose seed already left out exactly the table's set keeps its stored value (the same
    number); rows of stores written before the runner stored the original's Avg Gap get theirs,
    and Avg Gap over all metrics, here too."""
    if df.empty or "method" not in df:
        return df
    df = df.copy()
    for col in (GAP, "m.avg_gap_all"):
        if col not in df:
            df[col] = math.nan
    for _, sub in df.groupby([k for k in GROUP if k in df]):
        comp = gap_composition(sub, specs)
        retrains, originals = _yardstick_rows(sub, RETRAIN), _yardstick_rows(sub, ORIGINAL)
        for idx, row in sub[sub.status.isin(DONE)].iterrows():
            seed = int(row.seed)
            if seed not in retrains:
                continue
            own = _seed_noise(originals[seed]) if seed in originals else None
            stored = pd.to_numeric(row.get(GAP), errors="coerce")
            rm, m = _metrics(retrains[seed]), _metrics(row)
            if pd.isna(stored) or (own or set()) != set(comp.noisy):
                gap = avg_gap(m, rm, specs, comp.noisy)
                df.at[idx, GAP] = math.nan if gap is None else gap
            if pd.isna(pd.to_numeric(row.get("m.avg_gap_all"), errors="coerce")):
                gap = avg_gap(m, rm, specs)
                if gap is not None:
                    df.at[idx, "m.avg_gap_all"] = gap
    return df
