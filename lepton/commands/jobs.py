"""Job verbs: submit, runs, status, cancel, resume, worker."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from lepton.cli import add_config_flags, command, config_from_args, print_json
from lepton.errors import LeptonError


def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _fmt_eta(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _scores(run: dict) -> tuple[float | None, float | None]:
    """Accuracy and macro-F1 from the result (the test split's, or whatever the engine reported)."""
    m: Any = (run.get("result") or {}).get("metrics") or {}
    for part in (m, m.get("test") if isinstance(m, dict) else None, m.get("val") if isinstance(m, dict) else None):
        if isinstance(part, dict) and ("accuracy" in part or "macro_f1" in part):
            return part.get("accuracy"), part.get("macro_f1")
    return None, None


def _summary(run: dict) -> dict:
    cfg = run.get("config") or {}
    resolved = ((run.get("result") or {}).get("metrics") or {})  # what "default" turned out to be
    acc, f1 = _scores(run)
    return {
        "id": run["id"], "name": run.get("name"), "status": run["status"], "progress": run.get("progress"),
        "phase": run.get("phase"), "dataset": run.get("dataset"), "backbone": resolved.get("backbone") or cfg.get("backbone"),
        "adapter": resolved.get("adapter") or cfg.get("adapter"), "accuracy": acc, "macro_f1": f1, "created": run.get("created"),
        "attempt": run.get("attempt"), "run_dir": run.get("run_dir"), "owner": run.get("owner"),
        "shared": bool(run.get("shared")), "executor": run.get("executor"), "node": run.get("node"),
    }


# ------------------------------------------------------------------ submit
def _submit_args(p: argparse.ArgumentParser) -> None:
    add_config_flags(p)
    p.add_argument("--start-worker", action="store_true", help="start a background worker if none is alive")


@command("submit", "Queue a run for the background worker; prints its id", _submit_args)
def cmd_submit(args: argparse.Namespace) -> int:
    from lepton.auth import cli_user
    from lepton.jobs import launcher

    run_id = launcher.submit(config_from_args(args), owner=cli_user().id)
    started = launcher.ensure_worker() if args.start_worker else None
    if args.start_worker:
        print(f"queued {run_id}; " + (f"started a worker (pid {started})" if started else "a worker is already running"),
              file=sys.stderr)
    elif not launcher.worker_alive():
        print(f"queued {run_id}; no worker is running: start one with `lepton worker` (or submit --start-worker)",
              file=sys.stderr)
    else:
        print(f"queued {run_id}", file=sys.stderr)
    print_json({"run_id": run_id, "status": "queued"})
    return 0


# ------------------------------------------------------------------ runs
def _runs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output (a JSON list)")
    p.add_argument("--status", choices=["queued", "running", "finished", "failed", "cancelled", "interrupted"])
    p.add_argument("--limit", type=int, default=None, help="show at most N runs (newest first)")


def _cell(v: Any, width: int) -> str:
    s = "-" if v is None or v == "" else str(v)
    return (s[: width - 2] + "…" if len(s) > width - 1 else s).ljust(width)


@command("runs", "List runs, newest first", _runs_args)
def cmd_runs(args: argparse.Namespace) -> int:
    from lepton.jobs.store import get_store

    runs = [_summary(r) for r in get_store().list_runs(limit=args.limit, status=args.status)]
    if args.json:
        print_json(runs)
        return 0
    if not runs:
        print(f"no {args.status} runs" if args.status else "no runs yet; `lepton submit --data FILE` queues one",
              file=sys.stderr)
        return 0
    cols = [("id", 22), ("name", 16), ("status", 12), ("progress", 9), ("dataset", 18), ("backbone", 16),
            ("adapter", 13), ("accuracy", 9), ("macro-F1", 9), ("created", 16)]
    print("".join(h.ljust(w) for h, w in cols).rstrip())
    for r in runs:
        ds = r["dataset"] or ""
        ds = ds.rsplit("/", 1)[-1]
        vals = [r["id"], r["name"], r["status"], f"{(r['progress'] or 0) * 100:.0f}%", ds, r["backbone"] or "default",
                r["adapter"] or "default", None if r["accuracy"] is None else f"{r['accuracy']:.3f}",
                None if r["macro_f1"] is None else f"{r['macro_f1']:.3f}", _fmt_time(r["created"])]
        print(("".join(_cell(v, w) for v, (_, w) in zip(vals[:-1], cols)) + vals[-1]).rstrip())
    return 0


# ------------------------------------------------------------------ status
def _run_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id, id prefix, name or run folder")


def _status_args(p: argparse.ArgumentParser) -> None:
    _run_arg(p)
    p.add_argument("--json", action="store_true", help="the whole run record as JSON")


@command("status", "Show one run: status, progress, ETA, error", _status_args)
def cmd_status(args: argparse.Namespace) -> int:
    from lepton.jobs.store import get_store

    run = get_store().find_run(args.run)
    if args.json:
        print_json(run)
        return 0
    acc, f1 = _scores(run)
    lines = [
        ("run", run["id"] + (f"  ({run['name']})" if run.get("name") else "")),
        ("status", run["status"] + (f" (attempt {run['attempt']})" if run["attempt"] > 1 else "")
         + (" — cancel requested" if run["cancel_requested"] and run["status"] == "running" else "")),
        ("progress", f"{(run['progress'] or 0) * 100:.1f}%" + (f", phase {run['phase']}" if run.get("phase") else "")),
        ("eta", _fmt_eta(run.get("eta_s")) if run["status"] == "running" else "-"),
        ("message", run.get("message") or "-"),
        ("created", _fmt_time(run["created"])),
        ("started", _fmt_time(run.get("started"))),
        ("finished", _fmt_time(run.get("finished"))),
        ("data", run.get("dataset") or "-"),
        ("folder", run["run_dir"]),
        ("runs on", f"{run['executor']} executor, node {run.get('node') or '(not placed yet)'}" if run.get("executor") else "-"),
        ("owner", (run.get("owner") or "- (admins only)") + (", shared with everyone" if run.get("shared") else "")),
    ]
    m = (run.get("result") or {}).get("metrics") or {}
    if m.get("task"):  # the task's own headline metrics (micro-F1 and mAP, R² and RMSE, …)
        from lepton.tasks import TASKS

        lines.append(("score", ", ".join(f"{k} {m[k]:.3f}" for k in TASKS.get(m["task"]).headline if k in m)))
    elif acc is not None or f1 is not None:
        lines.append(("score", f"accuracy {acc:.3f}, macro-F1 {f1:.3f}" if acc is not None and f1 is not None
                      else f"accuracy {acc}, macro-F1 {f1}"))
    for k, v in lines:
        print(f"{k:<10}{v}")
    if run.get("error"):
        print("error     " + run["error"].replace("\n", "\n          "))
    return 0


# ------------------------------------------------------------------ cancel / resume
@command("cancel", "Cancel a queued or running run", _run_arg)
def cmd_cancel(args: argparse.Namespace) -> int:
    from lepton.jobs import launcher

    run = launcher.cancel(args.run)
    if run["status"] == "cancelled":
        print(f"cancelled {run['id']}", file=sys.stderr)
    else:
        print(f"cancelling {run['id']}: its worker stops it within seconds", file=sys.stderr)
    print_json({"run_id": run["id"], "status": run["status"], "cancel_requested": run["cancel_requested"]})
    return 0


def _resume_args(p: argparse.ArgumentParser) -> None:
    _run_arg(p)
    p.add_argument("--start-worker", action="store_true", help="start a background worker if none is alive")


@command("resume", "Re-queue an interrupted, cancelled or failed run; it continues from its last checkpoint",
         _resume_args)
def cmd_resume(args: argparse.Namespace) -> int:
    from lepton.jobs import launcher

    run_id = launcher.resume(args.run)
    if args.start_worker:
        launcher.ensure_worker()
    elif not launcher.worker_alive():
        print(f"queued {run_id} to resume; start a worker with `lepton worker`", file=sys.stderr)
    print_json({"run_id": run_id, "status": "queued"})
    return 0


# ------------------------------------------------------------------ share
def _share_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=["run", "dataset"], help="what to share")
    p.add_argument("ref", help="run id, id prefix or name; or dataset id or unique id prefix")
    p.add_argument("--off", action="store_true", help="stop sharing it")


