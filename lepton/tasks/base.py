"""What a task is: how labels are read at ingest, and what the loop, the report and the Predictor ask of it.

A dataset stores each label as one canonical string (its task parsed it at ingest): a class name, the
`;`-joined sorted label set, or a number. The loop never names a loss or a metric: it asks the run's
Task for the head's width, the training targets, the loss, the decoding of logits into outputs
(class probabilities or values), the metrics and the primary one, the logistic/ridge probe on frozen
features, and the report. One task is one file registered in TASKS.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from lepton.data.base import Reason
from lepton.registry import Registry

if TYPE_CHECKING:  # torch loads when a run needs it: parsing a config or ingesting must stay quick
    import torch

CS = (0.05, 0.3, 2.0)  # the probe's inverse L2 strengths, weak to strong fit; the best on validation is kept


@dataclass
class Probe:
    """A linear model on the untuned backbone's standardised frozen features, fitted with scikit-learn:
    the bar every run must clear, the head LP-FT starts from, and what ships when fine-tuning scores lower."""

    mean: np.ndarray  # (dim,) the scaler's, fitted on train
    scale: np.ndarray  # (dim,)
    coef: np.ndarray  # (width, dim)
    intercept: np.ndarray  # (width,)
    c: float  # the chosen regularisation (inverse strength for logistic, alpha for ridge)
    val: dict[str, float]  # the task's metrics on validation ({} without a validation split)
    seconds: float
    decode: Callable[[np.ndarray], np.ndarray] = field(repr=False, default=lambda z: z)

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """The task's outputs (class probabilities or values): the same numbers the ProbeHead computes."""
        return self.decode(((np.asarray(x, np.float32) - self.mean) / self.scale) @ self.coef.T + self.intercept)


