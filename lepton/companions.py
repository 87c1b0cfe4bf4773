"""Companions: a small classical model a run may blend with its neural one, chosen on validation.

One per modality at most (`COMPANIONS`, keyed by modality). Today text has one: a TF-IDF logistic
regression (word 1-2 grams). Sentence encoders summarise meaning and lose exact words; on the
suite's docstring tasks a bag of words alone beat MiniLM's probe, and the two together beat both
(the "wide and deep" idea: a linear model on sparse features beside a deep one). The loop fits it on
the training split, then tries blends with the fine-tuned model and with the probe on validation;
weight 0 (no companion) is always a candidate, so it ships only where it helps.

Saved without pickle: `model/companion.json` (kind, weight, vocabulary, options) and
`model/companion.safetensors` (idf, coefficients, intercepts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lepton.evaluate import metrics
from lepton.registry import Registry

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the companion's share of the blended log-probabilities
CS = (1.0, 10.0, 100.0)  # inverse L2 strengths for the sparse logistic regression, chosen on validation
COMPANIONS: Registry[Callable[..., "Companion"]] = Registry("companion")


class Companion:
    kind = ""

    def probs(self, items: list[Any]) -> np.ndarray:
        raise NotImplementedError

    def save(self, folder: Path, weight: float) -> None:
        raise NotImplementedError


def blend(p_model: np.ndarray, p_comp: np.ndarray, weight: float) -> np.ndarray:
    """Probabilities from a weighted mean of log-probabilities (a product of experts), renormalised."""
    if weight <= 0:
        return p_model
    z = (1 - weight) * np.log(np.clip(p_model, 1e-12, 1)) + weight * np.log(np.clip(p_comp, 1e-12, 1))
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def best_weight(y: np.ndarray, p_model: np.ndarray, p_comp: np.ndarray, num_classes: int) -> tuple[float, float]:
    """(weight, validation macro-F1) of the best blend; ties go to the smaller weight (0 = no companion)."""
    best = (0.0, -1.0)
    for w in WEIGHTS:
        f1 = metrics(y, blend(p_model, p_comp, w).argmax(1), num_classes)["macro_f1"]
        if f1 > best[1] + 1e-9:
            best = (w, f1)
    return best


@dataclass
class Lexical(Companion):
    kind = "lexical"
    vocabulary: dict[str, int]
    idf: np.ndarray  # (V,)
    coef: np.ndarray  # (C, V) over all classes
    intercept: np.ndarray  # (C,)
    c: float

    def _vectorizer(self):
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, vocabulary=self.vocabulary)
        vec.idf_ = self.idf  # a fitted vectorizer, rebuilt from plain arrays (no pickle)
        return vec

    def probs(self, items: list[Any]) -> np.ndarray:
        x = self._vectorizer().transform(["" if t is None else str(t) for t in items])
        z = np.asarray(x @ self.coef.T) + self.intercept
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def save(self, folder: Path, weight: float) -> None:
        from safetensors.numpy import save_file

        folder = Path(folder)
        (folder / "companion.json").write_text(json.dumps({"kind": self.kind, "weight": weight, "c": self.c,
                                                            "ngram_range": [1, 2], "vocabulary": self.vocabulary}))
        save_file({"idf": self.idf.astype(np.float64), "coef": self.coef.astype(np.float32),
                   "intercept": self.intercept.astype(np.float32)}, str(folder / "companion.safetensors"))


@COMPANIONS.register("text")
def fit_lexical(train: list[str], y: np.ndarray, val: list[str], val_y: np.ndarray, num_classes: int,
                seed: int = 0) -> Lexical:
    """TF-IDF (word 1-2 grams, sublinear tf) + multinomial logistic regression, C chosen on validation."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x = vec.fit_transform(["" if t is None else str(t) for t in train])
    vocab = {k: int(v) for k, v in vec.vocabulary_.items()}
    present = np.unique(y)
    best: Lexical | None = None
    best_f1 = -1.0
    for c in CS if len(val_y) else (10.0,):
        coef = np.zeros((num_classes, x.shape[1]), np.float32)
        intercept = np.full(num_classes, -30.0, np.float32)  # classes train never shows: never predicted
        if len(present) >= 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf = LogisticRegression(C=c, max_iter=1000, random_state=seed).fit(x, y)
            if len(present) == 2:
                coef[clf.classes_] = np.vstack([-clf.coef_, clf.coef_]) / 2
                intercept[clf.classes_] = np.array([-1, 1]) * clf.intercept_ / 2
            else:
                coef[clf.classes_], intercept[clf.classes_] = clf.coef_, clf.intercept_
        else:
            intercept[present] = 0.0
        cand = Lexical(vocab, vec.idf_.copy(), coef, intercept, c)
        f1 = metrics(val_y, cand.probs(val).argmax(1), num_classes)["macro_f1"] if len(val_y) else 0.0
        if f1 > best_f1 + 1e-9:
            best, best_f1 = cand, f1
    return best


def load(folder: Path) -> tuple[Companion, float] | None:
    """(the companion, its blend weight) saved in a model folder, or None. JSON and safetensors only."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    if not (folder / "companion.json").is_file():
        return None
    doc = json.loads((folder / "companion.json").read_text(encoding="utf-8"))
    arrays = load_file(str(folder / "companion.safetensors"))
    if doc.get("kind") != Lexical.kind:
        raise ValueError(f"unknown companion kind {doc.get('kind')!r}")
    return Lexical({str(k): int(v) for k, v in doc["vocabulary"].items()}, arrays["idf"], arrays["coef"],
                   arrays["intercept"], float(doc.get("c", 10.0))), float(doc["weight"])
