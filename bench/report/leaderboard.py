"""The headline: ``results/<matrix>/leaderboard.md``, a page a person reads in a minute (docs/statistics.md).

First the like-with-like rankings across cells (bench/report/ranking.py), then per cell
(and request) one table of at most 8 columns: method, seeds, verdict against the noise
floor (bench/report/verdict.py), Avg Gap (mean ± std [95 % CI], the top group bold),
utility (TA - retrain's TA), forgetting (cMIA-AUC; its ideal is retrain's), cost (RTE as
% of retrain's training) and flags. Rows: original (doing nothing), retrain (the target),
``retrain (seed')`` (the floor), then the methods by mean Avg Gap. Everything else lives
on the cell's details page (bench/report/details.py), linked from its heading.

Links are relative; ``root`` is the path from the page's location to ``results/<matrix>/``
("" for the leaderboard itself, ``results/<matrix>/`` when it is published into a page of docs/, relative to that page).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.report import paths
from bench.report.analysis import Analysis, Table
from bench.report.details import reason
from bench.report.frame import done, heading
from bench.report.ranking import RankTable
from bench.report.roles import FLOOR, ORIGINAL, RETRAIN, YARDSTICKS
from bench.report.stats import fmt_stats, seed_stats
from bench.report.verdict import ALPHA

LEGEND = (
    "Each **verdict** pairs, seed by seed, a method's Avg Gap to retrain with that of "
    f"`{FLOOR}` (the reference retrain, another seed, audited like a method: what exact unlearning "
    f"scores). *worse than retrain*: one-sided paired t-test, α {ALPHA:g}; *matches retrain*: TOST "
    "within ± the floor's mean Avg Gap; else *undecided* (with the seeds needed); *worse than doing "
    "nothing*: above the original's Avg Gap. Avg Gap: mean ± std [95 % t-interval], **bold** the top "
    "group (not significantly worse than the lowest mean; paired, Holm). TA − retrain: utility gap "
    "(TA_rest when a class is forgotten); ≈R: ideal is retrain's; cost: unlearning time as % of "
    "retrain's training. Details pages: every metric, the tests, per-seed values, sanity facts, "
    "flags; docs/statistics.md: the tests' assumptions."
)


def _cost(t: Table, m: str) -> str:
    v = list(t.seeds(m, "m.rte_frac").values())
    if not v:
        return "–"
    pct = 100 * float(np.mean(v))
    return f"{pct:.0f} %" if pct >= 10 else f"{pct:.1f} %"


def flag_name(text: str) -> str:
    """A flag without its numbers: the text before its colon ("over-unlearning"), or, for a
    yardstick's fact ("retrain: FA 44.0 vs TA 51.0 beyond noise (SE 2.0)"), the fact itself."""
    head, _, rest = text.partition(":")
    if head in YARDSTICKS:
        rest = re.sub(r"\s*\([^)]*\)|(?<!of)\s[-+]?\d+(\.\d+)?(?=\s|$)", "", rest)  # keep "of 0.5"
        return f"{head}{rest}".strip()
    return re.sub(r"\s*\([^)]*\)", "", head).strip()


def _flags(t: Table, m: str) -> str:
    """Each flag's name and on how many seeds it was raised."""
    counts: dict[str, int] = {}
    for text in t.rows.loc[t.rows.method == m, "flags"] if "flags" in t.rows else []:
        for f in (text.split("\n") if isinstance(text, str) else []):
            if f:
                name = flag_name(f)
                counts[name] = counts.get(name, 0) + 1
    n = t.rows.loc[t.rows.method == m, "seed"].nunique()
    return ", ".join(k + (f" ({c}/{n} seeds)" if n > 1 else "") for k, c in counts.items()) or ""


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


