"""A gymnasium environment in which one episode is one training run under a time budget.

Fine-tuning a real backbone takes minutes, so the environment replays recorded runs
(benchmarks/record_curves.py: real `lepton.train.run`s on the suite, one per start recipe, with
every epoch's validation probabilities and clock). What an episode does:
- reset: a task (a recorded dataset, a random subset of its classes, a budget); the observation is
  the start features (meta-features of the task and the probe, which every run fits first);
- step 1 picks a start recipe (START_ACTIONS): the probe alone ends the episode; a fine-tuning
  recipe replays that recording's first epoch;
- later steps pick an epoch action. "continue" replays the next epoch of the current recording;
  a learning-rate action or "unfreeze" moves to the recording made with that learning rate (or
  the full fine-tune a partial one becomes) and replays its next epoch from there (an approximation: that recording reached this
  epoch at its own setting all along; the clock keeps running from where the episode is);
  "stop" ends the episode, as does the budget.
- reward: the gain in best-so-far validation macro-F1 (the probe counts as the start), minus
  `cost` per budget's worth of seconds used. Test data never enters it.

Class subsets score the recorded validation probabilities on those classes only (argmax over the
subset), which makes many tasks out of six datasets. Budgets shorter than the recordings' cut
them short; the recordings' own schedules decayed over the recorded budget, which makes short
budgets look a little worse here than they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from lepton.evaluate import metrics
from lepton.strategy.policy import (
    EPOCH_ACTIONS, EPOCH_EXTRA, LR_STEP, START_ACTIONS, START_DIM, epoch_features, epoch_mask, start_features,
)


@dataclass
class Recording:
    """One dataset's recorded runs (record_curves.py's JSON and NPZ)."""

    name: str
    modality: str
    num_classes: int
    val_labels: np.ndarray
    runs: dict[int, dict[str, Any]]  # START_ACTIONS index -> {"ctx", "epochs", "seconds", "probs": [per epoch (n_val, C)]}
    budget_s: float
    _scores: dict[tuple, list[float]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "Recording":
        doc = json.loads(Path(path).read_text())
        arrays = np.load(Path(path).with_suffix(".npz"))
        runs = {}
        for r in doc["runs"]:
            i = r["action"]
            r["probs"] = [arrays[f"a{i}_e{e}"].astype(np.float32) for e in range(len(r["epochs"]))]
            runs[i] = r
        return cls(doc["dataset"], doc["modality"], doc["num_classes"], np.asarray(doc["val_labels"]), runs,
                   doc["budget_s"])

    def scores(self, action: int, classes: tuple[int, ...]) -> list[float]:
        """Validation macro-F1 of each recorded epoch of one run, on a subset of the classes."""
        key = (action, classes)
        if key not in self._scores:
            keep = np.isin(self.val_labels, classes)
            remap = {c: i for i, c in enumerate(classes)}
            y = np.array([remap[c] for c in self.val_labels[keep]])
            self._scores[key] = [metrics(y, p[keep][:, list(classes)].argmax(1), len(classes))["macro_f1"]
                                 for p in self.runs[action]["probs"]]
        return self._scores[key]

    @property
    def probe_run(self) -> dict[str, Any]:
        return next(iter(self.runs.values()))


def load_recordings(folder: Path, names: list[str] | None = None) -> list[Recording]:
    files = sorted(Path(folder).glob("*.json"))
    return [Recording.load(f) for f in files if names is None or f.stem in names]


def neighbour(action: int, lr_factor: float = 1.0, unfreeze: bool = False) -> int | None:
    """The START_ACTIONS recipe that differs from `action` only by lr x lr_factor, or (unfreeze) the
    full fine-tune at the same learning rate that a partial one becomes when every block trains."""
    a = START_ACTIONS[action]
    for j, b in enumerate(START_ACTIONS):
        if j == action or b["modality"] != a["modality"] or b.get("res") != a.get("res"):
            continue
        if lr_factor != 1.0 and b["adapter"] == a["adapter"] and b.get("depth") == a.get("depth") \
                and abs(np.log(b["lr"] / a["lr"]) - np.log(lr_factor)) < 0.5:
            return j
        if unfreeze and a["adapter"] == "partial" and b["adapter"] == "full" and abs(np.log(b["lr"] / a["lr"])) < 0.5:
            return j
    return None


class FineTuneEnv(gym.Env):
    """gymnasium.Env over recordings. action_masks() gives the legal actions of the current decision."""

    metadata = {"render_modes": []}

    def __init__(self, recordings: list[Recording], budgets: tuple[float, ...] = (60.0, 120.0, 180.0),
                 cost: float = 0.02, subset_prob: float = 0.6, jitter: float = 0.0):
        super().__init__()
        if not recordings:
            raise ValueError("FineTuneEnv needs at least one recording (benchmarks/record_curves.py makes them)")
        self.recordings, self.budgets, self.cost, self.subset_prob = recordings, budgets, cost, subset_prob
        # Domain randomisation of the meta-features the policy sees (sizes, speeds, the probe's score): with
        # six datasets it would otherwise learn their exact values instead of what they mean.
        self.jitter = jitter
        self.action_space = gym.spaces.Discrete(max(len(START_ACTIONS), len(EPOCH_ACTIONS)))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (START_DIM + EPOCH_EXTRA,), np.float32)

    # ---- the task
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        options = options or {}
        self.rec = options.get("recording") or self.recordings[int(rng.integers(len(self.recordings)))]
        c = self.rec.num_classes
        if "classes" in options:
            self.classes = tuple(options["classes"])
        elif c > 3 and rng.random() < self.subset_prob:
            self.classes = tuple(sorted(rng.choice(c, int(rng.integers(3, c)), replace=False).tolist()))
        else:
            self.classes = tuple(range(c))
        self.budget = float(options.get("budget_s") or rng.choice(self.budgets))
        base = self.rec.probe_run
        share = len(self.classes) / c
        self.ctx = {**base["ctx"], "num_classes": len(self.classes), "budget_s": self.budget,
                    "n_train": max(2, int(base["ctx"]["n_train"] * share)), "n_val": max(1, int(base["ctx"]["n_val"] * share)),
                    "probe_val_f1": self.rec.scores(base["action"], self.classes)[0]}
        if self.jitter:
            scale = lambda: float(np.exp(rng.normal(0, self.jitter)))  # noqa: E731
            self.ctx.update(n_train=max(2, int(self.ctx["n_train"] * scale())),
                            forward_rate=self.ctx["forward_rate"] * scale(),
                            probe_seconds=self.ctx["probe_seconds"] * scale(),
                            imbalance=max(1.0, self.ctx["imbalance"] * scale()))
        self.phase, self.action, self.e = "start", None, 0
        self.t = base["ctx"]["probe_seconds"]
        self.best = self.ctx["probe_val_f1"]
        self.vals, self.losses, self.lr_scale = [self.best], [], 1.0
        self.steps = 0
        return self._obs(), self._info()

    def action_masks(self) -> np.ndarray:
        n = self.action_space.n
        out = np.zeros(n, dtype=bool)
        if self.phase == "start":
            for i, a in enumerate(START_ACTIONS):
                out[i] = (a["modality"] == "any" or a["modality"] == self.rec.modality) and (
                    i in self.rec.runs or a["adapter"] == "linear-probe")
            return out
        avail = {"continue", "stop"}
        if neighbour(self.action, 1 / LR_STEP) in self.rec.runs:
            avail.add("lr_down")
        if neighbour(self.action, LR_STEP) in self.rec.runs:
            avail.add("lr_up")
        if neighbour(self.action, unfreeze=True) in self.rec.runs:
            avail.add("unfreeze")
        out[:len(EPOCH_ACTIONS)] = epoch_mask(self.ctx, self._rep(), avail)
        return out

    # ---- one decision
    def step(self, action: int):
        action = int(action)
        if not self.action_masks()[action]:
            raise ValueError(f"action {action} is not legal now ({self.phase} phase)")
        self.steps += 1
        if self.phase == "start":
            if START_ACTIONS[action]["adapter"] == "linear-probe":
                return self._end(0.0, self._end_cost())
            self.action, self.phase, self.e = action, "epoch", 0
            return self._advance()
        name = EPOCH_ACTIONS[action]
        if name == "stop":
            return self._end(0.0, self._end_cost())
        if name in ("lr_down", "lr_up"):
            self.action = neighbour(self.action, LR_STEP ** (-1 if name == "lr_down" else 1))
            self.lr_scale *= LR_STEP ** (-1 if name == "lr_down" else 1)
        elif name == "unfreeze":
            self.action = neighbour(self.action, unfreeze=True)
        return self._advance()

    def _advance(self):
        """Replay the next epoch of the current recording, if the budget holds it."""
        run = self.rec.runs[self.action]
        epochs = run["epochs"]
        nxt = self.e + 1
        if nxt >= len(epochs):
            return self._end(0.0, self._end_cost())
        if self.e:
            took = epochs[nxt]["elapsed_s"] - epochs[self.e]["elapsed_s"]
        elif run["ctx"]["image_size"] == self.rec.probe_run["ctx"]["image_size"]:
            took = epochs[nxt]["elapsed_s"] - run["ctx"]["probe_seconds"]
        else:  # another resolution: the real run probes again at it, so the recording's whole start counts
            took = epochs[nxt]["elapsed_s"]
        if self.t + took + self._overhead(run) > self.budget:
            return self._end(0.0, self._end_cost())
        self.t += took
        self.e = nxt
        f1 = self.rec.scores(self.action, self.classes)[nxt]
        gain = max(0.0, f1 - self.best)
        self.best = max(self.best, f1)
        self.vals.append(f1)
        if epochs[nxt]["train_loss"] is not None:
            self.losses.append(epochs[nxt]["train_loss"])
        self.epoch_seconds = took
        return self._obs(), gain - self.cost * took / self.budget, False, False, self._info()

    def _overhead(self, run: dict[str, Any]) -> float:
        """What a run spends after training (test pass, report, save), as recorded."""
        return max(0.0, run["seconds"] - run["epochs"][-1]["elapsed_s"])

    def _end_cost(self) -> float:
        run = self.rec.runs.get(self.action) if self.action is not None else self.rec.probe_run
        return self.cost * self._overhead(run) / self.budget

    def _end(self, gain: float, cost: float):
        self.phase = "done"
        return self._obs(), gain - cost, True, False, self._info()

    def _rep(self) -> dict[str, Any]:
        run = self.rec.runs.get(self.action) if self.action is not None else None
        ep = run["epochs"][min(self.e, len(run["epochs"]) - 1)] if run else {}  # a shorter recording switched to
        a = START_ACTIONS[self.action] if self.action is not None else {"adapter": "linear-probe"}
        return {"epoch": self.e, "elapsed_s": self.t, "lr_scale": self.lr_scale, "adapter": a["adapter"],
                "depth": a.get("depth"), "max_depth": self.ctx["max_depth"], "val_history": self.vals,
                "train_loss_history": self.losses, "grad_norm": ep.get("grad_norm"),
                "epoch_seconds": getattr(self, "epoch_seconds", None)}

    def _obs(self) -> np.ndarray:
        if self.phase == "start":
            return np.concatenate([start_features(self.ctx), np.zeros(EPOCH_EXTRA, np.float32)])
        return epoch_features(self.ctx, self._rep())

    def _info(self) -> dict[str, Any]:
        return {"phase": self.phase, "best": self.best, "seconds": self.t, "dataset": self.rec.name,
                "classes": len(self.classes), "budget_s": self.budget}
