"""The backbone contract: raw items in, pooled (N, dim) features out.

A backbone is an nn.Module wrapping a pretrained encoder. The head never knows which modality
it sits on; adapters ask `targets(kind)` which modules their layers wrap (attention projections for the
low-rank family, block outputs for bottleneck adapters, keys/values/feed-forward for IA3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from lepton.registry import Registry


class Backbone(nn.Module):
    modality: str = ""
    dim: int = 0
    # Adapters that cannot work on this backbone (e.g. a non-torch ONNX encoder supports only frozen ones).
    trainable: bool = True
    # Weights that live outside torch (an ONNX graph), so parameter counts stay honest.
    external_params: int = 0

    def preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        """Raw items (str / PIL.Image RGB / (float32 mono waveform, sample_rate)) -> a batch of tensors."""
        raise NotImplementedError

    def forward_features(self, **batch: torch.Tensor) -> torch.Tensor:
        """Batch of tensors from preprocess -> (N, dim) pooled features."""
        raise NotImplementedError

    # preprocess(items) == collate(encode(items)). The loop encodes each example once per run (decode,
    # resize, tokenize) and keeps the result, so later epochs only collate. The defaults keep nothing.
    def encode(self, items: list[Any]) -> list[Any]:
        """Raw items -> one encoding per item (text: token ids; image: resized pixels)."""
        return list(items)

    def collate(self, encoded: list[Any]) -> dict[str, torch.Tensor]:
        """Encodings of one batch -> the tensors preprocess() returns."""
        return self.preprocess(encoded)

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        return self.forward_features(**batch)

    def targets(self, kind: str) -> list[str]:
        """Module-name suffixes an adapter of this kind wraps: "attention" (LoRA and the low-rank family),
        "ia3" and "ia3-feedforward" (IA3's rescaled layers, and those of them that scale their input),
        "houlsby" (where a bottleneck follows: attention output and feed-forward output, or whole blocks).
        An empty list means the backbone has no such modules; the adapter then names the ones that work."""
        return []

    # Per-run input options (RunConfig.max_length, image_size); a backbone that has none ignores them.
    max_length: int | None = None
    image_size: int | None = None

    def configure(self, max_length: int | None = None, image_size: int | None = None) -> None:
        if max_length is not None:
            self.max_length = max_length
        if image_size is not None and self.modality == "image":
            self.image_size = image_size

    def augment(self, encoded: list[Any], rng: Any, flip: bool) -> list[Any]:
        """Training-time augmentation of encodings (what encode returns); none by default."""
        return encoded

    def augment_batch(self, batch: dict[str, torch.Tensor], rng: Any) -> dict[str, torch.Tensor]:
        """Training-time augmentation of a collated batch (spectrogram masking); none by default."""
        return batch

    def blocks(self) -> list[nn.Module]:
        """The backbone's stack of blocks, bottom to top (transformer layers, MBConv blocks): the longest ModuleList."""
        lists = [m for m in self.modules() if isinstance(m, nn.ModuleList) and len(m) > 1]
        return list(max(lists, key=len)) if lists else []

    def save_preprocessing(self, folder: Any) -> list[str]:
        """Write what turns raw inputs into this backbone's tensors (tokenizer, image processor, recipe) into an
        export folder, for runtimes outside Lepton; returns the file names. Nothing by default."""
        return []

    # A fused backbone's branches, (modality, width) in the order its features list them; empty for one modality.
    layout: list[tuple[str, int]] = []

    def make_head(self, kind: str, width: int, fusion: str | None = None) -> nn.Module:
        """The head on this backbone's features (lepton/heads.py); a fused backbone puts its fusion module first."""
        from lepton.heads import build_head

        return build_head(kind, self.dim, width)

    def collate_key(self, batch: dict[str, torch.Tensor]) -> int:
        """Length used for bucketing (text: tokens); 0 where it does not apply."""
        return 0

    @property
    def name(self) -> str:
        return getattr(self, "_lepton_name", type(self).__name__)


@dataclass
class BackboneSpec:
    name: str
    modality: str
    dim: int
    params: int  # total parameters, for the UI (approximate is fine)
    description: str
    loader: Callable[[], Backbone]
    recommended_adapter: str = "linear-probe"
    default: bool = False  # the modality's offline default
    tiny: bool = False  # tiny random model for fast tests
    trainable: bool = True  # False: its weights live outside torch (ONNX), only frozen adapters apply
    arch: str = "transformer"  # or "cnn": which adapter families apply (prefix tuning needs attention layers)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def supports(self) -> tuple[str, ...]:
        """Adapters that can wrap this backbone, by each adapter's own rules (a new adapter joins by itself)."""
        from lepton.adapters import ADAPTERS

        return tuple(name for name, cls in ADAPTERS.items() if cls.applies(self))

    def build(self) -> Backbone:
        bb = self.loader()
        bb._lepton_name = self.name
        return bb


BACKBONES: Registry[BackboneSpec] = Registry("backbone")
