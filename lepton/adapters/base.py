"""The adapter contract: decide what trains, and wrap backbone + head into one model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lepton.backbones.base import Backbone
from lepton.errors import IncompatibleError
from lepton.registry import Registry


class Classifier(nn.Module):
    """Backbone features -> head logits. `features_only` lets the loop cache frozen features."""

    def __init__(self, backbone: Backbone, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.backbone.forward_features(**batch)  # (N, dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.features(batch))  # (N, num_classes)

    # BatchNorm layers keep their pretrained running statistics while the network trains (their scale and shift
    # still learn). Re-estimating them from batches of 32 made LP-FT's head useless after one epoch and cost
    # EfficientNet-Lite0 a lot on the suite's glyphs (3 min, full fine-tuning: test macro-F1 0.64 -> 0.86).
    update_bn_stats = False

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if mode:
            for m in self.backbone.modules():
                # A layer that does not train must not change either, so it never re-estimates its statistics.
                frozen = not any(p.requires_grad for p in m.parameters())
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and (frozen or not self.update_bn_stats):
                    m.eval()
        return self


@dataclass
class AdapterOptions:
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    partial_blocks: int = 2

    @classmethod
    def from_config(cls, config: Any) -> "AdapterOptions":
        return cls(config.lora_r, config.lora_alpha, config.lora_dropout, config.partial_blocks)


class Adapter:
    name: str = ""
    description: str = ""
    # frozen=True: the backbone never changes, so the loop trains the head on cached features.
    frozen: bool = False
    default_lr: float = 1e-3
    default_epochs: int = 5

    def __init__(self, options: AdapterOptions | None = None):
        self.options = options or AdapterOptions()

    def check(self, backbone: Backbone) -> None:
        """Raise IncompatibleError (naming the adapters that do work) if this backbone cannot be wrapped."""

    def require_trainable(self, backbone: Backbone) -> None:
        if not backbone.trainable:
            works = ", ".join(a for a in ADAPTERS if ADAPTERS.get(a).frozen)
            raise IncompatibleError(
                f"backbone '{backbone.name}' cannot be trained (it is a frozen feature extractor), so the "
                f"'{self.name}' adapter cannot wrap it; use one of: {works}"
            )

    def wrap(self, backbone: Backbone, head: nn.Module) -> Classifier:
        raise NotImplementedError

    # ---- hooks the loop and the controller use (no-ops by default)
    depth: int | None = None  # how many top blocks train (partial); None: not a depth-based adapter

    def unfreeze(self, model: Classifier, blocks: int = 1) -> list[nn.Parameter]:
        """Let `blocks` more blocks train; returns the parameters that just started training (for the optimiser)."""
        return []

    @staticmethod
    def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    @staticmethod
    def count(model: nn.Module) -> dict[str, Any]:
        total = sum(p.numel() for p in model.parameters()) + getattr(getattr(model, "backbone", None), "external_params", 0)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return {"trainable": trainable, "total": total, "fraction": trainable / max(total, 1)}


ADAPTERS: Registry[type[Adapter]] = Registry("adapter")
