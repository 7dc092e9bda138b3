"""One details page per cell, ``results/<matrix>/cells/<cell>.md``: everything the headline leaves out.

Per request of the cell: the tests behind each verdict (paired differences to the floor,
one-sided and TOST p-values, the margin, seeds needed), the top group's Holm-adjusted
p-values, the trade-off plot, every metric (mean ± std [95 % CI clipped to the metric's
range], the best mean per column bold by its direction; device artefacts such as CPU peak
memory, the privacy columns of a cell without membership signal, and any table of one seed,
where no claim is made, bold nothing), per-seed values, the sanity facts, the flags in full
with a legend of those present, and the alignment matrices the auditors drew.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from bench.metrics import MetricSpec
from bench.report.analysis import Table
from bench.report.flag_names import flag_name, legend, split
from bench.report.flags import PRIVACY_METRICS
from bench.report.frame import DONE, GAP, heading, latest
from bench.report.roles import FLOOR, RETRAIN, YARDSTICKS
from bench.report.sanity import sanity_table
from bench.report.stats import best_methods, column_digits, fmt_stats, seed_stats
from bench.report.verdict import ALPHA, POWER
from bench.splits import parse_scenario


def reason(g: pd.DataFrame, limit: int = 120) -> str:
    reasons = [str(r) for r in g.reason if isinstance(r, str) and r] if "reason" in g else []
    return (reasons[0] if reasons else "no reason recorded").replace("|", "/").replace("\n", " ")[:limit]


def _metric_columns(df: pd.DataFrame, specs: Mapping[str, MetricSpec]) -> list[str]:
    present = {c[2:] for c in df.columns if c.startswith("m.") and df[c].notna().any()}
    return [name for name in specs if name in present]


def _unranked(rows: pd.DataFrame, specs: Mapping[str, MetricSpec]) -> set[str]:
    """Columns that rank nothing here: device artefacts (``ranked=False``), and privacy metrics of
    a cell without membership signal (bench/report/flags.py)."""
    out = {k for k, s in specs.items() if not s.ranked}
    if "cell_flags" in rows and rows.cell_flags.astype(str).str.contains("no membership signal").any():
        out |= set(PRIVACY_METRICS)
    return out


def metrics_table(rows: pd.DataFrame, specs: Mapping[str, MetricSpec], order: Sequence[str]) -> list[str]:
    """Methods x metrics: mean ± std [95 % CI] over seeds, the best method per column in bold
    (bench/report/stats.py) once some method has two seeds (one seed claims nothing, so nothing
    is emphasised), n/a with the reason for unsupported pairs, failures with theirs."""
    cols = _metric_columns(rows, specs)
    head = ["method", "seeds"] + [f"{c} {specs[c].arrow}".strip() for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ok = rows[rows.status.isin(DONE)]
    stats = {(m, c): seed_stats(pd.to_numeric(g[f"m.{c}"], errors="coerce"), specs[c].bounds)
             for m, g in ok.groupby("method") for c in cols}
    one_seed = ok.groupby("method").seed.nunique().max() < 2 if len(ok) else True
    unranked = set(specs) if one_seed else _unranked(rows, specs)
    best: dict[str, set[str]] = {}
    digits: dict[str, int] = {}
    for c in cols:
        means = {m: st.mean for (m, cc), st in stats.items() if cc == c}
        ref = stats.get((RETRAIN, c))
        digits[c] = column_digits(means.values())
        best[c] = set() if c in unranked else best_methods(
            means, specs[c], ref.mean if ref else None, digits[c], exclude=YARDSTICKS)
    for m in order:
        g = rows[rows.method == m]
        fin = g[g.status.isin(DONE)]
        if len(fin) == 0:
            label = "n/a" if (g.status == "skipped").all() else "failed"
            cells = [f"{label}: {reason(g)}"] + [""] * (len(cols) - 1) if cols else []
            lines.append(f"| {m} | 0 | " + " | ".join(cells) + " |")
            continue
        cells = [fmt_stats(stats[(m, c)], digits[c], bold=m in best[c]) for c in cols]
        failed = g[g.status == "failed"]
        seeds = f"{fin.seed.nunique()}"
        if len(failed):
            seeds += f" ({len(failed)} failed: {reason(failed)})"
        lines.append(f"| {m} | {seeds} | " + " | ".join(cells) + " |")
    return lines


def flag_notes(rows: pd.DataFrame) -> list[str]:
    """bench/report/flags.py findings of one table in full: the cell's (the latest run per seed)
    and each method's, then a legend explaining each flag shown."""
    notes: dict[str, set[int]] = {}
    for seed, g in latest(rows).groupby("seed"):
        newest = g.sort_values("start_time").iloc[-1]
        texts = [("cell", newest.get("cell_flags"))]
        texts += [(r.method, r.get("flags")) for _, r in g.iterrows()]
        for who, text in texts:
            for f in split(text):
                notes.setdefault((who, f), set()).add(int(seed))
    if not notes:
        return []
    multi = rows.seed.nunique() > 1
    lines = [f"- ⚑ {who}: {f}" + (f" (seeds {', '.join(map(str, sorted(s)))})" if multi else "")
             for (who, f), s in notes.items()]
    return lines + ["", "What each flag measured:", "", *legend(flag_name(f) for _, f in notes)]


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _seeds(n: float) -> str:
    return "–" if not math.isfinite(n) else f"{int(n)}"


