"""The MLflow results frame as the report reads it: latest rows, cells, per-seed values.

``bench.tracking.Tracker.results_frame`` returns one row per (cell, method, seed[, request])
run with params, ``m.<metric>`` columns and tags. Everything in the report is computed from
that frame alone, so these helpers are its only reader.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import pandas as pd

from bench.metrics import MetricSpec
from bench.report.flags import noisy_metrics
from bench.report.roles import ORIGINAL, RETRAIN, YARDSTICKS
from bench.report.sanity import parse_sizes
from bench.report.summary import avg_gap

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


def fill_yardstick_gaps(df: pd.DataFrame, specs: Mapping[str, MetricSpec]) -> pd.DataFrame:
    """``df`` with the original's Avg Gap (and Avg Gap over all metrics) where a store written
    before the runner stored it lacks them: computed from the row's own metrics and the same
    seed's retrain row exactly as the runner computes a method's (bench/report/summary.py,
    leaving out what bench.report.flags.noisy_metrics marks as noise)."""
    if df.empty or "method" not in df:
        return df
    df = df.copy()
    for col in (GAP, "m.avg_gap_all"):
        if col not in df:
            df[col] = math.nan
    keys = [k for k in (*GROUP, "seed") if k in df]
    for _, g in latest(df).groupby(keys):
        retrain = g[(g.method == RETRAIN) & g.status.isin(DONE)]
        orig = g[(g.method == ORIGINAL) & g.status.isin(DONE)]
        if retrain.empty or orig.empty:
            continue
        rm = _metrics(retrain.iloc[-1])
        om = _metrics(orig.iloc[-1])
        sizes = parse_sizes(orig.iloc[-1].get("sizes"))
        noisy = noisy_metrics(om, sizes) if sizes and "retain" in sizes else set()
        for idx, row in orig.iterrows():
            for col, skip in ((GAP, noisy), ("m.avg_gap_all", ())):
                if pd.isna(pd.to_numeric(row.get(col), errors="coerce")):
                    gap = avg_gap(om, rm, specs, skip)
                    if gap is not None:
                        df.at[idx, col] = gap
    return df
