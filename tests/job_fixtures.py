"""Fixtures for the job store and worker tests: a temp LEPTON_HOME, tiny CSVs, real subprocesses."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def job_home(tmp_path, monkeypatch) -> Path:
    """A fresh LEPTON_HOME (with its own lepton.db) for this test, seen by every subprocess it starts."""
    h = tmp_path / "lepton-home"
    h.mkdir()
    monkeypatch.setenv("LEPTON_HOME", str(h))
    return h


def write_job_csv(path: Path, n: int = 40, text_col: str = "text", label_col: str = "label") -> Path:
    """n rows, 2 balanced labels, learnable words."""
    pos = ["great", "lovely", "superb", "brilliant"]
    neg = ["awful", "dreadful", "poor", "miserable"]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([text_col, label_col])
        for i in range(n):
            good = i % 2 == 0
            word = (pos if good else neg)[i // 2 % 4]
            w.writerow([f"item {i} was {word}, truly {word}", "pos" if good else "neg"])
    return path


@pytest.fixture
def job_csv(tmp_path) -> Path:
    return write_job_csv(tmp_path / "tiny.csv")


@pytest.fixture
def bad_csv(tmp_path) -> Path:
    """Valid CSV, but without a `text` column: the engine rejects it at run time with a DataError."""
    return write_job_csv(tmp_path / "bad.csv", text_col="sentence")


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_lepton(*args: str, timeout: float = 60, check: bool = True, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """`python -m lepton ARGS` in a real subprocess, against the current LEPTON_HOME."""
    res = subprocess.run([sys.executable, "-m", "lepton", *args], capture_output=True, text=True,
                         timeout=timeout, env=subprocess_env(), cwd=str(cwd))
    if check and res.returncode != 0:
        raise AssertionError(f"lepton {' '.join(args)} exited {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture
def spawn_worker(job_home) -> Callable[..., subprocess.Popen]:
    """Start real `python -m lepton worker ARGS` processes; any still alive are stopped at teardown."""
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        out = open(job_home / f"worker-stdout-{len(procs)}.txt", "wb")
        p = subprocess.Popen([sys.executable, "-m", "lepton", "worker", *args], stdout=out, stderr=subprocess.STDOUT,
                             env=subprocess_env(), cwd=str(REPO))
        out.close()
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    kill_leftover_jobs(job_home)


def kill_leftover_jobs(home: Path) -> None:
    """Lepton processes of this home that a test left behind: job processes whose worker was killed, and
    workers started detached (by the dashboard or `submit --start-worker`), which would otherwise idle on
    for the rest of the suite with a spare of ~0.8 GB each."""
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            cmd = proc.info["cmdline"] or []
            ours = "lepton.jobs.child" in cmd or cmd[1:4] == ["-m", "lepton", "worker"]
            if ours and (proc.info["environ"] or {}).get("LEPTON_HOME") == str(home):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def wait_for(pred: Callable[[], object], timeout: float = 30, every: float = 0.1, what: str = "condition"):
    """Poll pred() until it returns something truthy; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