def verdict_table(t: Table) -> list[str]:
    """The tests behind each verdict."""
    lines = [f"Verdicts: d = Avg Gap - the floor's ({FLOOR}) on the same seed. *worse*: one-sided paired "
             f"t-test of d > 0; *matches*: TOST of |d| < the margin ±{t.margin:.2f} (the floor's mean Avg "
             f"Gap); *vs original*: one-sided paired t-test of Avg Gap > the original's; α {ALPHA:g}. "
             f"Seeds needed: for a difference of the observed size at the observed paired std, power "
             f"{POWER:g} (statsmodels TTestPower for *worse*, noncentral t for TOST).", "",
             "| method | seeds | mean d ± std | p worse | p matches (TOST) | p vs original | verdict "
             "| seeds to show worse | seeds to show a match |", "|---|---|---|---|---|---|---|---|---|"]
    for m in t.order:
        v = t.verdicts.get(m)
        if v is None:
            continue
        d = f"{v.mean:+.2f} ± {v.sd:.2f}" if v.n > 1 else (f"{v.mean:+.2f}" if v.n else "–")
        lines.append(f"| {m} | {v.n} | {d} | {_p(v.p_worse)} | {_p(v.p_match)} | "
                     f"{_p(v.p_worse_than_nothing)} | {v.label} | {_seeds(v.seeds_worse)} | "
                     f"{_seeds(v.seeds_match)} |")
    return lines


def top_group_lines(t: Table) -> list[str]:
    top = t.top
    if top is None:
        return []
    if not top.testable:
        return [f"Top group: lowest mean Avg Gap {top.best}; with one seed no method can be tested "
                "against it, so no group is claimed."]
    worse = sorted(m for m in top.members if m in t.verdicts and t.verdicts[m].worse)
    lines = [f"Top group: {', '.join(sorted(top.members))}"
             + (f" (bold in the headline except those worse than retrain: {', '.join(worse)})" if worse
                else " (bold in the headline)")
             + ". The group is relative to the methods present, not a verdict. Every method against "
             f"the lowest mean ({top.best}): one-sided paired t-test of Avg Gap > {top.best}'s, Holm-"
             f"corrected over the {len(top.p_holm)} comparisons (statsmodels multipletests); in the group "
             f"when the adjusted p ≥ {ALPHA:g}.", ""]
    if top.p_holm:
        lines += ["| method | p | Holm-adjusted p | in top group |", "|---|---|---|---|"]
        for m in sorted(top.p_holm, key=lambda k: top.p_holm[k], reverse=True):
            lines.append(f"| {m} | {_p(top.p_raw[m])} | {_p(top.p_holm[m])} | "
                         f"{'yes' if m in top.members else 'no'} |")
    return lines


