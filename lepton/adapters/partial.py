from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lepton.adapters.base import ADAPTERS, Adapter, Classifier
from lepton.backbones.base import Backbone
from lepton.config import StrictConfig, opt
from lepton.errors import IncompatibleError


@dataclass
class PartialOptions(StrictConfig):
    k: int = opt(2, "How many top blocks of the backbone train (with the head)", min=1, max=64, search=(1, 2, 4, 6))


@ADAPTERS.register("partial")
class Partial(Adapter):
    name = "partial"
    description = ("Train the top blocks of the backbone (option: how many) and the head; the lower blocks keep their "
                   "pretrained weights: between a probe and full fine-tuning in cost and capacity")
    when = "full fine-tuning's accuracy at a fraction of its backward pass, when the budget is short"
    Options = PartialOptions
    default_lr = 1e-4
    default_epochs = 5
    lr_range = (3e-5, 3e-3)

    def check(self, backbone: Backbone) -> None:
        self.require_trainable(backbone)
        if not backbone.blocks():
            raise IncompatibleError(f"backbone '{backbone.name}' has no stack of blocks to unfreeze from the top; "
                                    "use the 'full', 'lora' or 'linear-probe' adapter")

    def wrap(self, backbone: Backbone, head: nn.Module) -> Classifier:
        self.check(backbone)
        self.depth = min(self.options.k, len(backbone.blocks()))
        backbone.requires_grad_(False)
        model = Classifier(backbone, head)
        self._set(model)
        return model

    def saved_options(self) -> dict:
        return {"k": self.depth}  # the controller may have unfrozen more blocks than the option asked for

    def unfreeze(self, model: Classifier, blocks: int = 1) -> list[nn.Parameter]:
        before = {id(p) for p in model.parameters() if p.requires_grad}
        self.depth = min(len(model.backbone.blocks()), (self.depth or 0) + blocks)
        self._set(model)
        return [p for p in model.parameters() if p.requires_grad and id(p) not in before]

    def _set(self, model: Classifier) -> None:
        """Everything from the first parameter of the depth-th block from the top onwards trains.

        Parameters come in registration order (embeddings, blocks bottom to top, final norm or
        conv head), so "from that block on" also catches what sits above the last block."""
        first = next(model.backbone.blocks()[-self.depth].parameters())
        on = False
        for p in model.backbone.parameters():
            on = on or p is first
            p.requires_grad_(on)
