from __future__ import annotations

from torch import nn

from lepton.adapters.base import ADAPTERS, Adapter, Classifier
from lepton.backbones.base import Backbone


@ADAPTERS.register("linear-probe")
class LinearProbe(Adapter):
    name = "linear-probe"
    description = "Freeze the backbone and train only a linear head on its features (seconds, thanks to the feature cache)"
    when = "seconds, not minutes: a first answer, tiny data, or a backbone that cannot train"
    frozen = True
    default_lr = 3e-3
    default_epochs = 40
    lr_range = (1e-3, 1e-1)
    modalities = ("text", "image", "audio", "multimodal")  # on multimodal data: every branch frozen
    archs = ("transformer", "cnn", "fused")

    def wrap(self, backbone: Backbone, head: nn.Module) -> Classifier:
        backbone.requires_grad_(False)
        backbone.eval()  # frozen BatchNorm/Dropout too, so cached features equal live ones
        return Classifier(backbone, head)
