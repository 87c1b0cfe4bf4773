from __future__ import annotations

from torch import nn

from lepton.adapters.base import ADAPTERS, Adapter, Classifier
from lepton.backbones.base import Backbone


@ADAPTERS.register("full")
class FullFineTune(Adapter):
    name = "full"
    description = "Train every parameter of backbone and head (best accuracy on large data, slowest, most memory)"
    when = "the most capacity: large or unusual data, and a budget for several epochs"
    default_lr = 3e-5
    default_epochs = 4
    lr_range = (1e-5, 2e-3)

    def wrap(self, backbone: Backbone, head: nn.Module) -> Classifier:
        self.check(backbone)
        backbone.requires_grad_(True)
        return Classifier(backbone, head)
