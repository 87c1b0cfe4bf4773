"""branches: a multimodal run's adapter, one single-modality adapter per branch.

Each branch is wrapped exactly as a single-modality run would wrap that backbone (the adapter's own rules and
errors), and the lifecycle hooks reach every branch's adapter. With every branch frozen (the default) the run is a
fusion head trained on cached features; one training branch (say `image=lora`) makes the whole run train live.
A branch adapter's own options are named after its branch: `text.r=16` (`--adapter-option text.r=16`), each parsed
as strictly as in a single-modality run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lepton.adapters.base import ADAPTERS, Adapter, Classifier
from lepton.backbones.base import Backbone
from lepton.backbones.multimodal import ORDER as MODALITIES  # the branches a multimodal backbone can have
from lepton.config import StrictConfig, opt
from lepton.errors import ConfigError


@dataclass
class BranchOptions(StrictConfig):
    text: str = opt("linear-probe", "Adapter of the text branch (any the text backbone supports, e.g. lora)")
    image: str = opt("linear-probe", "Adapter of the image branch (any the image backbone supports, e.g. lora)")
    audio: str = opt("linear-probe", "Adapter of the audio branch (the offline speech encoder is frozen: linear-probe)")

    def __post_init__(self) -> None:
        self.branch_options: dict[str, dict[str, Any]] = {}  # {branch: its adapter's options, typed}, from `text.r` keys

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> "BranchOptions":
        # `text.r` keys are the text branch adapter's options: kept aside (the dataclass has one field per branch)
        # and parsed by that adapter once the branch's adapter is known.
        dotted = {k: v for k, v in raw.items() if isinstance(k, str) and "." in k}
        cfg = super().from_dict({k: v for k, v in raw.items() if k not in dotted}, source)
        for key, value in dotted.items():
            m, _, option = key.partition(".")
            if m not in MODALITIES:
                raise ConfigError(f"{source}: {key}: {m!r} is not a branch; branch options are named "
                                  f"{', '.join(f'{b}.OPTION' for b in MODALITIES)}")
            cfg.branch_options.setdefault(m, {})[option] = value
        for m, options in cfg.branch_options.items():
            parsed = ADAPTERS.get(getattr(cfg, m)).Options.from_dict(
                options, source=f"{source}: {m}.* (options of the {m} branch's {getattr(cfg, m)!r})")
            cfg.branch_options[m] = {k: getattr(parsed, k) for k in options}  # typed: "16" from the CLI is 16
        return cfg

    def validate(self, source: str = "config") -> None:
        super().validate(source)
        for m in MODALITIES:
            name = getattr(self, m)
            if not Branches.takes(name):
                raise ConfigError(f"{source}: {m}={name!r} is not an adapter a branch can take; use one of "
                                  f"{', '.join(Branches.usable(list(ADAPTERS)))}")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), **{f"{m}.{k}": v for m, o in self.branch_options.items()
                                       for k, v in o.items()}}


@ADAPTERS.register("branches")
class Branches(Adapter):
    name = "branches"
    description = ("One adapter per modality branch of a multimodal run (options text, image, audio; a branch "
                   "adapter's own options as text.r=16); frozen branches use the feature cache, training ones run live")
    when = "multimodal data where one modality deserves fine-tuning (e.g. image=lora) and the others stay frozen"
    frozen = True  # the defaults freeze every branch; wrap() settles it for the branches the data has
    default_lr = 3e-3
    default_epochs = 40
    Options = BranchOptions
    modalities = ("multimodal",)
    archs = ("fused",)

    def __init__(self, options: StrictConfig | dict[str, Any] | None = None):
        super().__init__(options)
        self.parts: dict[str, tuple[Adapter, Classifier]] = {}

    @staticmethod
    def takes(name: str) -> bool:
        """Whether a branch can take this adapter: any single-modality one, except one whose head starts from the
        probe (LP-FT): a fused model has one head, behind the fusion module, not one per branch."""
        return name in ADAPTERS and name != "branches" and not ADAPTERS.get(name).head_init

    @classmethod
    def usable(cls, supports: list[str]) -> list[str]:
        """Of the adapters a branch's backbone supports, the ones a branch can take."""
        return [a for a in supports if cls.takes(a)]

    @classmethod
    def settled(cls, names: list[str]) -> dict[str, Any]:
        """frozen, default_lr and default_epochs of a run whose branches take these adapters: frozen only when none
        trains; then the lowest learning rate and the most epochs among the ones that train."""
        live = [ADAPTERS.get(n) for n in names if not ADAPTERS.get(n).frozen]
        if not live:
            return {"frozen": True, "default_lr": cls.default_lr, "default_epochs": cls.default_epochs}
        return {"frozen": False, "default_lr": min(a.default_lr for a in live),
                "default_epochs": max(a.default_epochs for a in live)}

    def wrap(self, backbone: Backbone, head: nn.Module) -> Classifier:
        from lepton.model import check_supported

        for m, branch in list(backbone.branches.items()):
            adapter = ADAPTERS.get(getattr(self.options, m))(self.options.branch_options.get(m))
            check_supported(backbone.specs[m], adapter.name)
            wrapped = adapter.wrap(branch, nn.Identity())
            backbone.branches[m] = wrapped.backbone
            self.parts[m] = (adapter, wrapped)
        # What the loop reads from its adapter, settled for the branches this data has.
        for k, v in self.settled([a.name for a, _ in self.parts.values()]).items():
            setattr(self, k, v)
        return Classifier(backbone, head)

    def extra_loss(self, model: Classifier) -> torch.Tensor | float:
        return sum((a.extra_loss(c) for a, c in self.parts.values()), 0.0)

    def after_step(self, model: Classifier, step: int, progress: float) -> None:
        for a, c in self.parts.values():
            a.after_step(c, step, progress)

    def extra_state(self) -> dict[str, Any]:
        return {m: a.extra_state() for m, (a, _) in self.parts.items()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        for m, (a, _) in self.parts.items():
            a.load_extra_state(state.get(m) or {})
