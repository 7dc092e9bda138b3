"""The verdict against the noise floor (bench/report/verdict.py) on hand-made seeds with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bench.report.verdict import (
    one_sided_p,
    seeds_to_show_match,
    seeds_to_show_worse,
    top_group,
    tost_p,
    tost_power,
    verdict,
)

RNG = np.random.default_rng(15)


def seeds(values) -> dict[int, float]:
    return {i: float(v) for i, v in enumerate(values)}


FLOOR = seeds(2.0 + RNG.normal(0, 0.3, 40))


def test_equal_to_the_floor_over_many_seeds_matches_retrain():
    method = {s: v + RNG.normal(0, 0.1) for s, v in FLOOR.items()}
    v = verdict(method, FLOOR)
    assert v.n == 40 and v.margin == pytest.approx(np.mean(list(FLOOR.values())))
    assert v.p_match < 1e-6 and not v.worse
    assert v.label == "matches retrain" and v.seeds_sentence() == ""


def test_the_same_over_two_noisy_seeds_is_undecided_with_the_seeds_it_would_need():
    floor = {0: 2.0, 1: 2.4}
    method = {0: 2.9, 1: 1.9}  # d = +0.9, -0.5: mean +0.2, paired std 0.99
    v = verdict(method, floor)
    assert v.label == "undecided at 2 seeds"
    assert v.mean == pytest.approx(0.2) and v.sd == pytest.approx(math.sqrt(0.98))
    sentence = v.seeds_sentence()
    assert sentence.startswith("a difference of +0.20 (paired std 0.99) would need about ")
    assert f"about {v.seeds_worse} seeds to show it worse than retrain" in sentence
    assert f"about {v.seeds_match} seeds to show it within ±2.20" in sentence
    assert v.seeds_worse == seeds_to_show_worse(0.2, math.sqrt(0.98)) > 100  # a small effect


def test_ten_standard_errors_worse_is_worse_than_retrain():
    floor = {0: 2.0, 1: 2.2, 2: 1.9}
    d = np.array([-1.0, 0.0, 1.0])  # std 1, SE 1/sqrt(3)
    shift = 10 / math.sqrt(3)  # mean d = 10 SE
    method = {s: floor[s] + shift + d[s] for s in floor}
    v = verdict(method, floor)
    assert v.mean / (v.sd / math.sqrt(3)) == pytest.approx(10.0)
    assert v.p_worse == pytest.approx(stats.t.sf(10.0, 2))  # one-sided, 2 degrees of freedom
    assert v.label == "worse than retrain"


def test_worse_than_doing_nothing():
    floor, original = {0: 1.0, 1: 1.2, 2: 0.9}, {0: 3.0, 1: 3.1, 2: 2.9}
    method = {0: 6.0, 1: 6.5, 2: 5.9}
    v = verdict(method, floor, original)
    assert v.worse_than_nothing and v.label == "worse than retrain, worse than doing nothing"
    assert not verdict({0: 2.0, 1: 2.5, 2: 1.9}, floor, original).worse_than_nothing


def test_one_seed_cannot_be_tested():
    v = verdict({0: 9.0}, {0: 1.0}, {0: 2.0})
    assert v.label == "1 seed: no test" and math.isnan(v.p_worse) and v.seeds_sentence() == ""
    assert verdict({0: 1.0}, {}).label == "no floor"


def test_one_sided_and_tost_against_scipy_and_statsmodels():
    from statsmodels.stats.weightstats import ttost_paired

    a, b = RNG.normal(1.0, 1.0, 12), RNG.normal(0.8, 1.0, 12)
    assert one_sided_p(a - b, 0.0, "greater") == pytest.approx(stats.ttest_rel(a, b, alternative="greater").pvalue)
    assert tost_p(a - b, 1.5) == pytest.approx(ttost_paired(a, b, -1.5, 1.5)[0])
    # no spread: the mean decides alone
    assert one_sided_p(np.array([1.0, 1.0]), 0.0, "greater") == 0.0
    assert one_sided_p(np.array([0.0, 0.0]), 0.0, "greater") == 1.0


def test_seeds_needed_use_real_power_computations():
    assert seeds_to_show_worse(0.5, 1.0) == 27  # one-sided one-sample t, d = 0.5, α 0.05, power 0.8
    assert seeds_to_show_worse(3.0, 0.3) == 2
    assert seeds_to_show_worse(-1.0, 1.0) == math.inf
    # TOST power by simulation: true difference 0, std 1, margin 1, n = 12
    n, sims = 12, 20000
    d = RNG.normal(0.0, 1.0, (sims, n))
    m, se = d.mean(1), d.std(1, ddof=1) / math.sqrt(n)
    tc = stats.t.ppf(0.95, n - 1)
    simulated = np.mean(((m + 1) / se > tc) & ((1 - m) / se > tc))
    assert tost_power(n, 0.0, 1.0, 1.0) == pytest.approx(simulated, abs=0.02)
    need = seeds_to_show_match(0.0, 1.0, 1.0)
    assert tost_power(need, 0.0, 1.0, 1.0) >= 0.8 > tost_power(need - 1, 0.0, 1.0, 1.0)
    assert seeds_to_show_match(1.5, 1.0, 1.0) == math.inf  # outside the margin: never


def test_two_overlapping_methods_share_the_top_group():
    gaps = {"a": {0: 1.0, 1: 1.2, 2: 0.9}, "b": {0: 1.1, 1: 1.0, 2: 1.05}, "c": {0: 5.0, 1: 5.3, 2: 5.1}}
    top = top_group(gaps)
    assert top.best == "a" and top.members == {"a", "b"} and top.testable
    assert top.p_holm["c"] == pytest.approx(min(1.0, 2 * top.p_raw["c"]))  # Holm: smallest p x 2
    assert top.p_holm["b"] >= top.p_raw["b"]


def test_top_group_with_one_seed_claims_nothing():
    top = top_group({"a": {0: 1.0}, "b": {0: 2.0}})
    assert top.best == "a" and not top.testable and top.members == frozenset()
    assert top_group({}) is None
