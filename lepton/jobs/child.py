"""One job in its own process: `python -m lepton.jobs.child RUN_ID`, started by the worker.

Or `python -m lepton.jobs.child --spare`: a process the worker starts ahead of time, while it is idle.
It does the imports every run needs (about 3 s on 2 CPUs, most of submit-to-first-curve-point), then
waits for a run id on stdin, sends its output to that run's worker.log and goes on as above. Stdin at
EOF (the worker stopped or died) means no run is coming: it exits.

It trains the run through `lepton.train.run` with the store's emitter and records how it ended:
finished (with the result), or failed (one readable line; a traceback too for internal errors,
in worker.log and the run's log tail). SIGTERM (cancel, worker shutdown) stops training and
leaves the verdict to the worker. If the worker dies (kill -9), the child notices it has been
orphaned, marks the run interrupted and exits, so a resume never races a forgotten process.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from lepton.errors import LeptonError
from lepton.jobs.status import Status
from lepton.jobs.store import get_store

# What a run imports before its first step, whatever the modality: torch and the loop, transformers' model
# code (torch._dynamo and generation come with it) and BERT for the default text backbone, peft for LoRA,
# onnxruntime and EfficientNet for the default audio and image backbones.
PRELOAD = ("lepton.train.loop", "transformers.models.bert.modeling_bert", "peft", "onnxruntime",
           "efficientnet_lite_pytorch")
ORPHAN_CHECK_S = 1.0
DEFAULT_NICE = 10
HARD_EXIT_AFTER_S = 20.0  # if training ignores SIGTERM this long after the worker died, just go


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM; a BaseException so `except Exception` in libraries lets it through."""


_orphaned = threading.Event()


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one unwinding is enough; the worker SIGKILLs if it hangs
    raise Terminated()


def _watch_parent(ppid: int) -> None:
    while True:
        time.sleep(ORPHAN_CHECK_S)
        if os.getppid() != ppid:
            _orphaned.set()
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(HARD_EXIT_AFTER_S)
            os._exit(143)


def _flush(emit) -> None:
    try:
        emit.flush()
    except BaseException as e:  # the verdict matters more than the last metric rows
        print(f"could not write the last metrics: {e}", file=sys.stderr, flush=True)


def wait_for_run() -> str | None:
    """Spare mode: import PRELOAD, then block until the worker writes a run id (None at EOF)."""
    t0 = time.perf_counter()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as e:  # the run that needs it reports the error properly
            print(f"lepton spare: could not preload {name}: {e}", flush=True)
    print(f"lepton spare: pid {os.getpid()} ready in {time.perf_counter() - t0:.1f} s", flush=True)
    return sys.stdin.readline().strip() or None


