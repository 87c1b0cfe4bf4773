"""The time budget as a plan: one clock for the whole run, a training window, and a schedule laid over it.

`--max-minutes M` is the whole run: loading, the probe's feature extraction, training, every
validation, the test evaluation, the pretrained baseline and saving all happen inside M. The loop
measures how fast this backbone runs here (the probe's forward pass over the data is the first
measurement), keeps back what evaluation and saving will need at the end, and lays the learning
rate's warm-up and cosine decay over the training window that is left. A run the clock cuts has
therefore already decayed, instead of stopping at its peak learning rate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from lepton.errors import ConfigError

SAVE_S = 2.0  # writing the model, report and predictions (measured ~1 s on 2 cores)
SAFETY = 0.03  # of the budget: estimates are estimates
MIN_WINDOW_EPOCHS = 1.0  # a fine-tune needs at least one epoch to be worth more than the probe


class BudgetError(ConfigError):
    """The time budget cannot hold even one epoch."""


@dataclass
class Budget:
    """Deadlines for one run. seconds=None: no budget (epochs alone decide)."""

    seconds: float | None
    t0: float = field(default_factory=time.time)
    window_start: float | None = None
    window_end: float | None = None

    @property
    def deadline(self) -> float | None:
        return None if self.seconds is None else self.t0 + self.seconds

    def left(self, now: float | None = None) -> float:
        return math.inf if self.deadline is None else self.deadline - (now or time.time())

    def open_window(self, reserve_s: float) -> float | None:
        """Start the training window now; it ends when only reserve_s (+ a safety margin) is left. Returns its length."""
        now = time.time()
        self.window_start = now
        if self.deadline is None:
            return None
        self.window_end = self.deadline - reserve_s - SAFETY * self.seconds
        return self.window_end - now

    def shift(self, reserve_s: float) -> None:
        """A better estimate of what the end needs moves the window's end (never before its start)."""
        if self.deadline is not None and self.window_start is not None:
            self.window_end = max(self.window_start, self.deadline - reserve_s - SAFETY * self.seconds)

    def resume(self, elapsed_before: float, window_before: float) -> None:
        """A resumed run continues its budget: what it had used before counts, and the schedule picks up where it was."""
        self.t0 -= elapsed_before
        if self.window_end is not None:
            self.window_end -= elapsed_before
        if self.window_start is not None:
            self.window_start = time.time() - window_before

    def used(self) -> tuple[float, float]:
        """(seconds since the run started, seconds since its training window opened), for a checkpoint."""
        now = time.time()
        return now - self.t0, (now - self.window_start) if self.window_start is not None else 0.0

    def window_fraction(self, now: float | None = None) -> float:
        """0 -> 1 across the training window; 0 without a budget."""
        if self.window_end is None or self.window_start is None:
            return 0.0
        span = max(self.window_end - self.window_start, 1e-9)
        return min(1.0, max(0.0, ((now or time.time()) - self.window_start) / span))

    def window_over(self, now: float | None = None) -> bool:
        return self.window_end is not None and (now or time.time()) >= self.window_end


def lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over the first `warmup` of progress, then cosine decay to 0 at progress 1."""
    progress = min(max(progress, 0.0), 1.0)
    up = min(1.0, progress / warmup) if warmup > 0 else 1.0
    return up * 0.5 * (1 + math.cos(math.pi * progress))
