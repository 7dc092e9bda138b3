"""A flag's name (what was measured, without its numbers) and what it means, for every page that
shows flags: a page explains each flag it shows, from a legend generated from those flags.

Flags are stored as text on the rows (bench/report/flags.py computes them when the row is
written), so a store keeps the wording of the code that wrote it. Rows written before the
"over-unlearning" flag was split by what it measured carry that one name; :func:`rewrite`
restates them in the current wording, so no page shows the old name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bench.report.flags import LEGACY_OVER_UNLEARNING, RETAIN_ERASED, TA_AT_PRIVACY, TA_DROP, UTILITY_LOSS, Z
from bench.report.roles import YARDSTICKS

_LEGACY = re.compile(rf"{LEGACY_OVER_UNLEARNING}: retrain-level privacy \((?P<privacy>[^)]*)\) "
                     r"only with (?P<damage>.*)")
_LEGACY_RETAIN = re.compile(r"retain signal (?P<change>MIA-AUC_Dr \S+ -> \S+)")


def rewrite(text: str) -> list[str]:
    """One stored flag in the current wording: itself, or for a legacy "over-unlearning" flag one
    flag per damage it names (erased retain signal; TA far below retrain's)."""
    m = _LEGACY.fullmatch(text)
    if not m:
        return [text]
    out = []
    for damage in m["damage"].split("; "):
        retain = _LEGACY_RETAIN.match(damage)
        if retain:
            out.append(f"{RETAIN_ERASED}: {retain['change']} (within {Z:g} SE of 0.5), at retrain-level "
                       f"privacy ({m['privacy']})")
        else:
            out.append(f"{TA_AT_PRIVACY}: {damage} ({m['privacy']})")
    return out


def split(texts: object) -> list[str]:
    """The flags of one stored tag (newline-separated), in the current wording."""
    if not isinstance(texts, str):
        return []
    return [g for f in texts.split("\n") if f for g in rewrite(f)]


def flag_name(text: str) -> str:
    """A flag without its numbers: the text before its colon ("utility loss"), or, for a
    yardstick's fact ("retrain: FA 44.0 vs TA 51.0 beyond noise (SE 2.0)"), the fact itself."""
    head, _, rest = text.partition(":")
    if head in YARDSTICKS:
        rest = re.sub(r"\s*\([^)]*\)|(?<!of)\s[-+]?\d+(\.\d+)?(?=\s|$)", "", rest)  # keep "of 0.5"
        return f"{head}{rest}".strip()
    return re.sub(r"\s*\([^)]*\)", "", head).strip()


_SE = f"{Z:g} standard errors"
_EXPLAINED: list[tuple[re.Pattern, str]] = [
    (re.compile("no membership signal"),
     f"the original's calibrated attack (cMIA-AUC, D_f vs D_t) is within {_SE} of 0.5: no membership "
     "of D_f is measurable before unlearning, so the privacy columns rank nothing and leave Avg Gap."),
    (re.compile("uncalibrated auditors cannot separate members"),
     f"the original's probe accuracy on D_f (FA) is not above its TA by {_SE}, or retrain's EMIA is not "
     "above the original's: the uncalibrated attacks do not tell members from non-members here."),
    (re.compile("attacks at chance on the original"),
     f"an attack's fit (its balanced accuracy on D_r vs D_t) on the original is within {_SE} of 50 %: "
     "its D_f column (EMIA, CMIA, ...) says where a threshold fell on noise, and leaves Avg Gap."),
    (re.compile(r"retrain (?P<a>\S+) vs (?P<b>\S+) beyond noise"),
     "retrain, which never trained on D_f, scores D_f ({a}) and unseen D_t ({b}) more than "
     f"{_SE} apart: on this metric D_f does not look like unseen data even after exact unlearning "
     "(a D_f unlike D_t, or an attack threshold that treats them differently), so {a} near retrain's "
     "is the target, not a sign that D_f looks unseen."),
    (re.compile(r"retrain cMIA-AUC not within noise of 0\.5"),
     f"retrain's calibrated attack separates D_f from D_t by more than {_SE} although retrain never "
     "saw D_f: the two sets differ for reasons other than membership."),
    (re.compile(re.escape(RETAIN_ERASED)),
     "the method reached retrain-level privacy on D_f (cMIA-AUC within "
     f"{_SE} of retrain's; EMIA without cMIA-AUC) while the retain set's own membership signal "
     f"(MIA-AUC_Dr, D_r vs D_t, uncalibrated) fell to within {_SE} of 0.5 where the original's was "
     "above it: every training image now looks unseen, not only D_f. A method that never sees D_f "
     "can raise it. Tuning counts such a trial as failed."),
    (re.compile(re.escape(TA_AT_PRIVACY)),
     f"the method reached retrain-level privacy on D_f only with a probe TA more than {TA_DROP:g} "
     "points below retrain's. Tuning counts such a trial as failed."),
    (re.compile(r"did nothing"),
     "the method's output is the model it started from: every tensor of its state dict is unchanged "
     "(weights), or every audit metric it shares with the original is exactly the original's "
     "(metrics). Its scores are the original's, not the result of unlearning."),
    (re.compile(re.escape(UTILITY_LOSS)),
     f"probe TA more than {TA_DROP:g} points below retrain's (without a retrain-level privacy the "
     "original lacked)."),
]


def explain(name: str) -> str | None:
    """What the flag ``name`` (:func:`flag_name`'s) measured; None for a name this code does not know."""
    for pattern, text in _EXPLAINED:
        m = pattern.fullmatch(name)
        if m:
            return text.format(**m.groupdict())
    return None


def legend(names: Iterable[str]) -> list[str]:
    """Markdown lines explaining each flag name shown on a page (sorted, each once)."""
    unknown = "a flag this version of the report does not know; its full text is on the details page."
    return [f"- ⚑ *{name}*: {explain(name) or unknown}" for name in sorted(set(names))]
