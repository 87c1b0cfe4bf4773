"""Cross-domain transfer: warm starts, stored evaluations, the transfer matrix and forgetting.

Warm start (`lepton train --from RUN`, RunConfig.from_run): the new run's backbone is the source
run's *adapted* backbone (full fine-tuning's weights, or LoRA merged into the base weights; a
linear-probe source leaves the pretrained backbone), wrapped by whatever adapter the new run
chooses. The head carries over too when both runs have the same classes in the same order, and
starts fresh otherwise. The loop calls `source_spec` and `load_head` in phase 3 and saves the full
state (`saved_state`), so `Predictor.load` rebuilds a warm-started run from its own folder alone.

Transfer matrix: rows = runs, columns = datasets, cells = the dataset's task's primary metric (macro-F1,
micro-F1 or R²), from each run's own test
report plus the evaluations stored by `lepton eval` (or the run page's button). Forgetting = how
much a warm-started run lost on its source run's dataset: the source's own score there minus the
warm-started run's score on the same split.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable

from lepton import auth
from lepton.errors import IncompatibleError, RunError
from lepton.train.events import Emit, null_emit


# ---------------------------------------------------------------- warm start
def source(ref: str) -> tuple[Path, dict[str, Any]]:
    """(run folder, model/meta.json) of a finished run to warm-start from."""
    from lepton.jobs.store import get_store
    from lepton.predict import read_meta, resolve_run_dir

    try:
        run_dir = resolve_run_dir(ref)
    except RunError:  # not an id, prefix or folder: perhaps a run's name
        run_dir = Path(get_store().find_run(ref)["run_dir"])
    meta_file = run_dir / "model" / "meta.json"
    if not meta_file.exists():
        raise RunError(f"run '{run_dir.name}' has no saved model (it has not finished), so nothing can start from it; "
                       "pick a finished run")
    return run_dir, read_meta(run_dir)


def check_source(config: Any, modality: str | None = None) -> dict[str, Any]:
    """Preflight for --from: the source exists, has finished, and fits the requested backbone and data."""
    from lepton.backbones import resolve_backbone
    from lepton.predict import check_weights

    run_dir, meta = source(config.from_run)
    check_weights(run_dir)  # a torn or planted weights file fails here, before a run exists
    resolve_backbone(meta["backbone"], meta["modality"])  # and so does a source whose model folder went bad
    if modality and modality != "auto" and meta["modality"] != modality:
        raise IncompatibleError(f"run '{run_dir.name}' classifies {meta['modality']}, but the data is {modality}; "
                                f"a warm start needs a source run of the same modality")
    if config.backbone:
        wanted = resolve_backbone(config.backbone, meta["modality"]).name
        if wanted != meta["backbone"]:
            raise IncompatibleError(f"run '{run_dir.name}' adapted backbone '{meta['backbone']}', not '{wanted}'; "
                                    f"leave the backbone empty (it follows the source run) or set it to {meta['backbone']}")
    return meta


def source_spec(config: Any, modality: str) -> Any:
    """The backbone spec of a warm start: building it gives the source run's adapted backbone.

    Its cache identity names the source run (a frozen adapter on top caches features of *that*
    backbone), and extra["base_spec"] keeps the untouched pretrained spec for the baseline."""
    from lepton.backbones import resolve_backbone

    meta = check_source(config, modality)
    run_dir, _ = source(config.from_run)
    base = resolve_backbone(meta["backbone"], meta["modality"])
    identity = {**base.extra.get("identity", {}), "from_run": run_dir.name}
    return dataclasses.replace(base, loader=lambda: adapted_backbone(run_dir),
                               extra={**base.extra, "identity": identity, "base_spec": base, "from_run": run_dir.name})


def adapted_backbone(run: str | Path) -> Any:
    """The source run's backbone as a plain module: LoRA layers merged into their base weights."""
    from lepton.predict import Predictor

    backbone = Predictor.load(run).model.backbone
    merge_lora(backbone)
    backbone.train()
    return backbone


