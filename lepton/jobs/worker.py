"""The worker: claims queued runs and trains each one in its own child process.

    lepton worker [--concurrency N] [--poll S] [--once] [--no-spare]

One loop, a few things per turn:
  1. heartbeat (every ~2 s; it names the runs its children are training) and reap dead runs;
  2. look after each child: cancel requested -> SIGTERM its process group, SIGKILL after 5 s;
     exited -> record how (a crash or an OOM kill keeps the tail of its worker.log as the error);
  3. claim queued runs up to the concurrency and start a child for each;
  4. while no run is training, keep one spare child with the heavy imports done (see child.py), so the
     next run starts training within a second of its claim instead of ~4 s;
  5. sleep `poll` seconds (an empty queue costs one read, no write lock).
A child is `python -m lepton.jobs.child RUN_ID` (or the spare, handed RUN_ID on stdin), in its own
session, writing to <run_dir>/worker.log.
The worker's own log is LEPTON_HOME/logs/worker.log. SIGTERM/SIGINT stop the children and mark
their runs interrupted, so `lepton resume` continues them from their last checkpoint.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from lepton import paths
from lepton.openmp import polite_openmp
from lepton.jobs.status import Status
from lepton.jobs.store import HOST, Store, get_store, pid_alive

HEARTBEAT_S = 2.0
DEAD_AFTER_S = 15.0  # a heartbeat older than this means the worker is gone
KILL_AFTER_S = 5.0  # SIGTERM, then SIGKILL if the child is still there
LOG_TAIL_LINES = 40
POLL_S = 0.25
SPARE_RETRY_S = 60.0  # a spare that died while waiting is replaced after this long, not in a tight loop

log = logging.getLogger("lepton.worker")


@dataclass
class Child:
    run_id: str
    proc: subprocess.Popen
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


def child_env(threads: int | None = None) -> dict[str, str]:
    """The environment for a child: ours, plus the path to this lepton (it may not be installed).

    threads: each job's share of the cores when several train at once. Without it every job starts one
    torch thread per core, so two jobs on two cores run four threads that preempt each other and the
    dashboard. A user's own OMP_NUM_THREADS wins."""
    env = dict(os.environ)
    env["LEPTON_HOME"] = str(paths.home())
    env["PYTHONUNBUFFERED"] = "1"
    polite_openmp(env)
    if threads and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(threads)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root)])
    return env


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


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (often the system running out of memory)" if -code == signal.SIGKILL else ""
        return f"the job process was killed by {name}{hint}"
    return f"the job process exited with code {code}"


