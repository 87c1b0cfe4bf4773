"""What every fusion module shares, and the head of a multimodal run.

A multimodal backbone (lepton/backbones/multimodal.py) returns each branch's pooled features side by side, then
one presence bit per modality: `(N, d_1 + … + d_M + M)`, zeros where a modality is missing. That is an ordinary
`(N, dim)` feature matrix, so the feature cache, the probe, tasks and reports need nothing new. The learned part
of fusion sits in the head (`FusedHead`), which is what trains on cached features when every branch is frozen:

    each branch -> LayerNorm + Linear to a common width (or its learned "missing" embedding where absent)
    -> a fusion module (FUSIONS: concat, gated, attention) -> the task's head,
    plus the probe's linear model on the features as they are (wide and deep), and the head starts as the probe.

Modality dropout hides a present modality from a training row now and then (never all of a row's), so the model
also learns to predict from what is left: that is what a row with a missing modality meets at prediction time.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from lepton.heads import ProbeHead
from lepton.registry import Registry

WIDTH = 128  # every branch is projected to this; small, since fusion heads train on a few thousand rows
MODALITY_DROPOUT = 0.25  # chance that a training row loses one present modality (it always keeps one)

Layout = list[tuple[str, int]]  # (modality, feature width) of each branch, in the backbone's order


class Fusion(nn.Module):
    """(N, M, WIDTH) modality tokens -> (N, out_dim). One file per module, registered in FUSIONS."""

    name: str = ""
    description: str = ""

    def __init__(self, modalities: int, width: int = WIDTH):
        super().__init__()
        self.modalities, self.width = modalities, width

    @property
    def out_dim(self) -> int:
        return self.width


FUSIONS: Registry[type[Fusion]] = Registry("fusion")


def blocks(features: torch.Tensor, layout: Layout) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Split the backbone's output into each branch's features and the (N, M) presence bits."""
    sizes = [d for _, d in layout] + [len(layout)]
    *parts, present = torch.split(features, sizes, dim=1)
    return parts, present


def only(features: torch.Tensor, layout: Layout, keep: str) -> torch.Tensor:
    """The same rows as if only modality `keep` had been given: the others' features and presence zeroed."""
    parts, present = blocks(features, layout)
    kept = [p if m == keep else torch.zeros_like(p) for (m, _), p in zip(layout, parts)]
    mask = torch.tensor([float(m == keep) for m, _ in layout], dtype=present.dtype, device=present.device)
    return torch.cat(kept + [present * mask], dim=1)


def modality_scores(layout: Layout, features: torch.Tensor, outputs: Callable[[torch.Tensor], np.ndarray], task: Any,
                    targets: list[Any]) -> dict[str, dict[str, float]]:
    """{modality: the task's metrics of the same model given only that modality} on one split's features;
    {} for a single-modality backbone (an empty layout) or an empty split."""
    if len(layout) < 2 or not len(targets):
        return {}
    return {m: task.score(targets, outputs(only(features, layout, m))) for m, _ in layout}


class FusedHead(ProbeHead):
    """The probe's linear model on the features as they are, plus the fusion path: branch features -> common-width
    tokens (missing embeddings where absent) -> a fusion module -> the task's head (wide and deep).

    Started from the probe (`from_probe`, LP-FT for fusion: the loop copies the probe in with `load_probe`), the fusion
    path's last layer is zero and the probe's part stays fixed, so the head begins as exactly the probe and training
    learns what fusion adds to it; the best epoch and keep-the-probe then judge that. That also makes a shipped plain probe (head.mean, .scale,
    .linear) load into it and answer as the probe. Modality dropout hides a modality from both paths alike."""

    def __init__(self, layout: Layout, fusion: str, width: int, from_probe: bool = False):
        from lepton.heads import classification_head

        super().__init__(sum(d for _, d in layout) + len(layout), width)
        self.layout = list(layout)
        self.proj = nn.ModuleDict({m: nn.Sequential(nn.LayerNorm(d), nn.Linear(d, WIDTH), nn.GELU())
                                   for m, d in self.layout})
        self.missing = nn.Parameter(torch.randn(len(self.layout), WIDTH) * 0.02)
        self.fusion = FUSIONS.get(fusion)(len(self.layout))
        self.head = classification_head(self.fusion.out_dim, width)  # the task's width: classes, labels or 1
        if from_probe:
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)
            # The probe's linear model stays as the probe fitted it (its regularisation chosen on validation): buffers,
            # saved and loaded with the head but never trained. Trained along, it drifted and overfitted
            # (benchmarks/fusion.py: concat 0.494 -> 0.501, attention 0.451 -> 0.497 kept as fitted).
            for name in ("weight", "bias"):
                value = getattr(self.linear, name).detach().clone()
                del self.linear._parameters[name]
                self.linear.register_buffer(name, value)

    def drop_modalities(self, features: torch.Tensor) -> torch.Tensor:
        """Training only: each present modality of a row hidden with chance MODALITY_DROPOUT (never every one of
        them), as if it were missing (features and presence bit zero)."""
        parts, present = blocks(features, self.layout)
        present = present > 0.5
        drop = torch.rand(present.shape, device=present.device) < MODALITY_DROPOUT
        kept = present & ~drop
        kept = torch.where(kept.any(1, keepdim=True), kept, present)  # a row never loses all of them
        keep = kept.to(features.dtype)
        return torch.cat([p * keep[:, i:i + 1] for i, p in enumerate(parts)] + [keep], dim=1)

    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        parts, present = blocks(features, self.layout)
        present = present > 0.5
        toks = [torch.where(present[:, i:i + 1], self.proj[m](p), self.missing[i].to(p.dtype))
                for i, ((m, _), p) in enumerate(zip(self.layout, parts))]
        return torch.stack(toks, dim=1)  # (N, M, WIDTH)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.training and len(self.layout) > 1:
            features = self.drop_modalities(features)
        return super().forward(features) + self.head(self.fusion(self.tokens(features)))

