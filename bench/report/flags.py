"""Cell-level sanity flags from the rows' metrics (the sanity facts of docs/metrics.md): when to distrust a column.

A pure function of metric tables and split sizes, so it is tested on hand-made
tables and recomputed identically anywhere. "Within noise" always means within
``Z`` standard errors:

- an AUC's standard error is Hanley & McNeil's (1982) with the two split sizes;
- a difference of two percentages uses the pooled two-proportion standard error.

Flags (a flag is a finding, not an error; pages show each by name with a legend, bench/report/flag_names.py):

- cell ``no membership signal``: the original's cMIA-AUC - 0.5 < Z SE. The cell's
  privacy columns (:data:`PRIVACY_METRICS`) then rank nothing.
- cell ``uncalibrated auditors cannot separate members``: the original's FA - TA
  or retrain's EMIA - the original's EMIA is not above noise (an original that
  memorised its members has FA >= TA and EMIA below retrain's; otherwise the run must say so). Not for
  class forgetting.
- cell ``attacks at chance``: an attack's fit (balanced accuracy, D_r vs D_t) on
  the original is within noise of 50 %; its D_f column (EMIA, CMIA, ...) then
  reflects where a threshold fell on noise, not forgetting.
- cell ``retrain: ...``: retrain's FA not within noise of TA, its EMIA / CMIA on
  D_f not within noise of the same attack's rate on D_t, or its cMIA-AUC not
  within noise of 0.5. Skipped for class forgetting, where D_f is a class D_r
  lacks and D_t is not its like.
- method ``erased the retain set's membership signal``: privacy at or beyond retrain's
  (cMIA-AUC no more than Z SE above retrain's; EMIA if the cell has no cMIA-AUC), where the
  original was not, with the retain set's own membership signal (MIA-AUC_Dr) erased to within
  noise of 0.5 while the original's is above noise: every training image now looks unseen,
  not only D_f (a method that never sees D_f can raise it).
- method ``TA far below retrain's at retrain-level privacy``: the same privacy reached with TA
  more than :data:`TA_DROP` points below retrain's.
- method ``utility loss``: TA more than TA_DROP below retrain's otherwise (also
  where the original already sat at retrain-level privacy: nothing to remove).
- method ``did nothing (weights)``: its state dict equals the model's it started from,
  tensor for tensor (measured by the runner, passed as ``unchanged``); else ``did nothing
  (metrics)``: every audit metric it shares with the original (not cost columns,
  :data:`COST_METRICS`) equals the original's exactly. Its scores are the original's, not
  the method's.

The two method flags of retrain-level privacy (erased retain signal, TA far below) are what
tuning counts as over-unlearning (:func:`is_over_unlearning`): a trial so flagged fails.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

Z = 2.0  # standard errors that count as "beyond noise"
TA_DROP = 5.0  # points of probe TA below retrain's that count as "far below"
PRIVACY_METRICS = frozenset({  # membership columns: they rank nothing without a signal
    "EMIA", "EMIA_Dt", "EMIA_AUC", "EMIA_fit", "EMIA_head", "EMIA_head_AUC", "EMIA_head_fit",
    "CMIA", "CMIA_Dt", "CMIA_fit", "CMIA_entropy", "CMIA_entropy_fit", "CMIA_mentropy",
    "CMIA_mentropy_fit", "cMIA-AUC", "cMIA-AUC_loss", "MIA-AUC", "MIA-AUC_Dr", "align_Df",
    "align_gap",
})

COST_METRICS = frozenset({"rte_s", "rte_frac", "peak_mem_mb", "avg_gap", "avg_gap_all"})  # not audits

Metrics = Mapping[str, float]
RETAIN_ERASED = "erased the retain set's membership signal"
TA_AT_PRIVACY = "TA far below retrain's at retrain-level privacy"
UTILITY_LOSS = "utility loss"
LEGACY_OVER_UNLEARNING = "over-unlearning"  # the one name rows logged before the split carry


def is_over_unlearning(text: str) -> bool:
    """A method flag that reached retrain-level privacy only by damage (a failed tuning trial)."""
    return text.startswith((RETAIN_ERASED, TA_AT_PRIVACY, LEGACY_OVER_UNLEARNING))


def auc_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUC from ``n_pos`` and ``n_neg`` samples."""
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc))
    return math.sqrt(max(var, 0.0) / (n_pos * n_neg))