def per_seed_table(t: Table, specs: Mapping[str, MetricSpec]) -> list[str]:
    """Every row's headline metrics seed by seed, with d (Avg Gap - the floor's)."""
    rows = t.rows[t.rows.status.isin(DONE)]
    cols = _metric_columns(rows, {k: s for k, s in specs.items() if s.headline})
    lines = ["| method | seed | d | " + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    floor = t.gaps.get(FLOOR, {})
    for m in t.order:
        for _, r in rows[rows.method == m].sort_values("seed").iterrows():
            gap = pd.to_numeric(r.get(GAP), errors="coerce")
            paired = r.seed in floor and r.seed not in t.unpaired.get(m, {})
            d = f"{gap - floor[r.seed]:+.2f}" if pd.notna(gap) and paired else "–"
            vals = []
            for c in cols:
                v = pd.to_numeric(r.get(f"m.{c}"), errors="coerce")
                vals.append("–" if pd.isna(v) else f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}")
            lines.append(f"| {m} | {int(r.seed)} | {d} | " + " | ".join(vals) + " |")
    return lines


def pairing_lines(t: Table) -> list[str]:
    """The rows left out of the tests because they do not pair with the floor's (bench/report/pairing.py)."""
    if not t.unpaired:
        return []
    return ["Left out of the tests (a row pairs with the floor's of its seed only when both come from the "
            "same checkpoints):", "",
            *(f"- {m}, seed {s}: {why}" for m in t.order for s, why in sorted(t.unpaired.get(m, {}).items()))]


def details_page(tables: Sequence[Table], specs: Mapping[str, MetricSpec], tradeoffs: Mapping[tuple, str],
                 auditor_figures: Sequence[str] = (), notes: Sequence[str] = ()) -> str:
    """The markdown of one cell's details page. ``tradeoffs``: GROUP key -> the trade-off plot's
    path relative to the page; ``auditor_figures``: the auditors' pictures, likewise; ``notes``:
    lines under the title (the tuning of each method, bench/report/tuning.py, from the driver)."""
    first = tables[0]
    out = [f"# {heading(first.cell, first.rows)}", "",
           "Back to the [leaderboard](../leaderboard.md). Rows: original (doing nothing), retrain (the "
           f"target, gap 0 by construction), {FLOOR} (the reference retrain with another seed, audited "
           "like a method: the noise floor), then the methods by mean Avg Gap.", ""]
    out += [*notes, ""] if notes else []
    for t in tables:
        if len(tables) > 1:
            out += [f"## {heading(t.key, t.rows)}", ""]
        if t.composition is not None:
            out += [t.composition.sentence(), ""]
        out += verdict_table(t) + [""]
        broken = pairing_lines(t)
        out += [*broken, ""] if broken else []
        top = top_group_lines(t)
        out += [*top, ""] if top else []
        if t.key in tradeoffs:
            out += [f"![trade-off plot]({tradeoffs[t.key]})", ""]
        out += ["### Headline metrics", ""]
        out += metrics_table(t.rows, {k: s for k, s in specs.items() if s.headline}, t.order) + [""]
        out += ["### Every metric, diagnostics included", ""]
        out += metrics_table(t.rows, specs, t.order) + [""]
        out += ["### Per seed", ""] + per_seed_table(t, specs) + [""]
        sanity = sanity_table(t.rows, class_forgetting=parse_scenario(str(t.key[3])).kind == "class")
        out += ["### Sanity facts", "", *sanity, ""] if sanity else []
        flags = flag_notes(t.rows)
        out += ["### Flags (bench/report/flags.py)", "", *flags, ""] if flags else []
    if auditor_figures:
        out += ["## Figures the auditors drew", ""]
        out += [f"![{f.rsplit('/', 1)[-1]}]({f})" for f in auditor_figures] + [""]
    return "\n".join(out)
