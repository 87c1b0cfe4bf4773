"""Heads sit on (N, dim) pooled features and never know which modality produced them.

Two kinds, named in model/meta.json so Predictor rebuilds the right one:
- "classification": LayerNorm -> Dropout -> Linear, trained from scratch;
- "probe": the linear probe's standardisation (fixed mean/std buffers) -> Linear. It holds the task's
  scikit-learn probe exactly (logistic, one logistic per label, or ridge), so a run can ship the probe, or
  start fine-tuning from it (LP-FT).
Their width is the task's (classes, labels, or 1 for regression).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lepton.registry import Registry

HEADS: Registry = Registry("head")


@HEADS.register("classification")
def classification_head(dim: int, num_classes: int, dropout: float = 0.1) -> nn.Module:
    # LayerNorm first: pooled features differ in scale by orders of magnitude between backbones
    # (MiniLM means vs EfficientNet activations), and one head recipe must fit all of them.
    return nn.Sequential(nn.LayerNorm(dim), nn.Dropout(dropout), nn.Linear(dim, num_classes))


class ProbeHead(nn.Module):
    """(x - mean) / scale, then Linear: StandardScaler + the task's linear model as one torch module."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.scale)

    @torch.no_grad()
    def load_probe(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> "ProbeHead":
        """Copy a fitted scaler and linear model in; coef is (width, dim)."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
        self.linear.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
        self.linear.bias.copy_(torch.as_tensor(intercept, dtype=torch.float32))
        return self


@HEADS.register("probe")
def probe_head(dim: int, num_classes: int) -> nn.Module:
    return ProbeHead(dim, num_classes)


def build_head(kind: str, dim: int, num_classes: int) -> nn.Module:
    return HEADS.get(kind)(dim, num_classes)
