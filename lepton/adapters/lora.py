from __future__ import annotations

from torch import nn

from lepton.adapters.base import ADAPTERS, Adapter, Classifier
from lepton.backbones.base import Backbone
from lepton.errors import IncompatibleError


@ADAPTERS.register("lora")
class LoRA(Adapter):
    name = "lora"
    description = "Low-rank updates on the attention (or 1x1 conv) weights via peft: near full fine-tuning quality at a fraction of the trainable parameters"
    default_lr = 1e-3
    default_epochs = 5

    def check(self, backbone: Backbone) -> None:
        self.require_trainable(backbone)
        backbone.modules_for(self.name)  # raises IncompatibleError naming what works

    def wrap(self, backbone: Backbone, head: nn.Module) -> Classifier:
        self.check(backbone)
        from peft import LoraConfig, inject_adapter_in_model  # peft costs seconds to import: only when used

        o = self.options
        cfg = LoraConfig(r=o.lora_r, lora_alpha=o.lora_alpha, lora_dropout=o.lora_dropout,
                         target_modules=backbone.modules_for(self.name), bias="none")
        backbone.requires_grad_(False)
        # inject_adapter_in_model works on any nn.Module and leaves only lora_* trainable.
        try:
            inject_adapter_in_model(cfg, backbone)
        except ValueError as e:  # peft's NoMatchingPeftModuleError and unsupported layer types
            raise IncompatibleError(f"LoRA cannot wrap backbone '{backbone.name}': {e}; "
                                    f"use the 'full' or 'linear-probe' adapter instead") from None
        for n, p in backbone.named_parameters():
            p.requires_grad_("lora_" in n)
        return Classifier(backbone, head)