def pct_diff_se(p1: float, n1: int, p2: float, n2: int) -> float:
    """Pooled standard error (in points) of the difference of two percentages."""
    p = (p1 * n1 + p2 * n2) / (100.0 * (n1 + n2))
    return 100.0 * math.sqrt(max(p * (1 - p), 0.0) * (1 / n1 + 1 / n2))


@dataclass
class CellFlags:
    cell: list[str] = field(default_factory=list)
    methods: dict[str, list[str]] = field(default_factory=dict)


def _has(m: Metrics, *keys: str) -> bool:
    return all(k in m and math.isfinite(m[k]) for k in keys)


def above_noise(d: float, se: float) -> bool:
    """``d`` at least Z standard errors above 0 (a signal)."""
    return d >= Z * se


def beyond_noise(d: float, se: float) -> bool:
    """``d`` more than Z standard errors away from 0, either way."""
    return abs(d) > Z * se


def _auc_signal(m: Metrics, key: str, n_pos: int, n_test: int) -> tuple[bool, float]:
    """(AUC above noise of 0.5, its SE)."""
    se = auc_se(m[key], n_pos, n_test)
    return above_noise(m[key] - 0.5, se), se


def _cell(orig: Metrics, retrain: Metrics, n: Mapping[str, int],
          class_forgetting: bool) -> list[str]:
    nf, nt = n["forget"], n["test"]
    out = []
    if _has(orig, "cMIA-AUC"):
        ok, se = _auc_signal(orig, "cMIA-AUC", nf, nt)
        if not ok:
            out.append(f"no membership signal: original cMIA-AUC {orig['cMIA-AUC']:.3f} is within "
                       f"{Z:g} SE ({se:.3f}) of 0.5; privacy columns rank nothing")
    weak = []
    if _has(orig, "FA", "TA"):
        d, se = orig["FA"] - orig["TA"], pct_diff_se(orig["FA"], nf, orig["TA"], nt)
        if d <= Z * se:
            weak.append(f"original FA-TA {d:+.1f} (SE {se:.1f})")
    if _has(orig, "EMIA") and _has(retrain, "EMIA"):
        d, se = retrain["EMIA"] - orig["EMIA"], pct_diff_se(retrain["EMIA"], nf, orig["EMIA"], nf)
        if d <= Z * se:
            weak.append(f"EMIA retrain-original {d:+.1f} (SE {se:.1f})")
    if weak and not class_forgetting:  # D_f is a class there, not a member sample D_t is like
        out.append("uncalibrated auditors cannot separate members: " + ", ".join(weak))
    chance = _at_chance(orig, n)
    if chance:
        out.append("attacks at chance on the original (their D_f columns measure noise): "
                   + ", ".join(chance))
    if class_forgetting:
        return out
    for a, b in (("FA", "TA"), ("EMIA", "EMIA_Dt"), ("CMIA", "CMIA_Dt")):
        if _has(retrain, a, b):
            d, se = retrain[a] - retrain[b], pct_diff_se(retrain[a], nf, retrain[b], nt)
            if beyond_noise(d, se):
                out.append(f"retrain: {a} {retrain[a]:.1f} vs {b} {retrain[b]:.1f} beyond noise "
                           f"(SE {se:.1f})")
    if _has(retrain, "cMIA-AUC"):
        se = auc_se(retrain["cMIA-AUC"], nf, nt)
        if beyond_noise(retrain["cMIA-AUC"] - 0.5, se):
            out.append(f"retrain: cMIA-AUC {retrain['cMIA-AUC']:.3f} not within noise of 0.5 "
                       f"(SE {se:.3f})")
    return out


def _chance_fits(orig: Metrics, n: Mapping[str, int]) -> dict[str, float]:
    """Attack fits on the original's D_r vs D_t within noise of a coin flip: key -> 2 SE."""
    nr, nt = n["retain"], n["test"]
    balanced = min(nr, nt)  # the SVC trains on equal classes
    sizes = {"EMIA_fit": (nr, nt), "EMIA_head_fit": (nr, nt), "CMIA_fit": (balanced, balanced),
             "CMIA_entropy_fit": (balanced, balanced), "CMIA_mentropy_fit": (balanced, balanced)}
    out = {}
    for key, (n1, n2) in sizes.items():
        if _has(orig, key):
            se = 25.0 * math.sqrt(1 / n1 + 1 / n2)  # balanced accuracy's SE at 50 %
            if orig[key] - 50.0 < Z * se:
                out[key] = Z * se
    return out


