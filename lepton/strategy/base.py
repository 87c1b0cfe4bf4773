"""The strategy seams: a Controller decides at epoch boundaries, a plan fills what the user left empty.

The loop asks its controller once after the probe ("epoch 0": fine-tune at all, or ship the
probe?) and after every validation. It never knows which controller it has: the fixed schedule
and the learned policy are two registrations of the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lepton.registry import Registry


@dataclass
class Context:
    """What a controller may know about the run before it starts (meta-features and the probe)."""

    modality: str
    n_train: int
    n_val: int
    num_classes: int
    imbalance: float  # largest class / smallest class in train
    budget_s: float | None
    adapter: str
    frozen: bool  # the adapter trains a head on cached features only
    depth: int | None  # partial: blocks training now
    max_depth: int  # blocks the backbone has
    lr: float
    probe_val_f1: float
    probe_seconds: float  # setup + features + probe fit so far
    epoch_seconds_estimate: float | None  # one fine-tuning epoch, from the measured forward speed
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpochReport:
    """What the loop tells a controller at an epoch boundary (epoch 0: after the probe, nothing trained yet)."""

    epoch: int
    step: int
    elapsed_s: float  # since the run started
    window_fraction: float  # of the training window used (0 without a budget)
    seconds_left: float | None  # of the whole budget
    lr_scale: float
    depth: int | None
    val_f1: float  # this epoch's (the probe's at epoch 0)
    best_f1: float  # best so far, the probe included
    val_history: list[float]  # per epoch, the probe first
    train_loss: float | None  # mean over the epoch
    train_loss_history: list[float]
    grad_norm: float | None  # mean over the epoch
    epoch_seconds: float | None  # the last epoch's training + validation time
    val_probs: Any = None  # (n_val, C) numpy probabilities behind val_f1 (recorders keep them; policies need not)


@dataclass
class Decision:
    lr_scale: float = 1.0  # multiplies the learning-rate scale from now on
    unfreeze: int = 0  # more top blocks to train (partial only)
    stop: bool = False
    why: str = ""


class Controller:
    name = ""
    description = ""
    user_facing = True  # offered on the Train page (tools such as the recorder are not)

    def start(self, context: Context, config: Any) -> None:
        """Called once, after the probe and before training."""
        self.context, self.config = context, config

    def decide(self, report: EpochReport) -> Decision:
        return Decision()


CONTROLLERS: Registry[type[Controller]] = Registry("controller")
