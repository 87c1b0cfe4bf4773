from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lepton.adapters.base import ADAPTERS
from lepton.adapters.peft_base import PeftAdapter
from lepton.backbones.base import Backbone
from lepton.config import StrictConfig, opt


@dataclass
class OFTOptions(StrictConfig):
    block_size: int = opt(8, "Side of each block of the block-diagonal orthogonal matrix (peft rounds it to divide "
                          "the layer's width)", min=1, max=1024, search=(4, 8, 16))
    dropout: float = opt(0.0, "Block dropout (drops whole orthogonal blocks while training)", min=0.0, max=0.9)


@ADAPTERS.register("oft")
class OFT(PeftAdapter):
    name = "oft"
    description = ("Orthogonal fine-tuning: each weight is rotated by a learned block-diagonal orthogonal matrix, "
                   "which keeps the angles between its neurons (Qiu et al., 2023), via peft")
    when = "keeps the pretrained features' geometry: steady on small data, where LoRA can drift"
    Options = OFTOptions
    prefix = "oft_"

    def peft_config(self, targets: list[str], backbone: Backbone) -> Any:
        from peft import OFTConfig

        o = self.options
        return OFTConfig(r=0, oft_block_size=o.block_size, module_dropout=o.dropout, target_modules=targets)
