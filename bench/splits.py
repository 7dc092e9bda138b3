"""Forget scenarios and the train/val/forget/retain/test split (docs/protocol.md).

Splits are pure functions of (labels, scenario, seed, sizes): numpy's PCG64 with
an explicit seed gives the same indices on any machine. D_v, D_f, D_r (train
indices) are pairwise disjoint and cover the chosen members; D_t indexes the
test set, so it is disjoint from all of them by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

# Streams of the seeded generator, so changing one use never shifts another.
_SUBSET, _SPLIT, _TEST = 11, 23, 37


@dataclass(frozen=True)
class Scenario:
    kind: str  # "random" | "class" | "sequential"
    frac: float = 0.0
    cls: int = -1
    k: int = 1

    def __str__(self) -> str:
        if self.kind == "class":
            return f"class:{self.cls}"
        if self.kind == "sequential":
            return f"sequential:{self.k}x{self.frac:g}"
        return f"random:{self.frac:g}"


def parse_scenario(spec: str) -> Scenario:
    """``random:<frac>``, ``class:<c>`` or ``sequential:<k>x<frac>``; ValueError names the fix."""
    kind, _, arg = spec.partition(":")
    try:
        if kind == "random":
            frac = float(arg)
            if not 0.0 < frac < 1.0:
                raise ValueError
            return Scenario("random", frac=frac)
        if kind == "class":
            return Scenario("class", cls=int(arg))
        if kind == "sequential":
            m = re.fullmatch(r"(\d+)x([0-9.eE-]+)", arg)
            if not m:
                raise ValueError
            k, frac = int(m.group(1)), float(m.group(2))
            if k < 1 or not 0.0 < k * frac < 1.0:
                raise ValueError
            return Scenario("sequential", frac=frac, k=k)
    except ValueError:
        pass
    raise ValueError(
        f"bad forget scenario '{spec}': use random:<frac> with 0 < frac < 1, class:<c>, "
        "or sequential:<k>x<frac> with k*frac < 1"
    )


@dataclass
class Split:
    val: np.ndarray  # train indices never trained on (D_v)
    forget: np.ndarray  # D_f (all requests together for sequential scenarios)
    retain: np.ndarray  # D_r = members \ D_f
    test: np.ndarray  # test-set indices (D_t)
    requests: list[np.ndarray] = field(default_factory=list)  # D_f per deletion request

    @property
    def members(self) -> np.ndarray:
        """D \\ D_v: what the original model trains on."""
        return np.sort(np.concatenate([self.forget, self.retain]))

    def after_request(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """(forgotten so far, retain) after requests 0..r of a sequential scenario."""
        gone = np.sort(np.concatenate(self.requests[: r + 1]))
        return gone, np.setdiff1d(self.members, gone)


def _balanced(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices, as equal per class as the counts allow, in random order."""
    if n >= len(labels):
        return rng.permutation(len(labels))
    classes = np.unique(labels)
    per = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    take: list[int] = []
    quota = n // len(classes)
    for c in classes:
        take.extend(per[c][:quota])
    rest = np.setdiff1d(np.arange(len(labels)), np.asarray(take, dtype=np.int64))
    take.extend(rng.permutation(rest)[: n - len(take)])
    return rng.permutation(np.asarray(take, dtype=np.int64))


def make_split(
    train_y: np.ndarray,
    test_y: np.ndarray,
    scenario: Scenario,
    seed: int,
    n_val: int,
    n_train: int | None = None,
    n_test: int | None = None,
) -> Split:
    """The cell's split. ``n_train`` members (+ ``n_val``) form a fixed class-balanced subset
    (the same for every seed); the seed picks D_v and D_f inside it."""
    train_y = np.asarray(train_y)
    test_y = np.asarray(test_y)
    pool = np.arange(len(train_y))
    if n_train is not None:
        pool = np.sort(_balanced(train_y, n_train + n_val, np.random.default_rng([_SUBSET])))
    if n_val >= len(pool):
        raise ValueError(f"n_val={n_val} leaves no training members ({len(pool)} images)")
    rng = np.random.default_rng([_SPLIT, seed])
    perm = rng.permutation(pool)
    val, members = np.sort(perm[:n_val]), perm[n_val:]
    if scenario.kind == "class":
        forget = members[train_y[members] == scenario.cls]
        if len(forget) == 0:
            raise ValueError(f"class {scenario.cls} has no training samples")
        requests = [np.sort(forget)]
    else:
        n_f = max(1, int(round(scenario.frac * len(members))))
        requests = [np.sort(members[i * n_f : (i + 1) * n_f]) for i in range(scenario.k)]
        forget = np.concatenate(requests)
    forget = np.sort(forget)
    retain = np.setdiff1d(members, forget)
    test = np.arange(len(test_y))
    if n_test is not None and n_test < len(test_y):
        test = np.sort(_balanced(test_y, n_test, np.random.default_rng([_TEST])))
    return Split(val=val, forget=forget, retain=retain, test=test, requests=requests)
