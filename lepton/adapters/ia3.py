from __future__ import annotations

from typing import Any

from lepton.adapters.base import ADAPTERS
from lepton.adapters.peft_base import PeftAdapter
from lepton.backbones.base import Backbone


@ADAPTERS.register("ia3")
class IA3(PeftAdapter):
    name = "ia3"
    description = ("(IA)^3: learned vectors rescale keys, values and the feed-forward activations (Liu et al., 2022), "
                   "via peft; on EfficientNet they rescale the 1x1 convolutions")
    when = "among the smallest (under 0.1 % of MiniLM); strong when data is scarce"
    prefix = "ia3_"
    target_kind = "ia3"
    default_lr = 3e-3
    lr_range = (1e-3, 3e-2)

    def peft_config(self, targets: list[str], backbone: Backbone) -> Any:
        from peft import IA3Config

        return IA3Config(target_modules=targets, feedforward_modules=backbone.targets("ia3-feedforward"))
