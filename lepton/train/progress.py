"""Honest progress: work is counted in weighted example-passes, evaluation included."""

from __future__ import annotations

import time
from typing import Any

from lepton.train.events import Emit

# A training example costs forward + backward (about 3 forwards); evaluation costs one forward.
TRAIN_COST, EVAL_COST = 3.0, 1.0


class Progress:
    """Work done over work planned; with a time budget, never behind the share of the budget used."""

    def __init__(self, emit: Emit, total: float, min_interval_s: float = 0.5, budget: Any = None):
        self.emit, self.total, self.done = emit, max(total, 1e-9), 0.0
        self.min_interval_s = min_interval_s
        self.t0 = time.time()
        self.last_emit = 0.0
        self.phase = "setup"
        self.budget = budget  # a --max-minutes budget (lepton.train.budget.Budget) ends the run on time: the ETA says so

    def extend(self, units: float) -> None:
        """More planned work, known once the plan is made (training and evaluation after the probe)."""
        self.total += max(units, 0.0)

    def add(self, units: float, phase: str, message: str = "", force: bool = False) -> None:
        self.done = min(self.done + units, self.total)
        now = time.time()
        if not force and phase == self.phase and now - self.last_emit < self.min_interval_s:
            return
        self.phase, self.last_emit = phase, now
        frac = self.done / self.total
        deadline = self.budget.deadline if self.budget is not None else None
        if deadline is not None:
            frac = max(frac, (now - self.t0) / max(deadline - self.t0, 1e-9))
        eta = (now - self.t0) / frac * (1 - frac) if frac > 0.01 else None
        if deadline is not None:
            eta = max(deadline - now, 0.0) if eta is None else min(eta, max(deadline - now, 0.0))
        # Never report 100 % while work remains: saving and the final report still run after the last unit.
        self.emit("progress", fraction=min(frac, 0.99), eta_s=eta, phase=phase, message=message)

    def finish(self, message: str = "done") -> None:
        self.emit("progress", fraction=1.0, eta_s=0.0, phase="done", message=message)
