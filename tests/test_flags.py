"""bench/report/flags.py on hand-made metric tables, and how the leaderboard shows the flags."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.report.details import flag_notes
from bench.report.flag_names import explain, flag_name, rewrite
from bench.report.flags import auc_se, cell_flags, is_over_unlearning, pct_diff_se

SIZES = {"forget": 500, "retain": 2000, "test": 2000}
RETRAIN = {"TA": 50.0, "FA": 50.5, "EMIA": 40.0, "EMIA_Dt": 41.0, "CMIA": 30.0, "CMIA_Dt": 31.0,
           "cMIA-AUC": 0.50, "MIA-AUC_Dr": 0.58}
ORIGINAL = {"TA": 50.0, "FA": 60.0, "EMIA": 30.0, "cMIA-AUC": 0.79, "MIA-AUC_Dr": 0.58}


def flags_of(methods=None, original=ORIGINAL, retrain=RETRAIN, sizes=SIZES, **kw):
    return cell_flags(methods or {}, original, retrain, sizes, **kw)


def test_hanley_mcneil_at_chance_matches_mann_whitney_null():
    n1, n2 = 300, 700
    assert auc_se(0.5, n1, n2) == pytest.approx(math.sqrt((n1 + n2 + 1) / (12 * n1 * n2)))
    assert auc_se(0.9, n1, n2) < auc_se(0.5, n1, n2)


def test_pct_diff_se():
    assert pct_diff_se(50.0, 100, 50.0, 100) == pytest.approx(100 * math.sqrt(0.25 * 0.02))


def test_healthy_cell_has_no_flags():
    f = flags_of({"good": {"TA": 49.0, "cMIA-AUC": 0.51, "MIA-AUC_Dr": 0.57}})
    assert f.cell == [] and f.methods == {"good": []}


def test_no_membership_signal():
    se = auc_se(0.52, 100, 100)
    assert 0.02 < 2 * se  # 0.52 is within noise with 100 + 100 samples
    f = flags_of(original={**ORIGINAL, "cMIA-AUC": 0.52}, sizes={**SIZES, "forget": 100, "test": 100})
    assert any(x.startswith("no membership signal") and "rank nothing" in x for x in f.cell)


def test_ta_collapse_at_retrain_level_privacy():
    f = flags_of({"ga": {"TA": 43.0, "cMIA-AUC": 0.48, "MIA-AUC_Dr": 0.57}})
    assert f.methods["ga"] == ["TA far below retrain's at retrain-level privacy: TA 43.0 vs retrain 50.0 "
                               "(cMIA-AUC 0.480 vs retrain 0.500)"]
    assert is_over_unlearning(f.methods["ga"][0])


def test_erased_retain_signal_is_named_by_what_was_measured():
    # the measured case: retain signal 0.58 -> 0.49 at retrain-level forget AUC
    f = flags_of({"ft": {"TA": 49.0, "cMIA-AUC": 0.48, "MIA-AUC_Dr": 0.49}})
    assert f.methods["ft"] == ["erased the retain set's membership signal: MIA-AUC_Dr 0.580 -> 0.490 "
                               "(within 2 SE of 0.5), at retrain-level privacy (cMIA-AUC 0.480 vs retrain 0.500)"]
    assert is_over_unlearning(f.methods["ft"][0]) and not is_over_unlearning("utility loss: TA 1 vs retrain 9")


def test_both_damages_are_two_flags():
    f = flags_of({"ga": {"TA": 40.0, "cMIA-AUC": 0.48, "MIA-AUC_Dr": 0.49}})
    assert [flag_name(x) for x in f.methods["ga"]] == ["erased the retain set's membership signal",
                                                       "TA far below retrain's at retrain-level privacy"]


def test_legacy_over_unlearning_rows_are_restated_by_what_they_measured():
    old = ("over-unlearning: retrain-level privacy (cMIA-AUC 0.536 vs retrain 0.507) only with "
           "TA 40.0 vs retrain 50.0; retain signal MIA-AUC_Dr 0.594 -> 0.503 (within noise of 0.5)")
    assert rewrite(old) == [
        "TA far below retrain's at retrain-level privacy: TA 40.0 vs retrain 50.0 (cMIA-AUC 0.536 vs retrain 0.507)",
        "erased the retain set's membership signal: MIA-AUC_Dr 0.594 -> 0.503 (within 2 SE of 0.5), at "
        "retrain-level privacy (cMIA-AUC 0.536 vs retrain 0.507)"]
    assert is_over_unlearning(old)
    assert rewrite("utility loss: TA 1.0 vs retrain 9.0") == ["utility loss: TA 1.0 vs retrain 9.0"]


def test_every_flag_the_code_raises_is_explained():
    texts = [*flags_of({"a": {"TA": 40.0, "cMIA-AUC": 0.48, "MIA-AUC_Dr": 0.49},
                        "b": {"TA": 30.0, "cMIA-AUC": 0.75}}).methods.values()]
    bad_retrain = {**RETRAIN, "FA": 70.0, "EMIA": 10.0, "CMIA": 90.0, "cMIA-AUC": 0.7}
    cell = flags_of(original={"TA": 50.0, "FA": 50.0, "EMIA": 30.0, "cMIA-AUC": 0.5, "EMIA_fit": 50.0},
                    retrain=bad_retrain).cell
    names = {flag_name(f) for f in [*cell, *(x for t in texts for x in t)]}
    assert names == {"no membership signal", "uncalibrated auditors cannot separate members",
                     "attacks at chance on the original", "retrain FA vs TA beyond noise",
                     "retrain EMIA vs EMIA_Dt beyond noise", "retrain CMIA vs CMIA_Dt beyond noise",
                     "retrain cMIA-AUC not within noise of 0.5", "erased the retain set's membership signal",
                     "TA far below retrain's at retrain-level privacy", "utility loss"}
    assert all(explain(n) for n in names)
    assert "CMIA_Dt" in explain("retrain CMIA vs CMIA_Dt beyond noise")
    assert explain("something new") is None


def test_retain_signal_erasure_needs_an_original_signal():
    f = flags_of({"ga": {"TA": 49.0, "cMIA-AUC": 0.48, "MIA-AUC_Dr": 0.49}},
                 original={**ORIGINAL, "MIA-AUC_Dr": 0.505})
    assert f.methods["ga"] == []


def test_utility_loss_without_privacy_is_not_over_unlearning():
    f = flags_of({"bad": {"TA": 30.0, "cMIA-AUC": 0.75}})
    assert f.methods["bad"] == ["utility loss: TA 30.0 vs retrain 50.0"]


def test_ta_collapse_in_a_cell_without_signal_is_utility_loss():
    no_signal = {**ORIGINAL, "cMIA-AUC": 0.50}
    f = flags_of({"ga": {"TA": 40.0, "cMIA-AUC": 0.49}}, original=no_signal)
    assert f.methods["ga"] == ["utility loss: TA 40.0 vs retrain 50.0"]


def test_privacy_judged_on_emia_without_calibrated_attack():
    no_cmia = {k: v for k, v in RETRAIN.items() if k != "cMIA-AUC"}
    f = flags_of({"ga": {"TA": 40.0, "EMIA": 45.0}}, retrain=no_cmia)
    assert f.methods["ga"][0].startswith("TA far below retrain's at retrain-level privacy: TA 40.0 vs retrain "
                                         "50.0 (EMIA 45.0")


def test_retrain_sanity_facts():
    bad = {**RETRAIN, "FA": 60.0, "EMIA": 20.0, "cMIA-AUC": 0.60}
    f = flags_of(retrain=bad)
    text = "\n".join(f.cell)
    assert "retrain: FA 60.0 vs TA 50.0" in text
    assert "retrain: EMIA 20.0 vs EMIA_Dt 41.0" in text
    assert "retrain: cMIA-AUC 0.600" in text
    assert "CMIA" not in text.replace("cMIA", "")  # CMIA 30 vs 31 is within noise
    assert not any(x.startswith("retrain") for x in flags_of(retrain=bad, class_forgetting=True).cell)


def test_uncalibrated_auditors_cannot_separate():
    f = flags_of(original={**ORIGINAL, "FA": 50.5, "EMIA": 39.0})
    msg = [x for x in f.cell if x.startswith("uncalibrated auditors cannot separate members")]
    assert len(msg) == 1 and "FA-TA" in msg[0] and "EMIA retrain-original" in msg[0]
    assert not any("cannot separate" in x for x in flags_of().cell)


def test_attacks_at_chance():
    # n_r = n_t = 2000: balanced-accuracy SE at chance = 25 sqrt(2 / 2000) = 0.79 points
    orig = {**ORIGINAL, "EMIA_fit": 51.0, "EMIA_head_fit": 58.0, "CMIA_fit": 50.2}
    msg = [x for x in flags_of(original=orig).cell if x.startswith("attacks at chance")]
    assert len(msg) == 1 and "EMIA_fit 51.0" in msg[0] and "CMIA_fit 50.2" in msg[0]
    assert "EMIA_head_fit" not in msg[0]


def test_missing_metrics_raise_no_flags():
    f = cell_flags({"m": {}}, {}, {}, SIZES)
    assert f.cell == [] and f.methods == {"m": []}


def test_leaderboard_flag_notes():
    df = pd.DataFrame([
        {"method": "original", "seed": 0, "start_time": 1, "flags": "", "cell_flags": "old"},
        {"method": "ga", "seed": 0, "start_time": 0, "flags": "superseded", "cell_flags": "old"},
        {"method": "ga", "seed": 0, "start_time": 2, "flags": "utility loss: x",
         "cell_flags": "no membership signal: y"},
        {"method": "ft", "seed": 1, "start_time": 3, "flags": "", "cell_flags": ""},
    ]).assign(request=0)
    notes = flag_notes(df)
    assert notes[:2] == ["- ⚑ cell: no membership signal: y (seeds 0)", "- ⚑ ga: utility loss: x (seeds 0)"]
    legend = notes[notes.index("What each flag measured:") + 2:]  # one line per flag shown, no other
    assert [ln.split("*")[1] for ln in legend] == ["no membership signal", "utility loss"]


def test_privacy_metrics_are_declared_by_auditors():
    from bench.audit import metric_specs
    from bench.report.flags import PRIVACY_METRICS

    assert PRIVACY_METRICS <= set(metric_specs())


def test_noisy_privacy_metrics_leave_avg_gap():
    from bench.audit import metric_specs
    from bench.report.flags import noisy_metrics
    from bench.report.summary import avg_gap

    # CMIA's fit at chance and no calibrated signal; EMIA's fit well above chance
    orig = {**ORIGINAL, "cMIA-AUC": 0.51, "EMIA_fit": 70.0, "CMIA_fit": 50.4}
    assert noisy_metrics(orig, SIZES) == {"cMIA-AUC", "CMIA"}
    assert noisy_metrics({**orig, "cMIA-AUC": 0.79, "CMIA_fit": 60.0}, SIZES) == set()
    specs = metric_specs()
    retrain = {"RA": 90.0, "TA": 50.0, "UA": 50.0, "EMIA": 40.0, "CMIA": 30.0, "cMIA-AUC": 0.5}
    method = {"RA": 92.0, "TA": 48.0, "UA": 50.0, "EMIA": 44.0, "CMIA": 60.0, "cMIA-AUC": 0.6}
    assert avg_gap(method, retrain, specs) == pytest.approx((2 + 2 + 0 + 4 + 30 + 10) / 6)
    assert avg_gap(method, retrain, specs, {"cMIA-AUC", "CMIA"}) == pytest.approx((2 + 2 + 0 + 4) / 4)


def test_headline_names_flags_without_their_numbers():
    assert flag_name("utility loss: TA 40.0 vs retrain 50.0") == "utility loss"
    assert flag_name("attacks at chance on the original (their D_f columns measure noise): EMIA_fit 50.1") \
        == "attacks at chance on the original"
    assert flag_name("retrain: FA 44.0 vs TA 51.0 beyond noise (SE 2.0)") == "retrain FA vs TA beyond noise"
    assert flag_name("retrain: cMIA-AUC 0.530 not within noise of 0.5 (SE 0.010)") \
        == "retrain cMIA-AUC not within noise of 0.5"
