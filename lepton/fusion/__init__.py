"""Fusion of several modalities (a registry: concat, gated, attention) and the head of a multimodal run.

    FUSIONS.get("gated")            # the module class
    FusedHead(layout, "gated", head)  # branch features + presence -> fused -> the task's head
    only(features, layout, "image")   # the same rows with only the image present
    modality_scores(layout, feats, outputs, task, y)  # {modality: metrics given only it}: a run's per-modality scores
"""

from lepton.fusion.base import FUSIONS, WIDTH, FusedHead, Fusion, Layout, blocks, modality_scores, only
from lepton.fusion import attention, concat, gated  # noqa: F401,E402  (each registers its module)

__all__ = ["FUSIONS", "WIDTH", "FusedHead", "Fusion", "Layout", "blocks", "modality_scores", "only"]
