"""The tuning objective: a trial's Avg Gap on each tuning cell exactly as the leaderboard gets it,
averaged over the tuning cells.

One cell's Avg Gap is about as noisy as the differences between a study's trials, so a trial
is scored on several tuning cells (distinct tuning seeds, each with its own split, forget
set, original, retrain and references) and the objective is the mean of their Avg Gaps. Each
cell's Avg Gap is not re-derived here: the trial's rows (and the cell's yardstick rows) are
laid out as the results frame the report reads (one row per method, seed and request, with
``m.<metric>`` columns) and passed through the report's own analysis
(:func:`bench.report.analysis.analyse`), whose per-cell value (:func:`~bench.report.analysis.cell_values`:
the mean over seeds, then over a sequential scenario's requests) is what the leaderboard
ranks. Whatever the leaderboard's Avg Gap becomes, tuning optimises the same number.

A trial *fails* (never a score) when, on any tuning cell, the method failed (diverged, a
failed row), its audit is incomplete, it has no Avg Gap, or it is flagged as over-unlearning
(bench/report/flags.py): tuning must not choose values that only look good on average.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.config import Cell
from bench.report.flags import is_over_unlearning
from bench.runner import MethodResult


def failure(rows: Sequence[MethodResult]) -> str:
    """Why a method's rows on one cell cannot be scored ("" when they can): no row, a failed row,
    an incomplete audit, an over-unlearning flag, or no finite Avg Gap."""
    if not rows:
        return "the method produced no row"
    for row in rows:
        at = f" (request {row.request})" if len(rows) > 1 else ""
        if row.status != "finished":
            return f"{row.status}{at}: {row.reason}"
        if row.reason:
            return f"incomplete audit{at}: {row.reason}"
        over = [f for f in row.info.get("flags", []) if is_over_unlearning(f)]
        if over:
            return over[0] + at
        gap = row.metrics.get("avg_gap")
        if gap is None or not math.isfinite(gap):
            return f"no Avg Gap{at}"
    return ""


def frame(cell: Cell, rows: Sequence[MethodResult]) -> pd.DataFrame:
    """``rows`` of ``cell`` as the results frame (bench.tracking.Tracker.results_frame) holds them:
    the cell's params, the row's method, request, ``hp.*`` and ``m.*`` columns, status and flags;
    ``start_time`` in row order, so a later row supersedes an earlier one as in the store."""
    from bench.tracking import cell_params

    records: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        records.append({
            **cell_params(cell), "scenario_name": cell.scenario, "method": row.method, "request": int(row.request),
            **{f"hp.{k}": v for k, v in row.params.items()}, **{f"m.{k}": v for k, v in row.metrics.items()},
            "status": row.status, "reason": row.reason, "start_time": i,
            "flags": "\n".join(row.info.get("flags", [])), "cell_flags": "\n".join(row.info.get("cell_flags", [])),
            "sizes": json.dumps(row.info["sizes"]) if "sizes" in row.info else "", "tuned": "",
        })
    return pd.DataFrame.from_records(records)


def leaderboard_gap(df: pd.DataFrame, method: str) -> float | None:
    """``method``'s Avg Gap in the one cell of ``df`` as the leaderboard computes it (the report's
    analysis of the frame: mean over seeds, then over requests); None when it has none."""
    from bench.audit import metric_specs
    from bench.report.analysis import analyse, cell_values

    if df.empty:
        return None
    values = cell_values(analyse(df, metric_specs(), "tune").tables)
    if method not in values or len(values) != 1:
        return None
    gap = float(values[method].iloc[0])
    return gap if math.isfinite(gap) else None


def objective(cells: Sequence[tuple[Cell, Sequence[MethodResult], Sequence[MethodResult]]],
              method: str) -> tuple[float | None, str, dict[int, float]]:
    """(the mean over tuning cells of ``method``'s leaderboard Avg Gap, "", seed -> that cell's gap),
    or (None, why, the gaps scored before) for a failed trial. ``cells``: per tuning cell, the
    cell, its yardstick rows (original, floor) and the trial's rows of ``method``."""
    if not cells:
        return None, "no tuning cell", {}
    gaps: dict[int, float] = {}
    for cell, yardsticks, rows in cells:
        at = f"tuning seed {cell.seed}: "
        why = failure(rows)
        if why:
            return None, at + why, gaps
        gap = leaderboard_gap(frame(cell, [*yardsticks, *rows]), method)
        if gap is None:
            return None, at + "no Avg Gap on the leaderboard", gaps
        gaps[cell.seed] = gap
    return float(np.mean(list(gaps.values()))), "", gaps
