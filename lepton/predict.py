"""Predictor: load a finished run (safetensors + JSON, never pickle) and answer for raw inputs (its task's
answer: a label and class probabilities, the labels above their thresholds, or a value).

A run folder is read like any other untrusted input: only model/meta.json (JSON, its fields checked)
and model/model.safetensors, each refused with one line when it is not a regular file or is damaged.
A backbone that is a model folder goes through resolve_backbone, which checks that folder too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from lepton import filetypes, paths
from lepton.backbones import resolve_backbone
from lepton.backbones.multimodal import ORDER, named
from lepton.data import load_item
from lepton.errors import DataError, RunError
from lepton.companions import blend
from lepton.model import build_backbone, wrap
from lepton.tasks import TASKS, Task, task_of


def resolve_run_dir(ref: str | Path) -> Path:
    """A run folder, a run id, a unique prefix of one, or a folder `lepton export --format safetensors` wrote."""
    p = Path(ref).expanduser()
    if (p / "config.yaml").exists() or is_export(p):
        return p
    runs = paths.runs_dir()
    if (runs / str(ref) / "config.yaml").exists():
        return runs / str(ref)
    matches = sorted(d for d in runs.glob(f"{ref}*") if (d / "config.yaml").exists())
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise RunError(f"run '{ref}' is ambiguous: {', '.join(m.name for m in matches[:5])}; give more of the id")
    raise RunError(f"no run '{ref}'; `lepton runs` lists them")


# What Predictor.load needs from model/meta.json, and the JSON type of each.
META_FIELDS = {"backbone": str, "modality": str, "adapter": str, "classes": list, "dim": int, "max_length": int}
META_LIMIT = 16 * 1024**2  # meta.json holds names and numbers; a larger one is not ours


def is_export(folder: Path) -> bool:
    """A folder `lepton export` wrote: meta.json at its top and no run around it."""
    return (folder / "meta.json").is_file() and not (folder / "config.yaml").exists()


def _run_file(run_dir: Path, rel: str) -> Path:
    """A file of a run folder that is there and regular (a FIFO planted in its place would block the reader).
    In an exported folder the model's files sit at the top instead of under model/."""
    if is_export(run_dir):
        rel = rel.removeprefix("model/")
    path = run_dir / rel
    what = filetypes.special(path)
    if what:
        raise RunError(f"run '{run_dir.name}': `{rel}` is {what}, not a regular file; the run folder has been "
                       "tampered with: train the run again")
    if not path.is_file() and is_export(run_dir):
        raise RunError(f"`{run_dir}` is an export without {rel}: an ONNX folder is served with `lepton serve FOLDER --onnx` "
                       "or loaded with onnxruntime; a pt2 folder with torch.export.load")
    if not path.is_file():
        raise RunError(f"run '{run_dir.name}' has no saved model yet (it has not finished); wait or pick another run")
    return path


def read_meta(run_dir: Path) -> dict[str, Any]:
    """model/meta.json of a finished run: plain JSON, checked for the fields a rebuild needs."""
    path = _run_file(run_dir, "model/meta.json")
    try:
        if path.stat().st_size > META_LIMIT:
            raise ValueError(f"{path.stat().st_size:,} bytes")
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise RunError(f"run '{run_dir.name}': `model/meta.json` is damaged ({e}): train the run again") from None
    bad = [k for k, t in META_FIELDS.items() if not isinstance(meta, dict) or not isinstance(meta.get(k), t)]
    if bad:
        raise RunError(f"run '{run_dir.name}': `model/meta.json` lacks {', '.join(bad)} or has the wrong type there: "
                       "was it made by another Lepton version? Train the run again")
    return meta


def _damaged_weights(run_dir: Path, path: Path, e: Exception) -> RunError:
    kind = filetypes.identify(path)
    really = f"it is really {kind.one}; " if kind else ""
    return RunError(f"run '{run_dir.name}': `model/model.safetensors` is not a valid safetensors file ({really}"
                    f"{str(e).splitlines()[0] if str(e) else type(e).__name__}): train the run again")


def check_weights(run_dir: Path) -> Path:
    """model/model.safetensors, its header read and checked (cheap: no tensor is loaded)."""
    from safetensors import safe_open

    path = _run_file(run_dir, "model/model.safetensors")
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as e:  # SafetensorError for a torn or foreign file; the first line says which
        raise _damaged_weights(run_dir, path, e) from None
    return path


def load_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """model/model.safetensors of a finished run. Only safetensors: a pickle put in its place is refused, never run."""
    path = check_weights(run_dir)
    try:
        return load_file(path)
    except Exception as e:  # a file changed since its header was read
        raise _damaged_weights(run_dir, path, e) from None


def _companion(run_dir: Path) -> tuple[Any, float]:
    """The run's companion and blend weight: model/companion.json and .safetensors, both checked like the weights."""
    from lepton.companions import load

    for rel in ("model/companion.json", "model/companion.safetensors"):
        _run_file(run_dir, rel)
    try:
        found = load(run_dir if is_export(run_dir) else run_dir / "model")
    except Exception as e:  # noqa: BLE001 - SafetensorError, JSON, missing keys: all "damaged"
        raise RunError(f"run '{run_dir.name}': its companion model (model/companion.*) is damaged ({e}): "
                       "train the run again") from None
    if found is None:
        raise RunError(f"run '{run_dir.name}': meta.json names a companion model but model/companion.json is missing")
    return found


