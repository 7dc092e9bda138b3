"""The headline: ``results/<matrix>/leaderboard.md``, a page a person reads in a minute (docs/statistics.md).

First the like-with-like rankings across cells (bench/report/ranking.py), then per cell
(and request) one table of at most 8 columns: method, seeds, verdict against the noise
floor (bench/report/verdict.py), Avg Gap (mean ± std [95 % CI clipped to the metric's range], bold
for a method in the top group that is not worse than retrain), utility (TA - retrain's TA),
forgetting (cMIA-AUC; its ideal is retrain's), cost (RTE as % of retrain's training) and
flags (each named by what it measured and explained under the legend). Rows: original (doing
nothing), retrain (the target), ``retrain (seed')`` (the floor), then the methods by mean Avg
Gap. The yardsticks are reference rows: the rankings across cells place methods only.
Everything else lives on the cell's details page (bench/report/details.py), linked from its
heading.

Links are relative; ``root`` is the path from the page's location to ``results/<matrix>/``
("" for the leaderboard itself, ``results/<matrix>/`` when it is published into a page of docs/, relative to that page).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.metrics import NON_NEGATIVE, MetricSpec
from bench.report import paths
from bench.report.analysis import Analysis, Table
from bench.report.details import reason
from bench.report.flag_names import flag_name, legend, split
from bench.report.frame import done, heading
from bench.report.ranking import DIGITS, RankTable
from bench.report.roles import FLOOR, ORIGINAL, RETRAIN
from bench.report.stats import difference_bounds, fmt_stats, seed_stats
from bench.report.verdict import ALPHA

LEGEND = (
    "Each **verdict** pairs, seed by seed, a method's Avg Gap to retrain with that of "
    f"`{FLOOR}` (the reference retrain, another seed, audited like a method: what exact unlearning "
    f"scores). *worse than retrain*: one-sided paired t-test, α {ALPHA:g}; *matches retrain*: TOST "
    "within ± the floor's mean Avg Gap; else *undecided* (with the seeds needed); *worse than doing "
    "nothing*: above the original's Avg Gap. Avg Gap: mean ± std [95 % t-interval, clipped to the "
    "metric's range]. The *top group* of a table is relative: the methods not significantly worse "
    "than the one with the lowest mean (paired, Holm), which may all be worse than retrain; **bold** "
    "marks a top-group method whose verdict is not *worse than retrain*, so a table where every "
    "method is worse than retrain bolds nothing. TA − retrain: utility gap (TA_rest when a class is "
    "forgotten; retrain's own TA is under its table); ≈R: ideal is retrain's; cost: unlearning time "
    "as % of retrain's training. Details pages: every metric, the tests, per-seed values, sanity "
    "facts, flags in full; docs/statistics.md: the tests' assumptions."
)


def _cost(t: Table, m: str) -> str:
    v = list(t.seeds(m, "m.rte_frac").values())
    if not v:
        return "–"
    pct = 100 * float(np.mean(v))
    return f"{pct:.0f} %" if pct >= 10 else f"{pct:.1f} %"


def _flags(t: Table, m: str) -> str:
    """Each flag's name and on how many seeds it was raised."""
    counts: dict[str, int] = {}
    for text in t.rows.loc[t.rows.method == m, "flags"] if "flags" in t.rows else []:
        for name in dict.fromkeys(flag_name(f) for f in split(text)):
            counts[name] = counts.get(name, 0) + 1
    n = t.rows.loc[t.rows.method == m, "seed"].nunique()
    return ", ".join(k + (f" ({c}/{n} seeds)" if n > 1 else "") for k, c in counts.items()) or ""


def flag_names_shown(t: Table) -> set[str]:
    """Every flag name a table shows: its methods' and the cell's."""
    texts = [*(t.rows[c] for c in ("flags", "cell_flags") if c in t.rows)]
    texts = [text for column in texts for text in column]  # (t.rows.flags is pandas' own attribute)
    return {flag_name(f) for text in texts for f in split(text)}


def _label(m: str) -> str:
    return {ORIGINAL: "original (doing nothing)", RETRAIN: "retrain (target)"}.get(m, m)


