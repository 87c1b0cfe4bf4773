"""The adapter contract: decide what trains, and wrap backbone + head into one model.

Each adapter is one file with a registry decorator and, where it has options, its own `Options`
dataclass (defaults, one-line help, bounds), parsed strictly from RunConfig.adapter_options. The
loop calls the lifecycle hooks below without knowing which adapter it has; they do nothing by default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lepton.backbones.base import Backbone, BackboneSpec
from lepton.config import StrictConfig
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
class NoOptions(StrictConfig):
    """An adapter without options."""


class Adapter:
    name: str = ""
    description: str = ""
    when: str = ""  # one line for the adapter picker: when to pick it
    # frozen=True: the backbone never changes, so the loop trains the head on cached features.
    frozen: bool = False
    default_lr: float = 1e-3
    default_epochs: int = 5
    lr_range: tuple[float, float] = (1e-4, 5e-3)  # what a study searches
    Options: type[StrictConfig] = NoOptions
    # Which backbones it applies to (BackboneSpec.supports asks applies()).
    modalities: tuple[str, ...] = ("text", "image", "audio")
    archs: tuple[str, ...] = ("transformer", "cnn")
    head_init: str | None = None  # "probe": the head always starts from the logistic probe (LP-FT)
    identity_at_init: bool = True  # the wrapped backbone computes exactly the pretrained features until the first step

    def __init__(self, options: StrictConfig | dict[str, Any] | None = None):
        self.options = options if isinstance(options, StrictConfig) else self.parse(options or {})

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> StrictConfig:
        """adapter_options -> this adapter's typed options; an unknown key is an error naming the valid ones."""
        return cls.Options.from_dict(dict(raw), source=f"adapter_options for '{cls.name}'")

    @classmethod
    def applies(cls, spec: BackboneSpec) -> bool:
        return (cls.frozen or spec.trainable) and spec.modality in cls.modalities and spec.arch in cls.archs

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """What `lepton adapters --json` and the Train page show."""
        from lepton.backbones import list_backbones

        return {"name": cls.name, "description": cls.description, "when": cls.when, "frozen": cls.frozen,
                "default_lr": cls.default_lr,
                "options": [{"name": f.name, "default": f.default, "help": f.metadata.get("help", ""),
                             **{k: f.metadata[k] for k in ("min", "max") if k in f.metadata}}
                            for f in dataclasses.fields(cls.Options)],
                "backbones": [s.name for s in list_backbones() if cls.applies(s)]}

    def check(self, backbone: Backbone) -> None:
        """Raise IncompatibleError (naming the adapters that do work) if this backbone cannot be wrapped."""
        if not self.frozen:
            self.require_trainable(backbone)

    def require_trainable(self, backbone: Backbone) -> None:
        if not backbone.trainable:
            works = ", ".join(a for a, cls in ADAPTERS.items() if cls.frozen and backbone.modality in cls.modalities)
            raise IncompatibleError(
                f"backbone '{backbone.name}' cannot be trained (it is a frozen feature extractor, e.g. an ONNX graph), "
                f"so the '{self.name}' adapter cannot wrap it; use one of: {works}"
            )

    def require_targets(self, backbone: Backbone, kind: str) -> list[str]:
        """The backbone's modules of this kind, or a clear error naming the adapters that need none."""
        found = backbone.targets(kind)
        if not found:
            raise IncompatibleError(f"the '{self.name}' adapter finds no {kind} modules in backbone '{backbone.name}'; "
                                    "use 'full', 'partial', 'bitfit' or 'linear-probe' instead")
        return found

    def wrap(self, backbone: Backbone, head: nn.Module) -> Classifier:
        raise NotImplementedError

    # ---- lifecycle hooks the loop calls for every adapter (no-ops by default)
    def extra_loss(self, model: Classifier) -> torch.Tensor | float:
        """A term added to the training loss (AdaLoRA: its orthogonality penalty)."""
        return 0.0

    def after_step(self, model: Classifier, step: int, progress: float) -> None:
        """Called after each optimiser step, gradients still in place; progress runs 0 -> 1 over the planned training."""

    def extra_state(self) -> dict[str, Any]:
        """Adapter state the checkpoint keeps beyond the weights (AdaLoRA's rank allocation)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what extra_state() returned, on resume."""

    def saved_options(self) -> dict[str, Any]:
        """The options that rebuild the trained model (meta.json; Predictor passes them back)."""
        return self.options.to_dict()

    # ---- hooks the controller uses
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
