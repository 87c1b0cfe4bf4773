"""regression: one number per example. Targets are standardised with the training split's mean and
spread for training (one learning rate then fits any unit), and every output is in original units;
MSE or Huber loss; R² picks the model."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from lepton.data.base import Reason, plural
from lepton.tasks.base import TASKS, Probe, Task, standardise

if TYPE_CHECKING:  # torch loads when a run needs it: parsing a config or ingesting must stay quick
    import torch

ALPHAS = (1.0, 10.0, 100.0, 1000.0)  # ridge strengths tried on standardised features; the best on validation is kept
STRATA = 10  # the stratified split keeps the target's deciles in proportion
MAX_POINTS = 2000  # the report's scatter stays readable (and report.json small)
HIST_BINS = 30
MAX_ERRORS = 200
NOT_NUMBER = Reason("has a label that is not a number", "have labels that are not numbers",
                    "regression needs a number in every label cell (or use --task single-label)")


@TASKS.register("regression")
class Regression(Task):
    name = "regression"
    description = "one number per example (standardised targets, MSE or Huber; R²)"
    primary = "r2"
    headline = ("r2", "rmse", "mae")
    curve = ("r2",)  # the per-epoch validation metrics the run page draws
    losses = ("auto", "mse", "huber")
    exact = False

    # ---- ingest ----
    @classmethod
    def parse(cls, label: str) -> str | Reason:
        try:
            v = float(label)
        except ValueError:
            return NOT_NUMBER
        return repr(v) if math.isfinite(v) else NOT_NUMBER

    @classmethod
    def classes(cls, labels: Sequence[str]) -> list[str]:
        return []

    @classmethod
    def names(cls, label: str) -> list[str]:
        return []

    @classmethod
    def strata(cls, labels: Sequence[str]) -> list[str]:
        values = np.array([float(v) for v in labels])
        k = max(1, min(STRATA, len(values) // 10))
        ranks = np.argsort(np.argsort(values, kind="stable"), kind="stable")
        return [f"q{int(r * k // len(values))}" for r in ranks]

    @classmethod
    def check(cls, labels: Sequence[str], unit: str, forced: bool) -> tuple[list[str], list[str]]:
        distinct = {float(v) for v in labels}
        if forced:
            return [], []
        if len(distinct) < 2:
            return [f"every label is {next(iter(distinct), 'missing')}: regression needs targets that vary"], []
        if len(distinct) <= 5:
            return [], [f"the labels take only {plural(len(distinct), 'value')} ({', '.join(map(str, sorted(distinct)))}): "
                        "if they are categories, a classifier fits them better (--task single-label)"]
        return [], []

    @classmethod
    def target(cls, label: str, index: dict[str, int]) -> Any:
        return float(label)

    # ---- a run ----
    @property
    def width(self) -> int:
        return 1

    @property
    def centre(self) -> tuple[float, float]:
        return float(self.state.get("mean", 0.0)), float(self.state.get("std", 1.0))

    def fit(self, targets: Sequence[Any]) -> None:
        y = np.asarray(targets, np.float64)
        std = float(y.std()) if len(y) else 1.0
        self.state.update(mean=float(y.mean()) if len(y) else 0.0, std=std if std > 1e-12 else 1.0)

    def tensor(self, targets: Sequence[Any]) -> torch.Tensor:
        mean, std = self.centre
        import torch

        return ((torch.tensor(list(targets), dtype=torch.float64) - mean) / std).float().reshape(-1, 1)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.huber_loss(logits, y) if self.loss_name == "huber" else F.mse_loss(logits, y)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        mean, std = self.centre
        return logits.float() * std + mean

    def score(self, targets: Sequence[Any], outputs: np.ndarray) -> dict[str, float]:
        y = np.asarray(targets, np.float64)
        if not len(y):
            return {"r2": 0.0, "rmse": 0.0, "mae": 0.0, "loss": 0.0}
        err = outputs[:, 0].astype(np.float64) - y
        total = float(((y - y.mean()) ** 2).sum())
        mse = float((err**2).mean())
        return {"r2": 1.0 - float((err**2).sum()) / total if total > 0 else 0.0, "rmse": math.sqrt(mse),
                "mae": float(np.abs(err).mean()), "loss": mse / self.centre[1] ** 2}  # loss in training's units

    def report(self, targets: Sequence[Any], outputs: np.ndarray, refs: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = self.score(targets, outputs)
        out.pop("loss")
        y, p = np.asarray(targets, np.float64), outputs[:, 0].astype(np.float64)
        keep = np.arange(len(y))
        if len(y) > MAX_POINTS:
            keep = np.sort(np.random.default_rng(0).choice(len(y), MAX_POINTS, replace=False))
        counts, edges = np.histogram(p - y, bins=HIST_BINS) if len(y) else (np.zeros(0), np.zeros(0))
        worst = np.argsort(-np.abs(p - y))[:MAX_ERRORS]
        out.update(n=int(len(y)), target={"mean": self.centre[0], "std": self.centre[1]},
                   scatter={"true": y[keep].tolist(), "pred": p[keep].round(6).tolist(), "refs": [refs[i] for i in keep]},
                   residuals={"edges": edges.tolist(), "counts": counts.astype(int).tolist()},
                   largest_errors=[{"ref": refs[i], "true": float(y[i]), "pred": float(p[i]), "error": float(p[i] - y[i])}
                                   for i in worst])
        return out

    def answer(self, output: np.ndarray) -> dict[str, Any]:
        return {"value": float(output[0])}

    def answer_columns(self) -> list[str]:
        return ["value"]

    def answer_cells(self, output: np.ndarray) -> list[str]:
        return [f"{float(output[0]):.6g}"]

    def csv_columns(self) -> list[str]:
        return ["true", "pred", "error"]

    def csv_row(self, target: Any, output: np.ndarray) -> list[str]:
        return [f"{float(target):g}", f"{float(output[0]):.6g}", f"{float(output[0]) - float(target):.6g}"]

    def fit_probe(self, train_x: np.ndarray, train_y: Sequence[Any], val_x: np.ndarray, val_y: Sequence[Any],
                  seed: int = 0) -> Probe:
        """StandardScaler + ridge regression on the standardised targets, alpha chosen on validation R²."""
        from sklearn.linear_model import Ridge

        t0 = time.time()
        mean, scale, xs = standardise(train_x)
        y = self.tensor(train_y).numpy()[:, 0]
        fits = []
        for alpha in ALPHAS if len(val_y) else (100.0,):
            r = Ridge(alpha=alpha).fit(xs, y)
            fits.append((alpha, r.coef_.reshape(1, -1).astype(np.float32), np.array([r.intercept_], np.float32)))
        return self._best_probe(mean, scale, fits, val_x, val_y, t0)
