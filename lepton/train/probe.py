"""The logistic probe on the untuned backbone's frozen features: the bar every run must clear.

Every run fits it before training (its features come from the frozen-feature cache, so after the
first run on a dataset it costs only the fit). It is the report's "pretrained" baseline, the
head a fine-tune starts from (LP-FT, Kumar et al. 2022), and what the run ships when the
fine-tuned model scores lower on validation.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from lepton.evaluate import metrics

CS = (0.05, 0.3, 2.0)  # inverse L2 strengths tried, weak to strong fit; the best on validation is kept


@dataclass
class Probe:
    mean: np.ndarray  # (dim,) the scaler's, fitted on train
    scale: np.ndarray  # (dim,)
    coef: np.ndarray  # (C, dim) over all classes (zero rows for classes train lacks)
    intercept: np.ndarray  # (C,)
    c: float  # the chosen inverse regularisation strength
    val: dict[str, float]  # accuracy, macro_f1 on validation ({} without a validation split)
    seconds: float

    def probs(self, x: np.ndarray) -> np.ndarray:
        """(N, C) class probabilities; the same numbers the ProbeHead computes."""
        z = ((x - self.mean) / self.scale) @ self.coef.T + self.intercept
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)


def fit(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, num_classes: int,
        seed: int = 0, cs: tuple[float, ...] = CS) -> Probe:
    """StandardScaler + multinomial logistic regression; C chosen on validation macro-F1 (ties: the stronger prior)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    t0 = time.time()
    train_x = np.asarray(train_x, np.float32)
    train_y = np.asarray(train_y)
    scaler = StandardScaler().fit(train_x)
    scale = np.where(scaler.scale_ > 1e-8, scaler.scale_, 1.0).astype(np.float32)
    mean = scaler.mean_.astype(np.float32)
    xs = (train_x - mean) / scale
    present = np.unique(train_y)
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None
    candidates = cs if len(val_y) else (1.0,)
    for c in candidates:
        coef = np.zeros((num_classes, train_x.shape[1]), np.float32)
        intercept = np.full(num_classes, -30.0, np.float32)  # classes train never shows: never predicted
        if len(present) < 2:
            intercept[present] = 0.0
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # 300 iterations is plenty for a probe
                clf = LogisticRegression(C=c, max_iter=300, random_state=seed).fit(xs, train_y)
            coef[clf.classes_] = clf.coef_ if len(present) > 2 else np.vstack([-clf.coef_, clf.coef_]) / 2
            intercept[clf.classes_] = clf.intercept_ if len(present) > 2 else np.array([-1, 1]) * clf.intercept_ / 2
        cand = Probe(mean, scale, coef, intercept, c, {}, 0.0)
        score = metrics(val_y, cand.probs(np.asarray(val_x, np.float32)).argmax(1), num_classes)["macro_f1"] if len(val_y) else 0.0
        if best is None or score > best[0] + 1e-9:
            best = (score, c, coef, intercept)
    score, c, coef, intercept = best
    p = Probe(mean, scale, coef, intercept, c, {}, 0.0)
    if len(val_y):
        p.val = metrics(val_y, p.probs(np.asarray(val_x, np.float32)).argmax(1), num_classes)
    p.seconds = time.time() - t0
    return p
