"""The frozen-feature linear probe shared by every auditor that needs class probabilities.

An L-BFGS multinomial logistic regression on standardised backbone features
(SPECS section 4 accepts it as the fast equivalent of MUC's 100-epoch SGD probe),
fit once per model on the retain members and memoised on its ModelFeatures.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from bench.features import ModelFeatures

SPLITS = ("retain", "forget", "test")


def fit_probe(feats: np.ndarray, labels: np.ndarray) -> Pipeline:
    """The probe: standardise, then multinomial logistic regression (L-BFGS, C = 1)."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)).fit(feats, labels)


def probe_probs(mf: ModelFeatures, num_classes: int) -> dict[str, np.ndarray]:
    """Class probabilities [n, C] on each audit split under the probe fit on D_r."""

    def fit() -> dict[str, np.ndarray]:
        clf = fit_probe(mf.feats["retain"], mf.labels["retain"])
        out = {}
        for split in SPLITS:
            p = np.zeros((len(mf.feats[split]), num_classes))
            if len(p):
                p[:, clf.classes_] = clf.predict_proba(mf.feats[split])
            out[split] = p
        return out

    return mf.memo("probe_probs", fit)
