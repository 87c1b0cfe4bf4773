"""Predictor: load a finished run (safetensors + config, never pickle) and classify raw inputs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from lepton import paths
from lepton.adapters import AdapterOptions, get_adapter
from lepton.backbones import resolve_backbone
from lepton.data import load_item
from lepton.errors import RunError
from lepton.heads import classification_head


def resolve_run_dir(ref: str | Path) -> Path:
    """A run folder, a run id, or a unique prefix of one."""
    p = Path(ref).expanduser()
    if (p / "config.yaml").exists():
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


class Predictor:
    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], run_dir: Path):
        self.model, self.meta, self.run_dir = model, meta, run_dir
        self.classes: list[str] = meta["classes"]
        self.modality: str = meta["modality"]

    @classmethod
    def load(cls, run: str | Path) -> "Predictor":
        run_dir = resolve_run_dir(run)
        model_dir = run_dir / "model"
        if not (model_dir / "meta.json").exists():
            raise RunError(f"run '{run_dir.name}' has no saved model yet (it has not finished); wait or pick another run")
        meta = json.loads((model_dir / "meta.json").read_text())
        spec = resolve_backbone(meta["backbone"], meta["modality"])
        backbone = spec.build()
        backbone.max_length = meta["max_length"]
        lora = meta.get("lora", {})
        adapter = get_adapter(meta["adapter"], AdapterOptions(lora.get("r", 8), lora.get("alpha", 16), 0.0))
        model = adapter.wrap(backbone, classification_head(meta["dim"], len(meta["classes"])))
        state = load_file(model_dir / "model.safetensors")
        unexpected = set(state) - set(model.state_dict())
        if unexpected:
            raise RunError(f"run '{run_dir.name}': saved weights do not fit the rebuilt model "
                           f"({len(unexpected)} unknown tensors, e.g. {sorted(unexpected)[0]}); was it made by another Lepton version?")
        model.load_state_dict(state, strict=False)
        model.eval()
        return cls(model, meta, run_dir)

    @torch.no_grad()
    def predict_batch(self, inputs: list[Any]) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        items = [load_item(self.modality, x) for x in inputs]
        logits = self.model(self.model.backbone.preprocess(items)).float()
        probs = logits.softmax(-1).numpy()
        ms = (time.perf_counter() - t0) * 1000 / max(len(inputs), 1)
        return [{"label": self.classes[int(p.argmax())],
                 "probs": {c: float(v) for c, v in zip(self.classes, p)}, "latency_ms": ms} for p in probs]

    def predict(self, x: Any) -> dict[str, Any]:
        return self.predict_batch([x])[0]
