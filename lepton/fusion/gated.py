"""gated: a gated multimodal unit (Arevalo et al., "Gated Multimodal Units for Information Fusion", ICLR-W 2017).

Each modality gives a candidate h_m = tanh(W_m x_m); gates computed from all of them at once decide, per feature,
how much of each candidate the fused vector takes. The paper's two-modality unit uses one sigmoid gate z and 1 - z;
for M modalities the gates are a softmax over the modalities, which is the same thing at M = 2.
"""

from __future__ import annotations

import torch
from torch import nn

from lepton.fusion.base import FUSIONS, WIDTH, Fusion


@FUSIONS.register("gated")
class Gated(Fusion):
    name = "gated"
    description = "Gated multimodal unit (Arevalo et al. 2017): learned per-feature gates weigh each modality"

    def __init__(self, modalities: int, width: int = WIDTH):
        super().__init__(modalities, width)
        self.candidates = nn.ModuleList(nn.Linear(width, width) for _ in range(modalities))
        self.gates = nn.Linear(modalities * width, modalities * width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, m, w = tokens.shape
        h = torch.stack([torch.tanh(f(tokens[:, i])) for i, f in enumerate(self.candidates)], dim=1)
        z = torch.softmax(self.gates(tokens.flatten(1)).view(n, m, w), dim=1)
        return (z * h).sum(1)