def _at_chance(orig: Metrics, n: Mapping[str, int]) -> list[str]:
    """Attacks whose fit on the original's D_r vs D_t is within noise of a coin flip."""
    return [f"{k} {orig[k]:.1f} ({Z:g} SE {two_se:.1f})" for k, two_se in _chance_fits(orig, n).items()]


def noisy_metrics(orig: Metrics, n: Mapping[str, int]) -> set[str]:
    """Privacy metrics that measure noise in this cell, left out of Avg Gap: cMIA-AUC without a
    membership signal on the original, and each attack whose fit on the original is at chance
    (its threshold then lands anywhere, and |m - m_retrain| would rank methods by that noise)."""
    out = {k.removesuffix("_fit") for k in _chance_fits(orig, n)}
    if _has(orig, "cMIA-AUC") and not _auc_signal(orig, "cMIA-AUC", n["forget"], n["test"])[0]:
        out.add("cMIA-AUC")
    return out


def _privacy_reached(m: Metrics, retrain: Metrics, n: Mapping[str, int]) -> tuple[bool, str] | None:
    """Privacy at or beyond retrain's level, and how it was judged; None if not measurable."""
    nf, nt = n["forget"], n["test"]
    if _has(m, "cMIA-AUC") and _has(retrain, "cMIA-AUC"):
        a, r = m["cMIA-AUC"], retrain["cMIA-AUC"]
        se = math.hypot(auc_se(a, nf, nt), auc_se(r, nf, nt))
        return a - r <= Z * se, f"cMIA-AUC {a:.3f} vs retrain {r:.3f}"
    if _has(m, "EMIA") and _has(retrain, "EMIA"):
        e, r = m["EMIA"], retrain["EMIA"]
        return r - e <= Z * pct_diff_se(e, nf, r, nf), f"EMIA {e:.1f} vs retrain {r:.1f}"
    return None


def _method(m: Metrics, orig: Metrics, retrain: Metrics, n: Mapping[str, int]) -> list[str]:
    ta_low = _has(m, "TA") and _has(retrain, "TA") and m["TA"] < retrain["TA"] - TA_DROP
    erased = None
    if _has(m, "MIA-AUC_Dr") and _has(orig, "MIA-AUC_Dr"):
        alive, _ = _auc_signal(m, "MIA-AUC_Dr", n["retain"], n["test"])
        was, _ = _auc_signal(orig, "MIA-AUC_Dr", n["retain"], n["test"])
        if was and not alive:
            erased = f"MIA-AUC_Dr {orig['MIA-AUC_Dr']:.3f} -> {m['MIA-AUC_Dr']:.3f} (within {Z:g} SE of 0.5)"
    if not (ta_low or erased):
        return []
    reached = _privacy_reached(m, retrain, n)
    already = _privacy_reached(orig, retrain, n)  # no signal to remove: nothing was "reached"
    ta = f"TA {m['TA']:.1f} vs retrain {retrain['TA']:.1f}" if ta_low else ""
    if reached is not None and reached[0] and not (already is not None and already[0]):
        out = [f"{RETAIN_ERASED}: {erased}, at retrain-level privacy ({reached[1]})"] if erased else []
        return out + ([f"{TA_AT_PRIVACY}: {ta} ({reached[1]})"] if ta_low else [])
    return [f"{UTILITY_LOSS}: {ta}"] if ta_low else []


def did_nothing(m: Metrics, orig: Metrics, weights_unchanged: bool) -> list[str]:
    """The method's output is the original: by its weights where the runner compared them,
    else by every shared audit metric being identical (a method may change weights the
    audits never read)."""
    if weights_unchanged:
        return ["did nothing (weights): every tensor of its state dict equals the model it started from"]
    shared = [k for k in m if k not in COST_METRICS and _has(m, k) and _has(orig, k)]
    if shared and all(m[k] == orig[k] for k in shared):
        return [f"did nothing (metrics): all {len(shared)} audit metrics equal the original's"]
    return []


def cell_flags(methods: Mapping[str, Metrics], original: Metrics, retrain: Metrics,
               sizes: Mapping[str, int], class_forgetting: bool = False,
               unchanged: Collection[str] = ()) -> CellFlags:
    """Flags of one cell (one request): cell-level ones, and each method's own.

    ``sizes`` holds the audit split sizes ("forget", "retain" members, "test"); ``unchanged``
    names the methods whose weights the runner found identical to their starting model's.
    """
    return CellFlags(
        cell=_cell(original, retrain, sizes, class_forgetting),
        methods={name: did_nothing(m, original, name in unchanged) + _method(m, original, retrain, sizes)
                 for name, m in methods.items()},
    )
