"""Leaderboard markdown built from MLflow rows (pandas), never from in-memory state.

One table per dataset x encoder x backbone x scenario (x request): methods as
rows (original and retrain first, the rest ranked by Avg Gap), metrics as
columns with their direction (↑, ↓, ≈R = ideal is retrain's value), mean ± std
[95 % CI] over seeds with the best method per column in bold (bench/report/stats.py);
then an overall table ranking methods by mean Avg Gap across cells.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from bench.metrics import MetricSpec
from bench.report.sanity import sanity_table
from bench.report.stats import best_methods, column_digits, fmt_stats, seed_stats
from bench.splits import parse_scenario

GROUP = ["dataset", "encoder", "backbone", "scenario", "request"]
FIRST = ["original", "retrain"]


def mean_std(values: pd.Series) -> tuple[float, float, int]:
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


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


def latest(sub: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, method, seed): the most recent (a --fresh rerun supersedes)."""
    if "start_time" not in sub:
        return sub
    keys = [k for k in (*GROUP, "method", "seed") if k in sub]
    return sub.sort_values("start_time").groupby(keys, sort=False).tail(1)


def _reason(g: pd.DataFrame) -> str:
    reasons = [str(r) for r in g.reason if isinstance(r, str) and r]
    return (reasons[0] if reasons else "no reason recorded").replace("|", "/").replace("\n", " ")[:120]


def _unranked_columns(sub: pd.DataFrame) -> set[str]:
    """Columns that rank nothing in this table: privacy metrics of a cell without
    membership signal (bench/report/flags.py)."""
    if "cell_flags" not in sub or not sub.cell_flags.astype(str).str.contains(
            "no membership signal").any():
        return set()
    from bench.report.flags import PRIVACY_METRICS

    return set(PRIVACY_METRICS)


