"""single-label: one class per example; a softmax head with cross-entropy; macro-F1 picks the model."""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from lepton.data.base import plural, quote_list
from lepton.evaluate import metrics, pretrained_vs_finetuned, report
from lepton.tasks.base import CS, TASKS, Probe, Task, quiet, standardise

if TYPE_CHECKING:  # torch loads when a run needs it: parsing a config or ingesting must stay quick
    import torch

MIN_PER_CLASS = 2
FEW_PER_CLASS = 5  # warn below this: per-class metrics will be noisy
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
LOOKS_NUMERIC = 10  # this many distinct numbers as labels reads like a regression target


@TASKS.register("single-label")
class SingleLabel(Task):
    name = "single-label"
    description = "one class per example (softmax, cross-entropy; macro-F1)"
    primary = "macro_f1"
    headline = ("accuracy", "macro_f1")
    curve = ("accuracy", "macro_f1")  # the per-epoch validation metrics the run page draws
    exclusive = True

    @classmethod
    def check(cls, labels: Sequence[str], unit: str, forced: bool) -> tuple[list[str], list[str]]:
        problems, warnings = [], []
        counts = Counter(labels)
        if not forced:
            if len(counts) == 1:
                hint = "check the label column" if unit == "row" else "add a folder for each class"
                problems.append(f"only one class (`{next(iter(counts))}`) was found: a classifier needs at least 2 "
                                f"classes; {hint}")
            singles = sorted(c for c, n in counts.items() if n < MIN_PER_CLASS)
            if singles and len(counts) > 1:
                one = len(singles) == 1
                problems.append(f"{plural(len(singles), 'class', 'classes')} {'has' if one else 'have'} a single "
                                f"example ({quote_list(singles)}): add more or merge {'it' if one else 'them'}")
        if problems:  # numbers as classes fail for lack of repeats: say which task they fit
            return problems + [why for _, why in cls.others(labels, unit)], warnings
        folded: dict[str, list[str]] = {}
        for c in sorted(counts):
            folded.setdefault(c.casefold(), []).append(c)
        warnings += [f"classes {quote_list(same)} differ only in upper/lower case: rename them to one spelling if they "
                     "are the same class" for same in folded.values() if len(same) > 1]
        if not forced:
            few = sorted(c for c, n in counts.items() if n < FEW_PER_CLASS)
            if few:
                warnings.append(f"{plural(len(few), 'class', 'classes')} {'has' if len(few) == 1 else 'have'} fewer "
                                f"than {FEW_PER_CLASS} examples ({quote_list(few)}): scores for them will be noisy")
        return problems, warnings + [why for _, why in cls.others(labels, unit)]

    @classmethod
    def others(cls, labels: Sequence[str], unit: str = "row") -> list[tuple[str, str]]:
        """(task, why) for each other task these labels look like. Offered, never guessed: "1"/"2"/"3" may well
        be classes, and "R&B;Soul" one genre."""
        counts = Counter(str(v).strip() for v in labels)
        out = []
        if len(counts) >= LOOKS_NUMERIC and all(NUMBER.match(c) for c in counts):
            out.append(("regression", f"the labels look numeric ({len(counts)} distinct numbers): to predict the number "
                                      "itself, store them with task regression (--task regression)"))
        joined = sum(n for c, n in counts.items() if ";" in c)
        if joined:
            out.append(("multi-label", f"{plural(joined, unit)} {'has' if joined == 1 else 'have'} `;`-joined labels: if "
                                       "an example can have several labels, store them with task multi-label "
                                       "(--task multi-label)"))
        return out

    def tensor(self, targets: Sequence[Any]) -> torch.Tensor:
        import torch

        return torch.tensor(list(targets), dtype=torch.long)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(logits, y)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(-1)

    def score(self, targets: Sequence[Any], outputs: np.ndarray) -> dict[str, float]:
        out = metrics(targets, outputs.argmax(1) if len(outputs) else [], self.width)
        y = np.asarray(targets, dtype=np.int64)
        out["loss"] = float(-np.log(np.clip(outputs[np.arange(len(y)), y], 1e-12, None)).mean()) if len(y) else 0.0
        return out

    def report(self, targets: Sequence[Any], outputs: np.ndarray, refs: Sequence[str]) -> dict[str, Any]:
        return report(targets, outputs, self.class_names, refs=refs)

    def side_by_side(self, targets: Sequence[Any], before: np.ndarray, after: np.ndarray,
                     refs: Sequence[str]) -> dict[str, Any]:
        return pretrained_vs_finetuned(targets, before, after, self.class_names, refs)

    def colours(self, targets: Sequence[Any]) -> list[int] | None:
        return [int(t) for t in targets]

    def answer(self, output: np.ndarray) -> dict[str, Any]:
        return {"label": self.class_names[int(output.argmax())],
                "probs": {c: float(v) for c, v in zip(self.class_names, output)}}

    def answer_columns(self) -> list[str]:
        return ["label", "score", *self.class_names]

    def answer_cells(self, output: np.ndarray) -> list[str]:
        p = int(output.argmax())
        return [self.class_names[p], f"{output[p]:.6f}", *(f"{v:.6f}" for v in output)]

    def csv_columns(self) -> list[str]:
        return ["true", "pred", "confidence"]

    def csv_row(self, target: Any, output: np.ndarray) -> list[str]:
        p = int(output.argmax())
        return [self.class_names[int(target)], self.class_names[p], f"{output[p]:.6f}"]

    def imbalance(self, targets: Sequence[Any]) -> float:
        counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=self.width)
        counts = counts[counts > 0]
        return float(counts.max() / counts.min()) if counts.size else 1.0

    def remap(self, targets: list[Any], classes: Sequence[str]) -> list[Any]:
        return [self.class_names.index(classes[t]) for t in targets]

    def fit_probe(self, train_x: np.ndarray, train_y: Sequence[Any], val_x: np.ndarray, val_y: Sequence[Any],
                  seed: int = 0) -> Probe:
        """StandardScaler + multinomial logistic regression, C chosen on validation macro-F1."""
        from sklearn.linear_model import LogisticRegression

        t0 = time.time()
        mean, scale, xs = standardise(train_x)
        train_y = np.asarray(train_y)
        present = np.unique(train_y)
        fits = []
        for c in CS if len(val_y) else (1.0,):
            coef = np.zeros((self.width, xs.shape[1]), np.float32)
            intercept = np.full(self.width, -30.0, np.float32)  # classes train never shows: never predicted
            if len(present) < 2:
                intercept[present] = 0.0
            else:
                with quiet():
                    clf = LogisticRegression(C=c, max_iter=300, random_state=seed).fit(xs, train_y)
                two = len(present) == 2  # sklearn keeps one row for two classes: split it into +/- halves
                coef[clf.classes_] = np.vstack([-clf.coef_, clf.coef_]) / 2 if two else clf.coef_
                intercept[clf.classes_] = np.array([-1, 1]) * clf.intercept_ / 2 if two else clf.intercept_
            fits.append((c, coef, intercept))
        return self._best_probe(mean, scale, fits, val_x, val_y, t0)

