from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lepton.adapters.base import ADAPTERS, Adapter, Classifier
from lepton.backbones.base import Backbone
from lepton.config import StrictConfig, opt
from lepton.errors import IncompatibleError


@dataclass
class PromptOptions(StrictConfig):
    length: int = opt(20, "Number of soft prompt tokens prepended to every input", min=1, max=512, search=(10, 20))


class SoftPrompt(nn.Module):
    """Trainable input embeddings placed before the text's own; the backbone slices them off before pooling.

    Initialised from embeddings of sampled vocabulary tokens (Lester et al., 2021): peft's PromptEmbedding
    offers N(0, 1), far off the scale of a BERT embedding table, or text init, which loads a tokenizer by hub name."""

    def __init__(self, embeddings: nn.Embedding, length: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, embeddings.num_embeddings, (length,), generator=g)
        self.tokens = nn.Parameter(embeddings.weight[ids].detach().clone())  # (P, hidden)

    def forward(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
        ids = inputs.pop("input_ids")
        n, p = ids.shape[0], self.tokens.shape[0]
        embeds = model.get_input_embeddings()(ids)
        inputs["inputs_embeds"] = torch.cat([self.tokens.to(embeds.dtype).expand(n, -1, -1), embeds], 1)
        for key, fill in (("attention_mask", 1), ("token_type_ids", 0)):
            if key in inputs:
                inputs[key] = torch.cat([torch.full((n, p), fill, dtype=inputs[key].dtype, device=ids.device), inputs[key]], 1)
        return inputs, p


@ADAPTERS.register("prompt")
class PromptTuning(Adapter):
    name = "prompt"
    description = "Soft prompt tuning: a few trainable token embeddings prepended to every text (Lester et al., 2021)"
    when = "the fewest parameters for text; competitive only on large backbones, and needs a high learning rate"
    Options = PromptOptions
    modalities = ("text",)
    identity_at_init = False  # extra positions to attend to change every token's features from the start
    archs = ("transformer",)
    default_lr = 3e-2
    lr_range = (3e-3, 1e-1)

    def check(self, backbone: Backbone) -> None:
        self.require_trainable(backbone)
        model = getattr(backbone, "model", None)
        if not hasattr(backbone, "prompt") or model is None or not hasattr(model, "get_input_embeddings"):
            raise IncompatibleError(f"the '{self.name}' adapter needs a Hugging Face text model that takes input "
                                    f"embeddings; backbone '{backbone.name}' is not one: use 'lora' or 'full'")

    def wrap(self, backbone: Backbone, head: nn.Module) -> Classifier:
        self.check(backbone)
        backbone.requires_grad_(False)
        kept, fresh = backbone.prompt, self.module(backbone)
        if kept is not None and type(kept) is not type(fresh):
            raise IncompatibleError(f"backbone '{backbone.name}' already carries a {type(kept).__name__} from the run it "
                                    f"continues; the '{self.name}' adapter would replace it: continue with the same "
                                    "adapter, or start from the pretrained backbone")
        if kept is None:
            backbone.prompt = fresh
        backbone.prompt.requires_grad_(True)  # a warm start's own prompt trains on
        return Classifier(backbone, head)

    def module(self, backbone: Any) -> nn.Module:
        return SoftPrompt(backbone.model.get_input_embeddings(), self.options.length)
