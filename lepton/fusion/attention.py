"""attention: a small transformer over one token per modality and a learned summary token, mean-pooled."""

from __future__ import annotations

import torch
from torch import nn

from lepton.fusion.base import FUSIONS, WIDTH, Fusion


@FUSIONS.register("attention")
class Attention(Fusion):
    name = "attention"
    description = "A one-layer transformer over one token per modality plus a summary token: modalities attend to each other"

    def __init__(self, modalities: int, width: int = WIDTH):
        super().__init__(modalities, width)
        self.kind = nn.Parameter(torch.randn(modalities, width) * 0.02)  # which modality a token is
        self.summary = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=2 * width, dropout=0.1, batch_first=True,
                                           norm_first=True)
        # enable_nested_tensor needs post-norm layers; with norm_first it only warns
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.summary.expand(len(tokens), -1, -1).to(tokens.dtype), tokens + self.kind.to(tokens.dtype)], 1)
        # The mean over every position, not the summary token alone: read out at the summary token, one layer learned
        # to attend to one modality and ignore the other (benchmarks/fusion.py: audio alone scored chance in 2 of 3
        # seeds); each modality's own position keeps it in the output through the residual path.
        return self.norm(self.encoder(x).mean(1))
