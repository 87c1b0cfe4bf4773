"""Jobs: the SQLite store shared by every process, the worker that runs queued runs, and the launcher.

The dashboard and the CLI only talk to the store (and launcher); a worker process claims queued
runs and trains each one in its own child process, so a crash or OOM kills only that run.
"""

from lepton.jobs.status import ACTIVE, FINAL, RESUMABLE, Status

__all__ = ["ACTIVE", "FINAL", "RESUMABLE", "Status"]
