"""Studies: whole-configuration search in one time budget. A strategy is just another caller of lepton.train.run.

Each trial is an ordinary run (linked to its study in the store, so every page shows it) with its
own share of the budget. Strategies (`STUDIES`, one class each):
- `random`: random search over the space below, with the median pruner;
- `tpe`: Optuna's TPE sampler (multivariate, conditional space) with Optuna's median pruner, fed
  each epoch's validation score (the task's primary metric: macro-F1, micro-F1 or R²);
- `rl`: the learned policy (lepton/strategy/policy.py) picks the recipe and steers the run with the
  whole budget; if it stops early with time left, its next-best recipe gets the rest.
The best trial is chosen on validation (the shipped model's score: a trial never ships worse than
its probe) and only then scored on test. A trial too short for one epoch of its recipe still ships
its probe (see _train).

A study survives its worker: every finished trial is in the store, so a resumed study rebuilds the
strategy's history from them, resumes an interrupted trial from its checkpoint, and goes on with
the budget that is left.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lepton.adapters import ADAPTERS
from lepton.config import RunConfig, StudyConfig
from lepton.errors import LeptonError
from lepton.jobs.status import Status
from lepton.registry import Registry
from lepton.strategy.base import CONTROLLERS, Controller, Decision, EpochReport
from lepton.strategy.fixed import Fixed
from lepton.tasks import TASKS
from lepton.train.budget import BudgetError
from lepton.train.events import Emit, null_emit

MIN_TRIAL_S = 30.0  # a trial shorter than this is the probe and little else
STUDIES: Registry[type["Strategy"]] = Registry("strategy")

# The search space random and TPE share: (adapter, lr range) and the options each adapter adds.
IMAGE_SIZES = (96, 128, 160, 224)


@dataclass
class Proposal:
    overrides: dict[str, Any]  # RunConfig fields for this trial
    controller: Controller | None = None
    params: dict[str, Any] | None = None  # what the tuner suggested (for Optuna)
    note: str = ""


class Strategy:
    name = ""
    description = ""

    def __init__(self, config: StudyConfig, modality: str, supports: list[str]):
        """supports: the adapters that can wrap the study's backbone (its search space draws on the registry)."""
        self.config, self.modality, self.supports = config, modality, list(supports)
        self.trainable = any(not ADAPTERS.get(a).frozen for a in supports)

    def planned_trials(self) -> int:
        """How many trials the budget is split into (the last one gets what is left)."""
        n = max(1, math.floor(self.config.budget_minutes * 60 / 36))  # ~36 s a trial: 5 in 3 minutes
        return min(n, self.config.max_trials or n)

    def told(self, trials: list[dict]) -> None:
        """Every trial so far (finished, failed or pruned), oldest first, each with its run row and result."""

    def propose(self, number: int, seconds_left: float) -> Proposal | None:
        raise NotImplementedError


def searched_options(adapter: str) -> dict[str, list]:
    """The adapter's options a study searches over (the `search` values in its Options fields)."""
    return {f.name: list(f.metadata["search"]) for f in dataclasses.fields(ADAPTERS.get(adapter).Options)
            if "search" in f.metadata}


