"""multi-label: any set of labels per example; a sigmoid per label with binary cross-entropy, a decision
threshold per label tuned on validation (saved with the model), micro-F1 picks the model.

Labels come as a JSON list (`["cooking", "travel"]`, in a JSON Lines file or a table cell) or a
`;`-joined string (`cooking;travel`); both are stored as the sorted `;`-joined set, and an empty set
(`[]`) means none of the labels applies.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from lepton.data.base import Reason, clean_label, plural, quote_list
from lepton.tasks.base import CS, TASKS, Probe, Task, quiet, standardise

if TYPE_CHECKING:  # torch loads when a run needs it: parsing a config or ingesting must stay quick
    import torch

SEP = ";"
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)  # the grid thresholds are tuned on and the explorer draws
MAX_ERRORS = 200
BAD_LIST = Reason("has a label list that is not a JSON list of names", "have label lists that are not JSON lists of names",
                  'write them as ["a", "b"] or a;b')
SEP_IN_NAME = Reason(f"has a label name containing `{SEP}`", f"have label names containing `{SEP}`",
                     f"`{SEP}` separates labels: rename those labels")


def is_json_list(label: str) -> bool:
    if not label.startswith("["):
        return False
    try:
        return isinstance(json.loads(label), list)
    except ValueError:
        return False


@TASKS.register("multi-label")
class MultiLabel(Task):
    name = "multi-label"
    description = "any set of labels per example (a sigmoid per label, tuned thresholds; micro-F1)"
    primary = "micro_f1"
    headline = ("micro_f1", "macro_f1", "map")
    curve = ("micro_f1", "macro_f1")  # the per-epoch validation metrics the run page draws
    tuned = True

    # ---- ingest ----
    @classmethod
    def parse(cls, label: str) -> str | Reason:
        if label.startswith("["):
            try:
                items = json.loads(label)
            except ValueError:
                return BAD_LIST
            if not isinstance(items, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                        for v in items):
                return BAD_LIST
            names = [clean_label(str(v)) for v in items]
            if any(SEP in n for n in names):
                return SEP_IN_NAME
        else:
            names = [clean_label(p) for p in label.split(SEP)]
        return SEP.join(sorted({n for n in names if n}))

    @classmethod
    def names(cls, label: str) -> list[str]:
        return label.split(SEP) if label else []

    @classmethod
    def classes(cls, labels: Sequence[str]) -> list[str]:
        return sorted({n for lab in labels for n in cls.names(lab)})

    @classmethod
    def strata(cls, labels: Sequence[str]) -> list[str]:
        # Each example is kept in proportion by its rarest label: rare labels are the ones a random split loses.
        freq = Counter(n for lab in labels for n in cls.names(lab))
        return [min(cls.names(lab), key=lambda n: (freq[n], n)) if lab else "" for lab in labels]

    @classmethod
    def check(cls, labels: Sequence[str], unit: str, forced: bool) -> tuple[list[str], list[str]]:
        freq = Counter(n for lab in labels for n in cls.names(lab))
        if forced:
            return [], []
        if len(freq) < 2:
            return [f"only {plural(len(freq), 'label')} ({quote_list(sorted(freq))}) was found: multi-label needs at "
                    "least 2 labels; check the label column"], []
        singles = sorted(n for n, k in freq.items() if k < 2)
        if singles:
            return [f"{plural(len(singles), 'label')} {'is' if len(singles) == 1 else 'are'} on a single {unit} "
                    f"({quote_list(singles)}): add more examples or remove {'it' if len(singles) == 1 else 'them'}"], []
        few = sorted(n for n, k in freq.items() if k < 5)
        empty = sum(1 for lab in labels if not lab)
        warnings = [f"{plural(len(few), 'label')} {'is' if len(few) == 1 else 'are'} on fewer than 5 {unit}s "
                    f"({quote_list(few)}): scores for them will be noisy"] if few else []
        if empty:
            warnings.append(f"{plural(empty, unit)} {'has' if empty == 1 else 'have'} no label at all (an empty list): "
                            "they teach the model that none applies")
        return [], warnings

    @classmethod
    def target(cls, label: str, index: dict[str, int]) -> Any:
        return tuple(index[n] for n in cls.names(label))

    # ---- a run ----
    @property
    def thresholds(self) -> np.ndarray:
        return np.asarray(self.state.get("thresholds") or [0.5] * self.width, dtype=np.float64)

    def _hot(self, targets: Sequence[Any]) -> np.ndarray:
        y = np.zeros((len(targets), self.width), np.float32)
        for i, t in enumerate(targets):
            y[i, list(t)] = 1.0
        return y

    def tensor(self, targets: Sequence[Any]) -> torch.Tensor:
        import torch

        return torch.from_numpy(self._hot(targets))

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(logits, y)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().sigmoid()

    def score(self, targets: Sequence[Any], outputs: np.ndarray) -> dict[str, float]:
        y = self._hot(targets).astype(bool)
        if not len(y):
            return {"micro_f1": 0.0, "macro_f1": 0.0, "subset_accuracy": 0.0, "loss": 0.0}
        pred = outputs >= self.thresholds
        tp, fp, fn = (y & pred).sum(0), (~y & pred).sum(0), (y & ~pred).sum(0)
        denom = 2 * tp + fp + fn
        f1 = np.divide(2 * tp, denom, out=np.zeros(self.width), where=denom > 0)
        seen = y.any(0)  # macro-F1 over the labels this split has (a label it never shows has no F1 to speak of)
        p = np.clip(outputs, 1e-7, 1 - 1e-7)
        return {"micro_f1": float(2 * tp.sum() / max(denom.sum(), 1)),
                "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
                "subset_accuracy": float((pred == y).all(1).mean()),
                "loss": float(-(y * np.log(p) + ~y * np.log(1 - p)).mean())}

    def tune(self, targets: Sequence[Any], outputs: np.ndarray) -> None:
        """Each label's threshold: the one of THRESHOLDS with the best validation F1 (0.5 for a label validation lacks)."""
        y = self._hot(targets).astype(bool)
        best = np.full(self.width, 0.5)
        for j in np.flatnonzero(y.any(0)) if len(y) else []:
            pred = outputs[:, j, None] >= THRESHOLDS  # (N, T)
            tp = (pred & y[:, j, None]).sum(0)
            f1 = 2 * tp / np.maximum(pred.sum(0) + y[:, j].sum(), 1)
            ties = np.flatnonzero(f1 >= f1.max() - 1e-12)  # of equal F1, the one nearest 0.5: no rule read into ties
            best[j] = THRESHOLDS[ties[np.argmin(np.abs(THRESHOLDS[ties] - 0.5))]]
        self.state["thresholds"] = [float(t) for t in best]

    def report(self, targets: Sequence[Any], outputs: np.ndarray, refs: Sequence[str]) -> dict[str, Any]:
        from sklearn.metrics import average_precision_score

        y = self._hot(targets).astype(bool)
        out: dict[str, Any] = self.score(targets, outputs)
        out.pop("loss")
        pred = outputs >= self.thresholds
        ap = {j: float(average_precision_score(y[:, j], outputs[:, j])) for j in range(self.width) if y[:, j].any()}
        out["map"] = float(np.mean(list(ap.values()))) if ap else 0.0
        out.update(n=int(len(y)), classes=self.class_names, thresholds=self.thresholds.tolist())
        out["per_class"] = {}
        out["threshold_curves"] = {"thresholds": THRESHOLDS.tolist()}
        for j, c in enumerate(self.class_names):
            tp, fp, fn = (int((y[:, j] & pred[:, j]).sum()), int((~y[:, j] & pred[:, j]).sum()),
                          int((y[:, j] & ~pred[:, j]).sum()))
            out["per_class"][c] = {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1),
                                   "f1": 2 * tp / max(2 * tp + fp + fn, 1), "support": int(y[:, j].sum()),
                                   "threshold": float(self.thresholds[j]), "ap": ap.get(j)}
            at = outputs[:, j, None] >= THRESHOLDS
            tps = (at & y[:, j, None]).sum(0)
            prec = np.divide(tps, at.sum(0), out=np.ones(len(THRESHOLDS)), where=at.sum(0) > 0)
            rec = tps / max(int(y[:, j].sum()), 1)
            f1 = 2 * tps / np.maximum(at.sum(0) + y[:, j].sum(), 1)
            out["threshold_curves"][c] = {"precision": prec.round(4).tolist(), "recall": rec.round(4).tolist(),
                                          "f1": f1.round(4).tolist()}
        # The worst rows first: the largest distance past a threshold on a wrong decision (label noise shows up here).
        wrong = np.flatnonzero((pred != y).any(1))
        margin = np.where(pred != y, np.abs(outputs - self.thresholds), 0.0).max(1) if len(y) else np.zeros(0)
        out["misclassified"] = [{"ref": refs[i], "true": self._join(y[i]), "pred": self._join(pred[i]),
                                 "confidence": float(margin[i])} for i in wrong[np.argsort(-margin[wrong])][:MAX_ERRORS]]
        return out

    def _join(self, row: np.ndarray) -> str:
        return SEP.join(self.class_names[j] for j in np.flatnonzero(row)) or "(none)"

    def answer(self, output: np.ndarray) -> dict[str, Any]:
        return {"labels": [c for c, p, t in zip(self.class_names, output, self.thresholds) if p >= t],
                "probs": {c: float(v) for c, v in zip(self.class_names, output)}}

    def answer_columns(self) -> list[str]:
        return ["labels", *self.class_names]

    def answer_cells(self, output: np.ndarray) -> list[str]:
        return [SEP.join(self.answer(output)["labels"]), *(f"{v:.6f}" for v in output)]

    def csv_row(self, target: Any, output: np.ndarray) -> list[str]:
        return [self._join(self._hot([target])[0].astype(bool)), self._join(output >= self.thresholds)]

    def imbalance(self, targets: Sequence[Any]) -> float:
        counts = self._hot(targets).sum(0)
        counts = counts[counts > 0]
        return float(counts.max() / counts.min()) if counts.size else 1.0

    def remap(self, targets: list[Any], classes: Sequence[str]) -> list[Any]:
        return [tuple(self.class_names.index(classes[j]) for j in t) for t in targets]

    def fit_probe(self, train_x: np.ndarray, train_y: Sequence[Any], val_x: np.ndarray, val_y: Sequence[Any],
                  seed: int = 0) -> Probe:
        """StandardScaler + one binary logistic regression per label, C chosen on validation micro-F1."""
        from sklearn.linear_model import LogisticRegression

        t0 = time.time()
        mean, scale, xs = standardise(train_x)
        y = self._hot(train_y)
        fits = []
        for c in CS if len(val_y) else (1.0,):
            coef = np.zeros((self.width, xs.shape[1]), np.float32)
            intercept = np.zeros(self.width, np.float32)
            for j in range(self.width):
                if y[:, j].min() == y[:, j].max():  # a label train always or never shows: a constant answer
                    intercept[j] = 30.0 if y[0, j] else -30.0
                    continue
                with quiet():
                    clf = LogisticRegression(C=c, max_iter=300, random_state=seed).fit(xs, y[:, j])
                coef[j], intercept[j] = clf.coef_[0], clf.intercept_[0]
            fits.append((c, coef, intercept))
        return self._best_probe(mean, scale, fits, val_x, val_y, t0)
