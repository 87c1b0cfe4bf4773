from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lepton.adapters.base import ADAPTERS
from lepton.adapters.peft_base import PeftAdapter
from lepton.backbones.base import Backbone
from lepton.config import StrictConfig, opt


@dataclass
class LoKrOptions(StrictConfig):
    r: int = opt(8, "Rank of the low-rank factor of the Kronecker product", min=1, max=256, search=(4, 8))
    alpha: int = opt(8, "Scaling alpha (the update is scaled by alpha / r)", min=1, max=512)
    dropout: float = opt(0.0, "Rank dropout", min=0.0, max=0.9)


@ADAPTERS.register("lokr")
class LoKr(PeftAdapter):
    name = "lokr"
    description = "Low-rank Kronecker product (LyCORIS): the update is a Kronecker product of small factors, via peft"
    when = "the fewest trainable parameters of the low-rank family"
    Options = LoKrOptions
    prefix = "lokr_"

    def peft_config(self, targets: list[str], backbone: Backbone) -> Any:
        from peft import LoKrConfig

        o = self.options
        return LoKrConfig(r=o.r, alpha=o.alpha, rank_dropout=o.dropout, target_modules=targets)
