"""TensorBoard event files under runs/<id>/tensorboard/, written with tensorboardX (no TensorFlow, no server).

Scalars for every metric the store records (tag "<split>/<name>", at the run's optimiser step), the log lines
as text, and at the end the hyperparameters with the final metrics and the test confusion matrix as an image.
`lepton tensorboard [RUN...]` prints the command that opens them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lepton.config import RunConfig
from lepton.tracking.base import SINKS, Sink

FOLDER = "tensorboard"
RESUME_FILE = "checkpoint_step"  # the step of the last checkpoint, so a resumed run overwrites what it replays
FLUSH_S = 5  # live: a TensorBoard open beside a training run sees new points within seconds
CELL_PX = 24


@SINKS.register("tensorboard")
class TensorBoard(Sink):
    def __init__(self, run_dir: Path):
        from tensorboardX import SummaryWriter

        super().__init__(run_dir)
        self.dir = run_dir / FOLDER
        mark = self.dir / RESUME_FILE
        # A resumed run replays from its checkpoint: purge_step hides the first attempt's events after it, as the
        # store deletes its metric rows after it. A run started over without a checkpoint replays from step 0.
        purge = (int(mark.read_text()) + 1 if mark.is_file() else 0) if self.dir.is_dir() else None
        self.writer = SummaryWriter(str(self.dir), purge_step=purge, flush_secs=FLUSH_S)

    def __call__(self, kind: str, **data: Any) -> None:
        if kind == "metrics":
            for name, value in (data.get("values") or {}).items():
                if isinstance(value, (int, float)) and np.isfinite(value):
                    self.writer.add_scalar(f"{data.get('split')}/{name}", value, global_step=data.get("step"))
        elif kind == "log":
            self.writer.add_text("log", f"{data.get('level', 'info')}: {data.get('message', '')}")
        elif kind == "checkpoint":
            (self.dir / RESUME_FILE).write_text(str(data.get("step") or 0))
        elif kind == "result":
            self._final(data.get("result") or {})

    def _final(self, result: dict) -> None:
        metrics = {f"final/{k}": float(v) for k, v in (result.get("metrics") or {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)}
        # config.yaml, not the config the run started with: it holds what "auto" resolved to.
        config = RunConfig.load(self.run_dir / "config.yaml")
        self.writer.add_hparams(hparams(config), metrics, name="hparams")
        report = self.run_dir / "report.json"
        if report.is_file():
            rep = json.loads(report.read_text())
            if rep.get("confusion_matrix"):
                self.writer.add_image("test/confusion_matrix", confusion_image(rep["confusion_matrix"]),
                                      dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


def hparams(config: RunConfig) -> dict[str, Any]:
    """The config's fields as TensorBoard accepts them: numbers, strings and booleans (None and mappings as text)."""
    out = {}
    for k, v in config.to_dict().items():
        out[k] = v if isinstance(v, (bool, int, float, str)) else json.dumps(v, default=str)
    return out


def confusion_image(cm: list[list[int]]) -> np.ndarray:
    """(H, W, 3) uint8: rows are true classes, columns predicted, each cell shaded by its share of its row, so a
    small class's mistakes are as visible as a large one's. (A picture without matplotlib, which Lepton does not
    otherwise need; the report page draws the labelled version.)"""
    m = np.asarray(cm, dtype=float)
    share = m / np.maximum(m.sum(1, keepdims=True), 1)
    white, ink = np.array([255.0, 255, 255]), np.array([91.0, 91, 214])  # the dashboard's primary colour
    cells = white + share[..., None] * (ink - white)
    img = np.kron(cells, np.ones((CELL_PX, CELL_PX, 1)))
    img[::CELL_PX, :] = img[:, ::CELL_PX] = 200  # grid lines
    return img.astype(np.uint8)
