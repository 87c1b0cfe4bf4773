"""Honest progress: work is counted in weighted example-passes, evaluation included."""

from __future__ import annotations

import time

from lepton.train.events import Emit

# A training example costs forward + backward (about 3 forwards); evaluation costs one forward.
TRAIN_COST, EVAL_COST = 3.0, 1.0


class Progress:
    def __init__(self, emit: Emit, total: float, min_interval_s: float = 0.5, deadline: float | None = None):
        self.emit, self.total, self.done = emit, max(total, 1e-9), 0.0
        self.min_interval_s = min_interval_s
        self.t0 = time.time()
        self.last_emit = 0.0
        self.phase = "setup"
        self.deadline = deadline  # a --max-minutes budget ends training early: the ETA must say so

    def add(self, units: float, phase: str, message: str = "", force: bool = False) -> None:
        self.done = min(self.done + units, self.total)
        now = time.time()
        if not force and phase == self.phase and now - self.last_emit < self.min_interval_s:
            return
        self.phase, self.last_emit = phase, now
        frac = self.done / self.total
        eta = (now - self.t0) / frac * (1 - frac) if frac > 0.01 else None
        if self.deadline is not None and phase == "train":
            eta = max(self.deadline - now, 0.0) if eta is None else min(eta, max(self.deadline - now, 0.0))
        # Never report 100 % while work remains: saving and the final report still run after the last unit.
        self.emit("progress", fraction=min(frac, 0.99), eta_s=eta, phase=phase, message=message)

    def finish(self, message: str = "done") -> None:
        self.emit("progress", fraction=1.0, eta_s=0.0, phase="done", message=message)
