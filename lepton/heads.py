"""Heads sit on (N, dim) pooled features and never know which modality produced them."""

from __future__ import annotations

from torch import nn


def classification_head(dim: int, num_classes: int, dropout: float = 0.1) -> nn.Module:
    # LayerNorm first: pooled features differ in scale by orders of magnitude between backbones
    # (MiniLM means vs EfficientNet activations), and one head recipe must fit all of them.
    return nn.Sequential(nn.LayerNorm(dim), nn.Dropout(dropout), nn.Linear(dim, num_classes))
