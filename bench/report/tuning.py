"""What the leaderboard says about tuning, from the stored rows alone.

A row that ran with tuned values carries the ``bench.tuned`` tag (the results frame's
``tuned`` column): JSON of what tuning gave it (bench/tuned.py ``notes``): the values used,
those the matrix overrode, and the study's trial count, tuning seeds, default and best
objective and its spread. An untuned row has it empty. Nothing here imports the runner:
these are pure functions of the results frame, so the report rebuilds them from MLflow.

Tuned against default, per method and cell: the tuned and default rows of the same cell are
paired by evaluation seed (only where both were computed from the same checkpoints, when the
rows record them), each seed's Avg Gap the mean over the scenario's requests as the
leaderboard averages them. The test is the verdict's paired t-test (bench/report/verdict.py,
``one_sided_p``), two-sided (twice the smaller one-sided p), Holm-corrected over the cell's
tuned methods (statsmodels), at the verdict's alpha: *tuned better*, *tuned worse*, or *no
difference*. A method whose tuning chose values other than its defaults but that is not
better on the evaluation seeds is said not to have transferred.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.report.frame import GAP, done, latest  # the rows the tables show
from bench.report.roles import YARDSTICKS
from bench.report.verdict import ALPHA, one_sided_p


def note(text: Any) -> dict[str, Any] | None:
    """A row's tuning note, or None for an untuned row (empty, missing or unreadable tag)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        out = json.loads(text)
    except json.JSONDecodeError:
        return None
    return out if isinstance(out, dict) else None


def seeds_of(n: Mapping[str, Any]) -> tuple[int, ...]:
    """A note's tuning seeds (``seeds``; rows tuned before tuning scored several cells carry one ``seed``)."""
    seeds = n.get("seeds")
    if seeds is None:
        seeds = [n["seed"]] if n.get("seed") is not None else []
    return tuple(int(s) for s in seeds)


def tune_budget(tags: Mapping[str, str]) -> tuple[tuple[int, ...], int]:
    """A tune invocation's (tuning seeds, trials) from its parent run's tags (``bench.tune.seeds``,
    or ``bench.tune.seed`` for a tune on one seed), as :func:`sources` returns budgets."""
    text = tags.get("bench.tune.seeds") or tags.get("bench.tune.seed") or ""
    try:
        seeds = tuple(int(s) for s in text.split(",")) if text else ()
        return seeds, int(tags.get("bench.tune.trials", -1))
    except ValueError:
        return (), -1


def is_tuned(df: pd.DataFrame) -> pd.Series:
    """Per row: did it run with tuned values."""
    if "tuned" not in df:
        return pd.Series(False, index=df.index)
    return df["tuned"].map(lambda t: note(t) is not None)


def _budget(trials: int, seeds: tuple[int, ...]) -> str:
    return (f"{trials} trials x {len(seeds)} tuning seed{'' if len(seeds) == 1 else 's'} "
            f"({', '.join(map(str, seeds))})")


def header(df: pd.DataFrame) -> str:
    """``tuned: N trials x S tuning seeds (a, b) per method`` (with the methods left at their
    defaults) when the rows the tables show ran tuned, else ``defaults, untuned``."""
    if df.empty:
        return "defaults, untuned"
    shown = latest(df[~df.method.isin(YARDSTICKS)])
    budgets: dict[tuple[int, tuple[int, ...]], set[str]] = {}
    untuned: set[tuple[str, str]] = set()  # (method, encoder) of rows shown at defaults
    for _, row in shown.iterrows():
        n = note(row.get("tuned"))
        if n is None:
            untuned.add((row.method, str(row.get("encoder", ""))))
        else:
            budgets.setdefault((int(n["trials"]), seeds_of(n)), set()).add(row.method)
    if not budgets:
        return "defaults, untuned"
    everywhere = set().union(*budgets.values())
    # a method tuned on some encoders but shown at its defaults on another is named with it
    left = sorted({m for m, _ in untuned if m not in everywhere}) + sorted(
        f"{m} on {e}" for m, e in untuned if m in everywhere)
    if len(budgets) == 1:
        (trials, seeds), = budgets
        text = f"tuned: {_budget(trials, seeds)} per method"
    else:
        text = "tuned: " + "; ".join(f"{_budget(t, s)} ({', '.join(sorted(m))})"
                                     for (t, s), m in sorted(budgets.items()))
    return text + (f"; at defaults: {', '.join(left)}" if left else "")