def headline_table(t: Table) -> list[str]:
    util = t.utility or "TA"
    forget = t.forgetting
    fdig = 3 if forget and "AUC" in forget else 2
    head = ["method", "seeds", "verdict", "Avg Gap ↓", f"{util} − retrain", f"{forget or 'forgetting'} ≈R",
            "cost", "flags"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|---|---|---|---|---|"]
    top = t.top.members if t.top is not None else frozenset()
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
        gap = fmt_stats(seed_stats(t.gaps.get(m, {}).values()), 2, bold=m in top)
        if m == RETRAIN and t.utility:
            utility = fmt_stats(seed_stats(t.seeds(m, f"m.{t.utility}").values()), 2) + f" ({util})"
        else:
            utility = fmt_stats(seed_stats(t.utility_gap(m).values()), 2, signed=True)
        forgetting = fmt_stats(seed_stats(t.seeds(m, f"m.{forget}").values()), fdig) if forget else "–"
        lines.append(f"| {_label(m)} | {seeds} | {_verdict(t, m)} | {gap} | {utility} | {forgetting} | "
                     f"{_cost(t, m)} | {_flags(t, m)} |")
    return lines


def _cell_flags(t: Table) -> list[str]:
    """The names of the cell's flags on any seed (their texts are on the details page)."""
    texts = t.rows.cell_flags if "cell_flags" in t.rows else []
    return sorted({flag_name(f) for text in texts if isinstance(text, str) for f in text.split("\n") if f})


def table_notes(t: Table) -> list[str]:
    """Under a cell's table: the margin and top group, the cell's flags, the seeds-needed sentences."""
    notes = []
    if math.isfinite(t.margin):
        notes.append(f"Margin of *matches*: ±{t.margin:.2f} (the floor's mean Avg Gap).")
    else:
        notes.append(f"No `{FLOOR}` row: no verdict (a store written before the floor was audited; "
                     "rerun the matrix, resume adds it).")
    if t.top is not None and t.top.testable:
        notes.append(f"Top group: {', '.join(sorted(t.top.members))}.")
    elif t.top is not None:
        notes.append("1 seed: no test, so no verdict (–).")
    flags = _cell_flags(t)
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
    """``Cells: ...``, the parts every cell shares (data set, scenario) said once."""
    names = [heading(c, next(t for t in an.tables.values() if t.cell == c).rows).split(" · ") for c in cells]
    shared = [part for part in names[0] if all(part in n for n in names)] if len(names) > 1 else []
    rest = [" · ".join(p for p in n if p not in shared) for n in names]
    return "Cells" + (f" ({', '.join(shared)})" if shared else "") + ": " + "; ".join(rest) + "."


def ranking_table(i: int, r: RankTable, an: Analysis, root: str, files: Collection[str]) -> list[str]:
    cells = set(r.cells)
    tables = [t for t in an.tables.values() if t.cell in cells]
    testable = any(t.top is not None and t.top.testable for t in tables)
    n = len(tables)
    head = ["place", "method", "mean rank"] + (["top group", "matches retrain", "worse than doing nothing"]
                                               if testable else [])  # one seed: nothing to count
    lines = [f"### Ranking {i}: {len(r.cells)} cell{'s' * (len(r.cells) > 1)}, {len(r.methods)} rows", "",
             _cells_line(r.cells, an), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    pos = r.positions()
    for m in r.methods:
        counts = []
        if testable and m in (ORIGINAL, FLOOR):
            counts = ["–"] * 3
        elif testable:
            counts = [f"{sum(t.top is not None and m in t.top.members for t in tables)}/{n}",
                      f"{sum(t.verdicts[m].matches for t in tables if m in t.verdicts)}/{n}",
                      f"{sum(t.verdicts[m].worse_than_nothing for t in tables if m in t.verdicts)}/{n}"]
        lines.append("| " + " | ".join([pos[m], _label(m), f"{r.mean_rank[m]:.2f}", *counts]) + " |")
    notes = []
    if r.friedman is not None and math.isfinite(r.friedman[1]):
        chi, p = r.friedman
        notes.append(f"Friedman χ² = {chi:.2f} ({len(r.methods) - 1} df), p = {p:.3g}: "
                     + ("the ranks differ." if p < ALPHA else "no evidence that the ranks differ."))
    elif len(r.cells) < 2:
        notes.append("One cell: ranks within it, no test across cells.")
    if r.cd is not None:
        notes.append(f"Nemenyi critical difference {r.cd:.2f} (α {ALPHA:g}).")
    if not testable:
        notes.append("1 seed: no verdicts to count.")
    out = lines + [""] + ([" ".join(notes), ""] if notes else [])
    if paths.ranks(i) in files:
        out += [f"![rank diagram]({root}{paths.ranks(i)})", ""]
    return out


def overall(an: Analysis, root: str, files: Collection[str]) -> list[str]:
    if not an.rankings:
        return []
    out = ["## Ranking across cells", "",
           "Rows are ranked by mean Avg Gap within each cell (1 = closest to retrain; equal values share "
           "the average rank), and the ranks averaged. Each table covers exactly the cells it names, with "
           "every method that ran on all of them; raw Avg Gaps are never averaged across cells. Counts: "
           "in how many of its tables (cell x request) a method is in the top group, matches retrain, or "
           "is worse than doing nothing. Mean ranks closer than a table's Nemenyi critical difference "
           "are not significantly different (joined by a bar in its diagram).", ""]
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
        return "\n".join(out + ["No finished results in MLflow yet.", ""])
    out += [LEGEND, ""]
    out += overall(an, root, files)
    for key, t in an.tables.items():
        links = [f"[{name}]({root}{p})" for name, p in (("details", paths.details(t.cell)),
                                                          ("trade-off plot", paths.tradeoff(key))) if p in files]
        out += [f"## {heading(key, t.rows)}", ""] + ([" · ".join(links), ""] if links else [])
        out += headline_table(t) + [""]
        out += table_notes(t) + [""]
        if cell_lines and t.cell in cell_lines and t.cell not in said:
            said.add(t.cell)
            out += [*cell_lines[t.cell], ""]
    return "\n".join(out)
