"""What every peft-injected adapter shares: a peft config on the backbone's target modules, injected in place.

`inject_adapter_in_model` works on any nn.Module (our backbones are not PreTrainedModels) and leaves
only the adapter's own tensors trainable. Each method is one file with its config and options.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from lepton.adapters.base import Adapter, Classifier
from lepton.backbones.base import Backbone
from lepton.errors import IncompatibleError


class PeftAdapter(Adapter):
    target_kind = "attention"  # which modules (Backbone.targets) the method wraps
    prefix = "lora_"  # the names of the tensors it adds (what trains)

    def peft_config(self, targets: list[str], backbone: Backbone) -> Any:
        raise NotImplementedError

    def check(self, backbone: Backbone) -> None:
        self.require_trainable(backbone)
        self.require_targets(backbone, self.target_kind)

    def wrap(self, backbone: Backbone, head: nn.Module) -> Classifier:
        self.check(backbone)
        import peft  # costs seconds to import: only when used

        cfg = self.peft_config(backbone.targets(self.target_kind), backbone)
        backbone.requires_grad_(False)
        try:
            self.inject(peft, cfg, backbone)
        except (ValueError, TypeError) as e:  # peft's NoMatchingPeftModuleError and unsupported layer types
            raise IncompatibleError(f"the '{self.name}' adapter cannot wrap backbone '{backbone.name}': {e}; "
                                    "use 'lora', 'full' or 'linear-probe' instead") from None
        for n, p in backbone.named_parameters():
            p.requires_grad_(self.prefix in n)
        return Classifier(backbone, head)

    def inject(self, peft: Any, cfg: Any, backbone: Backbone) -> None:
        peft.inject_adapter_in_model(cfg, backbone)
