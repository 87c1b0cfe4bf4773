from __future__ import annotations

from torch import nn

from lepton.adapters.base import ADAPTERS, Adapter, Classifier
from lepton.backbones.base import Backbone
from lepton.errors import IncompatibleError


@ADAPTERS.register("partial")
class Partial(Adapter):
    name = "partial"
    description = ("Train the top blocks of the backbone (option: how many) and the head; the lower blocks keep their "
                   "pretrained weights: between a probe and full fine-tuning in cost and capacity")
    default_lr = 1e-4
    default_epochs = 5

    def check(self, backbone: Backbone) -> None:
        self.require_trainable(backbone)
        if not backbone.blocks():
            raise IncompatibleError(f"backbone '{backbone.name}' has no stack of blocks to unfreeze from the top; "
                                    "use the 'full', 'lora' or 'linear-probe' adapter")

    def wrap(self, backbone: Backbone, head: nn.Module) -> Classifier:
        self.check(backbone)
        self.depth = min(self.options.partial_blocks, len(backbone.blocks()))
        backbone.requires_grad_(False)
        model = Classifier(backbone, head)
        self._set(model)
        return model

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
