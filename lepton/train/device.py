"""Device and precision choice: cuda, then mps, then cpu; bf16 autocast wherever it is fast."""

from __future__ import annotations

import contextlib
import os

import psutil
import torch

from lepton.errors import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA GPU is visible here; use --device auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device=mps but Apple MPS is not available here; use --device auto or cpu")
    return torch.device(name)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # Without native bf16 instructions CPU autocast is emulated and slower than fp32.
        return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
                    or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    return False


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "fp32":
        return False
    if precision == "bf16" and not bf16_supported(device):
        raise ConfigError(f"precision=bf16 is not supported on {device.type} here; use --precision auto or fp32")
    return bf16_supported(device)


def autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def memory_mb(device: torch.device) -> dict[str, float]:
    out = {"rss_mb": psutil.Process(os.getpid()).memory_info().rss / 2**20}
    if device.type == "cuda":
        out["gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out
