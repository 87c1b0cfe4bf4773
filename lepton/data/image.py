"""Images: a folder or .zip of `<label>/<file>`; items load as RGB PIL images."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from lepton.data.base import MODALITIES, Entry, Reason, check_input_file
from lepton.data.folder import FolderModality
from lepton.errors import DataError

TOO_BIG = Reason(
    "is too large to decode safely (decompression bomb check)",
    "are too large to decode safely (decompression bomb check)",
    f"resize them below {Image.MAX_IMAGE_PIXELS or 0:,} pixels",
)


def to_rgb(im: Image.Image) -> Image.Image:
    # Phones store rotation in EXIF; honour it so the model sees what the user sees.
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # broken EXIF is no reason to reject a picture
        pass
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent pixels become white rather than whatever colour hides under the alpha.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def _from_array(a: np.ndarray) -> Image.Image:
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # CHW (torch layout) -> HWC
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise DataError(f"an image array must be HxW or HxWxC with 1, 3 or 4 channels, got shape {a.shape}")
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
            a = a * 255.0  # float images in [0, 1]
        a = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
    return to_rgb(Image.fromarray(a))


def _open(data_or_path: Any, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(data_or_path) as im:
                im.load()
                return to_rgb(im)
    except Exception as e:  # PIL raises many types for bad files
        raise DataError(f"`{name}` could not be read as an image ({type(e).__name__}): re-export it as PNG or JPEG") from None


@MODALITIES.register("image")
class ImageModality(FolderModality):
    name = "image"
    noun = "image"
    article = "an"
    nouns = "images"
    extensions = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})

    @classmethod
    def check(cls, data: bytes, entry: Entry) -> Reason | None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as im:
                    im.load()  # decodes every pixel: truncated files fail here, not in training
                    if im.width < 1 or im.height < 1:
                        return cls.corrupt()
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            return TOO_BIG
        except Exception:
            return cls.corrupt()
        return None

    @classmethod
    def load(cls, x: Any) -> Image.Image:
        if isinstance(x, Image.Image):
            if x.mode == "RGB":
                return x
            return to_rgb(x)
        if isinstance(x, (bytes, bytearray, memoryview)):
            return _open(io.BytesIO(bytes(x)), "uploaded image")
        if isinstance(x, (str, Path)):
            p = Path(x)
            check_input_file(p, "image")
            return _open(p, p.name)
        if isinstance(x, np.ndarray) or hasattr(x, "__array__"):
            return _from_array(np.asarray(x))
        raise DataError(f"cannot load an image from {type(x).__name__}: give a path, bytes, a PIL image or an HxWxC uint8 array")



