"""What lepton.train.run tells the outside world, through one callable: emit(kind, **data).

Kinds and their data:
  "metrics"    step:int, epoch:float, split:str ("train"|"val"|"test"|"system"), values:dict[str, float]
               train: loss, lr, samples_per_s   val/test: accuracy, macro_f1, loss   system: rss_mb, gpu_mb
  "progress"   fraction:float in [0,1], eta_s:float|None, phase:str ("setup"|"features"|"train"|"eval"|"save"), message:str
  "log"        message:str, level:str ("info"|"warning"|"error")
  "checkpoint" path:str, epoch:int, step:int
  "result"     result:dict  (the same dict run() returns: run_id, run_dir, status, metrics, seconds)
The job store turns each into rows; the CLI turns them into a progress bar on stderr.
"""

from __future__ import annotations

from typing import Any, Protocol


class Emit(Protocol):
    def __call__(self, kind: str, **data: Any) -> None: ...


def null_emit(kind: str, **data: Any) -> None:
    """For library callers that do not want events."""


def tee(*emits: Emit) -> Emit:
    def emit(kind: str, **data: Any) -> None:
        for e in emits:
            e(kind, **data)

    return emit
