"""Tracking verbs: open runs in TensorBoard, push runs to MLflow."""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
from pathlib import Path

from lepton.cli import command, print_json


def _tensorboard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", metavar="RUN", help="run ids, id prefixes or names (default: every run)")


@command("tensorboard", "Print the command that opens runs' TensorBoard files (every run writes them)",
         _tensorboard_args)
def cmd_tensorboard(args: argparse.Namespace) -> int:
    from lepton import paths
    from lepton.errors import RunError
    from lepton.jobs.store import get_store
    from lepton.tracking.tensorboard import FOLDER

    if args.runs:
        found = [get_store().find_run(r) for r in args.runs]
        missing = [r["id"] for r in found if not (Path(r["run_dir"]) / FOLDER).is_dir()]
        if missing:
            raise RunError(f"no TensorBoard files for {', '.join(missing)} (runs before this version did not write "
                           "them); train again to get them")
        # name:path pairs, so the runs are labelled by id in TensorBoard's run selector.
        spec = ",".join(f"{r['id']}:{Path(r['run_dir']) / FOLDER}" for r in found)
        cmd = ["tensorboard", "--logdir_spec", spec]
    else:
        cmd = ["tensorboard", "--logdir", str(paths.runs_dir())]
    if importlib.util.find_spec("tensorboard") is None:
        print("lepton tensorboard: TensorBoard itself is not installed here: `pip install tensorboard`, then run:",
              file=sys.stderr)
    print(shlex.join(cmd))
    return 0


def _export_tracking_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run ids, id prefixes or names (runs that have ended)")
    p.add_argument("--mlflow", required=True, metavar="URI",
                   help="MLflow tracking URI: http://host:5000, file:///path/mlruns, sqlite:///mlflow.db")
    p.add_argument("--experiment", default="lepton", help="MLflow experiment (created if missing; default lepton)")
    p.add_argument("--replace", action="store_true", help="send a run again that this experiment already has")


@command("export-tracking", "Push runs (params, every metric, report and model folder) to an MLflow server; "
                            "the last stdout line is JSON", _export_tracking_args)
def cmd_export_tracking(args: argparse.Namespace) -> int:
    from lepton.tracking.mlflow_export import export_runs

    print_json(export_runs(args.runs, args.mlflow, args.experiment, args.replace,
                           progress=lambda m: print(f"lepton export-tracking: {m}", file=sys.stderr, flush=True)))
    return 0