def _verdict(t: Table, m: str) -> str:
    if m == RETRAIN:
        return "the target"
    if m == FLOOR:
        return "the floor"
    v = t.verdicts.get(m)
    if v is None or (v.n and not v.testable):  # one seed: the note under the table says why, once
        return "–"
    return v.label


def bold_rows(t: Table) -> frozenset[str]:
    """The rows the headline bolds: the top group's members whose verdict is not *worse than
    retrain* (the top group is relative to the methods present, so it may hold such methods)."""
    if t.top is None or not t.top.testable:
        return frozenset()
    return frozenset(m for m in t.top.members if not (m in t.verdicts and t.verdicts[m].worse))


def _bounds(specs: Mapping[str, MetricSpec] | None, metric: str | None) -> tuple[float, float]:
    spec = specs.get(metric) if specs and metric else None
    return spec.bounds if spec is not None else (-math.inf, math.inf)


def headline_table(t: Table, specs: Mapping[str, MetricSpec] | None = None) -> list[str]:
    """The cell's table; ``specs`` give each column's range (its intervals are clipped to it)."""
    util = t.utility or "TA"
    forget = t.forgetting
    fdig = 3 if forget and "AUC" in forget else 2
    head = ["method", "seeds", "verdict", "Avg Gap ↓", f"{util} − retrain", f"{forget or 'forgetting'} ≈R",
            "cost", "flags"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|---|---|---|---|---|"]
    bold = bold_rows(t)
    util_range = difference_bounds(_bounds(specs, util))
    for m in t.order:
        g = t.rows[t.rows.method == m]
        fin = done(g)
        if fin.empty:
            if not_applicable(g):
                continue  # named under the table (table_notes): a row of blanks says nothing
            why = reason(g, 200).removeprefix(f"{m} ")
            lines.append(f"| {_label(m)} | 0 | failed: {why[:70]} | | | | | |")
            continue
        failed = (g.status == "failed").sum()
        seeds = f"{fin.seed.nunique()}" + (f" ({failed} failed)" if failed else "")
        gap = fmt_stats(seed_stats(t.gaps.get(m, {}).values(), NON_NEGATIVE), 2, bold=m in bold)
        if m == RETRAIN:
            utility = "–"  # 0 by construction; its absolute value is under the table (table_notes)
        else:
            utility = fmt_stats(seed_stats(t.utility_gap(m).values(), util_range), 2, signed=True)
        forgetting = fmt_stats(seed_stats(t.seeds(m, f"m.{forget}").values(), _bounds(specs, forget)),
                               fdig) if forget else "–"
        lines.append(f"| {_label(m)} | {seeds} | {_verdict(t, m)} | {gap} | {utility} | {forgetting} | "
                     f"{_cost(t, m)} | {_flags(t, m)} |")
    return lines


def _cell_flags(t: Table) -> list[str]:
    """The names of the cell's flags on any seed (their texts are on the details page)."""
    texts = t.rows.cell_flags if "cell_flags" in t.rows else []
    return sorted({flag_name(f) for text in texts for f in split(text)})


def table_notes(t: Table, shared_flags: Collection[str] = ()) -> list[str]:
    """Under a cell's table: the margin and top group (no margin where one seed allows no test),
    the cell's flags but those every cell of the page has (``shared_flags``, said once above),
    the seeds-needed sentences."""
    notes = []
    if t.top is not None and not t.top.testable:
        notes.append("1 seed: no test, so no verdict (–).")
    elif math.isfinite(t.margin):
        notes.append(f"Margin of *matches*: ±{t.margin:.2f} (the floor's mean Avg Gap).")
    else:
        notes.append(f"No `{FLOOR}` row: no verdict (a store written before the floor was audited; "
                     "rerun the matrix, resume adds it).")
    if t.top is not None and t.top.testable:
        worse = sorted(m for m in t.top.members if m in t.verdicts and t.verdicts[m].worse)
        notes.append(f"Top group (not significantly worse than the lowest mean, {t.top.best}): "
                     f"{', '.join(sorted(t.top.members))}"
                     + (f"; of these worse than retrain, so not bold: {', '.join(worse)}" if worse else "")
                     + ".")
    if t.utility and (ta := seed_stats(t.seeds(RETRAIN, f"m.{t.utility}").values())).n:
        notes.append(f"Retrain's {t.utility} (the zero of {t.utility} − retrain): {fmt_stats(ta, 2, ci=False)}.")
    flags = [f for f in _cell_flags(t) if f not in shared_flags]
    if flags:
        notes.append("Cell flags: " + "; ".join(flags) + ".")
    skipped = [m for m in t.order if not_applicable(t.rows[t.rows.method == m])]
    if skipped:
        notes.append(f"n/a here (see details): {', '.join(skipped)}.")
    out = [" ".join(notes)]
    for m in t.order:
        v = t.verdicts.get(m)
        sentence = v.seeds_sentence() if v else ""
        if sentence:
            out.append(f"- {m}: {v.label}: {sentence}")
    return out


def not_applicable(g: pd.DataFrame) -> bool:
    """Every row of the method was skipped: it does not apply to the encoder."""
    return bool(len(g)) and bool((g.status == "skipped").all())


def _cells_line(cells: Sequence[tuple], an: Analysis) -> str:
    """``Cells: ...``, the parts every cell shares (data set, scenario) said once; a ranking over
    most of the page's cells names the ones it leaves out instead."""
    every = list(dict.fromkeys(t.cell for t in an.tables.values()))
    left = [c for c in every if c not in set(cells)]
    if len(cells) > 1 and len(left) < len(cells):
        gone = [heading(c, next(t for t in an.tables.values() if t.cell == c).rows).split(" · ")[1] for c in left]
        return f"Cells: all {len(every)}" + (f" but {'; '.join(gone)}" if gone else "") + "."
    names = [heading(c, next(t for t in an.tables.values() if t.cell == c).rows).split(" · ") for c in cells]
    shared = [part for part in names[0] if all(part in n for n in names)] if len(names) > 1 else []
    rest = [" · ".join(p for p in n if p not in shared) for n in names]
    return "Cells" + (f" ({', '.join(shared)})" if shared else "") + ": " + "; ".join(rest) + "."


def _reference_counts(r: RankTable, an: Analysis, m: str) -> list[str]:
    """In how many of the ranking's cells the method's mean Avg Gap (at the ranking's precision)
    is below the original's and at most the floor's: the yardsticks as reference lines."""
    out = []
    for ref, below in ((ORIGINAL, lambda a, b: a < b), (FLOOR, lambda a, b: a <= b)):
        if ref not in an.values:
            out.append("–")
            continue
        mine, theirs = dict(zip(r.values.index, r.values[m])), dict(zip(an.values.index, an.values[ref]))
        pairs = [(mine[c], round(theirs[c], DIGITS)) for c in r.cells if math.isfinite(theirs.get(c, math.nan))]
        out.append(f"{sum(below(a, b) for a, b in pairs)}/{len(pairs)}" if pairs else "–")
    return out


def ranking_table(i: int, r: RankTable, an: Analysis, root: str, files: Collection[str]) -> list[str]:
    cells = set(r.cells)
    tables = [t for t in an.tables.values() if t.cell in cells]
    testable = any(t.top is not None and t.top.testable for t in tables)
    n = len(tables)
    head = ["place", "method", "mean rank"]
    head += ["in top group", "matches retrain", "worse than doing nothing"] if testable else [
        "Avg Gap below the original's", "Avg Gap within the floor's"]  # one seed: no verdicts to count
    lines = [f"### Ranking {i}: {len(r.cells)} cell{'s' * (len(r.cells) > 1)}, {len(r.methods)} methods", "",
             _cells_line(r.cells, an), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    pos = r.positions()
    for m in r.methods:
        if testable:
            counts = [f"{sum(t.top is not None and m in t.top.members for t in tables)}/{n}",
                      f"{sum(t.verdicts[m].matches for t in tables if m in t.verdicts)}/{n}",
                      f"{sum(t.verdicts[m].worse_than_nothing for t in tables if m in t.verdicts)}/{n}"]
        else:
            counts = _reference_counts(r, an, m)
        lines.append("| " + " | ".join([pos[m], m, f"{r.mean_rank[m]:.2f}", *counts]) + " |")
    notes = []
    if r.friedman is not None and math.isfinite(r.friedman[1]):
        chi, p = r.friedman
        notes.append(f"Friedman χ² = {chi:.2f} ({len(r.methods) - 1} df), p = {p:.3g}: "
                     + ("the ranks differ." if p < ALPHA else "no evidence that the ranks differ."))
    elif len(r.cells) < 2:
        notes.append("One cell: ranks within it, no test across cells.")
    if r.cd is not None:
        notes.append(f"Nemenyi critical difference {r.cd:.2f} (α {ALPHA:g}).")
    out = lines + [""] + ([" ".join(notes), ""] if notes else [])
    if paths.ranks(i) in files:
        out += [f"![rank diagram]({root}{paths.ranks(i)})", ""]
    return out


def overall(an: Analysis, root: str, files: Collection[str]) -> list[str]:
    if not an.rankings:
        return []
    testable = any(t.top is not None and t.top.testable for t in an.tables.values())
    counts = ("Counts: in how many of its tables (cell x request) a method is in the (relative) top group, "
              "matches retrain, or is worse than doing nothing. " if testable else "")
    out = ["## Ranking across cells", "",
           "Methods are ranked by mean Avg Gap within each cell (1 = closest to retrain; equal values "
           "share the average rank), and the ranks averaged. The yardsticks are references, never ranked: "
           f"the original (doing nothing) and `{FLOOR}` (the floor) appear as counts against them. Each "
           "table covers exactly the cells it names, with every method that ran on all of them; raw Avg "
           f"Gaps are never averaged across cells. {counts}Mean ranks closer than a table's Nemenyi "
           "critical difference are not significantly different "
           "(joined by a bar in its diagram).", ""]
    if not testable:
        out += ["1 seed: no verdicts to count; the last two columns count, without a test, the cells where the "
                "method's mean Avg Gap is below the original's and at most the floor's.", ""]
    for i, r in enumerate(an.rankings, 1):
        out += ranking_table(i, r, an, root, files)
    return out


def leaderboard_markdown(an: Analysis, header: Sequence[str] = (), root: str = "",
                         files: Collection[str] = (), cell_lines: Mapping[tuple, Sequence[str]] | None = None) -> str:
    """The headline page. ``header``: lines under the title (the tuning line of
    bench/report/tuning.py, passed in by the driver); ``files``: the report's files (paths
    relative to ``results/<matrix>/``), the only ones it links to; ``cell_lines``: per cell,
    lines under its first table (tuned vs default Avg Gap)."""
    said: set[tuple] = set()
    out = [f"# Leaderboard: {an.title}", ""]
    out += [*header, ""] if header else []
    if not an.tables:
        return "\n".join(out + ["No finished rows yet.", ""])
    out += [LEGEND, ""]
    names = set().union(*(flag_names_shown(t) for t in an.tables.values()))
    if names:
        out += ["Flags on this page (their numbers are on the details pages):", "", *legend(names), ""]
    shared = set.intersection(*(set(_cell_flags(t)) for t in an.tables.values())) if len(an.tables) > 1 else set()
    if shared:
        out += ["Cell flags of every cell on this page: " + "; ".join(sorted(shared)) + ".", ""]
    out += overall(an, root, files)
    for key, t in an.tables.items():
        links = [f"[{name}]({root}{p})" for name, p in (("details", paths.details(t.cell)),
                                                          ("trade-off plot", paths.tradeoff(key))) if p in files]
        out += [f"## {heading(key, t.rows)}", ""] + ([" · ".join(links), ""] if links else [])
        out += headline_table(t, an.specs) + [""]
        out += table_notes(t, shared) + [""]
        if cell_lines and t.cell in cell_lines and t.cell not in said:
            said.add(t.cell)
            out += [*cell_lines[t.cell], ""]
    return "\n".join(out)
