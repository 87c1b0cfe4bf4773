"""Frozen-feature cache: a frozen backbone runs once per (backbone, dataset content, preprocessing).

Files live in LEPTON_HOME/cache/features/<key>.safetensors. Writes go to a temp file and are
renamed into place, so two jobs filling the same entry at once both end with a whole file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lepton import paths
from lepton.train.device import autocast

VERSION = 1  # bump when feature extraction changes in a way the key cannot see


def cache_key(backbone_id: dict[str, Any], content_hash: str, split: str, preprocessing: dict[str, Any]) -> str:
    blob = json.dumps({"v": VERSION, "backbone": backbone_id, "data": content_hash, "split": split,
                       "pre": preprocessing}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def frozen_key(spec: Any, content_hash: str, split: str, config: Any, device: torch.device, bf16: bool) -> str:
    """The key of one split's features under a frozen backbone: the linear-probe path and the baseline share it."""
    pre = {"max_length": config.max_length, "bf16": bf16, "device": device.type}
    if getattr(config, "image_size", None):  # absent from keys written before resolutions existed: those stay valid
        pre["image_size"] = config.image_size
    return cache_key({"name": spec.name, **spec.extra.get("identity", {})}, content_hash, split, pre)


@torch.no_grad()
def batched_features(fn: Callable[[dict[str, torch.Tensor]], torch.Tensor], backbone: Any, ds: Any, exs: list,
                     batch_size: int, device: torch.device, bf16: bool,
                     on_batch: Callable[[int], None] | None = None) -> torch.Tensor:
    """(N, dim) fn(batch) over exs in batches, in the split's order. on_batch(n) follows progress."""
    # Texts sorted by length pad little; the result is put back in order at the end.
    order = np.argsort([len(e.x) for e in exs], kind="stable") if exs and isinstance(exs[0].x, str) else np.arange(len(exs))
    parts = []
    for i in range(0, len(exs), batch_size):
        idx = order[i:i + batch_size]
        batch = {k: v.to(device) for k, v in backbone.preprocess([ds.load(exs[j].x) for j in idx]).items()}
        with autocast(device, bf16):
            parts.append(fn(batch).float().cpu())
        if on_batch:
            on_batch(len(idx))
    feats = torch.cat(parts) if parts else torch.zeros(0, getattr(backbone, "dim", 0))
    inv = np.empty_like(order)
    inv[order] = np.arange(len(exs))
    return feats[torch.from_numpy(inv)]


def cache_path(key: str) -> Path:
    d = paths.cache_dir() / "features"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{key}.safetensors"


def cached_features(key: str, compute: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, bool]:
    """Return (features, hit). compute() runs only on a miss."""
    p = cache_path(key)
    if p.exists():
        try:
            return load_file(p)["features"], True
        except Exception:  # a torn or foreign file: recompute and overwrite it
            p.unlink(missing_ok=True)
    feats = compute().float().contiguous()
    fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file({"features": feats}, tmp)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return feats, False
