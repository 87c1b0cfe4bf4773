"""concat: the branches' tokens side by side, then an MLP (late fusion, AutoGluon's multimodal default)."""

from __future__ import annotations

import torch
from torch import nn

from lepton.fusion.base import FUSIONS, WIDTH, Fusion


@FUSIONS.register("concat")
class Concat(Fusion):
    name = "concat"
    description = "Concatenate the projected branches, then an MLP: the late-fusion default, quick and robust"

    def __init__(self, modalities: int, width: int = WIDTH):
        super().__init__(modalities, width)
        self.mlp = nn.Sequential(nn.Linear(modalities * width, width), nn.GELU(), nn.Dropout(0.1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(tokens.flatten(1))
