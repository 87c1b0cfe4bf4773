"""`local`: each run is `python -m lepton.jobs.child RUN_ID` on this machine, in its own session.

While no run trains it keeps one spare child with the heavy imports done (see child.py), so the next run
starts training within a second of its claim instead of ~4 s. The child writes the store itself.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import IO

from lepton import paths
from lepton.jobs.executors.base import EXECUTORS, Executor, Exit, Job
from lepton.jobs.store import HOST, pid_alive

SPARE_RETRY_S = 60.0  # a spare that died while waiting is replaced after this long, not in a tight loop

log = logging.getLogger("lepton.worker")


def child_env(threads: int | None = None) -> dict[str, str]:
    """The environment for a child: ours, plus the path to this lepton (it may not be installed).

    threads: each job's share of the cores when several train at once. Without it every job starts one
    torch thread per core, so two jobs on two cores run four threads that preempt each other and the
    dashboard. A user's own OMP_NUM_THREADS wins."""
    from lepton.openmp import polite_openmp

    env = dict(os.environ)
    env["LEPTON_HOME"] = str(paths.home())
    env["PYTHONUNBUFFERED"] = "1"
    polite_openmp(env)
    if threads and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(threads)
    root = paths.checkout()
    env["PYTHONPATH"] = os.pathsep.join([root, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root)])
    return env


def spawn_child(args: list[str], out: IO[bytes], threads: int | None, stdin: int = subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lepton.jobs.child", *args], stdin=stdin, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True, env=child_env(threads), close_fds=True)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (often the system running out of memory)" if -code == signal.SIGKILL else ""
        return f"the job process was killed by {name}{hint}"
    return f"the job process exited with code {code}"


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:  # the whole process group: data-loader workers and the like go too
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


class LocalJob(Job):
    def __init__(self, run_id: str, proc: subprocess.Popen):
        self.run_id, self.proc, self.pid, self.node = run_id, proc, proc.pid, HOST

    def poll(self) -> Exit | None:
        code = self.proc.poll()
        return None if code is None else Exit(code, describe_exit(code))

    def stop(self) -> None:
        signal_group(self.proc, signal.SIGTERM)

    def kill(self) -> None:
        signal_group(self.proc, signal.SIGKILL)

    def wait(self, timeout: float) -> Exit | None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.poll()


@EXECUTORS.register("local")
class Local(Executor):
    name = "local"

    def __init__(self, worker_id, store, threads, spare, address):
        super().__init__(worker_id, store, threads, spare, address)
        self.use_spare = spare
        self.spare: subprocess.Popen | None = None
        self._spare_after = 0.0

    def start(self, run: dict, log_file: IO[bytes]) -> Job:
        proc = self._hand_to_spare(run["id"])
        how = "the preloaded spare"
        if proc is None:
            proc, how = spawn_child([run["id"]], log_file, self.threads), "a new process"
        log.info("run %s: started (attempt %d, pid %d, %s)", run["id"], run["attempt"], proc.pid, how)
        return LocalJob(run["id"], proc)

    def tend(self, idle: bool) -> None:
        """While no run trains, keep one spare child that has done its imports (it waits on stdin).

        Only while idle: on a small machine its ~3 s of importing would slow a run that is training.
        """
        if not self.use_spare or not idle:
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
            self.spare = spawn_child(["--spare"], out, self.threads, stdin=subprocess.PIPE)

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
        _stop_spare(spare)
        return None

    def close(self) -> None:
        _stop_spare(self.spare)
        self.spare = None


def _stop_spare(spare: subprocess.Popen | None) -> None:
    if spare is None:
        return
    signal_group(spare, signal.SIGKILL)  # it holds nothing but imports
    spare.wait()


def _waiting(spare: subprocess.Popen) -> bool:
    """The spare is alive and can take a run.

    poll() alone is not enough: a killed multi-threaded process shows its main thread as a zombie while its other
    threads still exit, and until then waitpid says it is running and a write to its stdin still succeeds.
    """
    return spare.poll() is None and pid_alive(spare.pid)
