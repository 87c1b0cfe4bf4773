"""One way in for building a model: (backbone spec, adapter, head) for the loop and for Predictor alike.

A warm start (`--from RUN`) is one more source of a backbone spec (lepton/transfer.py): building
it gives the source run's adapted backbone, and everything after that is the same code path.
"""

from __future__ import annotations

from typing import Any

from lepton.adapters import Adapter, Classifier, get_adapter
from lepton.backbones import Backbone, BackboneSpec, default_backbone, resolve_backbone
from lepton.errors import IncompatibleError


def backbone_spec(config: Any, modality: str, modalities: list[str] | None = None) -> BackboneSpec:
    """The spec a run builds: the warm-start source's adapted backbone, the one named, or the modality's default
    (multimodal data: one branch per modality of `modalities`, each named or the default)."""
    from lepton import transfer
    from lepton.backbones.multimodal import multimodal_spec

    if config.from_run:
        spec = transfer.source_spec(config, modality)
    elif modality == "multimodal":
        spec = multimodal_spec(config.backbone, modalities)
    else:
        spec = resolve_backbone(config.backbone or default_backbone(modality).name, modality)
    if spec.modality != modality:
        raise IncompatibleError(f"backbone '{spec.name}' is for {spec.modality}, but the data is {modality}; "
                                f"`lepton backbones --modality {modality}` lists the ones that fit")
    return spec


def build_backbone(spec: BackboneSpec, max_length: int, image_size: int | None) -> Backbone:
    backbone = spec.build()
    backbone.configure(max_length=max_length, image_size=image_size)
    return backbone


def wrap(backbone: Backbone, spec: BackboneSpec, adapter_name: str, options: dict[str, Any], num_classes: int,
         head: str = "classification", fusion: str | None = None) -> tuple[Adapter, Classifier]:
    """The adapter (checked against the backbone) and backbone + head wrapped by it (fusion: a multimodal
    backbone's fusion module, which its head starts with)."""
    adapter = get_adapter(adapter_name, options)
    check_supported(spec, adapter_name)
    return adapter, adapter.wrap(backbone, backbone.make_head(head, num_classes, fusion))


def check_supported(spec: BackboneSpec, adapter_name: str) -> None:
    if adapter_name not in spec.supports:
        raise IncompatibleError(f"backbone '{spec.name}' does not support the '{adapter_name}' adapter; "
                                f"adapters that can wrap it: {', '.join(spec.supports)}")
