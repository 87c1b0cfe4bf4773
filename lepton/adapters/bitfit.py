from __future__ import annotations

from torch import nn

from lepton.adapters.base import ADAPTERS, Adapter, Classifier
from lepton.backbones.base import Backbone


@ADAPTERS.register("bitfit")
class BitFit(Adapter):
    name = "bitfit"
    description = ("Train only the biases and the normalisation layers' shifts and scales (Ben Zaken et al., 2022); "
                   "on EfficientNet, whose convolutions have no bias, the BatchNorm biases")
    when = "almost as small as IA3 and needs no extra modules: nothing to merge at export"
    default_lr = 1e-3
    lr_range = (3e-4, 1e-2)

    def wrap(self, backbone: Backbone, head: nn.Module) -> Classifier:
        self.check(backbone)
        backbone.requires_grad_(False)
        for m in backbone.modules():
            bias = getattr(m, "bias", None)
            if isinstance(bias, nn.Parameter):
                bias.requires_grad_(True)
            # LayerNorm's scale trains too (the paper's BERT recipe); BatchNorm keeps its scale and statistics.
            if isinstance(m, (nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
                m.weight.requires_grad_(True)
        return Classifier(backbone, head)
