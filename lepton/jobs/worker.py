"""The worker: claims queued runs and hands each to its executor (a child process here, or a Ray task).

    lepton worker [--concurrency N] [--poll S] [--once] [--no-spare] [--executor local|ray] [--address A]

One loop, a few things per turn:
  1. heartbeat (every ~2 s; it names the runs it is training, its executor, a cluster's free resources)
     and reap dead runs;
  2. look after each job: cancel requested -> stop it (SIGTERM or ray.cancel), kill after 5 s;
     ended -> record how (a crash or an OOM kill keeps the tail of its worker.log as the error;
     a lost Ray node leaves it interrupted);
  3. claim queued runs up to the concurrency and start a job for each;
  4. let the executor tend: the local one keeps a spare child with the heavy imports done while idle,
     the Ray one writes its tasks' events into the store;
  5. sleep `poll` seconds (an empty queue costs one read, no write lock).
Each job writes to <run_dir>/worker.log. Studies always run as local children (a study's trials run in
its process). The worker's own log is LEPTON_HOME/logs/worker.log. SIGTERM/SIGINT stop the jobs and
mark their runs interrupted, so `lepton resume` continues them from their last checkpoint.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from lepton import paths
from lepton.jobs.executors import EXECUTORS, Exit, Job
from lepton.jobs.executors.local import LocalJob, spawn_child
from lepton.jobs.status import Status
from lepton.jobs.store import HOST, Store, get_store

HEARTBEAT_S = 2.0
DEAD_AFTER_S = 15.0  # a heartbeat older than this means the worker is gone
KILL_AFTER_S = 5.0  # SIGTERM, then SIGKILL if the child is still there
LOG_TAIL_LINES = 40
POLL_S = 0.25

log = logging.getLogger("lepton.worker")


@dataclass
class Child:
    run_id: str
    job: Job
    log_path: Path
    log_file: IO[bytes]
    started: float = field(default_factory=time.monotonic)
    term_sent: float | None = None  # monotonic time of SIGTERM
    reason: str | None = None  # "cancel" or "shutdown" once we started stopping it
    study: bool = False  # the child runs a study (run_id is then the study's id)


def new_worker_id() -> str:
    return f"worker-{HOST}-{os.getpid()}-{secrets.token_hex(2)}"


def setup_logging() -> Path:
    """Log to LEPTON_HOME/logs/worker.log (and to the terminal when there is one)."""
    path = paths.logs_dir() / "worker.log"
    log.setLevel(logging.INFO)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    fh = logging.FileHandler(path, encoding="utf-8")
    fh.setFormatter(logging.Formatter(f"%(asctime)s [{os.getpid()}] %(levelname)s %(message)s"))
    log.addHandler(fh)
    if sys.stderr is not None and sys.stderr.isatty():
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(sh)
    return path


def tail_lines(path: Path, n: int = LOG_TAIL_LINES, max_bytes: int = 64_000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-n:])


class Worker:
    def __init__(self, concurrency: int | None = 1, poll: float = POLL_S, once: bool = False, store: Store | None = None,
                 spare: bool = True, executor: str = "local", address: str | None = None):
        """concurrency None: as many runs at once as the executor has room for (one on this machine)."""
        given = max(1, int(concurrency)) if concurrency else 1
        self.threads = max(1, (os.cpu_count() or 1) // given) if given > 1 else None
        self.poll = max(0.05, float(poll))
        self.once = once
        self.store = store or get_store()
        self.id = new_worker_id()
        self.pid = os.getpid()
        self.executor = EXECUTORS.get(executor)(self.id, self.store, self.threads, spare and not once, address)
        self.concurrency = given if concurrency else max(1, self.executor.capacity())
        self.children: dict[str, Child] = {}
        self._stop: str | None = None
        self._last_beat = 0.0

    # ------------------------------------------------------------ main loop
    def run(self) -> int:
        setup_logging()
        self._install_signals()
        log.info("worker %s started (executor %s, concurrency %d, poll %.2fs, home %s, storage %s)", self.id,
                 self.executor.name, self.concurrency, self.poll, paths.home(), paths.storage())
        self._beat(force=True)
        try:
            while self._stop is None:
                try:
                    self._beat()
                    self._watch_children()
                    claimed = self._claim()
                    self.executor.tend(idle=not self.children and self._stop is None)
                except sqlite3.OperationalError as e:  # e.g. locked for longer than busy_timeout: try again
                    log.warning("database busy (%s); retrying", e)
                    self._sleep(self.poll)
                    continue
                if self.once and not self.children and not claimed:
                    log.info("queue empty, --once: exiting")
                    break
                self._sleep(self.poll)
        except Exception:
            log.exception("worker loop crashed")
            self._shutdown("worker error")
            raise
        self._shutdown(self._stop)
        return 0

    def _install_signals(self) -> None:
        def handler(signum, frame):
            self._stop = signal.Signals(signum).name

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self._stop is None and time.monotonic() < end:
            time.sleep(max(0.0, min(0.1, end - time.monotonic())))
            # Jobs that finish are noticed at once rather than after a full poll.
            if any(c.job.poll() is not None for c in self.children.values()):
                return

    def _beat(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_beat < HEARTBEAT_S:
            return
        self._last_beat = now
        self.store.heartbeat(self.id, self.pid, list(self.children) or None, executor=self.executor.name,
                             resources=self.executor.resources())
        for run_id in self.store.reap_dead(DEAD_AFTER_S):
            log.warning("run %s: its process is gone; marked interrupted", run_id)
        self._resume_studies()

    # ------------------------------------------------------------ jobs
    def _claim(self) -> int:
        n = 0
        while self._stop is None and len(self.children) < self.concurrency:
            study = self.store.claim_next_study(self.id, self.pid)
            if study is not None:  # a study is one child that trains its trials one after another
                n += 1
                self._start_study(study)
                continue
            run = self.store.claim_next(self.id, self.pid)
            if run is None:
                break
            n += 1
            try:
                self._start(run)
            except Exception as e:  # could not even start the job: the run fails, the worker lives on
                log.exception("run %s: could not start the job", run["id"])
                self.store.set_status(run["id"], Status.failed, error=f"could not start the job: {e}",
                                      only_from=Status.running)
        if n:
            self._beat(force=True)
        return n

    def _start(self, run: dict) -> None:
        run_dir = Path(run["run_dir"])
        run_dir.mkdir(parents=True, exist_ok=True)
        log_path = run_dir / "worker.log"
        log_file = open(log_path, "ab")
        log_file.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} attempt {run['attempt']} "
                       f"by worker {self.id} ({self.executor.name}) ====\n".encode())
        log_file.flush()
        job = self.executor.start(run, log_file)
        self.store.update_run(run["id"], child_pid=job.pid, executor=self.executor.name, node=job.node)
        self.children[run["id"]] = Child(run["id"], job, log_path, log_file)

    def _start_study(self, study: dict) -> None:
        log_path = paths.logs_dir() / f"study-{study['id']}.log"
        log_file = open(log_path, "ab")
        try:
            proc = spawn_child(["--study", study["id"]], log_file, self.threads)
        except Exception as e:  # could not start the process: the study fails, the worker lives on
            log.exception("study %s: could not start its process", study["id"])
            self.store.set_study_status(study["id"], Status.failed, only_from=[Status.running],
                                        error=f"could not start the study's process: {e}")
            log_file.close()
            return
        self.children[study["id"]] = Child(study["id"], LocalJob(study["id"], proc), log_path, log_file, study=True)
        log.info("study %s: started (pid %d)", study["id"], proc.pid)

    def _resume_studies(self) -> None:
        """Studies a dead process left interrupted go back to the queue: they resume with the trials they have."""
        for st in self.store.list_studies(status=Status.interrupted):
            if self.store.requeue_study(st["id"], [Status.interrupted]):
                log.info("study %s: queued to resume", st["id"])

    def _watch_children(self) -> None:
        for run_id, child in list(self.children.items()):
            ended = child.job.poll()
            if ended is not None:
                self._finished(child, ended)
                del self.children[run_id]
                continue
            if child.study:
                if child.reason is None and (self.store.get_study(run_id) or {}).get("status") == Status.cancelled.value:
                    log.info("study %s: cancelled; stopping pid %d", run_id, child.job.pid)
                    child.reason, child.term_sent = "cancel", time.monotonic()
                    child.job.stop()
                continue
            if child.reason is None and self.store.cancel_requested(run_id):
                log.info("run %s: cancel requested; stopping it (%s)", run_id, child.job.node)
                child.reason, child.term_sent = "cancel", time.monotonic()
                child.job.stop()
            elif child.term_sent is not None and time.monotonic() - child.term_sent > KILL_AFTER_S:
                log.warning("run %s: still alive %.0fs after being asked to stop; killing it", run_id, KILL_AFTER_S)
                child.job.kill()
                child.term_sent = time.monotonic() + 3600  # once is enough

    def _finished(self, child: Child, ended: Exit) -> None:
        """Record how a job ended, unless it already recorded that itself."""
        child.log_file.close()
        st = self.store
        run_id = child.run_id
        if child.study:
            if st.set_study_status(run_id, Status.failed, only_from=[Status.running],
                                   error=f"{ended.why}; see {child.log_path}"):
                log.warning("study %s: %s", run_id, ended.why)
            else:
                log.info("study %s: %s (exit code %d)", run_id, (st.get_study(run_id) or {}).get("status"), ended.code)
            return
        if child.reason == "cancel" or st.cancel_requested(run_id):
            if st.set_status(run_id, Status.cancelled, message="cancelled", only_from=Status.running):
                log.info("run %s: cancelled", run_id)
                return
        if child.reason == "shutdown" or ended.lost:
            why = "the worker stopped" if child.reason == "shutdown" else ended.why
            st.set_status(run_id, Status.interrupted, only_from=Status.running,
                          message=f"interrupted: {why}; `lepton resume {run_id}` continues from the last checkpoint")
            log.info("run %s: interrupted (%s)", run_id, why)
            return
        if ended.code != 0:
            tail = tail_lines(child.log_path)
            if st.set_status(run_id, Status.failed, error=f"{ended.why}; last lines of worker.log:\n{tail}",
                             message=ended.why, log_tail=tail, only_from=Status.running):
                log.warning("run %s: %s", run_id, ended.why)
                return
        elif st.set_status(run_id, Status.failed, only_from=Status.running,
                           error="the job process exited without reporting a result"):
            log.warning("run %s: exited 0 without a status", run_id)
            return
        run = st.get_run(run_id)
        log.info("run %s: %s (exit code %d)", run_id, run["status"] if run else "deleted", ended.code)

    # ------------------------------------------------------------ shutdown
    def _shutdown(self, why: str | None) -> None:
        if self.children:
            log.info("stopping %d job(s) (%s)", len(self.children), why)
        for child in self.children.values():
            if child.reason is None:
                child.reason = "shutdown"
            child.job.stop()
        deadline = time.monotonic() + KILL_AFTER_S
        for child in self.children.values():
            ended = child.job.wait(max(0.1, deadline - time.monotonic()))
            if ended is None:
                child.job.kill()
                ended = child.job.wait(KILL_AFTER_S) or Exit(-9, "killed at shutdown")
            self._finished(child, ended)
        self.children.clear()
        self.executor.close()
        try:
            self.store.remove_heartbeat(self.id)
        except Exception:
            log.exception("could not remove the heartbeat")
        _release_pidfile(self.pid)
        log.info("worker %s stopped (%s)", self.id, why or "done")


def _release_pidfile(pid: int) -> None:
    from lepton.jobs.launcher import pidfile_path

    p = pidfile_path()
    try:
        if p.read_text().strip() == str(pid):
            p.unlink()
    except (OSError, ValueError):
        pass


def main(concurrency: int | None = 1, poll: float = POLL_S, once: bool = False, spare: bool = True,
         executor: str = "local", address: str | None = None) -> int:
    from lepton.jobs.launcher import write_pidfile

    worker = Worker(concurrency=concurrency, poll=poll, once=once, spare=spare, executor=executor, address=address)
    write_pidfile(os.getpid())  # once it has its executor: a worker that cannot connect leaves no pidfile
    return worker.run()


if __name__ == "__main__":  # python -m lepton.jobs.worker: the same loop without the CLI
    import argparse

    ap = argparse.ArgumentParser(prog="lepton.jobs.worker")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--poll", type=float, default=POLL_S)
    ap.add_argument("--once", action="store_true")
    ap.add_argument("--no-spare", dest="spare", action="store_false")
    ap.add_argument("--executor", default="local")
    ap.add_argument("--address")
    a = ap.parse_args()
    raise SystemExit(main(a.concurrency, a.poll, a.once, a.spare, a.executor, a.address))