def adapter_options(meta: dict[str, Any]) -> dict[str, Any]:
    """The options that rebuild the run's model; runs saved before adapter_options existed kept LoRA's and partial's."""
    if "adapter_options" in meta:
        return dict(meta["adapter_options"] or {})
    if meta.get("adapter") == "lora":
        lora = meta.get("lora") or {}
        return {"r": lora.get("r", 8), "alpha": lora.get("alpha", 16)}
    if meta.get("adapter") == "partial":
        return {"k": meta.get("partial_blocks") or 2}
    return {}


class Predictor:
    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], run_dir: Path, task: Task | None = None):
        """task: the one load() built the model's head with (an ONNX export's predictor builds its own)."""
        self.model, self.meta, self.run_dir = model, meta, run_dir
        self.task = task if task is not None else task_of(meta.get("task", "single-label"), meta["classes"],
                                                          meta.get("task_state"))
        self.companion = _companion(run_dir) if meta.get("companion") else None
        self.classes: list[str] = meta["classes"]
        self.modality: str = meta["modality"]
        # A multimodal run's branches (from its backbone's name: an ONNX predictor has no torch model); one otherwise.
        self.modalities: list[str] = ([m for m in ORDER if m in named(meta["backbone"])]
                                      if self.modality == "multimodal" else [self.modality])

    @classmethod
    def load(cls, run: str | Path) -> "Predictor":
        run_dir = resolve_run_dir(run)
        meta = read_meta(run_dir)
        spec = resolve_backbone(meta["backbone"], meta["modality"])
        backbone = build_backbone(spec, meta["max_length"], meta.get("image_size"))
        options = adapter_options(meta)
        name = meta.get("task", "single-label")
        if name not in TASKS or not isinstance(meta.get("task_state", {}), dict):
            raise RunError(f"run '{run_dir.name}': `model/meta.json` names the task {name!r}, which this Lepton does not "
                           f"know (it knows {', '.join(TASKS)}): was it made by another Lepton version?")
        task = task_of(name, meta["classes"], meta.get("task_state"))
        _, model = wrap(backbone, spec, meta["adapter"], options, task.width, meta.get("head", "classification"),
                        meta.get("fusion"))
        state = load_weights(run_dir)
        unexpected = set(state) - set(model.state_dict())
        if unexpected:
            raise RunError(f"run '{run_dir.name}': saved weights do not fit the rebuilt model "
                           f"({len(unexpected)} unknown tensors, e.g. {sorted(unexpected)[0]}); was it made by another Lepton version?")
        model.load_state_dict(state, strict=False)
        model.eval()
        return cls(model, meta, run_dir, task)

    @torch.no_grad()
    def network_probs(self, items: list[Any]) -> np.ndarray:
        """(N, width) outputs of the network alone (no companion blend), from loaded items: class probabilities
        (single-label, multi-label) or values (regression)."""
        return self.task.decode(self.model(self.model.backbone.preprocess(items))).numpy()

    def outputs(self, items: list[Any]) -> np.ndarray:
        """(N, width) outputs of what the run shipped, from loaded items."""
        probs = self.network_probs(items)
        if self.companion is not None:  # the run shipped a blend with its classical companion (lepton/companions.py)
            probs = blend(probs, self.companion[0].probs(items), self.companion[1])
        return probs

    def predict_batch(self, inputs: list[Any]) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        outputs = self.outputs([load_item(self.modality, x) for x in inputs])
        ms = (time.perf_counter() - t0) * 1000 / max(len(inputs), 1)
        return [{**self.task.answer(o), "latency_ms": ms} for o in outputs]

    def predict(self, x: Any) -> dict[str, Any]:
        return self.predict_batch([x])[0]

    def row(self, given: dict[str, Any]) -> Any:
        """One input from {modality: text, a file path, or anything the modality loads (uploaded bytes, an image)}:
        the run's own modality's value, or a multimodal row with the modalities not given missing."""
        wrong = sorted(set(given) - set(self.modalities))
        if wrong or (self.modality != "multimodal" and len(given) != 1):
            raise DataError(f"run '{self.run_dir.name}' takes {', '.join(self.modalities)}, not "
                            f"{', '.join(wrong or sorted(given))}: give --" + " / --".join(self.modalities))
        x = {m: Path(v) if m != "text" and isinstance(v, str) else v for m, v in given.items()}
        return {m: x.get(m) for m in self.modalities} if self.modality == "multimodal" else x[self.modality]

    def without(self, x: Any) -> dict[str, dict[str, Any]]:
        """{modality: the answer with that modality left out} for a multimodal row holding two or more (what
        each one contributes); {} otherwise."""
        if self.modality != "multimodal" or sum(v is not None for v in x.values()) < 2:
            return {}
        outs = self.predict_batch([{**x, m: None} for m, v in x.items() if v is not None])
        return {m: {k: v for k, v in o.items() if k != "latency_ms"} for m, o in zip([m for m, v in x.items() if v is not None], outs)}
