from __future__ import annotations

from typing import Any

from lepton.adapters.base import ADAPTERS
from lepton.adapters.loha import LoHaOptions
from lepton.adapters.peft_base import PeftAdapter
from lepton.backbones.base import Backbone


@ADAPTERS.register("lokr")
class LoKr(PeftAdapter):
    name = "lokr"
    description = "Low-rank Kronecker product (LyCORIS): the update is a Kronecker product of small factors, via peft"
    when = "the fewest trainable parameters of the low-rank family"
    Options = LoHaOptions  # the same three LyCORIS knobs: rank, alpha, rank dropout
    prefix = "lokr_"

    def peft_config(self, targets: list[str], backbone: Backbone) -> Any:
        from peft import LoKrConfig

        o = self.options
        return LoKrConfig(r=o.r, alpha=o.alpha, rank_dropout=o.dropout, target_modules=targets)
