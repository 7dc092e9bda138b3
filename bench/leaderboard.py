"""Leaderboard markdown built from MLflow rows (pandas), never from in-memory state.

One table per dataset x encoder x backbone x scenario (x request): methods as
rows (original and retrain first, the rest ranked by Avg Gap), metrics as
columns with their direction (↑, ↓, ≈R = ideal is retrain's value), mean ± std
over seeds; then an overall table ranking methods by mean Avg Gap across cells.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from bench.audit import MetricSpec

GROUP = ["dataset", "encoder", "backbone", "scenario", "request"]
FIRST = ["original", "retrain"]


def mean_std(values: pd.Series) -> tuple[float, float, int]:
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def fmt(mean: float, std: float, n: int) -> str:
    if n == 0 or math.isnan(mean):
        return "–"
    return f"{mean:.2f}" if n == 1 else f"{mean:.2f} ± {std:.2f}"


def _metric_columns(df: pd.DataFrame, specs: Mapping[str, MetricSpec]) -> list[str]:
    present = {c[2:] for c in df.columns if c.startswith("m.") and df[c].notna().any()}
    return [name for name in specs if name in present]


def method_order(sub: pd.DataFrame) -> list[str]:
    gaps = {}
    for m, g in sub.groupby("method"):
        if m in FIRST:
            continue
        mean = mean_std(g.loc[g.status == "finished", "m.avg_gap"])[0] if "m.avg_gap" in g else math.nan
        gaps[m] = math.inf if math.isnan(mean) else mean
    return [m for m in FIRST if m in set(sub.method)] + sorted(gaps, key=lambda m: (gaps[m], m))


def cell_table(sub: pd.DataFrame, specs: Mapping[str, MetricSpec]) -> list[str]:
    cols = _metric_columns(sub, specs)
    head = ["method", "seeds"] + [f"{c} {specs[c].arrow}".strip() for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in method_order(sub):
        g = sub[sub.method == m]
        done = g[g.status.isin(["finished", "reference"])]
        cells: list[str] = []
        if len(done) == 0:
            status = g.status.iloc[0]
            reason = str(g.reason.iloc[0]).replace("|", "/")[:80]
            label = "n/a" if status == "skipped" else status
            cells = [f"{label}: {reason}"] + [""] * (len(cols) - 1) if cols else []
            lines.append(f"| {m} | 0 | " + " | ".join(cells) + " |")
            continue
        for c in cols:
            cells.append(fmt(*mean_std(done[f"m.{c}"])) if f"m.{c}" in done else "–")
        n_fail = int((g.status == "failed").sum())
        seeds = f"{done.seed.nunique()}" + (f" ({n_fail} failed)" if n_fail else "")
        lines.append(f"| {m} | {seeds} | " + " | ".join(cells) + " |")
    return lines


def overall_table(df: pd.DataFrame) -> list[str]:
    ok = df[(df.status == "finished") & df.get("m.avg_gap", pd.Series(dtype=float)).notna()]
    if "m.avg_gap" not in df or ok.empty:
        return []
    per_cell = ok.groupby(["method", *GROUP])["m.avg_gap"].mean().reset_index()
    rows = []
    for m, g in per_cell.groupby("method"):
        mean, std, n = mean_std(g["m.avg_gap"])
        rows.append((mean, m, std, n))
    lines = ["## Overall: mean Avg Gap across cells (lower is better)", "",
             "| rank | method | Avg Gap ↓ | cells |", "|---|---|---|---|"]
    for i, (mean, m, std, n) in enumerate(sorted(rows), 1):
        lines.append(f"| {i} | {m} | {fmt(mean, std, n)} | {n} |")
    return lines + [""]


def build_markdown(df: pd.DataFrame, specs: Mapping[str, MetricSpec], title: str,
                   figure_links: Mapping[tuple, str] | None = None) -> str:
    out = [f"# Leaderboard: {title}", ""]
    if df.empty:
        return "\n".join(out + ["No finished results in MLflow yet.", ""])
    out += [
        "Mean ± std over seeds. ↑ higher is better, ↓ lower is better, ≈R the ideal is retrain's "
        "value (gap metrics). Rows after original and retrain are ranked by Avg Gap to retrain.",
        "",
    ]
    out += overall_table(df)
    for key, sub in df.groupby(GROUP, sort=True):
        ds, enc, bb, sc, req = key
        head = f"## {ds} · {enc}/{bb} · {sc}" + (f" · request {req}" if req else "")
        out += [head, ""]
        out += cell_table(sub, specs)
        if figure_links and key in figure_links:
            out += ["", f"Alignment matrices: [{Path(figure_links[key]).name}]({figure_links[key]})"]
        out.append("")
    return "\n".join(out)


def write_leaderboard(md: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(md)
    os.replace(tmp, path)
    return path

