"""Training-time augmentation (torchvision / torchaudio ops), random parameters drawn from the run's own generator.

The parameters come from a numpy Generator seeded per (run seed, epoch, batch), not torch's global
RNG, so a resumed epoch sees the same augmented batches it would have seen.
- images: random resized crop (60-100 % of the area, aspect 3:4 to 4:3), a horizontal flip only
  where the labels allow it (the loop measures that; "b" flipped is "d"), brightness, contrast and
  saturation jitter;
- audio: random gain, a circular time shift and light noise on the wave; SpecAugment (frequency and
  time masks) on spectrogram inputs.
"""

from __future__ import annotations

import math

import numpy as np
import torch

CROP_AREA = (0.6, 1.0)
JITTER = 0.25


def _crop_box(rng: np.random.Generator, h: int, w: int) -> tuple[int, int, int, int]:
    for _ in range(10):
        area = h * w * rng.uniform(*CROP_AREA)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        ch, cw = int(round(math.sqrt(area / ratio))), int(round(math.sqrt(area * ratio)))
        if 0 < ch <= h and 0 < cw <= w:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    return 0, 0, h, w


def _geometry(x: torch.Tensor, rng: np.random.Generator, flip: bool) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    h, w = x.shape[-2:]
    top, left, ch, cw = _crop_box(rng, h, w)
    x = F.resized_crop(x, top, left, ch, cw, [h, w], antialias=True)
    return F.horizontal_flip(x) if flip and rng.random() < 0.5 else x


def augment_image(hwc: np.ndarray, rng: np.random.Generator, flip: bool) -> np.ndarray:
    """(H, W, 3) uint8 -> the same shape, cropped/flipped/jittered."""
    from torchvision.transforms.v2 import functional as F

    x = _geometry(torch.from_numpy(np.array(hwc)).permute(2, 0, 1), rng, flip)  # (3, H, W) uint8; a copy: kept encodings stay clean
    x = F.adjust_brightness(x, float(rng.uniform(1 - JITTER, 1 + JITTER)))
    x = F.adjust_contrast(x, float(rng.uniform(1 - JITTER, 1 + JITTER)))
    x = F.adjust_saturation(x, float(rng.uniform(1 - JITTER, 1 + JITTER)))
    return x.permute(1, 2, 0).numpy()


def augment_chw(x: torch.Tensor, rng: np.random.Generator, flip: bool) -> torch.Tensor:
    """(3, H, W) normalised float -> cropped/flipped, with brightness and contrast jitter in the normalised space."""
    x = _geometry(x, rng, flip)
    mean = x.mean()
    return (x - mean) * float(rng.uniform(1 - JITTER, 1 + JITTER)) + mean + float(rng.uniform(-JITTER, JITTER))


def augment_wave(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gain of -6..+6 dB, a circular shift of up to 10 % of the clip, noise 30-50 dB below the signal."""
    w = np.asarray(wave, np.float32) * np.float32(10 ** (rng.uniform(-6, 6) / 20))
    if len(w) > 1:
        w = np.roll(w, int(rng.integers(-len(w) // 10, len(w) // 10 + 1)))
    power = float(np.mean(w ** 2)) + 1e-12
    noise = rng.normal(0, math.sqrt(power / 10 ** (rng.uniform(30, 50) / 10)), w.shape).astype(np.float32)
    return np.clip(w + noise, -1, 1)


def spec_augment(features: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """SpecAugment on (..., freq, time) features: one band of up to 15 % of the frequencies and one span of
    up to 10 % of the frames set to the mean (torchaudio's masking, seeded from the run's generator)."""
    import torchaudio.functional as AF

    x = features.float()
    fill = float(x.mean())
    with torch.random.fork_rng(devices=[]):  # torchaudio draws from torch's RNG: keep the global one untouched
        torch.manual_seed(int(rng.integers(2**31)))
        x = AF.mask_along_axis(x, max(1, int(x.shape[-2] * 0.15)), fill, x.dim() - 2)
        x = AF.mask_along_axis(x, max(1, int(x.shape[-1] * 0.10)), fill, x.dim() - 1)
    return x.to(features.dtype)
