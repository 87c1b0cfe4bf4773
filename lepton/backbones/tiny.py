"""Tiny random transformers models for fast tests: built from small configs, offline, in milliseconds.

Each loader seeds torch itself, so every build has the same weights (tests and resumed runs agree).
They learn simple toy tasks when trained (full or LoRA) but know nothing beforehand.
"""

from __future__ import annotations

import string

import torch

from lepton.backbones.base import BACKBONES, BackboneSpec
from lepton.backbones.hf import HFAudio, HFText, HFVision, quiet_transformers

DIM = 32
SEED = 0

_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Common words become single tokens; anything else falls back to characters (WordPiece ## pieces).
_WORDS = """
the a an and or but not no yes is are was be it this that i you he she we they me my your good bad great
terrible awful excellent love hate like movie film book food great nice poor best worst happy sad angry
very really so too more less up down left right stop go on off in out of to for with from at by what who
wonderful lovely superb fantastic delightful brilliant horrible dreadful disappointing miserable
film meal trip service concert hotel game sport politics science music weather
""".split()


def _vocab() -> dict[str, int]:
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens = _SPECIALS + chars + ["##" + c for c in string.ascii_lowercase + string.digits] + _WORDS
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}


def _tiny_text() -> HFText:
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = _vocab()
    config = BertConfig(vocab_size=len(vocab), hidden_size=DIM, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    torch.manual_seed(SEED)
    with quiet_transformers():
        model = BertModel(config, add_pooling_layer=False).eval()
        tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    return HFText(model, tokenizer, DIM)  # LoRA targets: found in the model (lora_targets)


def _tiny_image() -> HFVision:
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=DIM, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64)
    torch.manual_seed(SEED)
    with quiet_transformers():
        from transformers import ViTImageProcessor

        processor = ViTImageProcessor(size={"height": 32, "width": 32})
        model = ViTModel(config, add_pooling_layer=False).eval()
    return HFVision(model, processor, DIM, use_pooler=False)


def _tiny_audio() -> HFAudio:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    # Three conv layers with stride 5*4*4 = 80 samples (5 ms frames at 16 kHz); layer-norm variant takes masks.
    config = Wav2Vec2Config(hidden_size=DIM, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            feat_extract_norm="layer", do_stable_layer_norm=True, apply_spec_augment=False,
                            layerdrop=0.0)  # no random skipping of its 2 layers: tests see every layer train
    torch.manual_seed(SEED)
    with quiet_transformers():
        model = Wav2Vec2Model(config).eval()
        extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                             do_normalize=True, return_attention_mask=True)
    return HFAudio(model, extractor, DIM, max_seconds=4.0)


BACKBONES.add("tiny-text", BackboneSpec(
    name="tiny-text", modality="text", dim=DIM, params=39_936, tiny=True, loader=_tiny_text,
    recommended_adapter="lora", description="Tiny random BERT (2 layers, 32-d, small WordPiece vocab) for tests"))
BACKBONES.add("tiny-image", BackboneSpec(
    name="tiny-image", modality="image", dim=DIM, params=23_904, tiny=True, loader=_tiny_image,
    recommended_adapter="linear-probe", description="Tiny random ViT (32x32 input, 8x8 patches, 2 layers, 32-d) for tests"))
BACKBONES.add("tiny-audio", BackboneSpec(
    name="tiny-audio", modality="audio", dim=DIM, params=43_440, tiny=True, loader=_tiny_audio,
    recommended_adapter="linear-probe", description="Tiny random wav2vec2 (16 kHz, 2 layers, 32-d) for tests"))
