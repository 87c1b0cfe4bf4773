"""The lifecycle of a run: queued -> running -> finished | failed | cancelled | interrupted."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    queued = "queued"
    running = "running"
    finished = "finished"
    failed = "failed"
    cancelled = "cancelled"
    interrupted = "interrupted"  # the process running it died (worker killed, machine rebooted)

    def __str__(self) -> str:  # f"{s}" and str(s) give the plain value, as stored in the database
        return self.value


ACTIVE = frozenset({Status.queued, Status.running})
FINAL = frozenset({Status.finished, Status.failed, Status.cancelled, Status.interrupted})
# A resumed run keeps its id, re-queues, and continues from <run_dir>/checkpoints/last.pt if there is one.
RESUMABLE = frozenset({Status.interrupted, Status.cancelled, Status.failed})
