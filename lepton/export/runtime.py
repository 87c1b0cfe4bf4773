"""An exported ONNX folder as a Predictor: onnxruntime runs the graph, the Lepton backbone only preprocesses.

The backbone is rebuilt from meta.json for its tokenizer / image processor / audio windowing (and, for the
ONNX speech encoder, its features); the classifier's weights come from model.onnx alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lepton.errors import RunError
from lepton.export.to_onnx import INT8_FILE, OnnxExporter, session_runner
from lepton.predict import Predictor, read_meta


class OnnxPredictor(Predictor):
    def __init__(self, backbone: Any, run: Any, meta: dict[str, Any], folder: Path):
        super().__init__(None, meta, folder)
        self.backbone, self.run, self.features_only = backbone, run, bool(meta["export"].get("features_only"))

    @classmethod
    def load(cls, folder: str | Path, int8: bool = False, threads: int = 0) -> "OnnxPredictor":
        from lepton.backbones import resolve_backbone
        from lepton.model import build_backbone

        folder = Path(folder).expanduser()
        graph = folder / (INT8_FILE if int8 else OnnxExporter.suffix)
        if not (folder / "meta.json").is_file() or not graph.is_file():
            raise RunError(f"`{folder}` is not an ONNX export with {graph.name}: make one with "
                           f"`lepton export RUN --format onnx{' --int8' if int8 else ''}`")
        meta = read_meta(folder)
        if (meta.get("export") or {}).get("format") != "onnx":
            raise RunError(f"`{folder}/meta.json` does not describe an ONNX export; export the run again")
        spec = resolve_backbone(meta["backbone"], meta["modality"])
        backbone = build_backbone(spec, meta["max_length"], meta.get("image_size")).eval()
        return cls(backbone, session_runner(graph, meta["export"]["inputs"], threads), meta, folder)

    def network_probs(self, items: list[Any]) -> np.ndarray:
        batch = self.backbone.preprocess(items)
        if self.features_only:
            with torch.no_grad():
                return self.run({"features": self.backbone.forward_features(**batch).float().numpy()})
        return self.run({k: v.numpy() for k, v in batch.items()})