class _Optuna(Strategy):
    """Shared by random and TPE: ask/tell over the same conditional space, the median pruner on epochs."""

    def sampler(self):
        raise NotImplementedError

    def __init__(self, config: StudyConfig, modality: str, supports: list[str]):
        super().__init__(config, modality, supports)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.study = optuna.create_study(direction="maximize", sampler=self.sampler(),
                                         pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
        self.pending: dict[int, Any] = {}
        self.seen: set[int] = set()

    def distributions(self, params: dict[str, Any]) -> dict[str, Any]:
        D = self.optuna.distributions
        out: dict[str, Any] = {"adapter": D.CategoricalDistribution(self.supports)}
        a = params.get("adapter")
        if a in ADAPTERS:
            out[f"lr_{a}"] = D.FloatDistribution(*ADAPTERS.get(a).lr_range, log=True)
            for name, choices in searched_options(a).items():
                out[f"{a}.{name}"] = D.CategoricalDistribution(choices)
        if self.modality == "image" and a != "linear-probe":
            out["image_size"] = D.CategoricalDistribution(list(IMAGE_SIZES))
        return {k: v for k, v in out.items() if k in params}

    def told(self, trials: list[dict]) -> None:
        """Trials this object did not run itself (a resumed study) join Optuna's history as finished trials."""
        T = self.optuna.trial
        for t in trials:
            n = t["trial"]
            if n in self.seen:
                continue
            self.seen.add(n)
            if n in self.pending:  # ours: tell the live trial how it ended
                live = self.pending.pop(n)
                value = _val(t)
                if t.get("pruned"):
                    self.study.tell(live, state=T.TrialState.PRUNED)
                elif value is None:
                    self.study.tell(live, state=T.TrialState.FAIL)
                else:
                    self.study.tell(live, value)
                continue
            params = (t.get("study_params") or {})
            if params and _val(t) is not None:
                self.study.add_trial(T.create_trial(params=params, distributions=self.distributions(params),
                                                    value=_val(t)))

    def propose(self, number: int, seconds_left: float) -> Proposal | None:
        trial = self.study.ask()
        adapter = trial.suggest_categorical("adapter", self.supports)
        o: dict[str, Any] = {"adapter": adapter,
                             "lr": trial.suggest_float(f"lr_{adapter}", *ADAPTERS.get(adapter).lr_range, log=True),
                             "adapter_options": {name: trial.suggest_categorical(f"{adapter}.{name}", choices)
                                                 for name, choices in searched_options(adapter).items()}}
        if self.modality == "image" and adapter != "linear-probe":
            o["image_size"] = trial.suggest_categorical("image_size", list(IMAGE_SIZES))
        self.pending[number] = trial
        return Proposal(o, Pruning(trial), params=dict(trial.params))


class Pruning(Fixed):
    """The fixed schedule, reporting every validation to an Optuna trial and stopping when the pruner says so."""

    name = "pruning"

    def __init__(self, trial: Any):
        self.trial, self.pruned, self.reported = trial, False, 0

    def decide(self, report: EpochReport) -> Decision:
        if report.epoch <= self.reported:  # the probe (epoch 0), or the validation after a cut epoch
            return Decision()
        self.reported = report.epoch
        self.trial.report(report.best_f1, report.epoch)
        if self.trial.should_prune():
            self.pruned = True
            return Decision(stop=True, why=f"pruned by the median rule at epoch {report.epoch} "
                                           f"(best validation macro-F1 {report.best_f1:.3f})")
        return super().decide(report)


@STUDIES.register("random")
class RandomSearch(_Optuna):
    name = "random"
    description = "Random search over adapter, learning rate and their options, with median pruning"

    def sampler(self):
        return self.optuna.samplers.RandomSampler(seed=self.config.seed)


@STUDIES.register("tpe")
class TPE(_Optuna):
    name = "tpe"
    description = "Optuna's TPE sampler over the same space, with median pruning on every epoch's validation score"

    def sampler(self):
        # multivariate+group: the space is conditional (lr and depth depend on the adapter); optuna marks both
        # flags experimental and says so on every study, which the user cannot act on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", self.optuna.exceptions.ExperimentalWarning)
            return self.optuna.samplers.TPESampler(seed=self.config.seed, multivariate=True, group=True,
                                                   n_startup_trials=2)


@STUDIES.register("rl")
class PolicyStudy(Strategy):
    name = "rl"
    description = "The learned policy picks the recipe and steers it with the whole budget; its next choice gets any time left"

    def planned_trials(self) -> int:
        return 1  # the policy plans its run over the whole budget; a second trial only uses what it leaves

    def told(self, trials: list[dict]) -> None:
        # Each trial's plan.json says which recipe the policy started it with, and the context it saw.
        self.plans = [_plan(t) for t in trials]

    def propose(self, number: int, seconds_left: float) -> Proposal | None:
        from lepton.strategy.policy import START_ACTIONS

        if number == 0:
            return Proposal({"controller": "policy"}, params={}, note="the policy's own recipe")
        done = {p.get("start_action") for p in self.plans}
        ctx = next((p["ctx"] for p in self.plans if p.get("ctx")), None)
        # Later trials: the recipes the policy ranked next, which earlier trials did not use.
        ranked = [i for i in _policy_ranking(ctx, self.trainable, self.supports) if i not in done
                  and START_ACTIONS[i]["adapter"] != "linear-probe"]
        if not ranked:
            return self._unranked()
        a = START_ACTIONS[ranked[0]]
        o = {"adapter": a["adapter"], "lr": a.get("lr"), "controller": "policy",
             "adapter_options": {"k": a["depth"]} if "depth" in a else {}}
        if isinstance(a.get("res"), int):
            o["image_size"] = a["res"]
        return Proposal(o, params={"action": ranked[0]}, note="the policy's next-ranked recipe")

    def _unranked(self) -> Proposal | None:
        """Once the policy's own recipes are used up: the adapters of the registry that fit the backbone and no trial
        has tried (the policy was trained on fewer; a new adapter joins the study by being registered), each at the
        middle of its learning-rate range under the fixed schedule (the policy's epoch decisions know only its own)."""
        tried = {(p.get("config") or {}).get("adapter") for p in self.plans}
        fresh = [a for a in self.supports if a not in tried and not ADAPTERS.get(a).frozen]
        if not fresh:
            return None
        lo, hi = ADAPTERS.get(fresh[0]).lr_range
        return Proposal({"adapter": fresh[0], "lr": math.sqrt(lo * hi), "controller": "fixed"}, params={},
                        note="an adapter from the registry the policy has not ranked")


def _policy_ranking(ctx: dict | None, trainable: bool, supports: list[str]) -> list[int]:
    """START_ACTIONS ranked by the policy for a start context, best first; only recipes whose adapter the backbone
    supports (the registry's say)."""
    import numpy as np
    import torch

    from lepton.strategy.policy import START_ACTIONS, load_policy, start_features, start_mask

    if ctx is None:
        return []
    net, _ = load_policy()
    with torch.no_grad():
        logits = net.masked(net.start(torch.from_numpy(start_features(ctx))), start_mask(ctx["modality"], trainable))
    mask = start_mask(ctx["modality"], trainable)
    return [int(i) for i in np.argsort(-logits.numpy()) if mask[i] and START_ACTIONS[i]["adapter"] in supports]


def _plan(trial: dict) -> dict:
    """A trial's plan.json (what auto and the policy chose, and the start context), or {}."""
    import json

    run_dir = (trial.get("result") or {}).get("run_dir")
    try:
        return json.loads((Path(run_dir) / "plan.json").read_text()) if run_dir else {}
    except (OSError, ValueError):
        return {}


def _val(trial: dict) -> float | None:
    """The trial's validation score in its task's primary metric (what the study maximises)."""
    m = (trial.get("result") or {}).get("metrics") or {}
    return m.get("best_val_score", m.get("best_val_macro_f1"))


# ---------------------------------------------------------------- the driver
def run_study(config: StudyConfig, emit: Emit = null_emit, *, study_id: str | None = None, store: Any = None,
              owner: str | None = None, worker: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or resume) a study; returns the CLI's result: study_id, strategy, trials, seconds, best, test.

    worker: {"worker_id", "pid", "host"} of the worker whose child runs this, so trials die with it."""
    from lepton.jobs.store import get_store
    from lepton.train import run

    store = store or get_store()
    t0 = time.time()
    base, ds = validate(config)
    if study_id is None:
        study_id = store.create_study(config, status=Status.running, owner=owner)
    row = store.get_study(study_id)
    prior = store.study_trials(study_id)
    used = sum(_seconds(t) for t in prior)
    budget = config.budget_minutes * 60
    from lepton.model import backbone_spec

    strategy = STUDIES.get(config.strategy)(config, ds.modality, list(backbone_spec(base, ds.modality).supports))
    trials = [_trial_view(t) for t in prior]
    strategy.told([t for t in trials if t["status"] != "interrupted"])
    emit("log", level="info", message=f"study {study_id}: {config.strategy}, {config.budget_minutes:g} min on "
         f"{ds.name}" + (f"; resuming with {len(prior)} trials ({used:.0f} s used)" if prior else ""))
    number = max((t["trial"] for t in trials), default=-1) + 1

    def seconds_left() -> float:  # what earlier sessions of this study spent, and this one so far
        return budget - used - (time.time() - t0)

    for t in [t for t in trials if t["status"] in ("interrupted", "running", "queued")]:
        _resume_trial(t, store, seconds_left(), emit, worker)
    while True:
        trials = [_trial_view(t) for t in store.study_trials(study_id)]
        strategy.told(trials)
        left = seconds_left()
        if left < MIN_TRIAL_S or (config.max_trials and len(trials) >= config.max_trials):
            break
        if store.get_study(study_id) and store.get_study(study_id).get("status") == "cancelled":
            break
        planned = strategy.planned_trials()
        remaining_trials = max(1, planned - len(trials))
        share = left if remaining_trials == 1 else max(MIN_TRIAL_S, left / remaining_trials)
        proposal = strategy.propose(number, left)
        if proposal is None:
            break
        cfg = RunConfig.from_dict({**base.to_dict(), **proposal.overrides, "max_minutes": round(share / 60, 3),
                                   "seed": config.seed + number, "keep_probe": True,
                                   "name": f"{config.name or study_id} · trial {number}"}, source="the study")
        emit("log", level="info", message=f"trial {number}: {_describe(cfg)} for {share:.0f} s"
             + (f" ({proposal.note})" if proposal.note else ""))
        run_id = store.create_run(cfg, status=Status.running, study_id=study_id, trial=number, owner=owner,
                                  **(_worker_columns(worker)))
        store.update_study(study_id, message=f"trial {number} running")
        _train(run, cfg, store, run_id, proposal.controller, emit, params=proposal.params)
        number += 1
    trials = [_trial_view(t) for t in store.study_trials(study_id)]
    out = summary(study_id, config, trials, time.time() - t0 + used)
    store.set_study_status(study_id, Status.finished, result=out, message=_best_line(out))
    emit("log", level="info", message=_best_line(out))
    return out


def validate(config: StudyConfig) -> tuple[RunConfig, Any]:
    """The checks `lepton train` makes, before a study row exists: the data (ingested, so a class with a single
    example fails with train's own message), the backbone, and a budget that holds at least one trial."""
    from lepton.backbones.multimodal import check_one_modality
    from lepton.train import preflight
    from lepton.train.loop import _dataset

    if config.budget_minutes * 60 < MIN_TRIAL_S:
        raise BudgetError(f"--budget-minutes {config.budget_minutes:g} is too small for a study: one trial needs at "
                          f"least {MIN_TRIAL_S:.0f} s; the smallest budget that works is {MIN_TRIAL_S / 60:g} minutes")
    base = RunConfig(data=config.data, test_data=config.test_data, task=config.task, backbone=config.backbone,
                     seed=config.seed)
    preflight(base)
    ds = _dataset(config.data, base, config.task)
    check_one_modality(ds.modality, "a study", f"dataset '{ds.name}'", "train it with `lepton train`")
    return dataclasses.replace(base, data=ds.id), ds


def _train(run, cfg: RunConfig, store: Any, run_id: str, controller: Controller | None, emit: Emit,
           resume: bool = False, params: dict | None = None) -> dict | None:
    """One trial through the store's emitter, like `lepton train`; a failed trial is recorded and the study goes on.

    What the tuner suggested (params) and whether it pruned the trial go into the stored result, so a
    resumed study can rebuild the tuner's history from the store alone."""
    from lepton.train.events import tee

    emitter = store.emitter(run_id)
    run_dir = Path(store.get_run(run_id)["run_dir"])

    def attempt(cfg: RunConfig, resume: bool) -> dict:
        return run(cfg, tee(emitter, _trial_log(emit, run_id)), run_id=run_id, run_dir=run_dir, resume=resume,
                   controller=controller)

    try:
        try:
            result = attempt(cfg, resume)
        except BudgetError as e:
            if cfg.adapter == "linear-probe" or not (run_dir / "plan.json").exists():
                raise
            # The budget refused one epoch after the probe's features were cached: the trial's worth is that
            # probe, and a linear-probe retry on the cached features ships it in seconds (rather than nothing).
            cfg = _as_probe(cfg, run_dir)
            store.set_config(run_id, cfg)
            emit("log", level="info", message=f"trial {run_id}: {e}; it ships the probe on the cached features")
            result = attempt(cfg, False)
    except LeptonError as e:
        emitter.flush()
        store.set_status(run_id, Status.failed, error=str(e))
        emit("log", level="warning", message=f"trial {run_id} failed: {e}")
        return None
    except Exception as e:  # noqa: BLE001 - one trial's crash must not end the study; it is recorded with its reason
        emitter.flush()
        store.set_status(run_id, Status.failed, error=f"{type(e).__name__}: {e}")
        emit("log", level="warning", message=f"trial {run_id} failed: {type(e).__name__}: {e}")
        return None
    emitter.flush()
    result = {**result, "study_params": params or {}, "pruned": bool(getattr(controller, "pruned", False))}
    store.set_status(run_id, Status.finished, result=result)
    return result


def _as_probe(cfg: RunConfig, run_dir: Path) -> RunConfig:
    """The refused trial as a linear probe at the resolution its plan probed (so its cached features are hit)."""
    planned = json.loads((run_dir / "plan.json").read_text())["config"]
    return dataclasses.replace(cfg, adapter="linear-probe", adapter_options={}, lr=None, epochs=None,
                               image_size=planned.get("image_size"))


def _resume_trial(t: dict, store: Any, left: float, emit: Emit, worker: dict | None) -> None:
    """An interrupted trial continues from its checkpoint inside what the budget has left."""
    from lepton.train import run

    row = store.get_run(t["run_id"])
    cfg = RunConfig.from_dict(row["config"], source=f"trial {t['run_id']}")
    if left < MIN_TRIAL_S:
        store.set_status(t["run_id"], Status.interrupted, message="the study's budget ran out before it could resume")
        return
    cfg = dataclasses.replace(cfg, max_minutes=round(min(cfg.max_minutes or left / 60, left / 60), 3))
    emit("log", level="info", message=f"trial {t['trial']} ({t['run_id']}) resumes from its last checkpoint")
    store.update_run(t["run_id"], status=Status.running.value, **_worker_columns(worker))
    controller = CONTROLLERS.get("policy")() if cfg.controller == "policy" else None
    _train(run, cfg, store, t["run_id"], controller, emit, resume=True)


def _trial_log(emit: Emit, run_id: str) -> Emit:
    def e(kind: str, **d: Any) -> None:
        if kind == "log":
            emit("log", level=d.get("level", "info"), message=f"  {run_id}: {d['message']}")
        elif kind == "metrics" and d.get("split") == "val":
            emit("metrics", **d)

    return e


def _worker_columns(worker: dict | None) -> dict[str, Any]:
    import os

    from lepton.jobs.store import HOST

    if worker:
        return {"worker_id": worker["worker_id"], "pid": worker["pid"], "host": worker.get("host", HOST),
                "child_pid": os.getpid()}
    return {"pid": os.getpid(), "host": HOST}


def _trial_view(row: dict) -> dict:
    result = row.get("result") or {}
    return {"trial": row.get("trial") or 0, "run_id": row["id"], "status": row["status"], "result": result,
            "config": row.get("config") or {}, "study_params": result.get("study_params"),
            "pruned": result.get("pruned", False), "seconds": _seconds(row)}


def _seconds(row: dict | None) -> float:
    if not row:
        return 0.0
    if row.get("result") and row["result"].get("seconds") is not None:
        return float(row["result"]["seconds"])
    if row.get("started") and row.get("finished"):
        return float(row["finished"] - row["started"])
    return 0.0


def _describe(cfg: RunConfig) -> str:
    if cfg.controller == "policy" and not cfg.adapter:
        return "the policy's recipe"
    parts = [cfg.adapter or "auto", f"lr {cfg.lr:.2g}" if cfg.lr else ""]
    parts += [f"{k}={v}" for k, v in cfg.adapter_options.items()]
    if cfg.image_size:
        parts.append(f"{cfg.image_size}px")
    return ", ".join(p for p in parts if p)


def summary(study_id: str, config: StudyConfig, trials: list[dict], seconds: float) -> dict[str, Any]:
    """The CLI's last line: the best trial chosen on validation, then its test scores."""
    scored = [t for t in trials if _val(t) is not None]
    best = max(scored, key=lambda t: (_val(t), -t["trial"])) if scored else None
    out: dict[str, Any] = {"study_id": study_id, "strategy": config.strategy, "trials": len(trials),
                           "seconds": round(seconds, 1), "best": None, "test": None}
    if best:
        m = best["result"]["metrics"]
        keys = ("adapter", "lr", "image_size", "adapter_options", "controller", "max_minutes")
        primary = m.get("primary", "macro_f1")
        out["best"] = {"run_id": best["run_id"], "config": {k: best["config"].get(k) for k in keys},
                       "primary": primary, "val_score": _val(best), "kept": m.get("kept"),
                       **({"val_macro_f1": _val(best)} if primary == "macro_f1" else {})}  # the name older readers use
        out["test"] = {**{k: m[k] for k in TASKS.get(m.get("task", "single-label")).headline if k in m},
                       "score": m.get(primary)}
    return out


def _best_line(out: dict) -> str:
    if not out["best"]:
        return f"study {out['study_id']}: no trial finished"
    name = out["best"]["primary"]
    return (f"study {out['study_id']}: best of {out['trials']} trials is {out['best']['run_id']} "
            f"(val {name} {out['best']['val_score']:.3f}); test {name} {out['test']['score']:.3f}")


def importance(trials: list[dict]) -> dict[str, float]:
    """Optuna's parameter importance (fANOVA) over the finished trials' configurations and validation scores."""
    import optuna

    D = optuna.distributions
    rows = [(t["config"], _val(t)) for t in trials if _val(t) is not None]
    if len(rows) < 3:
        return {}
    adapters = sorted({c.get("adapter") or "auto" for c, _ in rows})
    study = optuna.create_study(direction="maximize")
    for c, v in rows:
        params = {"adapter": c.get("adapter") or "auto", "log10_lr": math.log10(c.get("lr") or 1e-3)}
        dists = {"adapter": D.CategoricalDistribution(adapters), "log10_lr": D.FloatDistribution(-6, 0)}
        if any(r[0].get("image_size") for r in rows):
            params["image_size"] = int(c.get("image_size") or 0)
            dists["image_size"] = D.IntDistribution(0, 1024)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=v))
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError):  # every trial alike in some parameter: nothing to apportion
        return {}
