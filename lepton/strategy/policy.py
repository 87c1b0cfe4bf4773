"""The learned strategy: a small policy network, trained by REINFORCE across tasks, that decides how to fine-tune.

Two decisions, one network (a shared trunk, two heads):
- at the start (after the probe): which recipe, from START_ACTIONS (the probe alone, or an adapter
  family with a learning rate and, for images, a resolution);
- at every epoch boundary: continue, scale the learning rate by 1/3 or 3, unfreeze every block
  (partial -> all blocks train), or stop.
It sees the same numbers in a real run (lepton/train/loop.py, through Context and EpochReport) and
in the simulator it was trained in (lepton/strategy/env.py): `start_features` and `epoch_features`
are the one definition of its inputs.

The weights ship as policy.safetensors beside this file (benchmarks/train_policy.py reproduces
them from the suite, with the seed and datasets recorded in the file's metadata).
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lepton.strategy.base import CONTROLLERS, Context, Controller, Decision, EpochReport

WEIGHTS = Path(__file__).with_name("policy.safetensors")
LR_STEP = 3.0  # the lr actions' factor: the spacing of the recorded learning-rate grid the policy learned on
FAMILIES = ("linear-probe", "lora", "partial", "full")

# The recipes a run can start with. "res": image resolution, "small" = auto's rule for the data (lepton/strategy/auto.py).
START_ACTIONS: list[dict[str, Any]] = [
    {"modality": "any", "adapter": "linear-probe"},
    *({"modality": "text", "adapter": "lora", "lr": lr} for lr in (3e-4, 1e-3, 3e-3)),
    *({"modality": "text", "adapter": "full", "lr": lr} for lr in (3e-5, 1e-4)),
    {"modality": "text", "adapter": "partial", "lr": 1e-4, "depth": 2},
    *({"modality": "image", "adapter": a, "lr": lr, "res": res, **({"depth": d} if d else {})}
      for res in ("small", 224)
      for a, lr, d in (("full", 3e-4, None), ("full", 1e-3, None), ("lora", 1e-3, None), ("partial", 1e-3, 3))),
]
EPOCH_ACTIONS = ("continue", "lr_down", "lr_up", "unfreeze", "stop")
START_DIM, EPOCH_EXTRA = 10, 16


def start_mask(modality: str, trainable: bool) -> np.ndarray:
    return np.array([a["modality"] == "any" or (trainable and a["modality"] == modality) for a in START_ACTIONS])


def start_features(ctx: dict[str, Any]) -> np.ndarray:
    """What the start decision sees. ctx: modality, n_train, n_val, num_classes, imbalance, budget_s,
    probe_val_f1, probe_seconds, forward_rate (examples/s of one forward pass of the backbone here)."""
    b = max(ctx["budget_s"] or 600.0, 1.0)
    epoch_full = (ctx["n_train"] * 3.0 + ctx["n_val"]) / max(ctx["forward_rate"], 1e-6)
    return np.array([
        ctx["modality"] == "text", ctx["modality"] == "image", ctx["modality"] == "audio",
        math.log10(max(ctx["n_train"], 1)) / 4, math.log10(max(ctx["num_classes"], 2)) / 2,
        math.log10(max(ctx["imbalance"], 1.0)), ctx["probe_val_f1"], ctx["probe_seconds"] / b,
        math.log10(max(epoch_full / b, 1e-4)), math.log10(b) / 3,
    ], dtype=np.float32)


def epoch_features(ctx: dict[str, Any], rep: dict[str, Any]) -> np.ndarray:
    """What an epoch decision sees: the modality and scale-free facts of the run so far (scores relative to the
    probe and the best, losses as ratios, time as shares). rep: epoch, elapsed_s, lr_scale, adapter, depth,
    max_depth, val_history (probe first), train_loss_history, grad_norm, epoch_seconds.

    Absolute values (a dataset's size, its score level, its loss) are left out on purpose: trained on five
    datasets, a policy that saw them learned those datasets, and stopped held-out runs after one epoch."""
    b = max(ctx["budget_s"] or 600.0, 1.0)
    vals, losses = rep["val_history"], rep["train_loss_history"] or [1.0]
    prev = vals[-2] if len(vals) > 1 else vals[-1]
    family = [rep["adapter"] == f for f in FAMILIES]
    depth = (rep["depth"] or 0) / max(rep["max_depth"], 1) if rep["adapter"] == "partial" else float(rep["adapter"] == "full")
    epoch_s = rep["epoch_seconds"] or 0.0
    left = max(b - rep["elapsed_s"], 0.0)
    since_best = len(vals) - 1 - int(np.argmax(vals))
    ratio = lambda a, c: math.log(max(a, 1e-6) / max(c, 1e-6))  # noqa: E731
    start = start_features(ctx)
    start[3:] = 0.0  # only the modality
    return np.concatenate([start, np.array([
        min(rep["epoch"], 50) / 20, rep["elapsed_s"] / b, math.log(rep["lr_scale"], LR_STEP) / 2, depth, *family,
        vals[-1] - vals[0], max(vals) - vals[0], vals[-1] - max(vals), vals[-1] - prev,
        ratio(losses[-1], losses[0]), ratio(losses[-1], losses[-2]) if len(losses) > 1 else 0.0,
        min(left / max(epoch_s, 1e-6), 20.0) / 10, min(since_best, 10) / 10,
    ], dtype=np.float32)])


def epoch_mask(ctx: dict[str, Any], rep: dict[str, Any], available: set[str] | None = None) -> np.ndarray:
    """Legal epoch actions: unfreeze only for partial below full depth; the simulator also masks curves it lacks."""
    ok = {"continue": True, "lr_down": True, "lr_up": True, "stop": True,
          "unfreeze": rep["adapter"] == "partial" and (rep["depth"] or 0) < rep["max_depth"]}
    if available is not None:
        ok = {k: v and (k in available) for k, v in ok.items()}
    return np.array([ok[a] for a in EPOCH_ACTIONS])


class PolicyNet(nn.Module):
    """~10k parameters: a 2-layer trunk per decision kind and one output head each."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.start = nn.Sequential(nn.Linear(START_DIM, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                   nn.Linear(hidden, len(START_ACTIONS)))
        self.epoch = nn.Sequential(nn.Linear(START_DIM + EPOCH_EXTRA, hidden), nn.Tanh(), nn.Linear(hidden, len(EPOCH_ACTIONS)))

    @staticmethod
    def masked(logits: torch.Tensor, mask: np.ndarray | torch.Tensor) -> torch.Tensor:
        return logits.masked_fill(~torch.as_tensor(mask, dtype=torch.bool), -1e9)


def load_policy(path: str | None = None) -> tuple[PolicyNet, dict[str, Any]]:
    """The policy and its metadata (seed, training datasets, episodes): the shipped one, or $LEPTON_POLICY's
    (benchmarks/strategy.py scores held-out datasets with policies trained without them)."""
    return _load(path or os.environ.get("LEPTON_POLICY") or str(WEIGHTS))


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[PolicyNet, dict[str, Any]]:
    """Safetensors only: no pickle."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from lepton.errors import ConfigError

    if not Path(path).is_file():
        raise ConfigError(f"the policy's weights are missing ({path}); reinstall Lepton, or make them with "
                          "benchmarks/train_policy.py, or use --controller fixed")

    net = PolicyNet()
    net.load_state_dict(load_file(path))
    with safe_open(path, framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("lepton", "{}"))
    return net.eval(), meta


def _ctx_dict(ctx: Context) -> dict[str, Any]:
    return {"modality": ctx.modality, "n_train": ctx.n_train, "n_val": ctx.n_val, "num_classes": ctx.num_classes,
            "imbalance": ctx.imbalance, "budget_s": ctx.budget_s, "probe_val_f1": ctx.probe_val_f1,
            "probe_seconds": ctx.probe_seconds, "forward_rate": ctx.extra.get("forward_rate", 1.0)}


@torch.no_grad()
def choose_start(ctx: dict[str, Any], trainable: bool, path: str | None = None) -> dict[str, Any]:
    """The policy's recipe for this run (greedy): one of START_ACTIONS."""
    net, _ = load_policy(path)
    logits = net.masked(net.start(torch.from_numpy(start_features(ctx))), start_mask(ctx["modality"], trainable))
    return START_ACTIONS[int(logits.argmax())]


@CONTROLLERS.register("policy")
class PolicyController(Controller):
    name = "policy"
    description = "The learned policy (REINFORCE across the suite's tasks) decides at every epoch boundary"

    def decide(self, report: EpochReport) -> Decision:
        if report.epoch == 0:
            return Decision()  # the start recipe was the policy's own (auto.training); training goes ahead
        net, _ = load_policy()
        ctx = _ctx_dict(self.context)
        whole = self.context.adapter == "partial" and (report.depth or 0) >= self.context.max_depth
        rep = {"epoch": report.epoch, "elapsed_s": report.elapsed_s, "lr_scale": report.lr_scale,
               "adapter": "full" if whole else self.context.adapter,  # as the simulator sees an unfrozen partial
               "depth": report.depth, "max_depth": self.context.max_depth,
               "val_history": report.val_history, "train_loss_history": report.train_loss_history,
               "grad_norm": report.grad_norm, "epoch_seconds": report.epoch_seconds}
        with torch.no_grad():
            logits = net.masked(net.epoch(torch.from_numpy(epoch_features(ctx, rep))), epoch_mask(ctx, rep))
        action = EPOCH_ACTIONS[int(logits.argmax())]
        if action == "lr_down":
            return Decision(lr_scale=1 / LR_STEP, why=f"policy: learning rate x1/{LR_STEP:g}")
        if action == "lr_up":
            return Decision(lr_scale=LR_STEP, why=f"policy: learning rate x{LR_STEP:g}")
        if action == "unfreeze":
            return Decision(unfreeze=self.context.max_depth, why="policy: every block trains from now on")
        if action == "stop":
            return Decision(stop=True, why=f"policy: stop (validation macro-F1 {report.val_f1:.3f}, best {report.best_f1:.3f})")
        return Decision()
