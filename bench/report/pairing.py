"""Which rows of a table pair by seed: those computed from the same checkpoints.

A method's Avg Gap on seed s is compared with the floor's on seed s because both come from
the same original, retrain and reference models. Rows that reach one table from different
model caches (another machine, a retrained cache) break that premise, so a row pairs with the
floor's row of its seed only when their ``checkpoints`` (json: role -> sha256, written by the
runner) agree on :data:`ROLES`; a role either row did not record (older stores) is no evidence
either way, so such rows pair as before.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from bench.report.roles import FLOOR

ROLES = ("original", "retrain", "reference-0")


def checkpoints(text: Any) -> dict[str, str]:
    """A row's ``checkpoints`` column as role -> sha256 (empty hashes dropped; {} when absent)."""
    if not isinstance(text, str) or not text:
        return {}
    try:
        out = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return {k: str(v) for k, v in out.items() if v} if isinstance(out, dict) else {}


def mismatch(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """The roles of :data:`ROLES` both recorded with different hashes."""
    return [r for r in ROLES if r in a and r in b and a[r] != b[r]]


def unpaired(rows: pd.DataFrame) -> dict[str, dict[int, str]]:
    """method -> seed -> why, for the rows of one table (its latest per method and seed) that do
    not pair with the floor's row of their seed."""
    if "checkpoints" not in rows:
        return {}
    floor = {int(r.seed): checkpoints(r.checkpoints) for _, r in rows[rows.method == FLOOR].iterrows()}
    out: dict[str, dict[int, str]] = {}
    for _, r in rows[rows.method != FLOOR].iterrows():
        seed = int(r.seed)
        differ = mismatch(checkpoints(r.checkpoints), floor.get(seed, {}))
        if differ:
            why = ", ".join(f"{role} {checkpoints(r.checkpoints)[role][:12]} vs the floor's {floor[seed][role][:12]}"
                            for role in differ)
            out.setdefault(str(r.method), {})[seed] = f"computed from other checkpoints ({why})"
    return out