def merge_lora(module: Any) -> int:
    """Fold every peft adapter layer (LoRA, DoRA, AdaLoRA, LoHa, LoKr, OFT, IA3) into its base layer and put the
    base layer back; returns how many. Houlsby bottlenecks and prompts stay as modules of the backbone."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover - peft is a dependency; without it there is no LoRA to merge
        return 0
    merged = 0
    for name, sub in list(module.named_modules()):
        if isinstance(sub, BaseTunerLayer):
            sub.merge()
            parent_name, _, child = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, child, sub.get_base_layer())
            merged += 1
    for sub in module.modules():  # peft's bookkeeping would make a new LoRA think it is a second adapter
        if "peft_config" in vars(sub):
            delattr(sub, "peft_config")
    return merged


def load_head(model: Any, from_run: str, classes: list[str], task: Any, emit: Emit = null_emit) -> str | None:
    """Put the source run's head (its kind and weights) on the model when its task and classes are these, in
    this order; returns the head's kind if it did."""
    from lepton.predict import load_weights

    run_dir, meta = source(from_run)
    source_task = meta.get("task", "single-label")
    if source_task != task.name:
        emit("log", level="info", message=f"warm start from {run_dir.name}: adapted backbone; new head (the source is "
             f"{source_task}, this run {task.name})")
        return None
    if list(meta["classes"]) != list(classes):
        why = "different order" if sorted(meta["classes"]) == sorted(classes) else "different labels"
        emit("log", level="info", message=f"warm start from {run_dir.name}: adapted backbone; new head ({why}: "
             f"source {', '.join(meta['classes'])})")
        return None
    state = load_weights(run_dir)
    kind = meta.get("head", "classification")
    model.head = model.backbone.make_head(kind, task.width, meta.get("fusion"))
    model.head.load_state_dict({k[len("head."):]: v for k, v in state.items() if k.startswith("head.")})
    emit("log", level="info", message=f"warm start from {run_dir.name}: adapted backbone and its head (same labels)")
    return kind


def saved_state(model: Any) -> dict[str, Any]:
    """Every tensor of the model: a warm-started backbone differs from the pretrained one everywhere."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- evaluations
def evaluate_and_store(run: str, data: str, split: str | None = "auto", predictor: Any = None) -> dict[str, Any]:
    """`lepton eval`: score a finished run on a dataset and record it in the store's evaluations."""
    from lepton.evaluate import evaluate_run
    from lepton.jobs.store import get_store
    from lepton.tasks import TASKS

    rep = evaluate_run(run, data, split=split, predictor=predictor)
    # The task's headline metrics (the matrix reads macro_f1, which single- and multi-label runs have).
    metrics = {**{k: rep[k] for k in TASKS.get(rep["task"]).headline}, "task": rep["task"], "n": rep["n"],
               "dataset_name": rep["dataset_name"]}
    if rep.get("calibration"):
        metrics["ece"] = rep["calibration"]["ece"]
    if rep.get("per_class"):
        metrics["per_class_f1"] = {c: v["f1"] for c, v in rep["per_class"].items()}
    rep["evaluation_id"] = get_store().add_evaluation(rep["run_id"], rep["dataset"], metrics, rep["split"])
    return rep


