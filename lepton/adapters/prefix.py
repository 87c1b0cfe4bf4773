from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lepton.adapters.base import ADAPTERS
from lepton.adapters.prompt import PromptTuning
from lepton.backbones.base import Backbone
from lepton.config import StrictConfig, opt
from lepton.errors import IncompatibleError


@dataclass
class PrefixOptions(StrictConfig):
    length: int = opt(10, "Number of trainable key/value prefix positions in every attention layer", min=1, max=512,
                      search=(5, 10, 20))


class Prefix(nn.Module):
    """peft's PrefixEncoder (an embedding of layers x 2 x hidden per prefix position) fed to the encoder as a
    pre-filled key/value cache, so every attention layer also attends to the prefix.

    The text's position ids are passed explicitly from 0: a cache of length P would otherwise start them at P."""

    def __init__(self, config: Any, length: int):
        super().__init__()
        from peft import PrefixTuningConfig
        from peft.tuners.prefix_tuning import PrefixEncoder

        self.layers, self.heads = config.num_hidden_layers, config.num_attention_heads
        self.config = config
        cfg = PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=length, num_layers=self.layers,
                                 token_dim=config.hidden_size, num_attention_heads=self.heads)
        self.encoder = PrefixEncoder(cfg)
        nn.init.normal_(self.encoder.embedding.weight, std=0.02)  # peft's N(0, 1) swamps the layers' own keys at first
        self.length = length

    def forward(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
        from transformers import DynamicCache

        mask = inputs["attention_mask"]
        n, t = mask.shape
        kv = self.encoder(torch.arange(self.length, device=mask.device).expand(n, -1))  # (N, P, layers*2*hidden)
        kv = kv.view(n, self.length, self.layers * 2, self.heads, -1).permute(2, 0, 3, 1, 4)  # (2L, N, heads, P, d)
        cache = DynamicCache(config=self.config)
        for layer in range(self.layers):
            cache.update(kv[2 * layer], kv[2 * layer + 1], layer)
        inputs["cache"] = cache
        inputs["attention_mask"] = torch.cat([torch.ones(n, self.length, dtype=mask.dtype, device=mask.device), mask], 1)
        inputs["position_ids"] = torch.arange(t, device=mask.device).expand(n, -1)
        return inputs, 0


@ADAPTERS.register("prefix")
class PrefixTuning(PromptTuning):
    name = "prefix"
    description = ("Prefix tuning: trainable key/value prefixes in every attention layer (Li & Liang, 2021; "
                   "peft's PrefixEncoder as the encoder's key/value cache)")
    when = "deeper than prompt tuning at a similar size; text encoders that take a key/value cache (BERT family)"
    Options = PrefixOptions
    default_lr = 1e-2
    lr_range = (1e-3, 5e-2)

    def check(self, backbone: Backbone) -> None:
        super().check(backbone)
        params = inspect.signature(backbone.model.forward).parameters
        if "cache" not in params or not hasattr(backbone.model.config, "num_hidden_layers"):
            raise IncompatibleError(f"the '{self.name}' adapter needs an encoder that takes a key/value cache; "
                                    f"backbone '{backbone.name}' does not: use 'prompt', 'lora' or 'full'")

    def module(self, backbone: Any) -> nn.Module:
        return Prefix(backbone.model.config, self.options.length)