def output_to(path: Path) -> None:
    """Send this process's stdout and stderr to the run's worker.log (a spare, a Ray task: started before the run was known)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def run_study(study_id: str) -> int:
    """`--study ID`: run (or resume) a study, its trials in this process, one after another."""
    store = get_store()
    row = store.get_study(study_id)
    if row is None or row["status"] != Status.running.value:
        print(f"study {study_id} is {row['status'] if row else 'missing'}, not running; nothing to do", file=sys.stderr)
        return 3
    signal.signal(signal.SIGTERM, _on_sigterm)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True, name="orphan-watch").start()
    from lepton.config import StudyConfig
    from lepton.strategy.study import run_study as drive

    def emit(kind: str, **d) -> None:
        if kind == "log":
            print(f"{d.get('level', 'info')}: {d['message']}", flush=True)

    worker = {"worker_id": row["worker_id"], "pid": os.getppid()}
    try:
        drive(StudyConfig.from_dict(row["config"], source=f"study {study_id}"), emit, study_id=study_id, store=store,
              owner=row.get("owner"), worker=worker)
    except (Terminated, KeyboardInterrupt):
        cancelled = (store.get_study(study_id) or {}).get("status") == Status.cancelled.value
        for t in store.study_trials(study_id):
            if t["status"] == Status.running.value:
                store.set_status(t["id"], Status.cancelled if cancelled else Status.interrupted, only_from=Status.running,
                                 message="cancelled with its study" if cancelled else
                                 "interrupted: its study stopped; the study resumes it from the last checkpoint")
        store.set_study_status(study_id, Status.interrupted, only_from=[Status.running],
                               message="interrupted: its worker stopped; a worker resumes it with the trials it has")
        print("lepton child: study stopped by SIGTERM", flush=True)
        return 143
    except LeptonError as e:
        store.set_study_status(study_id, Status.failed, only_from=[Status.running], error=str(e), message="failed")
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except Exception as e:
        print(traceback.format_exc(), file=sys.stderr, flush=True)
        store.set_study_status(study_id, Status.failed, only_from=[Status.running], message="failed",
                               error=f"{type(e).__name__}: {e} (internal error; the traceback is in the worker's study log)")
        return 1
    return 0


def lower_priority() -> None:
    """Training gives way to whoever is waiting for the machine: the dashboard, a server, a shell. At nice 10 the
    kernel runs an interactive process first, and a job alone still gets every idle cycle. (Against two jobs
    starving the dashboard, the bigger lever was fewer threads per job, executors/local.py child_env; benchmarks/README.md.)
    LEPTON_JOB_NICE sets how much (0 keeps the worker's priority). Before torch starts its threads: they inherit it."""
    try:
        os.nice(max(0, int(os.environ.get("LEPTON_JOB_NICE", DEFAULT_NICE))))
    except (OSError, ValueError):
        pass  # an unparsable setting or a refused call leaves the priority as it is; training goes on


def last_checkpoint(run: dict) -> Path:
    return Path(run["run_dir"]) / "checkpoints" / "last.pt"


def resuming(run: dict) -> bool:
    """Whether this attempt continues an earlier one (from its checkpoint, or from the start without one)."""
    return run["attempt"] > 1 or last_checkpoint(run).exists()


def forget_replayed(store, run: dict) -> None:
    """Before a resumed attempt: the engine replays from its checkpoint, so rows logged after it would be drawn twice."""
    if not resuming(run):
        return
    if last_checkpoint(run).exists():
        if run.get("checkpoint_step") is not None:
            store.delete_metrics(run["id"], after_step=run["checkpoint_step"])
    else:
        store.delete_metrics(run["id"])


def execute(run: dict, emit) -> dict:
    """Train one run (its store row) and say how it ended, for record(). It never touches the store itself: a
    Ray task runs it on a node that cannot reach the database, and its events go through emit.
    Stopped by SIGTERM or KeyboardInterrupt (ray.cancel): {"stopped": True}, and whoever stopped it decides."""
    run_id, run_dir = run["id"], Path(run["run_dir"])
    try:
        from lepton.config import RunConfig
        from lepton.train import run as train

        config = RunConfig.load(run_dir / "config.yaml")
        result = train(config, emit=emit, run_id=run_id, run_dir=run_dir, resume=resuming(run))
    except (Terminated, KeyboardInterrupt):
        _flush(emit)
        print("lepton child: stopped", flush=True)
        return {"stopped": True}
    except LeptonError as e:
        _flush(emit)
        msg = str(e) or type(e).__name__
        print(f"error: {msg}", file=sys.stderr, flush=True)
        return {"status": Status.failed.value, "error": msg}
    except Exception as e:
        _flush(emit)
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
        line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return {"status": Status.failed.value, "log": tb.rstrip().splitlines(),
                "error": f"{type(e).__name__}: {line} (internal error; the traceback is in {run_dir / 'worker.log'})"}
    _flush(emit)
    status = result.get("status") if isinstance(result, dict) else None
    if status not in {s.value for s in Status} or status in (Status.queued.value, Status.running.value):
        status = Status.finished.value
    print(f"lepton child: run {run_id} {status} in {result.get('seconds', '?')} s", flush=True)
    return {"status": status, "result": result, "error": result.get("error") if status == Status.failed.value else None}


def record(store, run_id: str, verdict: dict) -> None:
    """Write how a run ended, if it is still running (a cancel or an interruption recorded first wins)."""
    if verdict.get("stopped"):
        return
    if verdict.get("log"):
        store.append_log(run_id, verdict["log"])
    failed = verdict["status"] == Status.failed.value
    store.set_status(run_id, verdict["status"], result=verdict.get("result"), error=verdict.get("error"),
                     message="failed" if failed and not verdict.get("result") else None, only_from=Status.running)


def main(argv: list[str]) -> int:
    lower_priority()
    if len(argv) == 2 and argv[0] == "--study":
        return run_study(argv[1])
    spare = argv == ["--spare"]
    if len(argv) != 1:
        print("usage: python -m lepton.jobs.child RUN_ID | --spare | --study STUDY_ID", file=sys.stderr)
        return 2
    run_id = wait_for_run() if spare else argv[0]
    if run_id is None:
        return 0
    store = get_store()
    run = store.get_run(run_id)
    if run is None:
        print(f"no run '{run_id}' in {store.path}", file=sys.stderr)
        return 2
    if spare:
        output_to(Path(run["run_dir"]) / "worker.log")
    if run["status"] != Status.running.value:
        print(f"run {run_id} is {run['status']}, not running; nothing to do", file=sys.stderr)
        return 3

    signal.signal(signal.SIGTERM, _on_sigterm)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True, name="orphan-watch").start()
    forget_replayed(store, run)
    print(f"lepton child: run {run_id} attempt {run['attempt']} pid {os.getpid()} "
          f"{'resuming' if last_checkpoint(run).exists() else 'starting'}{' (preloaded spare)' if spare else ''}", flush=True)
    verdict = execute(run, store.emitter(run_id))
    if verdict.get("stopped"):
        if _orphaned.is_set():
            store.set_status(run_id, Status.interrupted, only_from=Status.running,
                             message=f"interrupted: its worker died; `lepton resume {run_id}` continues from the last checkpoint")
        return 143
    record(store, run_id, verdict)
    return 1 if verdict["status"] == Status.failed.value and not verdict.get("result") else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
