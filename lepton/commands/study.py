"""Study verbs: tune (a study in the foreground), studies (list them)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from lepton.cli import add_config_flags, command, config_from_args, print_json
from lepton.commands.core import _list_args


def _tune_args(p: argparse.ArgumentParser) -> None:
    from lepton.config import StudyConfig

    add_config_flags(p, StudyConfig)
    p.add_argument("--submit", action="store_true", help="queue the study for the background worker instead")


class StudyProgress:
    """Human progress on stderr: the study's lines, and each trial's validation scores."""

    def __call__(self, kind: str, **d: Any) -> None:
        if kind == "log":
            print(f"{d.get('level', 'info')}: {d['message']}", file=sys.stderr, flush=True)
        elif kind == "metrics" and d.get("split") == "val":
            shown = ", ".join(f"{k} {v:.3f}" for k, v in d["values"].items() if k != "loss")
            print(f"    epoch {d['epoch']:g}: val {shown}", file=sys.stderr, flush=True)


@command("tune", "Run a study (trials proposed by rl, tpe or random within a budget); the last stdout line is JSON",
         _tune_args)
def cmd_tune(args: argparse.Namespace) -> int:
    from lepton.auth import cli_user
    from lepton.config import RunConfig, StudyConfig
    from lepton.errors import LeptonError
    from lepton.jobs.status import Status
    from lepton.jobs.store import get_store
    from lepton.strategy.study import run_study, validate

    from lepton.commands.core import own_data

    config = config_from_args(args, StudyConfig)
    validate(config)  # bad data or names fail here, before a study row exists
    store = get_store()
    owner = cli_user().id
    own_data(RunConfig(data=config.data, test_data=config.test_data, task=config.task, seed=config.seed), owner)
    if args.submit:
        from lepton.jobs import launcher

        study_id = store.create_study(config, owner=owner)
        launcher.ensure_worker()
        print_json({"study_id": study_id, "status": "queued"})
        return 0
    study_id = store.create_study(config, status=Status.running, owner=owner)
    try:
        result = run_study(config, StudyProgress(), study_id=study_id, store=store, owner=owner)
    except KeyboardInterrupt:  # stopped on purpose: cancelled, so no worker picks it up again
        for t in store.study_trials(study_id):
            if t["status"] == Status.running.value:
                store.set_status(t["id"], Status.cancelled, only_from=Status.running,
                                 message="cancelled from the keyboard with its study")
        store.set_study_status(study_id, Status.cancelled, only_from=[Status.running],
                               message="cancelled from the keyboard; its finished trials stay")
        raise
    except LeptonError as e:
        store.set_study_status(study_id, Status.failed, only_from=[Status.running], error=str(e))
        raise
    print_json(result)
    return 0


@command("studies", "List studies", _list_args)
def cmd_studies(args: argparse.Namespace) -> int:
    from lepton.jobs.store import get_store

    store = get_store()
    rows = []
    for s in store.list_studies():
        best = (s.get("result") or {}).get("best") or {}
        test = (s.get("result") or {}).get("test") or {}
        rows.append({"id": s["id"], "name": s.get("name"), "strategy": s["strategy"], "status": s["status"],
                     "budget_minutes": s["config"].get("budget_minutes"), "trials": len(store.study_trials(s["id"])),
                     "best_run": best.get("run_id"), "primary": best.get("primary", "macro_f1"),
                     "best_val_score": best.get("val_score", best.get("val_macro_f1")),
                     "test_score": test.get("score", test.get("macro_f1")), "created": s["created"], "owner": s.get("owner")})
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no studies yet; `lepton tune --data FILE --strategy rl --budget-minutes 3` runs one", file=sys.stderr)
        return 0
    print(f"{'id':<24}{'strategy':<10}{'status':<12}{'budget':>7}{'trials':>7}  {'best run':<22}{'metric':<10}{'val':>7}"
          f"{'test':>8}  created")
    for r in rows:
        f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{r['id']:<24}{r['strategy']:<10}{r['status']:<12}{r['budget_minutes']:>6g}m{r['trials']:>7}  "
              f"{r['best_run'] or '-':<22}{r['primary']:<10}{f(r['best_val_score']):>7}{f(r['test_score']):>8}  "
              f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(r['created']))}")
    return 0
