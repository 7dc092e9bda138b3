"""The frozen-feature linear probe shared by every auditor that needs class probabilities.

An L-BFGS multinomial logistic regression on standardised backbone features
(the fast equivalent of MUC's 100-epoch SGD probe, which this benchmark accepts in its place),
fit once per model and memoised on its ModelFeatures.

It is fit on D_r members plus D_v (:data:`FIT_SPLITS`), in every scenario: labelled
images that hold every class and no forget sample. Fit on D_r alone, a ``class:<c>``
probe has never seen class c, so FA is 0 for the original and for retrain alike and UA
cannot tell them apart. D_v is never trained on, so adding it leaks nothing of D_f.
Classes are weighted inversely to their count: in a class scenario, class c is
represented by D_v alone (about |D_v| / C images against |D_r| / (C - 1) for the others),
and an unweighted probe would score that sample count, not what the features encode.
On the class-balanced splits of a random scenario the weights are all close to 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from bench.features import ModelFeatures

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

SPLITS = ("retain", "forget", "test")  # the splits the probe scores
FIT_SPLITS = ("retain", "val")  # what it (and the kNN bank) is fit on, D_r first


def fit_set(feats: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of :data:`FIT_SPLITS`, concatenated in that order (D_r rows first)."""
    missing = [s for s in FIT_SPLITS if s not in feats]
    if missing:
        raise KeyError(f"features lack split(s) {missing}: the probe and the kNN bank are fit on "
                       f"{' + '.join(FIT_SPLITS)} (bench.runner audit_views)")
    return np.concatenate([feats[s] for s in FIT_SPLITS]), np.concatenate([labels[s] for s in FIT_SPLITS])


def fit_probe(feats: np.ndarray, labels: np.ndarray) -> Pipeline:
    """The probe: standardise, then class-balanced multinomial logistic regression (L-BFGS, C = 1)."""
    # sklearn loads at the first fit: validate imports the auditors that use this module without it
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced")
    return make_pipeline(StandardScaler(), clf).fit(feats, labels)


def probe_probs(mf: ModelFeatures, num_classes: int) -> dict[str, np.ndarray]:
    """Class probabilities [n, C] on each scored split under the probe fit on D_r + D_v."""

    def fit() -> dict[str, np.ndarray]:
        clf = fit_probe(*fit_set(mf.feats, mf.labels))
        out = {}
        for split in SPLITS:
            p = np.zeros((len(mf.feats[split]), num_classes))
            if len(p):
                p[:, clf.classes_] = clf.predict_proba(mf.feats[split])
            out[split] = p
        return out

    return mf.memo("probe_probs", fit)
