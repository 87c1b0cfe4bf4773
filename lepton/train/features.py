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

import torch
from safetensors.torch import load_file, save_file

from lepton import paths

VERSION = 1  # bump when feature extraction changes in a way the key cannot see


def cache_key(backbone_id: dict[str, Any], content_hash: str, split: str, preprocessing: dict[str, Any]) -> str:
    blob = json.dumps({"v": VERSION, "backbone": backbone_id, "data": content_hash, "split": split,
                       "pre": preprocessing}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


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