class Worker:
    def __init__(self, concurrency: int = 1, poll: float = POLL_S, once: bool = False, store: Store | None = None,
                 spare: bool = True):
        self.concurrency = max(1, int(concurrency))
        self.threads = max(1, (os.cpu_count() or 1) // self.concurrency) if self.concurrency > 1 else None
        self.poll = max(0.05, float(poll))
        self.once = once
        self.use_spare = spare and not once
        self.spare: subprocess.Popen | None = None
        self._spare_after = 0.0
        self.store = store or get_store()
        self.id = new_worker_id()
        self.pid = os.getpid()
        self.children: dict[str, Child] = {}
        self._stop: str | None = None
        self._last_beat = 0.0

    # ------------------------------------------------------------ main loop
    def run(self) -> int:
        setup_logging()
        self._install_signals()
        log.info("worker %s started (concurrency %d, poll %.2fs, spare %s, home %s)", self.id, self.concurrency,
                 self.poll, "on" if self.use_spare else "off", paths.home())
        self._beat(force=True)
        try:
            while self._stop is None:
                try:
                    self._beat()
                    self._watch_children()
                    claimed = self._claim()
                    self._keep_spare()
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
            # Children that finish are noticed at once rather than after a full poll.
            if any(c.proc.poll() is not None for c in self.children.values()):
                return

    def _beat(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_beat < HEARTBEAT_S:
            return
        self._last_beat = now
        self.store.heartbeat(self.id, self.pid, list(self.children) or None)
        for run_id in self.store.reap_dead(DEAD_AFTER_S):
            log.warning("run %s: its process is gone; marked interrupted", run_id)
        self._resume_studies()

    # ------------------------------------------------------------ children
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
            except Exception as e:  # could not even start the process: the run fails, the worker lives on
                log.exception("run %s: could not start the job process", run["id"])
                self.store.set_status(run["id"], Status.failed, error=f"could not start the job process: {e}",
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
                       f"by worker {self.id} ====\n".encode())
        log_file.flush()
        proc = self._hand_to_spare(run["id"])
        how = "the preloaded spare"
        if proc is None:
            proc, how = self._spawn([run["id"]], log_file), "a new process"
        self.store.update_run(run["id"], child_pid=proc.pid)
        self.children[run["id"]] = Child(run["id"], proc, log_path, log_file)
        log.info("run %s: started (attempt %d, pid %d, %s)", run["id"], run["attempt"], proc.pid, how)

    def _start_study(self, study: dict) -> None:
        log_path = paths.logs_dir() / f"study-{study['id']}.log"
        log_file = open(log_path, "ab")
        try:
            proc = self._spawn(["--study", study["id"]], log_file)
        except Exception as e:  # could not start the process: the study fails, the worker lives on
            log.exception("study %s: could not start its process", study["id"])
            self.store.set_study_status(study["id"], Status.failed, only_from=[Status.running],
                                        error=f"could not start the study's process: {e}")
            log_file.close()
            return
        self.children[study["id"]] = Child(study["id"], proc, log_path, log_file, study=True)
        log.info("study %s: started (pid %d)", study["id"], proc.pid)

    def _resume_studies(self) -> None:
        """Studies a dead process left interrupted go back to the queue: they resume with the trials they have."""
        for st in self.store.list_studies(status=Status.interrupted):
            if self.store.requeue_study(st["id"], [Status.interrupted]):
                log.info("study %s: queued to resume", st["id"])

    def _spawn(self, args: list[str], out: IO[bytes], stdin: int = subprocess.DEVNULL) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "lepton.jobs.child", *args], stdin=stdin, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env=child_env(self.threads),
                                close_fds=True)

    def _keep_spare(self) -> None:
        """While no run trains, keep one spare child that has done its imports (it waits on stdin).

        Only while idle: on a small machine its ~3 s of importing would slow a run that is training.
        """
        if not self.use_spare or self.children or self._stop is not None:
            return
        if self.spare is not None:
            if _waiting(self.spare):
                return
            log.warning("the spare job process exited (code %s) while waiting; see %s", self.spare.returncode,
                        paths.logs_dir() / "spare.log")
            self.spare = None
            self._spare_after = time.monotonic() + SPARE_RETRY_S
        if time.monotonic() < self._spare_after:
            return
        with open(paths.logs_dir() / "spare.log", "wb") as out:  # the child keeps its own copy of the handle
            self.spare = self._spawn(["--spare"], out, stdin=subprocess.PIPE)

    def _hand_to_spare(self, run_id: str) -> subprocess.Popen | None:
        """Give run_id to the spare, if there is a live one; it becomes that run's child."""
        spare, self.spare = self.spare, None
        if spare is None:
            return None
        try:
            if _waiting(spare):
                spare.stdin.write(f"{run_id}\n".encode())
                spare.stdin.close()
                return spare
        except OSError:  # it died between the poll and the write
            pass
        self._stop_spare(spare)
        return None

    def _stop_spare(self, spare: subprocess.Popen | None) -> None:
        if spare is None:
            return
        self._signal(spare, signal.SIGKILL)  # it holds nothing but imports
        spare.wait()

    def _signal(self, child: Child | subprocess.Popen, sig: int) -> None:
        proc = child.proc if isinstance(child, Child) else child
        try:  # the whole process group: data-loader workers and the like go too
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def _watch_children(self) -> None:
        for run_id, child in list(self.children.items()):
            code = child.proc.poll()
            if code is not None:
                self._finished(child, code)
                del self.children[run_id]
                continue
            if child.study:
                if child.reason is None and (self.store.get_study(run_id) or {}).get("status") == Status.cancelled.value:
                    log.info("study %s: cancelled; stopping pid %d", run_id, child.proc.pid)
                    child.reason, child.term_sent = "cancel", time.monotonic()
                    self._signal(child, signal.SIGTERM)
                continue
            if child.reason is None and self.store.cancel_requested(run_id):
                log.info("run %s: cancel requested; stopping pid %d", run_id, child.proc.pid)
                child.reason, child.term_sent = "cancel", time.monotonic()
                self._signal(child, signal.SIGTERM)
            elif child.term_sent is not None and time.monotonic() - child.term_sent > KILL_AFTER_S:
                log.warning("run %s: still alive %.0fs after SIGTERM; SIGKILL", run_id, KILL_AFTER_S)
                self._signal(child, signal.SIGKILL)
                child.term_sent = time.monotonic() + 3600  # once is enough

    def _finished(self, child: Child, code: int) -> None:
        """Record how a child ended, unless it already recorded that itself."""
        child.log_file.close()
        st = self.store
        run_id = child.run_id
        if child.study:
            if st.set_study_status(run_id, Status.failed, only_from=[Status.running],
                                   error=f"{describe_exit(code)}; see {child.log_path}"):
                log.warning("study %s: %s", run_id, describe_exit(code))
            else:
                log.info("study %s: %s (exit code %d)", run_id, (st.get_study(run_id) or {}).get("status"), code)
            return
        if child.reason == "cancel" or st.cancel_requested(run_id):
            if st.set_status(run_id, Status.cancelled, message="cancelled", only_from=Status.running):
                log.info("run %s: cancelled", run_id)
                return
        if child.reason == "shutdown":
            st.set_status(run_id, Status.interrupted, only_from=Status.running,
                          message=f"interrupted: the worker stopped; `lepton resume {run_id}` continues from the last checkpoint")
            log.info("run %s: interrupted by worker shutdown", run_id)
            return
        if code != 0:
            tail = tail_lines(child.log_path)
            headline = describe_exit(code)
            if st.set_status(run_id, Status.failed, error=f"{headline}; last lines of worker.log:\n{tail}",
                             message=headline, log_tail=tail, only_from=Status.running):
                log.warning("run %s: %s", run_id, headline)
                return
        elif st.set_status(run_id, Status.failed, only_from=Status.running,
                           error="the job process exited without reporting a result"):
            log.warning("run %s: exited 0 without a status", run_id)
            return
        run = st.get_run(run_id)
        log.info("run %s: %s (exit code %d)", run_id, run["status"] if run else "deleted", code)

    # ------------------------------------------------------------ shutdown
    def _shutdown(self, why: str | None) -> None:
        self._stop_spare(self.spare)
        self.spare = None
        if self.children:
            log.info("stopping %d job(s) (%s)", len(self.children), why)
        for child in self.children.values():
            if child.reason is None:
                child.reason = "shutdown"
            self._signal(child, signal.SIGTERM)
        deadline = time.monotonic() + KILL_AFTER_S
        for child in self.children.values():
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(child, signal.SIGKILL)
                child.proc.wait()
            self._finished(child, child.proc.returncode)
        self.children.clear()
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


def _waiting(spare: subprocess.Popen) -> bool:
    """The spare is alive and can take a run.

    poll() alone is not enough: a killed multi-threaded process shows its main thread as a zombie while its other
    threads still exit, and until then waitpid says it is running and a write to its stdin still succeeds.
    """
    return spare.poll() is None and pid_alive(spare.pid)


def main(concurrency: int = 1, poll: float = POLL_S, once: bool = False, spare: bool = True) -> int:
    from lepton.jobs.launcher import write_pidfile

    write_pidfile(os.getpid())
    return Worker(concurrency=concurrency, poll=poll, once=once, spare=spare).run()


if __name__ == "__main__":  # python -m lepton.jobs.worker: the same loop without the CLI
    import argparse

    ap = argparse.ArgumentParser(prog="lepton.jobs.worker")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--poll", type=float, default=POLL_S)
    ap.add_argument("--once", action="store_true")
    ap.add_argument("--no-spare", dest="spare", action="store_false")
    a = ap.parse_args()
    raise SystemExit(main(a.concurrency, a.poll, a.once, a.spare))
