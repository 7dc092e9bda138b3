"""The per-seed sanity-facts table on a hand-made frame with known standard errors."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from bench.report.flags import auc_se, pct_diff_se
from bench.report.sanity import Fact, mean_fact, sanity_table, seed_facts

SIZES = json.dumps({"forget": 200, "retain": 1800, "test": 2000})


def frame(rows: list[tuple[str, int, float, float, float]], sizes: str = SIZES) -> pd.DataFrame:
    """(method, seed, cMIA-AUC, FA, TA) rows as results_frame() returns them."""
    return pd.DataFrame([
        {"method": m, "seed": s, "status": "reference" if m == "original" else "finished",
         "m.cMIA-AUC": auc, "m.FA": fa, "m.TA": ta, "sizes": sizes, "sizes_backfilled": ""}
        for m, s, auc, fa, ta in rows
    ])


def test_facts_use_the_flags_standard_errors():
    df = frame([("original", 0, 0.72, 50.0, 50.0), ("retrain", 0, 0.51, 44.0, 51.0)])
    o, r = (df.iloc[i] for i in (0, 1))
    facts = seed_facts(o, r, {"forget": 200, "test": 2000})
    assert facts["retrain FA - TA"].value == pytest.approx(-7.0)
    assert facts["retrain FA - TA"].se == pytest.approx(pct_diff_se(44.0, 200, 51.0, 2000))
    assert facts["original cMIA-AUC"].z == pytest.approx(0.22 / auc_se(0.72, 200, 2000))
    assert math.isnan(seed_facts(o, r, None)["retrain FA - TA"].se)  # no sizes, no SE


def test_mean_of_independent_draws():
    m = mean_fact([Fact(-6.0, 3.0, 0.0), Fact(-3.0, 4.0, 0.0)])
    assert m.value == pytest.approx(-4.5) and m.se == pytest.approx(2.5)  # sqrt(9 + 16) / 2
    assert m.z == pytest.approx(-1.8)


def test_table_marks_facts_beyond_two_standard_errors():
    df = frame([("original", 0, 0.72, 50.0, 51.0), ("retrain", 0, 0.50, 36.0, 51.0),
                ("original", 1, 0.52, 50.0, 51.0), ("retrain", 1, 0.50, 51.0, 51.0),
                ("finetune", 0, 0.60, 50.0, 51.0)])
    lines = sanity_table(df)
    head = lines[2]
    assert head == ("| seed | original cMIA-AUC (fact: > 0.5 by 2 SE) | retrain cMIA-AUC (fact: 0.5 ± 2 SE) "
                    "| retrain FA - TA (fact: 0 ± 2 SE) | original FA - TA (for comparison) |")
    assert "⚑ marks a seed where that fact fails" in lines[0]  # one meaning in every column
    seed0, seed1, mean = lines[4:7]
    z = -15.0 / pct_diff_se(36.0, 200, 51.0, 2000)  # -4.0: a retrain that lost 15 points
    assert seed0.split(" | ")[3] == f"-15.0 ({z:+.1f} SE) ⚑"
    assert "⚑" not in seed0.split(" | ")[1]  # 0.72 is far above 0.5
    assert seed1.split(" | ")[1].endswith("⚑")  # 0.52 is within noise of 0.5: no signal
    assert "⚑" not in seed1.split(" | ")[2] and "⚑" not in seed1.split(" | ")[3]
    assert "⚑" not in seed0.split(" | ")[4]  # the original's FA - TA is shown, never judged
    assert mean.startswith("| mean | 0.620 ")


def test_class_forgetting_and_missing_sizes():
    df = frame([("original", 0, 0.72, 50.0, 51.0), ("retrain", 0, 0.50, 0.0, 51.0)], sizes="")
    lines = sanity_table(df, class_forgetting=True)
    assert "retrain" not in lines[2]  # D_f is a class retrain never saw: nothing to compare
    assert lines[2] == "| seed | original cMIA-AUC (fact: > 0.5 by 2 SE) | original FA - TA (for comparison) |"
    assert lines[4] == "| 0 | 0.720 | -1.0 |"  # values without SEs
    assert sanity_table(frame([("finetune", 0, 0.6, 50.0, 50.0)])) == []