def _per_seed(rows: pd.DataFrame) -> tuple[dict[int, float], dict[int, str]]:
    """seed -> Avg Gap (the mean over requests, as the leaderboard averages a sequential
    scenario's) of one method's newest rows, and seed -> the checkpoints they were computed from."""
    rows = done(latest(rows))
    if rows.empty or GAP not in rows:
        return {}, {}
    gap = pd.to_numeric(rows[GAP], errors="coerce")
    ok = rows[gap.notna() & np.isfinite(gap.astype(float))]
    gaps = {int(s): float(v) for s, v in gap[ok.index].groupby(ok.seed).mean().items()}
    if "checkpoints" not in ok:
        return gaps, {}
    marks = ok.sort_values("start_time") if "start_time" in ok else ok
    return gaps, {int(s): str(c) for s, c in zip(marks.seed, marks.checkpoints) if isinstance(c, str) and c}


@dataclass(frozen=True)
class Comparison:
    """One method in one cell: its tuned against its default Avg Gap on the evaluation seeds."""

    method: str
    tuned: dict[int, float]  # seed -> Avg Gap of the tuned rows
    default: dict[int, float]  # seed -> Avg Gap of the default rows
    paired: tuple[int, ...]  # seeds with both, computed from the same checkpoints
    diff: float  # mean of tuned - default over the paired seeds
    p: float  # two-sided paired t (nan below two paired seeds)
    p_holm: float  # Holm-adjusted over the cell's tuned methods
    note: dict[str, Any]  # the newest tuned row's tuning note
    alpha: float = ALPHA

    @property
    def outcome(self) -> str:
        """``tuned better`` / ``tuned worse`` / ``no difference`` (or why there is no test: a study
        that chose nothing ran the defaults, whose rows are the default rows)."""
        if self.none_passed:
            return "ran at its defaults"
        if not self.default:
            return "default not run"
        if len(self.paired) < 2:
            return f"no test ({len(self.paired)} paired seed{'' if len(self.paired) == 1 else 's'})"
        if self.p_holm < self.alpha:
            return "tuned better" if self.diff < 0 else "tuned worse"
        return "no difference"

    @property
    def defaults_won(self) -> bool:
        """The defaults were the best trial on the tuning cells (tuning kept them)."""
        best, default = self.note.get("best"), self.note.get("default")
        return best is not None and default is not None and float(best) == float(default)

    @property
    def none_passed(self) -> bool:
        """Every trial failed on the tuning cells: no values were chosen, the method ran at its defaults."""
        return not self.note.get("values") and self.note.get("complete") == 0

    @property
    def kept_defaults(self) -> bool:
        """Tuning left the method at its defaults (they won, or no trial passed)."""
        return self.defaults_won or self.none_passed

    @property
    def transfer(self) -> str:
        """What tuning did on the evaluation seeds, in words ("" when there is nothing to say)."""
        if self.none_passed:
            return "every trial failed on the tuning cells, so it ran at its defaults"
        if self.defaults_won:
            return "the defaults were the best trial on the tuning cells"
        if self.outcome == "tuned better":
            return "tuning transferred to the evaluation seeds"
        if self.outcome in ("no difference", "tuned worse"):
            return "tuning did not transfer to the evaluation seeds"
        return ""

    def test_text(self) -> str:
        if len(self.paired) < 2:
            return f"{len(self.paired)} paired seed{'' if len(self.paired) == 1 else 's'}: no test"
        return (f"tuned - default {self.diff:+.2f} over {len(self.paired)} paired seeds, paired t p "
                f"{self.p:.3g}, Holm {self.p_holm:.3g}")


def compare(sub: pd.DataFrame) -> list[Comparison]:
    """Per tuned method of one cell's rows (all invocations): tuned against default Avg Gap,
    paired by seed, two-sided paired t, Holm over the methods compared."""
    from statsmodels.stats.multitest import multipletests

    if sub.empty or "tuned" not in sub:
        return []
    flags = is_tuned(sub)
    found = []
    for method in sorted(set(sub.method[flags])):
        mine = sub[sub.method == method]
        tuned_rows, default_rows = mine[flags[mine.index]], mine[~flags[mine.index]]
        t, t_marks = _per_seed(tuned_rows)
        d, d_marks = _per_seed(default_rows)
        common = tuple(sorted(s for s in t.keys() & d.keys()
                              if s not in t_marks or s not in d_marks or t_marks[s] == d_marks[s]))
        diffs = np.array([t[s] - d[s] for s in common])
        p = (min(1.0, 2 * min(one_sided_p(diffs, 0.0, "less"), one_sided_p(diffs, 0.0, "greater")))
             if len(diffs) >= 2 else math.nan)
        newest = latest(tuned_rows)
        newest = newest.sort_values("start_time") if "start_time" in newest else newest
        found.append((method, t, d, common, float(diffs.mean()) if len(diffs) else math.nan, p,
                      note(newest.iloc[-1].tuned) or {}))
    tested = [i for i, f in enumerate(found) if math.isfinite(f[5])]
    holm = dict(zip(tested, multipletests([found[i][5] for i in tested], alpha=ALPHA, method="holm")[1])) \
        if tested else {}
    return [Comparison(m, t, d, c, diff, p, float(holm.get(i, math.nan)), n)
            for i, (m, t, d, c, diff, p, n) in enumerate(found)]


