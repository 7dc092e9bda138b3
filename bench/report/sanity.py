"""The sanity facts (docs/metrics.md), seed by seed, as the leaderboard prints them under each cell.

The flags (bench/report/flags.py) say *when* a fact fails; this table shows every fact's value on
every seed and how far it sits from its ideal in standard errors, so a reader can judge
"within noise" without trusting a threshold. Standard errors need the audit split sizes,
which the runner stores on each row (tag ``bench.sizes``); rows written before that get them
from ``python -m bench.backfill --matrix <name>`` (outside this room: it rebuilds splits), which
marks them (tag ``bench.sizes_backfilled``).

Facts per seed (SE as in bench/report/flags.py: Hanley-McNeil for an AUC, pooled two-proportion
for FA - TA):

- original cMIA-AUC: above 0.5 by at least 2 SE (the calibrated attack sees membership);
- retrain cMIA-AUC: within 2 SE of 0.5 (D_f are non-members for it);
- retrain FA - TA: within 2 SE of 0 (judged in standard errors, as the flags do, not in points);
- original FA - TA: shown for comparison. Retrain and original share D_f, so a D_f that is
  hard (or easy) for both moves both.

Each column's header states its fact, and ⚑ means one thing everywhere: that fact fails on
that seed. The mean row averages the seeds; its SE is sqrt(sum SE_i^2) / n (independent D_f
draws).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from bench.report.flags import Z, above_noise, auc_se, beyond_noise, pct_diff_se
from bench.report.roles import ORIGINAL, RETRAIN

SIZES_TAG = "bench.sizes"
BACKFILLED_TAG = "bench.sizes_backfilled"


@dataclass(frozen=True)
class Fact:
    value: float
    se: float  # NaN without split sizes
    ideal: float  # the value it should have; z is the distance from it in SE

    @property
    def z(self) -> float:
        return (self.value - self.ideal) / self.se if self.se > 0 else math.nan


def parse_sizes(text: object) -> dict[str, int] | None:
    """The ``bench.sizes`` tag ({"forget": n, "retain": n, "test": n}), or None."""
    if not isinstance(text, str) or not text:
        return None
    sizes = json.loads(text)
    return sizes if {"forget", "test"} <= set(sizes) else None


def _metric(row: pd.Series | None, key: str) -> float:
    if row is None or f"m.{key}" not in row:
        return math.nan
    v = pd.to_numeric(row[f"m.{key}"], errors="coerce")
    return float(v) if pd.notna(v) else math.nan


def seed_facts(orig: pd.Series | None, retrain: pd.Series | None,
               sizes: Mapping[str, int] | None) -> dict[str, Fact]:
    """The four facts of one seed (missing metrics are left out)."""
    nf, nt = (sizes["forget"], sizes["test"]) if sizes else (0, 0)
    out = {}
    for who, row in (("original", orig), ("retrain", retrain)):
        auc = _metric(row, "cMIA-AUC")
        if math.isfinite(auc):
            out[f"{who} cMIA-AUC"] = Fact(auc, auc_se(auc, nf, nt) if sizes else math.nan, 0.5)
    for who, row in (("retrain", retrain), ("original", orig)):
        fa, ta = _metric(row, "FA"), _metric(row, "TA")
        if math.isfinite(fa) and math.isfinite(ta):
            se = pct_diff_se(fa, nf, ta, nt) if sizes else math.nan
            out[f"{who} FA - TA"] = Fact(fa - ta, se, 0.0)
    return out


def mean_fact(facts: list[Fact]) -> Fact:
    """Mean over seeds; SE of the mean of independent draws."""
    n = len(facts)
    se = math.sqrt(sum(f.se ** 2 for f in facts)) / n
    return Fact(sum(f.value for f in facts) / n, se, facts[0].ideal)


def _verdict(name: str, f: Fact) -> str:
    """' ⚑' when the column's fact (FACTS) fails; '' when it holds or is shown for comparison only."""
    if math.isnan(f.z) or name == "original FA - TA":
        return ""
    d = f.value - f.ideal
    holds = above_noise(d, f.se) if name == "original cMIA-AUC" else not beyond_noise(d, f.se)
    return "" if holds else " ⚑"


def _fmt(name: str, f: Fact | None) -> str:
    if f is None:
        return "–"
    digits = 3 if "AUC" in name else 1
    sign = "+" if "FA" in name else ""
    z = "" if math.isnan(f.z) else f" ({f.z:+.1f} SE)"
    return f"{f.value:{sign}.{digits}f}{z}{_verdict(name, f)}"


COLUMNS = ("original cMIA-AUC", "retrain cMIA-AUC", "retrain FA - TA", "original FA - TA")
FACTS = {  # the fact each column checks, as its header states it
    "original cMIA-AUC": f"original cMIA-AUC (fact: > 0.5 by {Z:g} SE)",
    "retrain cMIA-AUC": f"retrain cMIA-AUC (fact: 0.5 ± {Z:g} SE)",
    "retrain FA - TA": f"retrain FA - TA (fact: 0 ± {Z:g} SE)",
    "original FA - TA": "original FA - TA (for comparison)",
}


def sanity_table(sub: pd.DataFrame, class_forgetting: bool = False) -> list[str]:
    """Markdown lines: one row per seed and a mean row, for one cell (one request).

    ``sub`` holds the latest finished row per (method, seed). Class forgetting skips the
    retrain facts (D_f is a class D_r lacks; D_t is not its like), as the flags do."""
    done = sub[sub.status.isin(("finished", "reference"))] if "status" in sub else sub
    per_seed: dict[int, dict[str, Fact]] = {}
    backfilled = False
    for seed, g in done.groupby("seed"):
        rows = {r.method: r for _, r in g[g.method.isin((ORIGINAL, RETRAIN))].iterrows()}
        sizes = None
        for r in rows.values():
            sizes = sizes or parse_sizes(r.get("sizes"))
            backfilled |= str(r.get("sizes_backfilled", "")) == "1"
        facts = seed_facts(rows.get(ORIGINAL), None if class_forgetting else rows.get(RETRAIN), sizes)
        if facts:
            per_seed[int(seed)] = facts
    cols = [c for c in COLUMNS if any(c in f for f in per_seed.values())]
    if not cols:
        return []
    lines = ["Sanity facts (bench/report/sanity.py): each value with its distance from the "
             "ideal in standard errors; each header states its column's fact, and ⚑ marks a seed where "
             "that fact fails. The mean row's SE is that of a mean of independent draws."
             + (" Split sizes backfilled from the matrix's splits." if backfilled else ""), "",
             "| seed | " + " | ".join(FACTS[c] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    for seed, facts in sorted(per_seed.items()):
        lines.append(f"| {seed} | " + " | ".join(_fmt(c, facts.get(c)) for c in cols) + " |")
    if len(per_seed) > 1:
        means = {}
        for c in cols:
            vals = [f[c] for f in per_seed.values() if c in f]
            if len(vals) == len(per_seed):
                means[c] = mean_fact(vals)
        lines.append("| mean | " + " | ".join(_fmt(c, means.get(c)) for c in cols) + " |")
    return lines
