"""What every export format shares: the network as a module of explicit tensors, sample inputs, parity.

An exporter writes one artefact (model.safetensors, model.onnx, model.pt2) from a `Net` and loads it
back as a function of the same tensors, so the parity check is one code path for every format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from lepton.registry import Registry

# ONNX and torch.export trace positional tensors; the backbones' batches have at most four of them
# (text: input_ids, token_type_ids, attention_mask; wave audio: input_values, attention_mask, audio_lengths).
MAX_INPUTS = 4
PARITY_MAX_ABS = 1e-4
PARITY_MIN_AGREEMENT = 0.995
PARITY_N = 256

Run = Callable[[dict[str, np.ndarray]], np.ndarray]  # named input arrays -> (N, C) probabilities


class Net(nn.Module):
    """Backbone + head as one function of explicit tensors (the names of `names`), class probabilities out.

    torch.onnx.export and torch.export need named positional arguments: a `*tensors` signature fails their
    dynamic-shape guards, so the forward takes x0..x3 and uses as many as the backbone's batch has.
    A backbone whose weights live outside torch (the ONNX speech encoder) is left out: the graph is the
    head on its pooled features, and the backbone's own graphs ship beside it."""

    def __init__(self, model: nn.Module, names: list[str], features_only: bool):
        super().__init__()
        if len(names) > MAX_INPUTS:
            raise ValueError(f"{len(names)} input tensors; an export takes at most {MAX_INPUTS}")
        self.model, self.names, self.features_only = model, list(names), features_only

    def forward(self, x0: torch.Tensor, x1: torch.Tensor | None = None, x2: torch.Tensor | None = None,
                x3: torch.Tensor | None = None) -> torch.Tensor:
        if self.features_only:
            return self.model.head(x0).float().softmax(-1)
        batch = dict(zip(self.names, (x0, x1, x2, x3)))
        return self.model(batch).float().softmax(-1)

    def example(self, inputs: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(inputs[n]) for n in self.names)

    def dynamic_axes(self, inputs: dict[str, np.ndarray]) -> dict[str, dict[int, str]]:
        """Batch is always dynamic; the second axis of a (N, T) input is the sequence (tokens or samples)."""
        return {f"x{i}": ({0: "batch", 1: "seq"} if inputs[n].ndim == 2 and n != "features" else {0: "batch"})
                for i, n in enumerate(self.names)}


def net_inputs(predictor: Any, items: list[Any]) -> dict[str, np.ndarray]:
    """What the exported graph takes for these loaded items: the backbone's batch, or its pooled features."""
    backbone = predictor.model.backbone
    batch = backbone.preprocess(items)
    with torch.no_grad():
        if not backbone.trainable:
            return {"features": backbone.forward_features(**batch).float().numpy()}
    return {k: v.numpy() for k, v in batch.items()}


class Exporter:
    """One export format: write the artefact into a folder, and run it back for the parity check."""

    name = ""
    suffix = ""  # the main file's name
    description = ""
    library = ""  # the model card's library_name

    def write(self, net: Net, inputs: dict[str, np.ndarray], folder: Path) -> list[str]:
        """Write the artefact(s) for `net` (traced on `inputs`); returns the file names written."""
        raise NotImplementedError

    def runner(self, folder: Path, net: Net) -> Run:
        """The written artefact as a function: named inputs -> probabilities."""
        raise NotImplementedError


EXPORTERS: Registry[type[Exporter]] = Registry("export format")


def parity(reference: np.ndarray, exported: np.ndarray) -> dict[str, Any]:
    return {"max_abs_diff": float(np.abs(reference - exported).max()) if len(reference) else 0.0,
            "top1_agreement": float((reference.argmax(1) == exported.argmax(1)).mean()) if len(reference) else 1.0,
            "n": int(len(reference))}