def _mean(v: Mapping[int, float]) -> float:
    return float(np.mean(list(v.values()))) if v else math.nan


def _fmt(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.2f}"


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _values(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items()))


def sources(df: pd.DataFrame) -> tuple[set[str], set[tuple[tuple[int, ...], int]]]:
    """What the tuning lines rest on, for the provenance table: the parent runs of the rows they
    read (each tuned method's newest tuned and newest default rows) and the (tuning seeds, trials)
    budgets of the tunes that chose the values (compare :func:`tune_budget`)."""
    if df.empty or "tuned" not in df or "parent_run" not in df:
        return set(), set()
    flags = is_tuned(df)
    mine = df[df.method.isin(set(df.method[flags]))]
    rows = pd.concat([latest(mine[flags[mine.index]]), latest(mine[~flags[mine.index]])])
    budgets = {(seeds_of(n), int(n["trials"])) for n in map(note, df.tuned[flags]) if n}
    return set(rows.parent_run), budgets


TEST = f"paired t over evaluation seeds, two-sided, Holm over the tuned methods, α {ALPHA:g}"


def summary_lines(sub: pd.DataFrame) -> list[str]:
    """One line under a cell's headline table: each tuned method's tuned vs default Avg Gap and
    the paired outcome, naming the methods whose tuning did not transfer."""
    parts = []
    for c in compare(sub):
        said = "" if c.transfer in ("", "tuning transferred to the evaluation seeds") else f" ({c.transfer})"
        parts.append(f"{c.method} {_fmt(_mean(c.tuned))} vs {_fmt(_mean(c.default)) if c.default else 'not run'}, "
                     f"{c.outcome}{said}")
    return [f"Tuned vs default Avg Gap ↓ ({TEST}; the details page has the tuning): {'; '.join(parts)}."
            ] if parts else []


def method_lines(sub: pd.DataFrame) -> list[str]:
    """For one cell's rows (all invocations): per tuned method, the tuned vs default Avg Gap on
    the evaluation seeds with the paired test's outcome, the values used and, from its tuning
    cells, the defaults' and best objective (each tuning seed's Avg Gap of the best), the
    objective's spread over the trials (how much tuning matters) and the tuning time."""
    lines = []
    for c in compare(sub):
        n = c.note
        default = (f"default {_fmt(_mean(c.default))} ({_seeds(len(c.default))})" if c.default else
                   "default not run on these cells (run the matrix without --tuned)")
        used = _values(n.get("values", {})) or "none"
        over = n.get("overridden") or {}
        over_text = f" (the matrix overrides tuned {_values(over)})" if over else ""
        spread = n.get("objective") or {}
        spread_text = (f"min {_fmt(spread.get('min'))}, IQR {_fmt(spread.get('q25'))}-{_fmt(spread.get('q75'))}, "
                       f"max {_fmt(spread.get('max'))}" if spread else "no complete trial")
        per = n.get("best_gaps") or {}
        per_text = f" ({', '.join(f'seed {k} {_fmt(v)}' for k, v in sorted(per.items()))})" if per else ""
        seeds = seeds_of(n)
        outcome = c.outcome if not c.default else f"{c.outcome} ({c.test_text()})"
        transfer = f"; {c.transfer}" if c.transfer else ""
        lines.append(
            f"- {c.method}: Avg Gap tuned {_fmt(_mean(c.tuned))} ({_seeds(len(c.tuned))}) vs {default}: "
            f"{outcome}{transfer}; values {used}{over_text}. "
            f"Tuning cells (seed{'' if len(seeds) == 1 else 's'} {', '.join(map(str, seeds))}; {n.get('trials')} "
            f"trials, {n.get('failed', 0)} failed; objective: mean Avg Gap over the tuning cells): "
            f"defaults {'failed' if n.get('default', 0) is None else _fmt(n.get('default'))}, "
            f"best {_fmt(n.get('best'))}{per_text}; objective over trials "
            f"{spread_text}; tuning took {_duration(float(n.get('wall_s', 0.0)))}")
    if not lines:
        return []
    return [f"Tuning (Avg Gap ↓; `python -m bench tune`; tuned vs default: {TEST}):", *lines]
