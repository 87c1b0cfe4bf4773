"""What the dashboard and the CLI call to queue, cancel and resume runs, and to keep a worker alive."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable

from lepton import paths
from lepton.config import RunConfig
from lepton.errors import RunError
from lepton.jobs.status import FINAL, RESUMABLE, Status
from lepton.jobs.store import get_store, pid_alive

WORKER_ID_PREFIX = "worker-"  # heartbeats of real workers; a foreground `lepton train` beats as "cli-…"


def pidfile_path() -> Path:
    return paths.home() / "worker.pid"


def write_pidfile(pid: int) -> None:
    tmp = pidfile_path().with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(str(pid))
    tmp.replace(pidfile_path())


def _pidfile_pid() -> int | None:
    try:
        return int(pidfile_path().read_text().strip())
    except (OSError, ValueError):
        return None


def _is_worker_process(pid: int | None) -> bool:
    """A live (non-zombie) process that is a lepton worker, not whatever reused the pid."""
    if not pid_alive(pid):
        return False
    try:
        import psutil

        args = psutil.Process(pid).cmdline()
    except Exception:
        return False
    return "worker" in args[1:] or any(a.endswith("lepton.jobs.worker") for a in args)


def worker_alive(max_age_s: float = 15) -> bool:
    """A worker is alive if the pid file names a live worker process, or one has a fresh heartbeat."""
    if _is_worker_process(_pidfile_pid()):
        return True
    return any(w["worker_id"].startswith(WORKER_ID_PREFIX) for w in get_store().live_workers(max_age_s))


def ensure_worker(concurrency: int = 1) -> int | None:
    """Start a detached `python -m lepton worker` unless one is alive; returns its pid, or None.

    A lock file makes the check-then-start atomic, so two dashboards never start two workers.
    The worker outlives the caller (its own session): closing the browser never stops training.
    """
    from lepton.jobs.executors.local import child_env

    with open(paths.home() / "worker.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if worker_alive():
                return None
            with open(paths.logs_dir() / "worker.log", "ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "lepton", "worker", "--concurrency", str(int(concurrency))],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, close_fds=True, env=child_env(), cwd=str(paths.home()),
                )
            write_pidfile(proc.pid)  # the worker rewrites it itself; this covers the seconds before that
            return proc.pid
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _absolute(ref: str | None) -> str | None:
    """A relative data path means relative to the submitter, not to wherever the worker runs."""
    if not ref:
        return ref
    p = Path(ref).expanduser()
    return str(p.resolve()) if not p.is_absolute() and p.exists() else ref


def submit(config: RunConfig, owner: str | None = None) -> str:
    """Queue a run owned by `owner` (lepton/auth.py; None: only admins see it); a worker picks it up. Returns the run id."""
    config = dataclasses.replace(config, data=_absolute(config.data), test_data=_absolute(config.test_data))
    return get_store().create_run(config, status=Status.queued, owner=owner)


def cancel(run_ref: str) -> dict:
    """Queued: cancelled at once. Running: the worker terminates its process within seconds."""
    store = get_store()
    run = store.find_run(run_ref)
    if run["status"] == Status.queued.value:
        if store.set_status(run["id"], Status.cancelled, message="cancelled before it started", only_from=Status.queued):
            return store.get_run(run["id"])
        run = store.get_run(run["id"])  # a worker claimed it a moment ago
    if run["status"] == Status.running.value:
        store.request_cancel(run["id"])
        return store.get_run(run["id"])
    raise RunError(f"run {run['id']} is already {run['status']}; nothing to cancel")


def resume(run_ref: str) -> str:
    """Re-queue an interrupted, cancelled or failed run under the same id; it continues from its checkpoint."""
    store = get_store()
    run = store.find_run(run_ref)
    if run["status"] not in {s.value for s in RESUMABLE}:
        what = "still queued" if run["status"] == "queued" else (
            "running" if run["status"] == "running" else f"{run['status']}")
        raise RunError(f"run {run['id']} is {what}; only interrupted, cancelled or failed runs can be resumed")
    if store.requeue(run["id"], RESUMABLE) is None:
        raise RunError(f"run {run['id']} changed state meanwhile; check `lepton status {run['id']}`")
    return run["id"]


def wait(run_id: str, timeout: float = 60.0, until: Iterable[str | Status] = FINAL, poll: float = 0.2) -> dict:
    """Block until the run reaches one of the `until` statuses; TimeoutError otherwise."""
    wanted = {Status(s).value for s in until}
    store = get_store()
    deadline = time.monotonic() + timeout
    while True:
        run = store.get_run(run_id)
        if run is None:
            raise RunError(f"no run '{run_id}'; `lepton runs` lists them")
        if run["status"] in wanted:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} is still {run['status']} after {timeout:.0f} s "
                               f"(phase {run['phase']}, {run['progress'] * 100:.0f} %, message {run['message']!r})")
        time.sleep(poll)
