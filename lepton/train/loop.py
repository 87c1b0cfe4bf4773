"""The training run: one linear function with numbered phases, nanoGPT style.

Everything the outside world sees goes through emit(...) (see events.py); nothing prints.
The same function serves `lepton train` in the foreground and the background worker.

The shape of every run: the untuned backbone's logistic probe first (it measures the backbone's
speed and sets the bar), then the plan (lepton/strategy/auto.py fills what the user left empty),
then fine-tuning inside the time window that is left, with a controller asked at every epoch
boundary, then the better of the fine-tuned model and the probe on validation is what ships.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil
import torch
from safetensors.torch import load_file, save_file

from lepton import __version__, baseline, paths, transfer
from lepton.companions import COMPANIONS, best_weight, blend
from lepton.adapters import ADAPTERS
from lepton.config import RunConfig
from lepton.data import Dataset, Example, check_path, ingest, load_dataset
from lepton.fusion import modality_scores
from lepton.errors import DataError, RunError
from lepton.model import backbone_spec, build_backbone, check_supported, wrap
from lepton.strategy import CONTROLLERS, auto
from lepton.strategy.base import Context, Controller, Decision, EpochReport
from lepton.tracking import open_sinks
from lepton.tasks import Task, task_of
from lepton.train import parallel
from lepton.train.budget import SAVE_S, Budget, BudgetError, lr_factor
from lepton.train.device import autocast, memory_mb, pick_device, use_bf16
from lepton.train.events import Emit, null_emit
from lepton.train.features import batched_features, cached_features, frozen_key
from lepton.train.progress import EVAL_COST, TRAIN_COST, Progress

COMPANION_S_PER_EXAMPLE = 2e-3  # fitting a TF-IDF logistic regression, three strengths: ~3 s per 1,500 texts here
CHECKPOINT_EVERY_S = 30.0  # mid-epoch checkpoints, so a killed worker loses at most this much work
MAX_PLANNED_EPOCHS = 1000  # a time-planned run stops when its window closes, long before this
# Mirrored validation images may cost the probe at most this share of its macro-F1 for flips to count as
# label-preserving. Strict on purpose: a weak probe loses little on mirrored letters (glyphs: 4 %), textures
# lose nothing, and flipping letters corrupts training while not flipping textures only forgoes a little.
FLIP_DROP = 0.02


def run(config: RunConfig, emit: Emit = null_emit, *, run_id: str | None = None,
        run_dir: Path | None = None, resume: bool = False, controller: Controller | None = None) -> dict[str, Any]:
    """Train one run. controller: an instance to steer it instead of the one config.controller names
    (a study's trials report to their tuner through it). Every event also reaches the tracking sinks
    (TensorBoard files in the run folder), whoever called."""
    run_id = run_id or paths.new_run_id()
    run_dir = Path(run_dir) if run_dir else paths.runs_dir() / run_id
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    with open_sinks(run_dir, emit) as emit, contextlib.ExitStack() as stack:
        return _train(config, emit, run_id, run_dir, resume, controller, stack)


def _train(config: RunConfig, emit: Emit, run_id: str, run_dir: Path, resume: bool, controller: Controller | None,
           stack: contextlib.ExitStack, join: Callable[[], None] | None = None) -> dict[str, Any]:
    """The run's body. stack: what must be undone however it ends (the other ranks of a --devices run);
    join: set in those other ranks (lepton/train/parallel.py), which train with rank 0 and return before phase 10."""
    budget = Budget(None)
    t_start = budget.t0

    # ---- 1. Setup: the plan a resumed run made, seed, device, precision ----
    plan_file = run_dir / "plan.json"
    if resume and plan_file.exists():  # a resumed run keeps the choices auto made (what the caller set stays set)
        planned = json.loads(plan_file.read_text())["config"]
        config = RunConfig.from_dict({k: planned.get(k, v) if v is None or v == "auto" else v
                                      for k, v in config.to_dict().items()}, source=str(plan_file))
    config.save(run_dir / "config.yaml")
    _seed(config.seed)
    device = pick_device(config.device)
    world = parallel.world_size(config.devices, device)  # --devices 4 on a 2-GPU machine fails here, not after the probe
    bf16 = use_bf16(config.precision, device)
    emit("progress", fraction=0.0, eta_s=None, phase="setup", message="loading data")

    # ---- 2. Data: train/val from the dataset, test from --test-data or the dataset's test split ----
    ds, test_ds, train, val, test, test_name, task = _data(config, emit)

    def reserve(forward_rate: float) -> float:
        """Seconds kept back at the end of the budget: one more validation and the test pass, saving, and
        fitting the modality's companion where it has one."""
        companion_s = COMPANION_S_PER_EXAMPLE * len(train[0]) if _companion_fits(config, ds, task) else 0.0
        return (len(val[0]) + len(test[0])) / max(forward_rate, 1e-6) + SAVE_S + companion_s

    # ---- 3. Plan the inputs and build the backbone (budget and resolution come before any model runs) ----
    reasons: list[str] = json.loads(plan_file.read_text()).get("reasons", []) if resume and plan_file.exists() else []
    if not (resume and plan_file.exists()):
        chosen = auto.inputs(config, ds.modality, len(train[0]), auto.native_side(ds, train[0]))
        config, reasons = chosen.config, chosen.reasons
    budget.seconds = config.max_minutes * 60 if config.max_minutes else None
    spec = backbone_spec(config, ds.modality, ds.modalities)
    backbone = build_backbone(spec, config.max_length, config.image_size)
    counts_total = sum(p.numel() for p in backbone.parameters()) + backbone.external_params

    # ---- 4. Probe: the untuned backbone's features (frozen-feature cache) and a logistic probe on them ----
    base = baseline.pretrained_spec(spec)
    progress = Progress(emit, sum(len(s[0]) for s in (train, val, test)) * EVAL_COST, budget=budget)

    splits = {"train": (ds, train), "val": (ds, val), "test": (test_ds, test)}
    probe_at = lambda size: _probe(backbone, base, spec, dataclasses.replace(config, image_size=size),  # noqa: E731
                                   splits, task, device, bf16, progress, emit)
    pre, probe, forward_rate, pre_bb = probe_at(config.image_size)

    # ---- 5. Plan the training and build the model: adapter + head (LP-FT: the probe's head) ----
    if not (resume and plan_file.exists()):
        window_guess = budget.left() - reserve(forward_rate) if budget.seconds else None
        ctx = {"modality": ds.modality, "n_train": len(train[0]), "n_val": len(val[0]), "num_classes": ds.num_classes,
               "imbalance": task.imbalance(train[1]), "budget_s": budget.seconds,
               "probe_val_f1": probe.val.get(task.primary, 0.0), "probe_seconds": time.time() - t_start,
               "forward_rate": forward_rate}
        probed_at = config.image_size
        chosen = auto.training(config, ctx, backbone.trainable, window_guess)
        config, reasons = chosen.config, reasons + chosen.reasons
        if config.image_size != probed_at:  # the recipe trains at another resolution: the probe must match it
            pre, probe, forward_rate, pre_bb = probe_at(config.image_size)
        plan_file.write_text(json.dumps({"config": config.to_dict(), "reasons": reasons, "ctx": ctx,
                                         "start_action": chosen.start_action}, indent=2))
    for line in reasons:
        emit("log", level="info", message=f"auto: {line}")
    adapter_name = config.adapter
    adapter, model, head_kind = _build(backbone, spec, config, ds, task, probe, emit)
    frozen = adapter.frozen  # what the wrapped model settled (a multimodal run's branches: frozen unless one trains)
    counts = adapter.count(model)
    augment = config.augment == "on" or (config.augment == "auto" and ds.modality in ("image", "audio"))
    augment = augment and not frozen  # cached features are computed once, unaugmented
    flip_ok = augment and _flip_check(ds, task, val, probe, base, pre_bb, config, device, bf16, emit)
    # Save the resolved choices: config.yaml then reproduces this run even if defaults change later.
    config.save(run_dir / "config.yaml")
    emit("log", level="info", message=f"{spec.name} + {adapter_name}: {counts['trainable']:,} of "
         f"{counts['total']:,} parameters train; lr {config.lr if config.lr is not None else adapter.default_lr:g}"
         f"{'; augmented' + ('' if flip_ok else ', no flips') if augment else ''}; {device.type}"
         f"{' bf16' if bf16 else ' fp32'}")

    # ---- 6. Inputs: cached features for frozen backbones, live batches otherwise ----
    bs = config.batch_size
    lr = config.lr if config.lr is not None else adapter.default_lr
    steps_per_epoch = math.ceil(len(train[0]) / bs)
    if frozen:
        model.head.to(device)
        feats = pre if not config.from_run else {  # a warm start's frozen backbone is the source run's
            name: _features(model, spec, d, s, name, config, device, bf16, progress, emit)
            for name, (d, s) in splits.items()}
        fwd: Callable[[Any], torch.Tensor] = model.head
        if device.type == "cpu":
            # Head steps are microseconds of math: a second intra-op thread only adds spin-wait, 7x slower
            # when the CPU is shared (measured on 2 cores under load). Restored in phase 10.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
        batch_of = lambda split, idx, rng=None: feats[split][idx].to(device, non_blocking=True)  # noqa: E731
        trained = model.head
        epochs = config.epochs or adapter.default_epochs
    else:
        model.to(device)
        fwd = torch.compile(model) if config.compile else model
        batch_of = _batch_maker(backbone, {"train": (ds, train[0]), "val": (ds, val[0]), "test": (test_ds, test[0])},
                                device, augment, flip_ok)
        trained = model
        epochs = config.epochs or (MAX_PLANNED_EPOCHS if budget.seconds else adapter.default_epochs)
    labels = {name: task.tensor(s[1]) for name, (_, s) in splits.items()}  # (N,) class ids or (N, width) targets
    lengths = {name: _lengths(s[0]) for name, (_, s) in splits.items()}
    eval_unit = 0.0 if frozen else EVAL_COST  # evaluating a head on cached features is free
    planned = epochs if config.epochs or frozen else _planned_epochs(budget, forward_rate, len(train[0]), len(val[0]))
    progress.extend(len(train[0]) * planned * (0.01 if frozen else TRAIN_COST) + (len(val[0]) * planned
                    + len(test[0])) * eval_unit)

    # ---- 7. Optimiser: AdamW on trainable parameters; warm-up and cosine laid over the steps or the time window ----
    params = [p for p in trained.parameters() if p.requires_grad]
    # fused: one kernel over all tensors instead of ~10 ops per tensor (full MiniLM, 2 CPU cores: 70 -> 23 ms a step)
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay, fused=device.type in ("cpu", "cuda"))
    total_steps = steps_per_epoch * epochs if config.epochs or not budget.seconds or frozen else None
    if budget.seconds and not frozen and val[0]:
        # The adapted model runs slower than the bare backbone the probe timed (LoRA branches, peft's wrappers):
        # one validation batch through it keeps the end's reserve honest before the window is laid out.
        model.eval()  # timing must not move BatchNorm statistics; the epoch loop sets train mode again
        forward_rate = min(forward_rate, _live_rate(fwd, batch_of, len(val[0]), bs, device, bf16))
    window = budget.open_window(reserve(forward_rate) if not frozen else reserve(math.inf))
    if window is not None and not frozen:
        epoch_s = _epoch_seconds(forward_rate, len(train[0]), len(val[0]), adapter_name)
        if window < epoch_s:
            raise BudgetError(f"--max-minutes {config.max_minutes:g} is too small for one epoch of {adapter_name} here: "
                              f"loading and the probe took {time.time() - t_start:.0f} s and one epoch takes about "
                              f"{epoch_s:.0f} s; the smallest budget that works is about "
                              f"{math.ceil((time.time() - t_start + epoch_s + reserve(forward_rate)) * 1.1 / 30) / 2:g} "
                              "minutes (or use --adapter linear-probe)")
    # --devices N: the other ranks start here, with the plan and the epochs bound this process trains to.
    par = stack.enter_context(parallel.start(dataclasses.replace(config, epochs=epochs), world, device, frozen,
                                             run_id, run_dir, emit, join, resume=resume))

    def progress_of(step: int) -> float:
        """0 -> 1 over the run's planned training: steps when epochs bound it, the time window when a budget does."""
        by_steps = (step + 1) / total_steps if total_steps else 0.0
        return max(by_steps, budget.window_fraction())

    def set_lr(step: int) -> tuple[float, float]:
        """Sets and returns (learning rate, progress): rank 0's on every rank, since time-planned progress is a clock."""
        progress_now, = par.follow(progress_of(step))
        value = lr * state["lr_scale"] * lr_factor(progress_now, config.warmup_ratio)
        for g in optim.param_groups:
            g["lr"] = value
        return value, progress_now

    # ---- 8. Resume: continue the same curves from the last checkpoint ----
    state = {"epoch": 0, "batch": 0, "step": 0, "best": -math.inf, "best_epoch": -1, "train_s": 0.0, "lr_scale": 1.0,
             "depth": adapter.depth, "val_history": [], "loss_history": []}
    last_ckpt = run_dir / "checkpoints" / "last.pt"
    best_file = run_dir / "checkpoints" / "best.safetensors"
    if resume and last_ckpt.exists():
        try:  # weights_only: a planted pickle cannot run code; a damaged file is one readable line
            ck = torch.load(last_ckpt, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - UnpicklingError, EOFError, RuntimeError…: all "damaged"
            raise RunError(f"run '{run_id}': its checkpoint {last_ckpt.name} is damaged or not Lepton's "
                           f"({type(e).__name__}); delete checkpoints/last.pt to start over") from None
        state.update(ck["state"])
        budget.resume(*state.get("budget_used", (0.0, 0.0)))
        if state["depth"] and state["depth"] != adapter.depth:  # the controller had unfrozen more blocks
            optim.add_param_group({"params": adapter.unfreeze(model, state["depth"] - adapter.depth)})
        trained.load_state_dict(ck["model"], strict=False)
        optim.load_state_dict(ck["optim"])
        adapter.load_extra_state(ck.get("adapter") or {})
        progress.add(len(train[0]) * (state["epoch"] + state["batch"] / steps_per_epoch)
                     * (0.01 if frozen else TRAIN_COST), "train", "resumed", force=True)
        emit("log", level="info", message=f"resumed at epoch {state['epoch'] + 1}, step {state['step']}")

    def save_last() -> None:
        state["budget_used"] = budget.used()
        tmp = last_ckpt.with_suffix(".tmp")
        torch.save({"model": _trainable_state(trained), "optim": optim.state_dict(), "state": dict(state),
                    "adapter": adapter.extra_state()}, tmp)
        tmp.replace(last_ckpt)  # atomic: a kill mid-write leaves the previous checkpoint intact
        emit("checkpoint", path=str(last_ckpt), epoch=state["epoch"], step=state["step"])

    # ---- 9. Train: the controller decides after the probe and after every validation ----
    controller = controller or CONTROLLERS.get(config.controller or "fixed")()
    probe_f1 = probe.val.get(task.primary, 0.0)  # the primary metric's value; "f1" since single-label came first
    controller.start(Context(
        modality=ds.modality, n_train=len(train[0]), n_val=len(val[0]), num_classes=ds.num_classes,
        imbalance=task.imbalance(train[1]), budget_s=budget.seconds, adapter=adapter_name, frozen=frozen,
        depth=adapter.depth, max_depth=len(backbone.blocks()), lr=lr, probe_val_f1=probe_f1,
        probe_seconds=time.time() - t_start,
        epoch_seconds_estimate=None if frozen else _epoch_seconds(forward_rate, len(train[0]), len(val[0]), adapter_name),
        extra={"forward_rate": forward_rate, "image_size": config.image_size}), config)
    stopped: str | None = None
    if not state["val_history"]:
        state["val_history"].append(probe_f1)
        decision = _followed(par, controller.decide(_report(state, budget, t_start, None, None,
                                                            probe.outputs(pre["val"].numpy()) if len(val[0]) else None)))
        if decision.stop:
            stopped = decision.why or f"{controller.name} controller"
    loss_sum = torch.zeros((), device=device)  # accumulated on the device: one host sync per log line
    grad_sum = torch.zeros((), device=device)
    n_logged, t_log, seen_log, t_ckpt = 0, time.time(), 0, time.time()
    step_fwd = par.wrap(fwd)  # the training forward: under --devices, DDP all-reduces its gradients in backward
    while state["epoch"] < epochs and stopped is None:
        trained.train()
        if frozen:
            model.backbone.eval()
        t_epoch = time.time()
        epoch_loss, epoch_grad, epoch_steps = torch.zeros((), device=device), torch.zeros((), device=device), 0
        batches = _batches(len(train[0]), bs, config.seed, state["epoch"], lengths["train"])
        for b in range(state["batch"], len(batches)):
            idx = batches[b]
            mine, share = par.shard(idx)  # this rank's part of the global batch, and its loss's share of the mean
            rng = np.random.default_rng([config.seed, state["epoch"], b])  # augmentation: the same on resume
            x, y = batch_of("train", mine, rng), labels["train"][mine].to(device, non_blocking=True)
            lr_now, progress_now = set_lr(state["step"])
            with autocast(device, bf16 and not frozen):
                logits = step_fwd(x)
            loss = task.loss(logits.float(), y) * share + adapter.extra_loss(model)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_([p for g in optim.param_groups for p in g["params"]], config.grad_clip)
                grad_sum += norm.detach()
                epoch_grad += norm.detach()
            optim.step()
            adapter.after_step(model, state["step"], progress_now)
            state["step"] += 1
            state["batch"] = b + 1
            loss_sum += loss.detach()
            epoch_loss += loss.detach()
            epoch_steps += 1
            n_logged += 1
            seen_log += len(idx)
            logged = state["step"] == 1 or state["step"] % config.log_every == 0
            if logged:
                loss_value = par.mean(loss_sum / n_logged).item()  # the one host sync: every step so far has finished
                emit("metrics", step=state["step"], epoch=state["epoch"] + (b + 1) / len(batches), split="train",
                     values={"loss": loss_value, "lr": lr_now, "samples_per_s": seen_log / max(time.time() - t_log, 1e-9)})
                emit("metrics", step=state["step"], epoch=state["epoch"] + (b + 1) / len(batches), split="system",
                     values=memory_mb(device))
                loss_sum.zero_()
                n_logged, seen_log = 0, 0
            # After the metrics: step 1's "train" phase change makes the job store write the first curve point at once.
            progress.add(len(idx) * (0.01 if frozen else TRAIN_COST), "train",
                         f"epoch {state['epoch'] + 1}{'/' + str(epochs) if epochs < MAX_PLANNED_EPOCHS else ''}, "
                         f"step {state['step']}")
            if logged:  # samples/s measures training: the next interval starts after these writes to the job store
                t_log = time.time()
            if par.follow(budget.window_over() or bool(budget.deadline and time.time() > budget.deadline))[0]:
                stopped = "time budget"
                break
            if not frozen and time.time() - t_ckpt > CHECKPOINT_EVERY_S:
                save_last()
                t_ckpt = time.time()
        state["train_s"] += time.time() - t_epoch
        t_pause = time.time()
        epoch_done = state["batch"] >= len(batches)
        if epoch_done:
            state["epoch"] += 1
            state["batch"] = 0
        if epoch_steps:
            state["loss_history"].append(float(par.mean(epoch_loss) / epoch_steps))
        # Validation: every finished epoch, and once more when the time budget cut an epoch short.
        if val[0] and (epoch_done or epoch_steps):
            trained.eval()
            t_val = time.time()
            probs, _ = _predict(fwd, batch_of, task, "val", len(val[0]), bs, lengths["val"], device,
                                bf16 and not frozen, progress, eval_unit)
            if not frozen and len(val[0]):  # the end needs a test pass of the same kind: keep its estimate honest
                forward_rate = len(val[0]) / max(time.time() - t_val, 1e-6)
                budget.shift(reserve(forward_rate))
            v = task.score(val[1], probs)
            at = state["epoch"] + (0.0 if epoch_done else state["batch"] / len(batches))  # a cut epoch: where it stopped
            emit("metrics", step=state["step"], epoch=float(at), split="val", values=v)
            state["val_history"].append(v[task.primary])
            if v[task.primary] > state["best"]:
                state.update(best=v[task.primary], best_epoch=state["epoch"])
                save_file(_trainable_state(trained), best_file)
            # Asked after every validation (also the one after a cut, so it sees the whole curve); heeded while training goes on.
            decision = _followed(par, controller.decide(_report(
                state, budget, t_start, float(epoch_grad / max(epoch_steps, 1)) if config.grad_clip > 0 else None,
                time.time() - t_epoch, probs)))
            if stopped is None:
                if decision.lr_scale != 1.0:
                    state["lr_scale"] *= decision.lr_scale
                if decision.unfreeze:
                    new = adapter.unfreeze(model, decision.unfreeze)
                    if new:
                        optim.add_param_group({"params": new, "lr": optim.param_groups[0]["lr"]})
                        state["depth"] = adapter.depth
                        step_fwd = par.wrap(fwd)  # DDP takes its parameter list when built
                if decision.why and not decision.stop:
                    emit("log", level="info", message=f"epoch {state['epoch']}: {decision.why}")
                if decision.stop:
                    stopped = decision.why or f"{controller.name} controller"
        if epoch_done:
            save_last()
            t_ckpt = time.time()
        t_log += time.time() - t_pause  # samples/s counts training only: no dip after every validation
    if stopped:
        emit("log", level="info", message=f"stopped after epoch {state['epoch']} ({stopped}); keeping the best model")
    if not val[0] and state["step"]:  # nothing to choose a best epoch by: the last one is the model
        save_file(_trainable_state(trained), best_file)
    par.close()
    if par.rank:  # another rank of a --devices run: rank 0 evaluates and ships; this one's work is in its weights
        return {}

    # ---- 10. Evaluate: the best checkpoint on test, and keep it or the probe, whichever validates higher ----
    # Training is over and last.pt holds the optimiser: its state and the gradients (3x the trainable
    # weights for AdamW) make room for the evaluation.
    optim.state.clear()
    optim.zero_grad(set_to_none=True)
    trained_any = best_file.exists()
    if trained_any:
        trained.load_state_dict(load_file(best_file), strict=False)
    trained.eval()
    tuned_probs, tuned_feats = _predict(fwd, batch_of, task, "test", len(test[0]), bs, lengths["test"], device,
                                        bf16 and not frozen, progress, eval_unit, features=not frozen)
    probe_probs = probe.outputs(pre["test"].numpy()) if len(test[0]) else np.zeros((0, task.width))
    kept, why = _keep(trained_any, state["best"], probe_f1, bool(val[0]), config.keep_probe, stopped)
    probs = tuned_probs if kept == "fine-tuned" else probe_probs
    val_outputs: list[np.ndarray] = []  # the kept model's validation outputs, computed once when asked

    def kept_val() -> np.ndarray:
        if not val_outputs:
            val_outputs.append(_predict(fwd, batch_of, task, "val", len(val[0]), bs, lengths["val"], device,
                                        bf16 and not frozen, None)[0] if kept == "fine-tuned" else
                               probe.outputs(pre["val"].numpy()))
        return val_outputs[0]

    if task.tuned and val[0]:  # decision rules fitted on validation (multi-label thresholds) before the test is scored
        task.tune(val[1], kept_val())
    probs, companion, weight, val_f1 = _with_companion(config, ds, task, test_ds, train, val, test, probs, kept_val, emit)
    rep = task.report(test[1], probs, [e.ref for e in test[0]])
    rep["task"], rep["primary"] = task.name, task.primary
    rep["kept"] = {"model": kept, "why": why, "probe_val_score": probe_f1,
                   "finetuned_val_score": state["best"] if trained_any else None,
                   "finetuned_test_score": task.score(test[1], tuned_probs)[task.primary]
                   if trained_any and len(test[0]) else None,
                   "companion": {"kind": companion.kind, "weight": weight, "val_macro_f1": val_f1} if weight else None}
    rep["plan"] = {"reasons": reasons, "controller": controller.name}
    emit("log", level="info", message=f"kept the {kept}: {why}")
    headline = {k: rep[k] for k in task.headline}
    emit("metrics", step=state["step"], epoch=float(state["epoch"]), split="test", values=headline)
    # Pretrained vs fine-tuned, embedding maps and predictions.csv (lepton/baseline.py; best effort).
    after = pre["test"] if frozen and not config.from_run else (feats["test"] if frozen else tuned_feats)
    rep.update(baseline.extras(run_dir, task, (ds, train), (test_ds, test), probe_probs, probs, pre["test"], after,
                               config.seed, same=frozen and not config.from_run, emit=emit))
    # A multimodal run: the same model with one modality present at a time (lepton/fusion), on the test split.
    alone = (lambda f: probe.outputs(f.numpy())) if kept == "probe" else (lambda f: _head_outputs(model.head, task, f, device))
    rep["modalities"] = modality_scores(backbone.layout, pre["test"] if kept == "probe" else after, alone, task, test[1])

    # ---- 11. Save: safetensors weights + what Predictor needs, and report.json ----
    if frozen and device.type == "cpu":
        torch.set_num_threads(threads)
    progress.add(0, "save", "saving the model", force=True)
    ship, meta_model = (_probe_shipped(probe, backbone.dim, task.width, base.name) if kept == "probe" else
                        _model_shipped(model, config, spec.name, adapter_name, head_kind, adapter))
    meta_model["from_run"] = spec.extra.get("from_run")  # lineage, even when the probe ships
    _ship(run_dir / "model", ship, {"lepton_version": __version__, "run_id": run_id, "modality": ds.modality,
                                    "task": task.name, "task_state": task.state, "classes": ds.classes, **meta_model,
                                    "dim": backbone.dim}, config, kept,
          companion if weight else None, weight)
    seconds = time.time() - t_start
    best_val = max(state["best"], probe_f1) if kept == "probe" else state["best"]
    summary = {**headline, "task": task.name, "primary": task.primary, "eval_split": test_name,
               "backbone": spec.name, "adapter": adapter_name, "kept": kept,
               "probe_val_score": probe_f1, "best_val_score": best_val,
               # single-label's names for the same two numbers, which studies, Compare and older runs read
               **({"probe_val_macro_f1": probe_f1, "best_val_macro_f1": best_val} if task.primary == "macro_f1" else {}),
               "best_epoch": state["best_epoch"] if kept != "probe" else 0, "epochs_run": state["epoch"],
               "steps": state["step"], "train_seconds": round(state["train_s"], 3),
               "trainable_params": counts["trainable"], "total_params": counts["total"] or counts_total,
               "stopped": stopped, "budget_seconds": budget.seconds, "image_size": config.image_size,
               **({"modalities": {m: {k: x for k, x in v.items() if k != "loss"} for m, v in rep["modalities"].items()},
                   "fusion": config.fusion if kept != "probe" else None} if rep["modalities"] else {})}
    rep.update(run_id=run_id, dataset=ds.id, dataset_name=ds.name, test_dataset=test_ds.id, split=test_name,
               test_dataset_name=test_ds.name, modality=ds.modality, backbone=spec.name, adapter=adapter_name,
               summary=summary)
    (run_dir / "report.json").write_text(json.dumps(rep, indent=2))
    result = {"run_id": run_id, "run_dir": str(run_dir), "status": "finished", "metrics": summary,
              "seconds": round(seconds, 3)}
    progress.finish("finished: " + ", ".join(f"{k} {v:.3f}" for k, v in headline.items()) + f" ({kept})")
    emit("result", result=result)
    return result


def preflight(config: RunConfig) -> None:
    """Cheap checks before a run is created or queued, so a typo fails at once and leaves no run behind."""
    from lepton.backbones import resolve_backbone

    for ref in filter(None, (config.data, config.test_data)):
        if Path(ref).expanduser().exists() or Path(ref).expanduser().is_symlink():
            check_path(ref)  # a FIFO, device or socket is refused before any run exists
        else:
            load_dataset(ref)  # raises a DataError naming the missing dataset
    task = config.task if config.task != "auto" else (
        load_dataset(config.data).task if config.data and not Path(config.data).expanduser().exists() else None)
    if task and config.loss != "auto":
        task_of(task, [], loss=config.loss)  # --loss huber on a classification task: one line, before any run exists
    modality = None if config.modality == "auto" else config.modality
    spec = resolve_backbone(config.backbone, modality) if config.backbone else None
    if config.adapter:
        ADAPTERS.get(config.adapter)  # raises a RegistryError listing valid names
        if spec is not None:
            check_supported(spec, config.adapter)
    if config.controller:
        CONTROLLERS.get(config.controller)
    if config.from_run:  # the source exists, has finished and fits
        transfer.check_source(config, modality)


# ---------------------------------------------------------------- helpers (no hidden control flow)

def _probe(backbone, base, spec, config: RunConfig, splits: dict[str, tuple[Dataset, Any]], task: Task, device,
           bf16: bool, progress: Progress, emit: Emit):
    """Features of every split at config.image_size, the probe on them, and the forward rate they measured."""
    backbone.configure(image_size=config.image_size)
    pre_bb = _pretrained(base, backbone, spec, config.max_length, config.image_size, device)
    on_batch = lambda n: progress.add(n * EVAL_COST, "features", "probe: extracting features")  # noqa: E731
    t_feat, pre = time.time(), {}
    for name, (d, s) in splits.items():
        pre[name], hit = baseline.frozen_features(base, pre_bb, d, s[0], name, config, device, bf16, on_batch=on_batch)
        emit("log", level="info", message=f"{name} features: {tuple(pre[name].shape)} ({'cache hit' if hit else 'computed'})")
    feat_s = time.time() - t_feat
    (ds, train), val = splits["train"], splits["val"][1]
    fit = task.fit_probe(pre["train"].numpy(), train[1], pre["val"].numpy(), val[1], config.seed)
    emit("log", level="info", message=f"probe: a linear model on {base.name}'s frozen features ({fit.c:g}): val "
         f"{task.primary} {fit.val.get(task.primary, float('nan')):.3f} ({feat_s + fit.seconds:.1f} s)")
    rate = _forward_rate(feat_s, sum(len(s[0]) for _, s in splits.values()), pre_bb, ds, train[0], device, bf16)
    return pre, fit, rate, pre_bb


def _build(backbone, spec, config: RunConfig, ds: Dataset, task: Task, probe, emit: Emit):
    """The adapter and the model around the backbone; the head starts from the probe (LP-FT) or the source run's."""
    probe_head = config.head_init == "probe" or ADAPTERS.get(config.adapter).head_init == "probe"
    head_kind = "probe" if probe_head else "classification"
    torch.manual_seed(config.seed)  # the head's init must not depend on how the backbone loaded
    adapter, model = wrap(backbone, spec, config.adapter, config.adapter_options, task.width, head_kind, config.fusion)
    model.update_bn_stats = config.bn_update
    if head_kind == "probe":
        model.head.load_probe(probe.mean, probe.scale, probe.coef, probe.intercept)
    if config.from_run:  # ...the source run's head instead, when the labels match
        head_kind = transfer.load_head(model, config.from_run, ds.classes, task, emit) or head_kind
    return adapter, model, head_kind


def _data(config: RunConfig, emit: Emit):
    """The dataset, the test dataset and their train/val/test splits (the report falls back to val)."""
    ds = _dataset(config.data, config, config.task)
    test_ds = _dataset(config.test_data, config, ds.task, split="test") if config.test_data else ds
    _check_labels(ds, test_ds)
    task = task_of(ds.task, ds.classes, loss=config.loss)
    train, val = _split(ds, "train"), _split(ds, "val")
    test = _split(test_ds, "test")
    if test_ds.classes != ds.classes:  # a separate test set: its label ids onto training ids
        test = (test[0], task.remap(test[1], test_ds.classes))
    task.fit(train[1])
    test_name = "test"
    if not test[0]:
        test, test_name = val, "val"
        emit("log", level="warning", message="no test split: the report uses the validation split")
    if not train[0]:
        raise DataError(f"dataset '{ds.name}' has no training examples")
    emit("log", level="info", message=f"data {ds.name}: {len(train[0])} train, {len(val[0])} val, "
         f"{len(test[0])} {test_name}; {task.name}" + (f", {ds.num_classes} classes" if ds.classes else ""))
    return ds, test_ds, train, val, test, test_name, task


def _probe_shipped(probe, dim: int, width: int, base_name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The untuned backbone + the probe's head: what the report's "pretrained" column scored."""
    ship = {f"head.{k}": v for k, v in _probe_head(probe, dim, width).state_dict().items()}
    return ship, {"backbone": base_name, "adapter": "linear-probe", "head": "probe", "adapter_options": {}}


def _model_shipped(model, config: RunConfig, backbone_name: str, adapter_name: str, head_kind: str,
                   adapter) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The fine-tuned model: its trained tensors (every tensor for a warm start, whose backbone differs everywhere)."""
    ship = transfer.saved_state(model) if config.from_run else _trainable_state(model)
    return ship, {"backbone": backbone_name, "adapter": adapter_name, "head": head_kind,
                  "adapter_options": adapter.saved_options(), "fusion": config.fusion}


def _ship(model_dir: Path, weights: dict[str, torch.Tensor], meta: dict[str, Any], config: RunConfig, kept: str,
          companion, weight: float) -> None:
    """What Predictor loads: model.safetensors, the companion where one is blended, and meta.json."""
    model_dir.mkdir(exist_ok=True)
    save_file(weights, model_dir / "model.safetensors")
    for stale in ("companion.json", "companion.safetensors"):  # a resumed run may have shipped one before
        (model_dir / stale).unlink(missing_ok=True)
    if companion is not None:
        companion.save(model_dir, weight)
    meta = {**meta, "max_length": config.max_length, "image_size": config.image_size, "kept": kept,
            "companion": {"kind": companion.kind, "weight": weight} if companion is not None else None}
    (model_dir / "meta.json").write_text(json.dumps(meta, indent=2))


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _dataset(ref: str, config: RunConfig, task: str, split: str | None = None) -> Dataset:
    p = Path(ref).expanduser()
    if p.exists():
        return ingest(p, modality=config.modality, text_column=config.text_column,
                      label_column=config.label_column, seed=config.seed, split=split, task=task).dataset
    ds = load_dataset(ref)
    if task not in ("auto", ds.task):
        raise DataError(f"dataset '{ds.name}' is stored as {ds.task}, not {task}: train on its file with --task {task} "
                        f"(it is stored again, as {task}), or leave --task as auto")
    return ds


def _check_labels(ds: Dataset, test_ds: Dataset) -> None:
    if test_ds is ds:
        return
    if test_ds.modality != ds.modality:
        raise DataError(f"test data '{test_ds.name}' is {test_ds.modality} but training data '{ds.name}' is {ds.modality}")
    if test_ds.task != ds.task:
        raise DataError(f"test data '{test_ds.name}' is stored as {test_ds.task} but training data '{ds.name}' is "
                        f"{ds.task}: give the test file itself (it is read as {ds.task})")
    extra = sorted(set(test_ds.classes) - set(ds.classes))
    if extra:
        raise DataError(f"test data '{test_ds.name}' has labels the training data lacks: {', '.join(extra)}; "
                        f"training labels are {', '.join(ds.classes)}")


def _split(ds: Dataset, name: str) -> tuple[list[Example], list[Any]]:
    exs = ds.examples(name) if name in ds.splits else []
    return exs, [e.label for e in exs]


def _pretrained(base, backbone, spec, max_length: int, image_size: int | None,
                device: torch.device) -> Callable[[], torch.nn.Module]:
    """The untuned backbone for the probe's features, built only on a cache miss: the run's own backbone
    (still untouched) unless this is a warm start, whose backbone is the source run's."""
    shared: dict[str, torch.nn.Module] = {}

    def get() -> torch.nn.Module:
        if "bb" not in shared:
            bb = backbone if base is spec else build_backbone(base, max_length, image_size)
            shared["bb"] = bb.to(device).eval()
        return shared["bb"]

    return get


def _flip_check(ds: Dataset, task: Task, val, probe, base, pre_bb, config: RunConfig, device, bf16, emit: Emit) -> bool:
    """Whether mirrored images keep their labels: the probe scored on mirrored validation images.

    Only asked where it matters (image runs that may augment); letters and digits fail it, textures pass."""
    if ds.modality != "image" or not val[0] or not probe.val:
        return True
    from PIL import ImageOps

    class Mirrored:  # the dataset, loading every image mirrored
        manifest = {"content_hash": ds.manifest["content_hash"] + ":mirrored"}

        @staticmethod
        def load(x: Any) -> Any:
            return ImageOps.mirror(ds.load(x))

    flipped, _ = baseline.frozen_features(base, pre_bb, Mirrored, val[0], "val", config, device, bf16)
    f1, was = task.score(val[1], probe.outputs(flipped.numpy()))[task.primary], probe.val[task.primary]
    ok = was - f1 <= FLIP_DROP * abs(was)
    emit("log", level="info", message=f"mirrored validation images: probe {task.primary} {f1:.3f} vs {was:.3f}; "
         + ("flips keep the labels" if ok else "flips change the labels, so augmentation will not flip"))
    return ok


def _forward_rate(feat_s: float, n: int, pre_bb, ds: Dataset, exs: list[Example], device, bf16) -> float:
    """Examples per second of one forward pass of the backbone, as the probe's extraction measured it.

    A feature-cache hit measured nothing: time one batch instead."""
    if feat_s > 0.5 and n:
        return n / feat_s
    batch = exs[:32]
    bb = pre_bb()
    t0 = time.time()
    batched_features(lambda b: bb.forward_features(**b), bb, ds, batch, len(batch), device, bf16)
    return len(batch) / max(time.time() - t0, 1e-6)


@torch.no_grad()
def _live_rate(fwd, batch_of, n_val: int, bs: int, device: torch.device, bf16: bool) -> float:
    """Examples per second of the wrapped model's forward pass, timed on one validation batch (encoded twice:
    the first call pays decoding and first-call kernels, the second is what evaluation costs)."""
    idx = np.arange(min(n_val, bs * 2))
    with autocast(device, bf16):
        fwd(batch_of("val", idx))
        t0 = time.time()
        fwd(batch_of("val", idx))
    return len(idx) / max(time.time() - t0, 1e-6)


def _epoch_seconds(forward_rate: float, n_train: int, n_val: int, adapter: str) -> float:
    return (n_train * auto.TRAIN_COST.get(adapter, TRAIN_COST) + n_val) / max(forward_rate, 1e-6)


def _planned_epochs(budget: Budget, forward_rate: float, n_train: int, n_val: int) -> int:
    """Epochs a time-planned run expects to fit (for progress only: the window decides)."""
    if not budget.seconds:
        return 1
    return max(1, int(budget.left() / max(_epoch_seconds(forward_rate, n_train, n_val, "full"), 1e-6)))


def _report(state: dict, budget: Budget, t_start: float, grad_norm: float | None,
            epoch_seconds: float | None, val_probs: np.ndarray | None) -> EpochReport:
    losses = state["loss_history"]
    return EpochReport(
        epoch=state["epoch"], step=state["step"], elapsed_s=time.time() - t_start,
        window_fraction=budget.window_fraction(), seconds_left=None if budget.seconds is None else budget.left(),
        lr_scale=state["lr_scale"], depth=state["depth"], val_f1=state["val_history"][-1],
        best_f1=max(state["val_history"]), val_history=list(state["val_history"]),
        train_loss=losses[-1] if losses else None, train_loss_history=list(losses), grad_norm=grad_norm,
        epoch_seconds=epoch_seconds, val_probs=val_probs)


def _followed(par: parallel.Parallel, d: Decision) -> Decision:
    """The controller's decision as rank 0 made it (its inputs include timings, which differ between ranks)."""
    lr_scale, unfreeze, stop = par.follow(d.lr_scale, d.unfreeze, float(d.stop))
    return dataclasses.replace(d, lr_scale=lr_scale, unfreeze=int(unfreeze), stop=bool(stop))


def _keep(trained: bool, tuned_val: float, probe_val: float, has_val: bool, keep_probe: bool,
          stopped: str | None) -> tuple[str, str]:
    """Which model ships, and why in one line."""
    if not trained:
        return "probe", f"no fine-tuning happened ({stopped or 'nothing trained'}), so the probe ships"
    if not has_val:
        return "fine-tuned", "there is no validation split to compare it with the probe"
    if keep_probe and tuned_val < probe_val:
        return "probe", (f"the fine-tuned model scored {tuned_val:.3f} on validation, below the untuned backbone's "
                         f"linear probe ({probe_val:.3f}): never ship worse than the probe")
    return "fine-tuned", f"it scored {tuned_val:.3f} on validation, the probe {probe_val:.3f}"


def _companion_fits(config: RunConfig, ds: Dataset, task: Task) -> bool:
    """A classical companion exists for the modality and its class probabilities blend with the task's."""
    return config.companion and ds.modality in COMPANIONS and task.exclusive


def _with_companion(config: RunConfig, ds: Dataset, task: Task, test_ds: Dataset, train, val, test, probs: np.ndarray,
                    kept_val: Callable[[], np.ndarray], emit: Emit):
    """The modality's classical companion, blended with the shipped model where that validates higher:
    (test probabilities, the companion or None, its blend weight, that blend's validation macro-F1)."""
    if not (_companion_fits(config, ds, task) and val[0] and test[0]):
        return probs, None, 0.0, None
    companion, weight, val_f1 = _companion(ds, train, val, kept_val(), config.seed, emit)
    if weight:
        probs = blend(probs, companion.probs([test_ds.load(e.x) for e in test[0]]), weight)
    return probs, companion, weight, val_f1


def _companion(ds: Dataset, train, val, kept_val: np.ndarray, seed: int, emit: Emit):
    """(the fitted companion, its best blend weight with the kept model, that blend's validation macro-F1)."""
    items = lambda exs: [ds.load(e.x) for e in exs]  # noqa: E731
    comp = COMPANIONS.get(ds.modality)(items(train[0]), np.asarray(train[1]), items(val[0]), np.asarray(val[1]),
                                       ds.num_classes, seed)
    weight, f1 = best_weight(np.asarray(val[1]), kept_val, comp.probs(items(val[0])), ds.num_classes)
    emit("log", level="info", message=f"companion ({comp.kind}): " + (
        f"blended at weight {weight:g}, validation macro-F1 {f1:.3f}" if weight else
        "no blend validates higher, so it is not shipped"))
    return comp, weight, f1


def _probe_head(probe, dim: int, width: int) -> torch.nn.Module:
    from lepton.heads import build_head

    return build_head("probe", dim, width).load_probe(probe.mean, probe.scale, probe.coef, probe.intercept)


def _lengths(exs: list[Example]) -> np.ndarray | None:
    # Character length is a cheap, good proxy for token length; it drives bucketing for text only.
    return np.array([len(e.x) for e in exs]) if exs and isinstance(exs[0].x, str) else None


def _batches(n: int, bs: int, seed: int, epoch: int, lengths: np.ndarray | None) -> list[np.ndarray]:
    """Shuffled batches, deterministic per (seed, epoch) so a resumed epoch skips exactly the done ones.

    With lengths, examples are sorted by length inside chunks of 50 batches (dynamic padding then
    pads little), and the batch order is shuffled again so the curve does not trend with length."""
    rng = np.random.default_rng([seed, epoch])
    idx = rng.permutation(n)
    if lengths is not None:
        chunk = bs * 50
        idx = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in np.split(idx, range(chunk, n, chunk))])
    batches = [idx[i:i + bs] for i in range(0, n, bs)]
    return [batches[i] for i in rng.permutation(len(batches))] if lengths is not None else batches


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _batch_maker(backbone, sources: dict[str, tuple[Dataset, list[Example]]], device: torch.device,
                 augment: bool = False, flip: bool = True) -> Callable[..., dict[str, torch.Tensor]]:
    """batch_of(split, idx, rng=None) for a backbone that runs live (full, LoRA, partial).

    Each example is loaded and encoded once (text: tokenized; images: decoded and resized) and kept
    while the run's encodings fit in a quarter of free memory (2 GiB at most), so later epochs and
    every validation only collate: pad token ids, stack pixels. Training batches are augmented
    after that (with the batch's own generator), so the kept encodings stay clean."""
    budget = min(2 << 30, psutil.virtual_memory().available // 4)
    kept: dict[tuple[str, int], Any] = {}
    used = 0

    def batch_of(split: str, idx: np.ndarray, rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        nonlocal used
        ds, exs = sources[split]
        todo = [int(i) for i in idx if (split, int(i)) not in kept]
        fresh = dict(zip(todo, backbone.encode([ds.load(exs[i].x) for i in todo]))) if todo else {}
        for i, enc in fresh.items():
            size = _nbytes(enc)
            if used + size <= budget:
                kept[split, i] = enc
                used += size
        encoded = [fresh[i] if i in fresh else kept[split, i] for i in map(int, idx)]
        if augment and split == "train" and rng is not None:
            return _to(backbone.augment_batch(backbone.collate(backbone.augment(encoded, rng, flip)), rng), device)
        return _to(backbone.collate(encoded), device)

    return batch_of


def _nbytes(x: Any) -> int:
    """Memory an encoding holds; kinds it cannot size count as too big to keep."""
    if isinstance(x, dict):
        return sum(_nbytes(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return sum(_nbytes(v) for v in x)
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return int(x.nbytes)
    if isinstance(x, (int, float, str)):
        return 64 + (len(x) if isinstance(x, str) else 0)
    return 1 << 62


@torch.no_grad()
def _predict(fwd, batch_of, task: Task, split: str, n: int, bs: int, lengths: np.ndarray | None, device: torch.device,
             bf16: bool, progress: Progress | None, unit: float = EVAL_COST,
             features: bool = False) -> tuple[np.ndarray, torch.Tensor | None]:
    """The task's outputs (n, width) in the split's original order (class probabilities, or values), and the
    head's inputs (n, dim) when asked (one pass gives both: the embedding map needs no second forward)."""
    order = np.argsort(lengths, kind="stable") if lengths is not None else np.arange(n)
    out: list[torch.Tensor] = []
    feats: list[torch.Tensor] = []
    for i in range(0, n, bs * 2):
        idx = order[i:i + bs * 2]
        with autocast(device, bf16):
            if features:
                f = fwd.features(batch_of(split, idx))
                feats.append(f.float().cpu())
                out.append(task.decode(fwd.head(f)))
            else:
                out.append(task.decode(fwd(batch_of(split, idx))))  # stays on the device: one copy at the end
        if progress:
            progress.add(len(idx) * unit, "eval", f"evaluating {split}")
    probs = torch.cat(out).cpu().numpy() if out else np.zeros((0, 0))
    inv = np.empty_like(order)
    inv[order] = np.arange(n)
    return probs[inv], (torch.cat(feats)[torch.from_numpy(inv)] if feats else None)


@torch.no_grad()
def _head_outputs(head: torch.nn.Module, task: Task, feats: torch.Tensor, device: torch.device) -> np.ndarray:
    """The task's outputs of the head alone on stored features, in chunks."""
    head.eval()
    return torch.cat([task.decode(head(feats[i:i + 1024].to(device))).float().cpu()
                      for i in range(0, len(feats), 1024)]).numpy() if len(feats) else np.zeros((0, task.width))


@torch.no_grad()
def _features(model, spec, ds: Dataset, data, split: str, config: RunConfig, device: torch.device, bf16: bool,
              progress: Progress, emit: Emit) -> torch.Tensor:
    """(N, dim) frozen features of the model's own backbone (a warm start's) for one split, through the cache."""
    exs = data[0]
    backbone = model.backbone

    def compute() -> torch.Tensor:
        backbone.to(device)
        return batched_features(lambda batch: backbone.forward_features(**batch), backbone, ds, exs,
                                max(config.batch_size, 32), device, bf16,
                                on_batch=lambda n: progress.add(n * EVAL_COST, "features", f"extracting {split} features"))

    if not exs:
        return torch.zeros(0, backbone.dim)
    feats, hit = cached_features(frozen_key(spec, ds.manifest["content_hash"], split, config, device, bf16), compute)
    emit("log", level="info", message=f"{split} features: {tuple(feats.shape)} ({'cache hit' if hit else 'computed'})")
    return feats


def _trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train plus all buffers: with the untouched pretrained backbone, that rebuilds the model."""
    keep = {n for n, p in module.named_parameters() if p.requires_grad} | {n for n, _ in module.named_buffers()}
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items() if k in keep}
