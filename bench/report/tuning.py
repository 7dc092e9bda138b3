"""What the leaderboard says about tuning (docs/tuning.md), from the stored rows alone.

A row that ran with tuned values carries the ``bench.tuned`` tag (the results frame's
``tuned`` column): JSON of what tuning gave it (bench/tuned.py ``notes``): the values used,
those the matrix overrode, and the study's trial count, tuning seed, default and best
objective and its spread. An untuned row has it empty. Nothing here imports the runner:
these are pure functions of the results frame, so the report rebuilds them from MLflow.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from bench.report.frame import latest  # the rows the tables show
from bench.report.roles import YARDSTICKS


def note(text: Any) -> dict[str, Any] | None:
    """A row's tuning note, or None for an untuned row (empty, missing or unreadable tag)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        out = json.loads(text)
    except json.JSONDecodeError:
        return None
    return out if isinstance(out, dict) else None


def is_tuned(df: pd.DataFrame) -> pd.Series:
    """Per row: did it run with tuned values."""
    if "tuned" not in df:
        return pd.Series(False, index=df.index)
    return df["tuned"].map(lambda t: note(t) is not None)


def header(df: pd.DataFrame) -> str:
    """``tuned: N trials per method, tuning seed S`` (with the methods left at their defaults) when
    the rows the tables show ran tuned, else ``defaults, untuned``."""
    if df.empty:
        return "defaults, untuned"
    shown = latest(df[~df.method.isin(YARDSTICKS)])
    budgets: dict[tuple[int, int], set[str]] = {}
    untuned: set[str] = set()
    for _, row in shown.iterrows():
        n = note(row.get("tuned"))
        if n is None:
            untuned.add(row.method)
        else:
            budgets.setdefault((int(n["trials"]), int(n["seed"])), set()).add(row.method)
    if not budgets:
        return "defaults, untuned"
    untuned -= set().union(*budgets.values())
    if len(budgets) == 1:
        (trials, seed), = budgets
        text = f"tuned: {trials} trials per method, tuning seed {seed}"
    else:
        text = "tuned: " + "; ".join(f"{t} trials, tuning seed {s} ({', '.join(sorted(m))})"
                                     for (t, s), m in sorted(budgets.items()))
    return text + (f"; at defaults: {', '.join(sorted(untuned))}" if untuned else "")


def _gap(rows: pd.DataFrame) -> tuple[float, int]:
    ok = rows[rows.status == "finished"]
    v = pd.to_numeric(ok.get("m.avg_gap", pd.Series(dtype=float)), errors="coerce").dropna()
    return (float(v.mean()) if len(v) else math.nan), int(ok.seed.nunique()) if len(v) else 0


def _fmt(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.2f}"


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _values(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items()))


def sources(df: pd.DataFrame) -> tuple[set[str], set[tuple[int, int]]]:
    """What the tuning lines rest on, for the provenance table: the parent runs of the rows they
    read (each tuned method's newest tuned and newest default rows) and the (tuning seed, trials)
    budgets of the tunes that chose the values."""
    if df.empty or "tuned" not in df or "parent_run" not in df:
        return set(), set()
    flags = is_tuned(df)
    mine = df[df.method.isin(set(df.method[flags]))]
    rows = pd.concat([latest(mine[flags[mine.index]]), latest(mine[~flags[mine.index]])])
    budgets = {(int(n["seed"]), int(n["trials"])) for n in map(note, df.tuned[flags]) if n}
    return set(rows.parent_run), budgets


def _compared(sub: pd.DataFrame) -> list[tuple[str, float, int, float, int, dict[str, Any]]]:
    """Per tuned method of these rows (all invocations): its tuned and default Avg Gap (mean over
    seeds, each the newest run) with their seed counts, and the newest tuned row's note."""
    if sub.empty or "tuned" not in sub:
        return []
    flags = is_tuned(sub)
    out = []
    for method in sorted(set(sub.method[flags])):
        mine = sub[sub.method == method]
        tuned_rows = latest(mine[flags[mine.index]])
        newest = tuned_rows.sort_values("start_time") if "start_time" in tuned_rows else tuned_rows
        out.append((method, *_gap(tuned_rows), *_gap(latest(mine[~flags[mine.index]])),
                    note(newest.iloc[-1].tuned) or {}))
    return out


def summary_lines(sub: pd.DataFrame) -> list[str]:
    """One line under a cell's headline table: each tuned method's tuned vs default Avg Gap."""
    parts = [f"{m} {_fmt(t)} vs {_fmt(d) if d_n else 'not run'}" for m, t, _, d, d_n, _ in _compared(sub)]
    return [f"Tuned vs default Avg Gap ↓ (mean over seeds; the details page has the tuning): {'; '.join(parts)}."
            ] if parts else []


def method_lines(sub: pd.DataFrame) -> list[str]:
    """For one table's rows (all invocations): per tuned method, the default vs tuned Avg Gap on
    these cells (mean over seeds, each the newest run) and, from its tuning cell, the defaults'
    and best objective and the objective's spread over the trials (how much tuning matters)."""
    lines = []
    for method, t_gap, t_n, d_gap, d_n, n in _compared(sub):
        default = (f"default {_fmt(d_gap)} ({_seeds(d_n)})" if d_n else
                   "default not run on these cells (run the matrix without --tuned)")
        used = _values(n.get("values", {})) or "none"
        over = n.get("overridden") or {}
        over_text = f" (the matrix overrides tuned {_values(over)})" if over else ""
        spread = n.get("objective") or {}
        spread_text = (f"min {_fmt(spread.get('min'))}, IQR {_fmt(spread.get('q25'))}-{_fmt(spread.get('q75'))}, "
                       f"max {_fmt(spread.get('max'))}" if spread else "no complete trial")
        lines.append(
            f"- {method}: Avg Gap tuned {_fmt(t_gap)} ({_seeds(t_n)}) vs {default}; values {used}{over_text}. "
            f"Tuning cell (seed {n.get('seed')}, {n.get('trials')} trials, {n.get('failed', 0)} failed): "
            f"defaults {_fmt(n.get('default'))}, best {_fmt(n.get('best'))}; objective over trials {spread_text}; "
            f"tuning took {_duration(float(n.get('wall_s', 0.0)))}")
    if not lines:
        return []
    return ["Tuning (Avg Gap ↓; `python -m bench tune`):", *lines]