def cell_table(sub: pd.DataFrame, specs: Mapping[str, MetricSpec]) -> list[str]:
    """Methods x metrics: mean ± std [95 % CI] over seeds, the best method per column in bold
    (bench/report/stats.py), n/a with the reason for unsupported pairs, failures with theirs."""
    sub = latest(sub)
    cols = _metric_columns(sub, specs)
    head = ["method", "seeds"] + [f"{c} {specs[c].arrow}".strip() for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    done_rows = sub[sub.status.isin(["finished", "reference"])]
    stats = {
        (m, c): seed_stats(pd.to_numeric(g[f"m.{c}"], errors="coerce"))
        for m, g in done_rows.groupby("method") for c in cols
    }
    unranked = _unranked_columns(sub)
    best: dict[str, set[str]] = {}
    digits: dict[str, int] = {}
    for c in cols:
        means = {m: st.mean for (m, cc), st in stats.items() if cc == c}
        ref = stats.get(("retrain", c))
        digits[c] = column_digits(means.values())
        best[c] = set() if c in unranked else best_methods(
            means, specs[c], ref.mean if ref else None, digits[c])
    for m in method_order(sub):
        g = sub[sub.method == m]
        done = g[g.status.isin(["finished", "reference"])]
        if len(done) == 0:
            label = "n/a" if (g.status == "skipped").all() else "failed"
            cells = [f"{label}: {_reason(g)}"] + [""] * (len(cols) - 1) if cols else []
            lines.append(f"| {m} | 0 | " + " | ".join(cells) + " |")
            continue
        cells = [fmt_stats(stats[(m, c)], digits[c], bold=m in best[c]) for c in cols]
        failed = g[g.status == "failed"]
        seeds = f"{done.seed.nunique()}"
        if len(failed):
            seeds += f" ({len(failed)} failed: {_reason(failed)})"
        lines.append(f"| {m} | {seeds} | " + " | ".join(cells) + " |")
    return lines


def flag_notes(sub: pd.DataFrame) -> list[str]:
    """bench/report/flags.py findings of one table: the cell's (latest run per seed) and each method's."""
    notes: dict[str, set[int]] = {}
    for seed, g in latest(sub).groupby("seed"):
        newest = g.sort_values("start_time").iloc[-1]
        texts = [("cell", newest.get("cell_flags"))]
        texts += [(r.method, r.get("flags")) for _, r in g.iterrows()]
        for who, text in texts:
            for f in (text.split("\n") if isinstance(text, str) else []):
                if f:
                    notes.setdefault(f"{who}: {f}", set()).add(int(seed))
    multi = sub.seed.nunique() > 1
    return [f"- ⚑ {n}" + (f" (seeds {', '.join(map(str, sorted(s)))})" if multi else "")
            for n, s in notes.items()]


def overall_table(df: pd.DataFrame) -> list[str]:
    """Methods ranked by mean Avg Gap across cells. A cell's value is its mean over seeds
    (and, for sequential scenarios, over requests), so every cell weighs the same."""
    if "m.avg_gap" not in df:
        return []
    ok = latest(df)
    ok = ok[(ok.status == "finished") & ok["m.avg_gap"].notna() & ~ok.method.isin(FIRST)]
    if ok.empty:
        return []
    cell = GROUP[:-1]
    per_req = ok.groupby(["method", *GROUP])["m.avg_gap"].mean().reset_index()
    per_cell = per_req.groupby(["method", *cell])["m.avg_gap"].mean().reset_index()
    winners = per_cell.loc[per_cell.groupby(cell)["m.avg_gap"].idxmin(), "method"].value_counts()
    rows = []
    for m, g in per_cell.groupby("method"):
        st = seed_stats(g["m.avg_gap"])
        rows.append((st.mean, m, st, int(winners.get(m, 0))))
    lines = ["## Overall: mean Avg Gap across cells (lower is better)", "",
             "A cell's Avg Gap is its mean over seeds (and requests); ± is the std across cells, "
             "[ ] its 95 % t-interval; *best in* counts the cells where the method has the "
             "lowest Avg Gap.", "",
             "| rank | method | Avg Gap ↓ | cells | best in |", "|---|---|---|---|---|"]
    for i, (_, m, st, wins) in enumerate(sorted(rows, key=lambda r: (r[0], r[1])), 1):
        lines.append(f"| {i} | {m} | {fmt_stats(st, bold=i == 1)} | {st.n} | {wins} |")
    return lines + [""]


def build_markdown(df: pd.DataFrame, specs: Mapping[str, MetricSpec], title: str,
                   figure_links: Mapping[tuple, str] | None = None) -> str:
    out = [f"# Leaderboard: {title}", ""]
    if df.empty:
        return "\n".join(out + ["No finished results in MLflow yet.", ""])
    out += [
        "Each entry: mean ± std over seeds [95 % confidence interval, Student t with n-1 "
        "degrees of freedom]; one seed shows the value alone. ↑ higher is better, ↓ lower is "
        "better, ≈R the ideal is retrain's value (gap metrics). **Bold**: the best method in "
        "the column by that direction (original and retrain are yardsticks, never bold). Rows "
        "after original and retrain are ranked by Avg Gap to retrain. Each table shows the headline "
        "metrics; the full table under it adds the diagnostics (attack fit accuracies, rates on D_t, "
        "variants). n/a: the method does not "
        "apply to the encoder (reason given); failed: the reason of the failure. Sequential "
        "scenarios get one table per deletion request (numbered from 0, as in MLflow).",
        "",
    ]
    out += overall_table(df)
    for key, sub in df.groupby(GROUP, sort=True):
        ds, enc, bb, sc, req = key
        sequential = str(sc).startswith("sequential") or req
        head = f"## {ds} · {enc}/{bb} · {sc}" + (f" · after request {req}" if sequential else "")
        out += [head, ""]
        headline = {k: v for k, v in specs.items() if v.headline}
        out += cell_table(sub, headline)
        out += ["", "<details><summary>All metrics, diagnostics included</summary>", ""]
        out += cell_table(sub, specs)
        out += ["", "</details>"]
        if figure_links and key in figure_links:
            out += ["", f"Alignment matrices: [{Path(figure_links[key]).name}]({figure_links[key]})"]
        sanity = sanity_table(latest(sub), class_forgetting=parse_scenario(str(sc)).kind == "class")
        out += ["", *sanity] if sanity else []
        flags = flag_notes(sub)
        out += ["", "Flags (bench/report/flags.py):", *flags] if flags else []
        out.append("")
    return "\n".join(out)


def write_leaderboard(md: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(md)
    os.replace(tmp, path)
    return path