@command("share", "Share a run or dataset with every signed-in dashboard user (--off: stop sharing)", _share_args)
def cmd_share(args: argparse.Namespace) -> int:
    from lepton.auth import cli_user
    from lepton.jobs.store import get_store

    store, shared = get_store(), not args.off
    if args.kind == "run":
        item_id = store.find_run(args.ref)["id"]
        store.set_shared("runs", item_id, shared)
    else:
        from lepton.data import load_dataset

        if Path(args.ref).exists():  # load_dataset would ingest a path: sharing names what is stored
            raise LeptonError(f"`{args.ref}` is a path: give the dataset id (`lepton datasets` lists them)")
        item_id = load_dataset(args.ref).id
        # A dataset is shared through one owner's upload of it: the CLI user's (LEPTON_USER, or local:<unix user>).
        store.set_shared("datasets", item_id, shared, owner=cli_user().id)
    print(f"{'shared' if shared else 'stopped sharing'} {args.kind} {item_id}", file=sys.stderr)
    print_json({"kind": args.kind, "id": item_id, "shared": shared})
    return 0


# ------------------------------------------------------------------ worker
def _worker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=int, help="runs trained at the same time (default: 1 on this machine; with "
                   "--executor ray, one per CPU of the cluster)")
    p.add_argument("--poll", type=float, help="seconds between looks at the queue (default 0.25)")
    p.add_argument("--once", action="store_true", help="exit when the queue is empty and no run is left")
    p.add_argument("--no-spare", dest="spare", action="store_false",
                   help="do not keep a spare job process with its imports done while idle (saves ~0.8 GB of "
                        "memory; each run then takes ~3 s longer to start)")
    p.add_argument("--executor", default="local", help="where runs execute: local (child processes on this machine) "
                   "or ray (tasks on a Ray cluster; pip install 'lepton[ray]')")
    p.add_argument("--address", help="with --executor ray: the cluster (auto, HOST:PORT or ray://HOST:PORT; default auto)")


@command("worker", "Run queued jobs in child processes or on a Ray cluster (log: LEPTON_HOME/logs/worker.log)",
         _worker_args)
def cmd_worker(args: argparse.Namespace) -> int:
    from lepton.errors import LeptonError
    from lepton.jobs import worker
    from lepton.jobs.executors import EXECUTORS

    if args.address and not EXECUTORS.get(args.executor).cluster:  # (an unknown name is an error listing the valid ones)
        raise LeptonError(f"--address names a cluster, and the {args.executor} executor runs on this machine: "
                          "add --executor ray")

    if args.concurrency is not None and args.concurrency < 1:
        raise LeptonError(f"--concurrency {args.concurrency}: must be at least 1")
    if args.poll is not None and args.poll <= 0:
        raise LeptonError(f"--poll {args.poll}: must be a positive number of seconds")
    return worker.main(concurrency=args.concurrency, poll=args.poll or worker.POLL_S, once=args.once, spare=args.spare,
                       executor=args.executor, address=args.address)
