from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lepton.adapters.base import ADAPTERS
from lepton.adapters.peft_base import PeftAdapter
from lepton.backbones.base import Backbone
from lepton.config import StrictConfig, opt


@dataclass
class LoHaOptions(StrictConfig):
    """LoHa's and LoKr's options (peft's LyCORIS family)."""

    r: int = opt(8, "Rank of the low-rank factors", min=1, max=256, search=(4, 8))
    alpha: int = opt(8, "Scaling alpha (the update is scaled by alpha / r)", min=1, max=512)
    dropout: float = opt(0.0, "Rank dropout", min=0.0, max=0.9)


@ADAPTERS.register("loha")
class LoHa(PeftAdapter):
    name = "loha"
    description = "Low-rank Hadamard product (FedPara / LyCORIS): two low-rank pairs multiplied elementwise, via peft"
    when = "a higher effective rank than LoRA for the same number of parameters"
    Options = LoHaOptions
    prefix = "hada_"

    def peft_config(self, targets: list[str], backbone: Backbone) -> Any:
        from peft import LoHaConfig

        o = self.options
        return LoHaConfig(r=o.r, alpha=o.alpha, rank_dropout=o.dropout, target_modules=targets)
