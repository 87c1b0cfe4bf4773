"""Backbones: registered offline defaults, tiny test models, and any Hugging Face model id or folder.

    list_backbones(modality=None, tiny=None) -> [BackboneSpec]
    default_backbone(modality) -> BackboneSpec
    resolve_backbone(name_or_path, modality=None) -> BackboneSpec
    build_backbone(name_or_path, modality=None) -> Backbone

Importing this package registers every family (one module each); heavy libraries load only when
a backbone is built.
"""

from __future__ import annotations

import os
from pathlib import Path

from lepton.backbones import efficientnet, minilm, multimodal, speech_embedding, tiny  # noqa: F401  (registration)
from lepton.backbones.base import BACKBONES, Backbone, BackboneSpec
from lepton.backbones.hf import folder_spec, hub_spec, looks_like_hub_id
from lepton.errors import IncompatibleError, RegistryError

MODALITIES = ("text", "image", "audio")

__all__ = [
    "BACKBONES", "Backbone", "BackboneSpec", "MODALITIES",
    "list_backbones", "default_backbone", "resolve_backbone", "build_backbone",
]


def list_backbones(modality: str | None = None, tiny: bool | None = None) -> list[BackboneSpec]:
    """Registered backbones sorted by name; tiny=None: all, True: only tiny test models, False: only real ones."""
    if modality is not None and modality not in MODALITIES:
        raise RegistryError(f"unknown modality '{modality}'; valid modalities: {', '.join(MODALITIES)}")
    return [s for _, s in BACKBONES.items()
            if (modality is None or s.modality == modality) and (tiny is None or s.tiny == tiny)]


def default_backbone(modality: str) -> BackboneSpec:
    """The offline pretrained default for a modality."""
    for spec in list_backbones(modality, tiny=False):
        if spec.default:
            return spec
    raise RegistryError(f"no default backbone for modality '{modality}'")


def _check_modality(spec: BackboneSpec, modality: str | None) -> BackboneSpec:
    if modality and modality != "auto" and spec.modality not in (modality, "auto"):
        fits = ", ".join(s.name for s in list_backbones(modality)) if modality in MODALITIES else ""
        raise IncompatibleError(
            f"backbone '{spec.name}' is for {spec.modality}, but the data is {modality}"
            + (f"; {modality} backbones: {fits}" if fits else "")
        )
    return spec


def resolve_backbone(name_or_path: str, modality: str | None = None) -> BackboneSpec:
    """Registered name, else a local model folder, else a hub id `org/name`. Nothing is loaded, but a
    folder (or a cached hub snapshot) is checked whole (lepton.backbones.model_folder), so an unsafe or
    broken one fails here, before a run exists."""
    name = str(name_or_path).strip()
    if modality == "auto":
        modality = None
    if modality == "multimodal" or (modality is None and multimodal.is_multimodal_name(name)):
        return multimodal.multimodal_spec(name)
    if not name:
        if modality is None:
            raise RegistryError("no backbone given and no modality to pick a default for; "
                                f"valid names: {', '.join(BACKBONES)}")
        return default_backbone(modality)
    if name in BACKBONES:
        return _check_modality(BACKBONES.get(name), modality)
    path = Path(name).expanduser()
    if path.exists() or os.path.lexists(path):
        # Anything on disk is a model folder or nothing: check_model_folder says which rule it breaks.
        return _check_modality(folder_spec(name, modality), modality)
    if os.sep in name and not looks_like_hub_id(name):
        raise RegistryError(
            f"backbone '{name}': there is no such folder (a model folder holds config.json and model.safetensors, as "
            f"save_pretrained writes); registered names: {', '.join(BACKBONES)}"
        )
    if looks_like_hub_id(name):
        return hub_spec(name, modality)
    raise RegistryError(
        f"unknown backbone '{name}'; valid names: {', '.join(BACKBONES)} "
        "(or a Hugging Face model id like org/name, or a local model folder)"
    )


def build_backbone(name_or_path: str, modality: str | None = None) -> Backbone:
    """A fresh backbone module (training mutates it, so nothing is shared between builds)."""
    bb = resolve_backbone(name_or_path, modality).build()
    if modality and modality != "auto" and bb.modality != modality:
        raise IncompatibleError(f"backbone '{name_or_path}' is for {bb.modality}, but the data is {modality}")
    return bb
