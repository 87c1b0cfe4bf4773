"""The executor seam: start a run, let its events reach the store, stop it, and notice how it ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any

from lepton.registry import Registry


@dataclass(frozen=True)
class Exit:
    """How a job ended. code 0: it recorded its own verdict; otherwise the worker records one from `why`."""

    code: int
    why: str
    lost: bool = False  # the machine under it went away (a node, a killed task): interrupted, `lepton resume` goes on


class Job:
    """One run handed to an executor."""

    run_id: str
    pid: int | None = None  # its process on this machine, where there is one
    node: str | None = None  # where it runs, as the dashboard shows it (None until it is placed)

    def poll(self) -> Exit | None:
        """None while it runs; then the same Exit on every call."""
        raise NotImplementedError

    def stop(self) -> None:
        """Ask it to stop (cancel, shutdown): it saves nothing more and ends within seconds."""
        raise NotImplementedError

    def kill(self) -> None:
        """It did not stop when asked: end it now."""
        raise NotImplementedError

    def wait(self, timeout: float) -> Exit | None:
        raise NotImplementedError


class Executor:
    """Made once per worker. `threads`: each job's share of this machine's cores (None: all of them)."""

    name = ""
    cluster = False  # it runs jobs on other machines, at the worker's --address

    def __init__(self, worker_id: str, store: Any, threads: int | None, spare: bool, address: str | None):
        self.worker_id, self.store, self.threads = worker_id, store, threads

    def start(self, run: dict, log_file: IO[bytes]) -> Job:
        raise NotImplementedError

    def tend(self, idle: bool) -> None:
        """Once a worker turn: bring remote events into the store, keep a warm process ready while idle."""

    def capacity(self) -> int:
        """How many runs at once fit, when the user did not say (--concurrency)."""
        return 1

    def resources(self) -> dict[str, Any] | None:
        """What the dashboard shows of a cluster: {"nodes": n, "cpus": (free, total), "gpus": (free, total)}."""
        return None

    def close(self) -> None:
        pass


EXECUTORS: Registry[type[Executor]] = Registry("executor")