# ---------------------------------------------------------------- the matrix
def build_matrix(runs: list[dict[str, Any]], evaluations: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Pure: rows, columns, cells and forgetting from plain dicts.

    runs: {id, name, dataset (own test dataset id), dataset_name, split, score, metric, from_run}, oldest first;
    metric is the task's primary metric (macro_f1 when absent, as runs before tasks had).
    evaluations: {run_id, dataset_id, split, metrics: {task, its headline metrics, dataset_name}}, oldest first.
    A cell holds {score, metric, source, split} (and macro_f1, the name older readers use, where that is the metric).
    A run's own test report fills its own cell; the newest evaluation fills any other (one on a
    held-out split beats one on all examples, which may include data the run trained on)."""
    from lepton.tasks import TASKS

    def cell(score: float, metric: str, source: str, split: str) -> dict[str, Any]:
        return {"score": float(score), "metric": metric, "source": source, "split": split,
                **({"macro_f1": float(score)} if metric == "macro_f1" else {})}

    by_id = {r["id"]: r for r in runs}
    cols: dict[str, str] = {}
    metric_of: dict[str, str] = {}
    cells: dict[str, dict[str, dict[str, Any]]] = {r["id"]: {} for r in runs}
    for r in runs:
        score = r.get("score", r.get("macro_f1"))
        if r.get("dataset") and score is not None:
            cols.setdefault(r["dataset"], r.get("dataset_name") or r["dataset"])
            metric_of.setdefault(r["dataset"], r.get("metric") or "macro_f1")
            cells[r["id"]][r["dataset"]] = cell(score, r.get("metric") or "macro_f1", "own test report",
                                                r.get("split") or "test")
    for e in evaluations:
        m = e.get("metrics", {})
        metric = TASKS.get(m["task"]).primary if m.get("task") in TASKS else "macro_f1"
        if e["run_id"] not in cells or m.get(metric) is None:
            continue
        ds = e["dataset_id"]
        cols.setdefault(ds, m.get("dataset_name") or ds)
        metric_of.setdefault(ds, metric)
        old = cells[e["run_id"]].get(ds)
        if old and old["source"] == "own test report":
            continue
        if old and old["split"] != "all" and e.get("split") == "all":
            continue
        cells[e["run_id"]][ds] = cell(m[metric], metric, "evaluation", e.get("split") or "all")
    forgetting: dict[str, dict[str, Any]] = {}
    for r in runs:
        src = by_id.get(r.get("from_run") or "")
        if src is None or not src.get("dataset"):
            continue
        before = cells[src["id"]].get(src["dataset"])
        after = cells[r["id"]].get(src["dataset"])
        usable = after is not None and after["split"] == (src.get("split") or "test")
        forgetting[r["id"]] = {
            "source_run": src["id"], "source_dataset": src["dataset"], "split": src.get("split") or "test",
            "metric": before["metric"] if before else None,
            "before": before["score"] if before else None,
            "after": after["score"] if usable else None,
            "forgetting": (before["score"] - after["score"]) if before and usable else None,
        }
    return {"runs": [{k: r.get(k) for k in ("id", "name", "dataset", "dataset_name", "from_run")} for r in runs],
            "datasets": [{**c, "metric": metric_of[c["id"]]} for c in _unique_names(cols)], "cells": cells,
            "forgetting": forgetting}


def _unique_names(cols: dict[str, str]) -> list[dict[str, str]]:
    """Columns keyed by dataset id; a name two datasets share gets the id beside it, so no two read the same."""
    counts: dict[str, int] = {}
    for n in cols.values():
        counts[n] = counts.get(n, 0) + 1
    return [{"id": d, "name": n if counts[n] == 1 or n == d else f"{n} ({d[:8]})"} for d, n in cols.items()]


def run_rows(run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """build_matrix's run rows for finished runs (all, or these), oldest first, read from their reports."""
    from lepton.jobs.store import get_store

    store = get_store()
    runs = [store.find_run(r) for r in run_ids] if run_ids is not None else store.list_runs(status="finished")
    rows = []
    for run in sorted(runs, key=lambda r: (r["created"], r["id"])):
        rep = read_json(Path(run["run_dir"]) / "report.json") or {}
        meta = read_json(Path(run["run_dir"]) / "model" / "meta.json") or {}
        from_run = meta.get("from_run") or (run.get("config") or {}).get("from_run")
        if from_run:
            try:
                from_run = store.find_run(from_run)["id"]
            except RunError:
                pass
        rows.append({"id": run["id"], "name": run.get("name") or run["id"],
                     "dataset": rep.get("test_dataset") or rep.get("dataset"),
                     # the column is the run's test set: named by its own file (a --test-data file), not the training one
                     "dataset_name": rep.get("test_dataset_name") or rep.get("dataset_name"), "split": rep.get("split"),
                     "score": rep.get(rep.get("primary") or "macro_f1"), "metric": rep.get("primary") or "macro_f1",
                     "from_run": from_run,
                     "owner": run.get("owner"), "shared": run.get("shared")})
    return rows


def transfer_matrix(run_ids: Iterable[str] | None = None, viewer: auth.User | None = None) -> dict[str, Any]:
    """The matrix over the store's finished runs (or the given ones).

    With a viewer, only the runs they may see are rows (a warm start's private source is left out)
    and only evaluations on datasets they may see fill cells (lepton/auth.py)."""
    from lepton.jobs.store import get_store

    rows = run_rows(run_ids)
    ids = {r["id"] for r in rows}
    if run_ids is not None:  # the sources of warm-started runs belong in the picture too
        extra = {r["from_run"] for r in rows if r.get("from_run") and r["from_run"] not in ids}
        if extra:
            rows = run_rows([*ids, *extra])
    rows = auth.visible(viewer, rows)
    datasets = auth.visible_dataset_ids(viewer, get_store().dataset_owners())
    evals = [e for e in get_store().evaluations() if e["run_id"] in {r["id"] for r in rows}
             and (datasets is None or e["dataset_id"] in datasets)]
    return build_matrix(rows, evals)


def measure_forgetting(run: str) -> dict[str, Any]:
    """Evaluate a warm-started run on its source run's dataset (the split the source reported) and store it."""
    from lepton.jobs.store import get_store

    row = get_store().find_run(run)
    meta = read_json(Path(row["run_dir"]) / "model" / "meta.json") or {}
    if not meta.get("from_run"):
        raise RunError(f"run '{row['id']}' was not warm-started from another run, so there is no source dataset to forget")
    src_dir, _ = source(meta["from_run"])
    src_rep = read_json(src_dir / "report.json") or {}
    ds = src_rep.get("test_dataset") or src_rep.get("dataset")
    if not ds:
        raise RunError(f"source run '{src_dir.name}' has no report.json naming its dataset")
    evaluate_and_store(row["id"], ds, split=src_rep.get("split") or "test")
    return transfer_matrix([row["id"]])["forgetting"].get(row["id"], {})


def read_json(path: Path, limit: int = 64 * 1024**2) -> dict[str, Any] | None:
    """A run folder's JSON file, or None when it is missing, damaged, too large or not a regular file
    (opening a FIFO planted in a run folder would block the page that reads it)."""
    from lepton import filetypes

    try:
        if filetypes.special(path) or Path(path).stat().st_size > limit:
            return None
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
