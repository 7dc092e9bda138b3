"""Like-with-like ranking across cells (bench/report/ranking.py) on hand-made tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.report.ranking import comparable_sets, nemenyi_cd, rank_table

NAN = math.nan


def test_a_method_on_one_of_three_cells_never_ranks_beside_those_on_three():
    values = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [2.0, 1.0, 4.0], "sup_only": [NAN, NAN, 0.5],
                           "original": [5.0, 5.0, 5.0]}, index=["c1", "c2", "c3"])
    sets = comparable_sets(values, joiners=["original"])
    assert sets[0] == (["c1", "c2", "c3"], ["a", "b", "original"])
    assert sets[1] == (["c3"], ["a", "b", "sup_only", "original"])  # its own table, over its own cell
    assert len(sets) == 2  # the joiner defines no table of its own
    first = rank_table(values.loc[sets[0][0], sets[0][1]])
    assert "sup_only" not in first.methods and first.cells == ["c1", "c2", "c3"]


def test_ties_are_ties_not_alphabetical():
    values = pd.DataFrame({"zeta": [1.0, 2.0], "alpha": [1.0, 2.0], "mid": [3.0, 1.0], "last": [4.0, 4.0]},
                          index=["c1", "c2"])
    r = rank_table(values)
    assert r.ranks.loc["c1", "zeta"] == r.ranks.loc["c1", "alpha"] == 1.5  # average ranks
    assert r.ranks.loc["c2", "zeta"] == 2.5 and r.ranks.loc["c2", "mid"] == 1.0
    assert r.mean_rank["zeta"] == r.mean_rank["alpha"] == r.mean_rank["mid"] == 2.0
    assert r.positions() == {"zeta": "1=", "alpha": "1=", "mid": "1=", "last": "4"}
    # equal at the printed precision (2 decimals) is a tie too
    near = rank_table(pd.DataFrame({"a": [0.0561], "b": [0.0559], "c": [1.0]}, index=["c1"]))
    assert near.positions() == {"a": "1=", "b": "1=", "c": "3"}


def test_friedman_matches_scipy_and_needs_three_methods_and_two_cells():
    rng = np.random.default_rng(0)
    values = pd.DataFrame(rng.normal(size=(5, 4)), columns=list("abcd"))
    r = rank_table(values)
    expected = stats.friedmanchisquare(*(values[c].round(2) for c in values.columns))
    assert r.friedman == pytest.approx((expected.statistic, expected.pvalue))
    assert rank_table(values[["a", "b"]]).friedman is None
    assert rank_table(values.iloc[:1]).friedman is None


def test_nemenyi_from_four_cells_with_demsar_critical_difference():
    # Demšar (2006) table 5(a): q_0.05 = 2.569 for k = 4, so CD = 2.569 sqrt(4 * 5 / (6 N))
    assert nemenyi_cd(4, 10) == pytest.approx(2.569 * math.sqrt(20 / 60), abs=2e-3)
    rng = np.random.default_rng(1)
    values = pd.DataFrame(rng.normal(size=(4, 4)), columns=list("abcd"))
    r = rank_table(values)
    assert r.cd == pytest.approx(nemenyi_cd(4, 4)) and set(r.nemenyi.columns) == set("abcd")
    assert rank_table(values.iloc[:3]).nemenyi is None  # three cells: no diagram