def standardise(train_x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, scale, standardised train features): constant features keep scale 1."""
    from sklearn.preprocessing import StandardScaler

    train_x = np.asarray(train_x, np.float32)
    scaler = StandardScaler().fit(train_x)
    scale = np.where(scaler.scale_ > 1e-8, scaler.scale_, 1.0).astype(np.float32)
    mean = scaler.mean_.astype(np.float32)
    return mean, scale, (train_x - mean) / scale


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Convergence warnings off: 300 iterations is plenty for a probe."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


class Task:
    """Base of the TASKS entries. Classmethods serve ingest (no run yet); an instance serves one run or
    one Predictor and holds what the task fits on training data (a regression's target scale, a
    multi-label run's thresholds) in `state`, which is saved with the model."""

    name = ""
    description = ""
    primary = ""  # the metric that picks the best epoch, the kept model and a study's best trial
    headline: tuple[str, ...] = ()  # the metrics `lepton train` prints and the run list shows
    curve: tuple[str, ...] = ()  # the per-epoch validation metrics the run page draws (they name the task)
    # One distribution over the classes per example. What is built on that takes only these tasks for now and
    # says so: the classical companion's blend, export's parity check, the HTTP server's label outputs, and
    # studies (which rank trials by macro-F1).
    exclusive = False
    tuned = False  # fits decision rules on validation after training (see tune)
    losses: tuple[str, ...] = ("auto",)  # what --loss may name for this task
    exact = True  # identical inputs must share a label (ingest warns otherwise); a measured number may differ

    # ---- ingest ----
    @classmethod
    def parse(cls, label: str) -> str | Reason:
        """One raw label -> its canonical string, or why it cannot be one."""
        return label

    @classmethod
    def classes(cls, labels: Sequence[str]) -> list[str]:
        return sorted(set(labels))

    @classmethod
    def names(cls, label: str) -> list[str]:
        """The classes one canonical label counts for (the manifest's per-split counts)."""
        return [label]

    @classmethod
    def strata(cls, labels: Sequence[str]) -> list[str]:
        """What the stratified split keeps in proportion."""
        return list(labels)

    @classmethod
    def check(cls, labels: Sequence[str], unit: str, forced: bool) -> tuple[list[str], list[str]]:
        """(problems that stop the ingest, warnings) about the labels as a whole."""
        return [], []

    @classmethod
    def target(cls, label: str, index: dict[str, int]) -> Any:
        """A stored label -> what Example.label holds: a class index, a tuple of them, or a float."""
        return index[label]

    # ---- a run ----
    def __init__(self, classes: Sequence[str], state: dict[str, Any] | None = None, loss: str = "auto"):
        self.class_names = list(classes)
        self.state: dict[str, Any] = dict(state or {})
        if loss not in self.losses:
            from lepton.errors import ConfigError

            raise ConfigError(f"loss={loss!r} does not fit the {self.name} task; it takes {', '.join(self.losses)}")
        self.loss_name = loss

    @property
    def width(self) -> int:
        """The head's outputs."""
        return len(self.class_names)

    def fit(self, targets: Sequence[Any]) -> None:
        """Learn what the targets need from the training split (a regression's mean and spread)."""

    def tensor(self, targets: Sequence[Any]) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (N, width) -> outputs (N, width): what metrics, reports and answers read."""
        raise NotImplementedError

    def decode_np(self, logits: np.ndarray) -> np.ndarray:
        import torch

        return self.decode(torch.from_numpy(np.asarray(logits, np.float32))).numpy()

    def score(self, targets: Sequence[Any], outputs: np.ndarray) -> dict[str, float]:
        """The per-epoch metrics (cheap: called after every validation), with the primary one and "loss"."""
        raise NotImplementedError

    def tune(self, targets: Sequence[Any], outputs: np.ndarray) -> None:
        """Fit decision rules on the shipped model's validation outputs (multi-label thresholds)."""

    def report(self, targets: Sequence[Any], outputs: np.ndarray, refs: Sequence[str]) -> dict[str, Any]:
        """report.json's evaluation section for one split; its headline metrics sit at the top level."""
        raise NotImplementedError

    def side_by_side(self, targets: Sequence[Any], before: np.ndarray, after: np.ndarray,
                     refs: Sequence[str]) -> dict[str, Any]:
        """The untuned backbone's probe against the shipped model on the same examples."""
        b, a = self.score(targets, before), self.score(targets, after)
        b.pop("loss", None), a.pop("loss", None)
        return {"pretrained": b, "finetuned": a, "delta": {k: a[k] - b[k] for k in a}}

    def colours(self, targets: Sequence[Any]) -> list[int] | None:
        """Class ids that colour the embedding map, or None where points have no single class."""
        return None

    def answer(self, output: np.ndarray) -> dict[str, Any]:
        """One row of outputs -> what `lepton predict` and the Playground show."""
        raise NotImplementedError

    def answer_columns(self) -> list[str]:
        """The columns `lepton predict --batch` writes for one input, after its name."""
        raise NotImplementedError

    def answer_cells(self, output: np.ndarray) -> list[str]:
        raise NotImplementedError

    def csv_columns(self) -> list[str]:
        return ["true", "pred"]

    def csv_row(self, target: Any, output: np.ndarray) -> list[str]:
        raise NotImplementedError

    def imbalance(self, targets: Sequence[Any]) -> float:
        """Largest class over smallest in train (the strategy's meta-feature); 1 where there are no classes."""
        return 1.0

    def remap(self, targets: list[Any], classes: Sequence[str]) -> list[Any]:
        """Targets of a separate test set whose class list is `classes`, in this task's class ids."""
        return targets

    def fit_probe(self, train_x: np.ndarray, train_y: Sequence[Any], val_x: np.ndarray, val_y: Sequence[Any],
                  seed: int = 0) -> Probe:
        raise NotImplementedError

    def _best_probe(self, mean: np.ndarray, scale: np.ndarray, fits: list[tuple[float, np.ndarray, np.ndarray]],
                    val_x: np.ndarray, val_y: Sequence[Any], t0: float) -> Probe:
        """The candidate (c, coef, intercept) that validates highest on the primary metric (ties: the first)."""
        best: Probe | None = None
        for c, coef, intercept in fits:
            cand = Probe(mean, scale, coef, intercept, c, {}, 0.0, self.decode_np)
            if len(val_y):
                cand.val = self.score(val_y, cand.outputs(val_x))
                cand.val.pop("loss", None)
            if best is None or cand.val.get(self.primary, 0.0) > best.val.get(self.primary, 0.0) + 1e-9:
                best = cand
        assert best is not None
        best.seconds = time.time() - t0
        return best


TASKS: Registry[type[Task]] = Registry("task")


def task_for_curves(names: set[str]) -> type[Task]:
    """The task whose per-epoch validation metrics these are (a live run's page knows only its metric rows)."""
    return next((t for _, t in TASKS.items() if t.curve and set(t.curve) <= names), TASKS.get("single-label"))


def check_exclusive(task: Task | type[Task], what: str, subject: str, instead: str) -> None:
    """One line for a feature that takes only single-label (exclusive) tasks so far."""
    from lepton.errors import IncompatibleError

    if not task.exclusive:
        raise IncompatibleError(f"{subject} is {task.name}: {what} takes single-label data for now; {instead}")


def task_of(name: str, classes: Sequence[str], state: dict[str, Any] | None = None, loss: str = "auto") -> Task:
    return TASKS.get(name)(classes, state, loss)
