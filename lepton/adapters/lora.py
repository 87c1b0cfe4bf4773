from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lepton.adapters.base import ADAPTERS
from lepton.adapters.peft_base import PeftAdapter
from lepton.backbones.base import Backbone
from lepton.config import StrictConfig, opt


@dataclass
class LoRAOptions(StrictConfig):
    r: int = opt(8, "Rank of the low-rank update", min=1, max=256, search=(4, 8, 16))
    alpha: int = opt(16, "Scaling alpha (the update is scaled by alpha / r)", min=1, max=512)
    dropout: float = opt(0.05, "Dropout on the low-rank branch", min=0.0, max=0.9)


@ADAPTERS.register("lora")
class LoRA(PeftAdapter):
    name = "lora"
    description = ("Low-rank updates on the attention (or 1x1 conv) weights via peft: near full fine-tuning quality "
                   "at a fraction of the trainable parameters (Hu et al., 2021)")
    when = "the default parameter-efficient choice: small checkpoints, little memory, close to full quality"
    Options = LoRAOptions
    lr_range = (1e-4, 5e-3)

    def peft_config(self, targets: list[str], backbone: Backbone) -> Any:
        from peft import LoraConfig

        o = self.options
        return LoraConfig(r=o.r, lora_alpha=o.alpha, lora_dropout=o.dropout, target_modules=targets, bias="none",
                          **self.extra_lora())

    def extra_lora(self) -> dict[str, Any]:
        return {}
