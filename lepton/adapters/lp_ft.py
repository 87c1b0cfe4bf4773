from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from lepton.adapters.base import ADAPTERS, Adapter, Classifier
from lepton.backbones.base import Backbone
from lepton.config import StrictConfig, opt


@dataclass
class LPFTOptions(StrictConfig):
    then: Literal["full", "lora"] = opt("full", "What fine-tunes after the probe: every weight, or LoRA")
    r: int = opt(8, "LoRA rank (with then=lora)", min=1, max=256)
    alpha: int = opt(16, "LoRA alpha (with then=lora)", min=1, max=512)


@ADAPTERS.register("lp-ft")
class LPFT(Adapter):
    name = "lp-ft"
    description = ("Linear probe first (on cached features), then fine-tune (full or LoRA) from that head: a trained "
                   "head keeps the pretrained features from being distorted early on (Kumar et al., ICLR 2022)")
    when = "fine-tuning that starts where the probe ended: best when the probe is already good"
    Options = LPFTOptions
    head_init = "probe"  # the loop starts the head from the run's logistic probe
    default_lr = 1e-4
    lr_range = (1e-5, 1e-3)

    def _inner(self) -> Adapter:
        o = self.options
        return ADAPTERS.get(o.then)({"r": o.r, "alpha": o.alpha} if o.then == "lora" else {})

    def check(self, backbone: Backbone) -> None:
        self._inner().check(backbone)

    def wrap(self, backbone: Backbone, head: nn.Module) -> Classifier:
        return self._inner().wrap(backbone, head)
