"""Houlsby bottleneck adapters, written here by hand.

Why not a library: AdapterHub's `adapters` 1.3 pins transformers 4.57 and does not import beside 5.x, and
peft has no bottleneck adapter. The method is a few lines: down-project, nonlinearity, up-project, added to
the sublayer's output before its residual sum (Houlsby et al., ICML 2019). The up-projection starts at
zero, so the wrapped model computes exactly what the pretrained one did until the first step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lepton.adapters.base import ADAPTERS, Adapter, Classifier
from lepton.backbones.base import Backbone
from lepton.config import StrictConfig, opt


@dataclass
class HoulsbyOptions(StrictConfig):
    bottleneck: int = opt(64, "Width of each adapter's bottleneck (down-projection size)", min=1, max=4096,
                          search=(16, 64))


class Bottleneck(nn.Module):
    """x + up(gelu(down(x))) on the last dimension (Linear outputs) or on channels (conv blocks, 1x1 convolutions)."""

    def __init__(self, width: int, bottleneck: int, conv: bool):
        super().__init__()
        layer = (lambda i, o: nn.Conv2d(i, o, 1)) if conv else nn.Linear
        self.down, self.up = layer(width, bottleneck), layer(bottleneck, width)
        nn.init.normal_(self.down.weight, std=1e-2)  # the paper's near-identity init
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(nn.functional.gelu(self.down(x)))


def _add_after(module: nn.Module, adapter: Bottleneck) -> None:
    """Registered as a child (so it trains, saves and moves with the model), applied by a forward hook."""
    module.add_module("houlsby", adapter)
    module.register_forward_hook(lambda m, args, out: m.houlsby(out))


def _width(module: nn.Module) -> tuple[int, bool]:
    if isinstance(module, nn.Linear):
        return module.out_features, False
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]  # a conv block: its last convolution's channels
    return convs[-1].out_channels, True


@ADAPTERS.register("houlsby")
class Houlsby(Adapter):
    name = "houlsby"
    description = ("Bottleneck adapters after each attention block and each feed-forward block (Houlsby et al., 2019); "
                   "on EfficientNet, 1x1-conv bottlenecks after every MBConv block")
    when = "the classic adapter: within 0.4 GLUE points of full fine-tuning with 3.6 % of BERT (the paper); a small module per layer"
    Options = HoulsbyOptions
    default_lr = 1e-3
    lr_range = (1e-4, 5e-3)

    def check(self, backbone: Backbone) -> None:
        self.require_trainable(backbone)
        self.require_targets(backbone, "houlsby")

    def wrap(self, backbone: Backbone, head: nn.Module) -> Classifier:
        self.check(backbone)
        backbone.requires_grad_(False)
        suffixes = backbone.targets("houlsby")
        for name, module in list(backbone.named_modules()):
            if isinstance(module, Bottleneck):
                continue
            if not name or not any(name == s or name.endswith("." + s) for s in suffixes):
                continue
            if isinstance(getattr(module, "houlsby", None), Bottleneck):  # a warm start's own: they train on
                module.houlsby.requires_grad_(True)
            else:
                width, conv = _width(module)
                _add_after(module, Bottleneck(width, min(self.options.bottleneck, width), conv))
        return Classifier(backbone, head)
