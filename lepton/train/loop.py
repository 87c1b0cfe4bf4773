"""The training run: one linear function with numbered phases, nanoGPT style.

Everything the outside world sees goes through emit(...) (see events.py); nothing prints.
The same function serves `lepton train` in the foreground and the background worker.
"""

from __future__ import annotations

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
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from lepton import __version__, baseline, paths, transfer
from lepton.adapters import AdapterOptions, get_adapter
from lepton.backbones import default_backbone, resolve_backbone
from lepton.config import RunConfig
from lepton.data import Dataset, Example, ingest, load_dataset
from lepton.errors import DataError, IncompatibleError
from lepton.evaluate import metrics as score, report as full_report
from lepton.heads import classification_head
from lepton.train.device import autocast, memory_mb, pick_device, use_bf16
from lepton.train.events import Emit, null_emit
from lepton.train.features import batched_features, cached_features, frozen_key
from lepton.train.progress import EVAL_COST, TRAIN_COST, Progress

CHECKPOINT_EVERY_S = 30.0  # mid-epoch checkpoints, so a killed worker loses at most this much work


def run(config: RunConfig, emit: Emit = null_emit, *, run_id: str | None = None,
        run_dir: Path | None = None, resume: bool = False) -> dict[str, Any]:
    t_start = time.time()
    deadline = t_start + config.max_minutes * 60 if config.max_minutes else None

    # ---- 1. Setup: run folder, seed, device, precision ----
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + f"{random.getrandbits(16):04x}"
    run_dir = Path(run_dir) if run_dir else paths.runs_dir() / run_id
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    config.save(run_dir / "config.yaml")
    _seed(config.seed)
    device = pick_device(config.device)
    bf16 = use_bf16(config.precision, device)
    emit("progress", fraction=0.0, eta_s=None, phase="setup", message="loading data")

    # ---- 2. Data: train/val from the dataset, test from --test-data or the dataset's test split ----
    ds = _dataset(config.data, config)
    test_ds = _dataset(config.test_data, config, split="test") if config.test_data else ds
    _check_labels(ds, test_ds)
    train, val = _split(ds, "train"), _split(ds, "val")
    test = _split(test_ds, "test", classes=ds.classes)
    test_name = "test"
    if not test[0]:
        test, test_name = val, "val"
        emit("log", level="warning", message="no test split: the report uses the validation split")
    if not train[0]:
        raise DataError(f"dataset '{ds.name}' has no training examples")
    emit("log", level="info", message=f"data {ds.name}: {len(train[0])} train, {len(val[0])} val, "
         f"{len(test[0])} {test_name}; {ds.num_classes} classes")

    # ---- 3. Model: backbone + adapter + head ----
    spec = resolve_backbone(config.backbone or default_backbone(ds.modality).name, ds.modality)
    if config.from_run:  # warm start: building this spec gives the source run's adapted backbone (lepton/transfer.py)
        spec = transfer.source_spec(config, ds.modality)
    if spec.modality != ds.modality:
        raise IncompatibleError(f"backbone '{spec.name}' is for {spec.modality}, but the data is {ds.modality}; "
                                f"`lepton backbones --modality {ds.modality}` lists the ones that fit")
    adapter_name = config.adapter or spec.recommended_adapter
    adapter = get_adapter(adapter_name, AdapterOptions(config.lora_r, config.lora_alpha, config.lora_dropout))
    if adapter_name not in spec.supports:
        raise IncompatibleError(f"backbone '{spec.name}' does not support the '{adapter_name}' adapter; "
                                f"use one of: {', '.join(spec.supports)}")
    backbone = spec.build()
    backbone.max_length = config.max_length
    torch.manual_seed(config.seed)  # the head's init must not depend on how the backbone loaded
    model = adapter.wrap(backbone, classification_head(backbone.dim, ds.num_classes))
    if config.from_run:  # ...and the source run's head too, when the labels match
        transfer.load_head(model, config.from_run, ds.classes, emit)
    counts = adapter.count(model)
    epochs = config.epochs or adapter.default_epochs
    lr = config.lr if config.lr is not None else adapter.default_lr
    # Save the resolved choices: config.yaml then reproduces this run even if defaults change later.
    dataclasses.replace(config, backbone=spec.name, adapter=adapter_name, epochs=epochs, lr=lr).save(
        run_dir / "config.yaml")
    emit("log", level="info", message=f"{spec.name} + {adapter_name}: {counts['trainable']:,} of "
         f"{counts['total']:,} parameters train; {epochs} epochs at lr {lr:g}; {device.type}"
         f"{' bf16' if bf16 else ' fp32'}")

    # ---- 4. Inputs: cached features for frozen backbones, live batches otherwise ----
    bs = config.batch_size
    steps_per_epoch = math.ceil(len(train[0]) / bs)
    eval_unit = 0.0 if adapter.frozen else EVAL_COST  # evaluating a head on cached features is free
    eval_units = (len(val[0]) * epochs + len(test[0])) * eval_unit
    feature_units = sum(len(s[0]) for s in (train, val, test)) * EVAL_COST if adapter.frozen else 0.0
    progress = Progress(emit, feature_units + len(train[0]) * epochs * (0.01 if adapter.frozen else TRAIN_COST)
                        + eval_units, deadline=deadline)
    if adapter.frozen:
        model.head.to(device)
        feats = {name: _features(model, spec, data, name, ds if name != "test" else test_ds, config, device,
                                 bf16, progress, emit)
                 for name, data in (("train", train), ("val", val), ("test", test))}
        fwd: Callable[[Any], torch.Tensor] = model.head
        if device.type == "cpu":
            # Head steps are microseconds of math: a second intra-op thread only adds spin-wait, 7x slower
            # when the CPU is shared (measured on 2 cores under load). Restored in phase 9.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
        batch_of = lambda split, idx: feats[split][idx].to(device, non_blocking=True)  # noqa: E731
        trained = model.head
    else:
        model.to(device)
        fwd = torch.compile(model) if config.compile else model
        batch_of = _batch_maker(backbone, {"train": (ds, train[0]), "val": (ds, val[0]), "test": (test_ds, test[0])},
                                device)
        trained = model
    labels = {name: torch.tensor(s[1], dtype=torch.long) for name, s in (("train", train), ("val", val), ("test", test))}
    lengths = {name: _lengths(s[0]) for name, s in (("train", train), ("val", val), ("test", test))}

    # ---- 5. Optimiser: AdamW on trainable parameters, linear warmup then cosine decay ----
    params = [p for p in trained.parameters() if p.requires_grad]
    # fused: one kernel over all tensors instead of ~10 ops per tensor (full MiniLM, 2 CPU cores: 70 -> 23 ms a step)
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay, fused=device.type in ("cpu", "cuda"))
    total_steps = steps_per_epoch * epochs
    warmup = int(total_steps * config.warmup_ratio)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / max(warmup, 1))
                                              * 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))

    # ---- 6. Resume: continue the same curves from the last checkpoint ----
    state = {"epoch": 0, "batch": 0, "step": 0, "best": -1.0, "best_epoch": -1, "bad_epochs": 0, "train_s": 0.0}
    last_ckpt = run_dir / "checkpoints" / "last.pt"
    best_file = run_dir / "checkpoints" / "best.safetensors"
    if resume and last_ckpt.exists():
        ck = torch.load(last_ckpt, map_location="cpu", weights_only=True)
        trained.load_state_dict(ck["model"], strict=False)
        optim.load_state_dict(ck["optim"])
        sched.load_state_dict(ck["sched"])
        state.update(ck["state"])
        progress.add(len(train[0]) * (state["epoch"] + state["batch"] / steps_per_epoch)
                     * (0.01 if adapter.frozen else TRAIN_COST), "train", "resumed", force=True)
        emit("log", level="info", message=f"resumed at epoch {state['epoch'] + 1}, step {state['step']}")

    def save_last() -> None:
        tmp = last_ckpt.with_suffix(".tmp")
        torch.save({"model": _trainable_state(trained), "optim": optim.state_dict(), "sched": sched.state_dict(),
                    "state": dict(state)}, tmp)
        tmp.replace(last_ckpt)  # atomic: a kill mid-write leaves the previous checkpoint intact
        emit("checkpoint", path=str(last_ckpt), epoch=state["epoch"], step=state["step"])

    # ---- 7. Train: epochs of steps, validation every epoch, best checkpoint, early stop, time budget ----
    stopped: str | None = None
    loss_sum = torch.zeros((), device=device)  # accumulated on the device: one host sync per log line
    n_logged, t_log, seen_log, t_ckpt = 0, time.time(), 0, time.time()
    while state["epoch"] < epochs and stopped is None:
        trained.train()
        if adapter.frozen:
            model.backbone.eval()
        t_epoch = time.time()
        batches = _batches(len(train[0]), bs, config.seed, state["epoch"], lengths["train"])
        for b in range(state["batch"], len(batches)):
            idx = batches[b]
            x, y = batch_of("train", idx), labels["train"][idx].to(device, non_blocking=True)
            with autocast(device, bf16 and not adapter.frozen):
                logits = fwd(x)
            loss = F.cross_entropy(logits.float(), y)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optim.step()
            sched.step()
            state["step"] += 1
            state["batch"] = b + 1
            loss_sum += loss.detach()
            n_logged += 1
            seen_log += len(idx)
            logged = state["step"] == 1 or state["step"] % config.log_every == 0
            if logged:
                loss_value = (loss_sum / n_logged).item()  # the one host sync: every step so far has finished
                emit("metrics", step=state["step"], epoch=state["epoch"] + (b + 1) / len(batches), split="train",
                     values={"loss": loss_value, "lr": sched.get_last_lr()[0],
                             "samples_per_s": seen_log / max(time.time() - t_log, 1e-9)})
                emit("metrics", step=state["step"], epoch=state["epoch"] + (b + 1) / len(batches), split="system",
                     values=memory_mb(device))
                loss_sum.zero_()
                n_logged, seen_log = 0, 0
            # After the metrics: step 1's "train" phase change makes the job store write the first curve point at once.
            progress.add(len(idx) * (0.01 if adapter.frozen else TRAIN_COST), "train",
                         f"epoch {state['epoch'] + 1}/{epochs}, step {state['step']}/{total_steps}")
            if logged:  # samples/s measures training: the next interval starts after these writes to the job store
                t_log = time.time()
            if deadline and time.time() > deadline:
                stopped = "time budget"
                break
            if not adapter.frozen and time.time() - t_ckpt > CHECKPOINT_EVERY_S:
                save_last()
                t_ckpt = time.time()
        state["train_s"] += time.time() - t_epoch
        t_pause = time.time()
        epoch_done = state["batch"] >= len(batches)
        if epoch_done:
            state["epoch"] += 1
            state["batch"] = 0
        # Validation: every finished epoch, and once when the time budget cut an epoch before any.
        if val[0] and (epoch_done or state["best_epoch"] < 0):
            trained.eval()
            probs = _predict(fwd, batch_of, "val", len(val[0]), bs, lengths["val"], device, bf16 and not adapter.frozen,
                             progress, eval_unit)
            v = score(val[1], probs.argmax(1), ds.num_classes)
            v["loss"] = float(F.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-12)), labels["val"]))
            emit("metrics", step=state["step"], epoch=float(state["epoch"]), split="val", values=v)
            if v["macro_f1"] > state["best"]:
                state.update(best=v["macro_f1"], best_epoch=state["epoch"], bad_epochs=0)
                save_file(_trainable_state(trained), best_file)
            else:
                state["bad_epochs"] += 1
            if config.early_stopping and state["bad_epochs"] >= config.early_stopping and stopped is None:
                stopped = "early stopping"
        if epoch_done:
            save_last()
            t_ckpt = time.time()
        t_log += time.time() - t_pause  # samples/s counts training only: no dip after every validation
    if stopped:
        emit("log", level="info", message=f"stopped after epoch {state['epoch']} ({stopped}); keeping the best model")

    # ---- 8. Evaluate the best model on the test split ----
    # Training is over and last.pt holds the optimiser: its state and the gradients (3x the trainable
    # weights for AdamW) make room for the evaluation and the baseline's backbone.
    optim.state.clear()
    optim.zero_grad(set_to_none=True)
    if best_file.exists():
        trained.load_state_dict(load_file(best_file), strict=False)
    trained.eval()
    probs = _predict(fwd, batch_of, "test", len(test[0]), bs, lengths["test"], device, bf16 and not adapter.frozen,
                     progress, eval_unit)
    rep = full_report(test[1], probs, ds.classes, refs=[e.ref for e in test[0]])
    emit("metrics", step=state["step"], epoch=float(state["epoch"]), split="test",
         values={"accuracy": rep["accuracy"], "macro_f1": rep["macro_f1"]})
    # Pretrained vs fine-tuned, embedding maps and predictions.csv (lepton/baseline.py; best effort).
    rep.update(baseline.extras(run_dir, model, spec, adapter.frozen, config, device, bf16, (ds, train), (test_ds, test),
                               probs, emit))

    # ---- 9. Save: safetensors weights + what Predictor needs, and report.json ----
    if adapter.frozen and device.type == "cpu":
        torch.set_num_threads(threads)
    progress.add(0, "save", "saving the model", force=True)
    model_dir = run_dir / "model"
    model_dir.mkdir(exist_ok=True)
    save_file(transfer.saved_state(model) if config.from_run else _trainable_state(model), model_dir / "model.safetensors")
    meta = {"lepton_version": __version__, "run_id": run_id, "modality": ds.modality, "classes": ds.classes,
            "backbone": spec.name, "adapter": adapter_name, "dim": backbone.dim, "max_length": config.max_length,
            "lora": {"r": config.lora_r, "alpha": config.lora_alpha, "dropout": config.lora_dropout},
            "from_run": spec.extra.get("from_run")}
    (model_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    seconds = time.time() - t_start
    summary = {"accuracy": rep["accuracy"], "macro_f1": rep["macro_f1"], "eval_split": test_name,
               "backbone": spec.name, "adapter": adapter_name,
               "best_val_macro_f1": state["best"] if state["best"] >= 0 else None,
               "best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "steps": state["step"],
               "train_seconds": round(state["train_s"], 3),
               "trainable_params": counts["trainable"], "total_params": counts["total"], "stopped": stopped}
    rep.update(run_id=run_id, dataset=ds.id, dataset_name=ds.name, test_dataset=test_ds.id, split=test_name,
               backbone=spec.name, adapter=adapter_name, summary=summary)
    (run_dir / "report.json").write_text(json.dumps(rep, indent=2))
    result = {"run_id": run_id, "run_dir": str(run_dir), "status": "finished", "metrics": summary,
              "seconds": round(seconds, 3)}
    progress.finish(f"finished: accuracy {rep['accuracy']:.3f}, macro-F1 {rep['macro_f1']:.3f}")
    emit("result", result=result)
    return result


def preflight(config: RunConfig) -> None:
    """Cheap checks before a run is created or queued, so a typo fails at once and leaves no run behind."""
    p = Path(config.data).expanduser()
    if not p.exists():
        load_dataset(config.data)  # raises a DataError naming the missing dataset
    if config.test_data and not Path(config.test_data).expanduser().exists():
        load_dataset(config.test_data)
    modality = None if config.modality == "auto" else config.modality
    spec = resolve_backbone(config.backbone, modality) if config.backbone else None
    if config.adapter:
        get_adapter(config.adapter)  # raises a RegistryError listing valid names
        if spec is not None and config.adapter not in spec.supports:
            raise IncompatibleError(f"backbone '{spec.name}' does not support the '{config.adapter}' adapter; "
                                    f"use one of: {', '.join(spec.supports)}")
    if config.from_run:  # the source exists, has finished and fits
        transfer.check_source(config, modality)


# ---------------------------------------------------------------- helpers (no hidden control flow)

def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _dataset(ref: str, config: RunConfig, split: str | None = None) -> Dataset:
    p = Path(ref).expanduser()
    if p.exists():
        return ingest(p, modality=config.modality, text_column=config.text_column,
                      label_column=config.label_column, seed=config.seed, split=split).dataset
    return load_dataset(ref)


def _check_labels(ds: Dataset, test_ds: Dataset) -> None:
    if test_ds is ds:
        return
    if test_ds.modality != ds.modality:
        raise DataError(f"test data '{test_ds.name}' is {test_ds.modality} but training data '{ds.name}' is {ds.modality}")
    extra = sorted(set(test_ds.classes) - set(ds.classes))
    if extra:
        raise DataError(f"test data '{test_ds.name}' has labels the training data lacks: {', '.join(extra)}; "
                        f"training labels are {', '.join(ds.classes)}")


def _split(ds: Dataset, name: str, classes: list[str] | None = None) -> tuple[list[Example], list[int]]:
    exs = ds.examples(name) if name in ds.splits else []
    if classes is not None and classes != ds.classes:  # a separate test set: map its label ids onto training ids
        remap = [classes.index(c) for c in ds.classes]
        return exs, [remap[e.label] for e in exs]
    return exs, [e.label for e in exs]


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


def _batch_maker(backbone, sources: dict[str, tuple[Dataset, list[Example]]],
                 device: torch.device) -> Callable[[str, np.ndarray], dict[str, torch.Tensor]]:
    """batch_of(split, idx) for a backbone that runs live (full, LoRA).

    Each example is loaded and encoded once (text: tokenized; images: decoded and resized) and kept
    while the run's encodings fit in a quarter of free memory (2 GiB at most), so later epochs and
    every validation only collate: pad token ids, stack pixels."""
    budget = min(2 << 30, psutil.virtual_memory().available // 4)
    kept: dict[tuple[str, int], Any] = {}
    used = 0

    def batch_of(split: str, idx: np.ndarray) -> dict[str, torch.Tensor]:
        nonlocal used
        ds, exs = sources[split]
        todo = [int(i) for i in idx if (split, int(i)) not in kept]
        fresh = dict(zip(todo, backbone.encode([ds.load(exs[i].x) for i in todo]))) if todo else {}
        for i, enc in fresh.items():
            size = _nbytes(enc)
            if used + size <= budget:
                kept[split, i] = enc
                used += size
        return _to(backbone.collate([fresh[i] if i in fresh else kept[split, i] for i in map(int, idx)]), device)

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
def _predict(fwd, batch_of, split: str, n: int, bs: int, lengths: np.ndarray | None, device: torch.device,
             bf16: bool, progress: Progress | None, unit: float = EVAL_COST) -> np.ndarray:
    """Class probabilities (n, C) in the split's original order."""
    order = np.argsort(lengths, kind="stable") if lengths is not None else np.arange(n)
    out: list[torch.Tensor] = []
    for i in range(0, n, bs * 2):
        idx = order[i:i + bs * 2]
        with autocast(device, bf16):
            out.append(fwd(batch_of(split, idx)).float().softmax(-1))  # stays on the device: one copy at the end
        if progress:
            progress.add(len(idx) * unit, "eval", f"evaluating {split}")
    probs = torch.cat(out).cpu().numpy() if out else np.zeros((0, 0))
    inv = np.empty_like(order)
    inv[order] = np.arange(n)
    return probs[inv]


@torch.no_grad()
def _features(model, spec, data, split: str, ds: Dataset, config: RunConfig, device: torch.device, bf16: bool,
              progress: Progress, emit: Emit) -> torch.Tensor:
    """(N, dim) frozen features for one split, through the on-disk cache."""
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
    if hit:
        progress.add(len(exs) * EVAL_COST, "features", f"{split} features from cache")
    emit("log", level="info", message=f"{split} features: {tuple(feats.shape)} ({'cache hit' if hit else 'computed'})")
    return feats


def _trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train plus all buffers: with the untouched pretrained backbone, that rebuilds the model."""
    keep = {n for n, p in module.named_parameters() if p.requires_grad} | {n for n, _ in module.named_buffers()}
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items() if k in keep}
