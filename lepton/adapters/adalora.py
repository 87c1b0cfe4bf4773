from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from lepton.adapters.base import ADAPTERS, Classifier
from lepton.adapters.peft_base import PeftAdapter
from lepton.backbones.base import Backbone
from lepton.config import StrictConfig, opt

# AdaLoRA's schedule is in steps; a time-budgeted run does not know its step count in advance, so the loop's
# progress (0 -> 1 over the planned training) is mapped onto this many nominal steps.
NOMINAL_STEPS = 1000


@dataclass
class AdaLoRAOptions(StrictConfig):
    init_r: int = opt(12, "Rank every layer starts with", min=1, max=256)
    target_r: int = opt(8, "Average rank left per layer once the budget is allocated", min=1, max=256)
    alpha: int = opt(32, "Scaling alpha", min=1, max=512)
    dropout: float = opt(0.05, "Dropout on the low-rank branch", min=0.0, max=0.9)
    orth_reg_weight: float = opt(0.5, "Weight of the orthogonality penalty on P and Q", min=0.0, max=10.0)
    tinit: float = opt(0.1, "Share of training before ranks start to be pruned", min=0.0, max=0.9)
    tfinal: float = opt(0.2, "Share of training at the end with the final ranks fixed", min=0.0, max=0.9)


@ADAPTERS.register("adalora")
class AdaLoRA(PeftAdapter):
    name = "adalora"
    description = ("LoRA in SVD form whose rank budget moves to the layers that matter, by sensitivity "
                   "(Zhang et al., ICLR 2023), via peft's AdaLoraModel")
    when = "LoRA's budget spent where it helps most; needs a few hundred steps to allocate well"
    Options = AdaLoRAOptions
    archs = ("transformer",)  # peft's AdaLoRA wraps Linear layers only

    def peft_config(self, targets: list[str], backbone: Backbone) -> Any:
        from peft import AdaLoraConfig

        o = self.options
        return AdaLoraConfig(init_r=o.init_r, target_r=min(o.target_r, o.init_r), lora_alpha=o.alpha,
                             lora_dropout=o.dropout, orth_reg_weight=o.orth_reg_weight, target_modules=targets,
                             total_step=NOMINAL_STEPS, tinit=int(o.tinit * NOMINAL_STEPS),
                             tfinal=int(o.tfinal * NOMINAL_STEPS), deltaT=1)  # 1: steps map to progress unevenly

    def inject(self, peft: Any, cfg: Any, backbone: Backbone) -> None:
        from peft.tuners.adalora import AdaLoraModel

        # Kept as an object (not a submodule): it owns the rank allocator that update_and_allocate drives,
        # and the backbone it wrapped in place is what the Classifier holds.
        self.tuner = AdaLoraModel(backbone, cfg, "default")
        self.config = self.tuner.peft_config["default"]
        self.final = False

    def extra_loss(self, model: Classifier) -> torch.Tensor | float:
        # peft adds this inside AdaLoraModel.forward only when the model returns a loss; ours returns features,
        # so the same penalty (mean Frobenius distance of P P^T and Q^T Q from I) is computed here.
        terms = [torch.norm((p @ p.T if "lora_A" in n else p.T @ p) - torch.eye(min(p.shape), device=p.device), p="fro")
                 for n, p in model.backbone.named_parameters() if ("lora_A" in n or "lora_B" in n) and p.numel()]
        return self.config.orth_reg_weight * torch.stack(terms).mean() if terms else 0.0

    def after_step(self, model: Classifier, step: int, progress: float) -> None:
        at = min(NOMINAL_STEPS - 1, int(progress * NOMINAL_STEPS))
        final_at = NOMINAL_STEPS - self.config.tfinal
        if at >= final_at and not self.final:  # the one step that fixes the ranks must not be skipped over
            at, self.final = final_at, True
        self.tuner.update_and_allocate(at)

    def extra_state(self) -> dict[str, Any]:
        ra = self.tuner.rankallocator
        return {"ipt": dict(ra.ipt), "exp_avg_ipt": dict(ra.exp_avg_ipt), "exp_avg_unc": dict(ra.exp_avg_unc),
                "rank_pattern": self.config.rank_pattern, "final": self.final}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        ra = self.tuner.rankallocator
        for key in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
            getattr(ra, key).update(state.get(key) or {})
        self.config.rank_pattern = state.get("rank_pattern")
        self.final = bool(state.get("final"))
