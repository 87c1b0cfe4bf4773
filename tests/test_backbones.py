"""Backbones: the registry is the test matrix for the tiny models; real defaults get behaviour checks."""

from __future__ import annotations

import io
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from lepton.backbones import (BACKBONES, build_backbone, default_backbone, list_backbones, resolve_backbone)
from lepton.errors import IncompatibleError, LeptonError, ModelError, RegistryError

ROOT = Path(__file__).resolve().parents[1]
DEMO_WORDS = ROOT / "assets" / "demo" / "spoken_words.zip"


def raw_items(modality: str, seed: int = 0) -> list:
    """Variable-size raw inputs: texts of different lengths, images of different sizes/modes, clips of different rates."""
    rng = np.random.default_rng(seed)
    if modality == "text":
        return ["good", "the film was really wonderful and I loved every minute of it", "", "Zebra! 42 ünïcode?"]
    if modality == "image":
        return [Image.new("RGB", (40, 30), (200, 20, 20)), Image.new("L", (64, 64), 128),
                Image.fromarray(rng.integers(0, 255, (50, 90, 3), dtype=np.uint8)), Image.new("RGBA", (17, 33))]
    return [(0.1 * rng.standard_normal(4000).astype(np.float32), 16000),
            (0.1 * rng.standard_normal(22050).astype(np.float32), 22050),
            (0.1 * rng.standard_normal((12000, 2)).astype(np.float32), 8000),
            (np.sin(np.arange(9000) / 5).astype(np.float32) * 0.3, 16000)]


def features(bb, items) -> torch.Tensor:
    with torch.inference_mode():
        return bb.forward_features(**bb.preprocess(items))


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=-1))


# ---------------------------------------------------------------- registry
def test_registered_names_and_defaults():
    names = set(BACKBONES)
    assert {"minilm-l6", "efficientnet-lite0", "speech-embedding", "tiny-text", "tiny-image", "tiny-audio"} <= names
    assert default_backbone("text").name == "minilm-l6" and default_backbone("text").dim == 384
    assert default_backbone("image").name == "efficientnet-lite0" and default_backbone("image").dim == 1280
    assert default_backbone("audio").name == "speech-embedding" and default_backbone("audio").dim == 96
    assert default_backbone("text").recommended_adapter == "lora"
    assert default_backbone("image").recommended_adapter == "linear-probe"
    assert {s.name for s in list_backbones(tiny=True)} == {"tiny-text", "tiny-image", "tiny-audio"}
    assert all(not s.tiny for s in list_backbones(tiny=False))
    assert [s.name for s in list_backbones("audio", tiny=False)] == ["speech-embedding"]
    assert len(list_backbones()) == len(list_backbones(tiny=True)) + len(list_backbones(tiny=False))
    for s in list_backbones():
        assert s.recommended_adapter in s.supports and s.description and s.params > 0
        assert sum(x.default for x in list_backbones(s.modality)) == 1


def test_unknown_name_lists_valid_names():
    with pytest.raises(RegistryError, match="valid names: .*efficientnet-lite0.*minilm-l6.*speech-embedding"):
        resolve_backbone("nope")
    with pytest.raises(RegistryError, match="valid names"):
        build_backbone("bert-base-uncased")  # a plain name is never a hub guess
    with pytest.raises(RegistryError, match="valid modalities"):
        list_backbones("video")


def test_wrong_modality_is_refused_with_the_ones_that_fit():
    with pytest.raises(IncompatibleError, match="is for text, but the data is image; image backbones: efficientnet-lite0"):
        resolve_backbone("minilm-l6", "image")
    assert resolve_backbone("", "audio").name == "speech-embedding"


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelError, match="has no config.json, so it is not a saved Hugging Face model"):
        resolve_backbone(str(tmp_path))


def test_hub_id_fails_fast_and_clearly_when_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    spec = resolve_backbone("lepton-test/surely-not-a-model")  # resolving touches no network
    assert spec.extra["source"] == "hub"
    t0 = time.perf_counter()
    with pytest.raises(LeptonError, match="(?s)lepton-test/surely-not-a-model.*registered backbone.*local model folder"):
        spec.build()
    assert time.perf_counter() - t0 < 15  # no minute of retries against an unreachable hub


# ---------------------------------------------------------------- tiny models: the fast matrix
@pytest.mark.parametrize("spec", list_backbones(tiny=True), ids=lambda s: s.name)
def test_tiny_backbone_contract(spec):
    a = spec.build().eval()  # the first build also pays for importing transformers
    t0 = time.perf_counter()
    b = spec.build().eval()
    assert time.perf_counter() - t0 < 1
    assert a is not b and a.modality == spec.modality and a.dim == spec.dim and a.name == spec.name
    items = raw_items(spec.modality)
    batch = a.preprocess(items)
    assert all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in batch.values())
    fa, fb = features(a, items), features(b, items)
    assert fa.shape == (len(items), spec.dim) and fa.dtype == torch.float32 and torch.isfinite(fa).all()
    torch.testing.assert_close(fa, fb)  # deterministic weights, build after build
    # Padding must not leak into the pooled features: alone or in a batch, an item gets the same vector.
    for i in (0, 1):
        torch.testing.assert_close(features(a, [items[i]])[0], fa[i], atol=1e-4, rtol=1e-3)
    assert not torch.allclose(fa[0], fa[1])
    # The params the UI shows are the real ones, within rounding.
    n = sum(p.numel() for p in a.parameters())
    assert 0.5 < spec.params / n < 2


@pytest.mark.parametrize("spec", list_backbones(tiny=True), ids=lambda s: s.name)
def test_tiny_lora_targets_exist_and_train(spec):
    from peft import LoraConfig, inject_adapter_in_model

    bb = spec.build()
    targets = bb.targets("attention")
    leaves = {n.rsplit(".", 1)[-1] for n, _ in bb.named_modules()}
    assert targets and set(targets) <= leaves
    bb.requires_grad_(False)
    inject_adapter_in_model(LoraConfig(r=4, target_modules=targets), bb)
    trainable = [p for n, p in bb.named_parameters() if "lora_" in n]
    assert trainable
    for p in trainable:
        p.requires_grad_(True)
    bb.train()
    bb.forward_features(**bb.preprocess(raw_items(spec.modality))).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    assert bb.targets("no-such-kind") == []


def test_text_padding_is_dynamic_and_truncates_at_max_length():
    bb = build_backbone("tiny-text")
    assert bb.max_length == 128
    short = bb.preprocess(["a b", "c"])
    assert short["input_ids"].shape[1] == 4  # [CLS] a b [SEP]: padded to the longest, not to max_length
    bb.max_length = 8
    long = bb.preprocess(["word " * 100, "x"])
    assert long["input_ids"].shape == (2, 8) and long["attention_mask"][1].sum() == 3
    bb.max_length = 4096  # past the position embeddings (512): clamped instead of crashing
    assert features(bb, ["word " * 600]).shape == (1, 32)


@pytest.mark.parametrize("spec", list_backbones(tiny=True), ids=lambda s: s.name)
def test_encode_once_then_collate_is_preprocess(spec):
    """The loop encodes each example once and builds every later batch from the kept encodings."""
    bb = spec.build()
    items = raw_items(spec.modality)
    kept = bb.encode(items)
    assert len(kept) == len(items)
    for subset in ([0, 1, 2, 3], [2, 0], [1]):
        got, want = bb.collate([kept[i] for i in subset]), bb.preprocess([items[i] for i in subset])
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


@pytest.mark.parametrize("side", ["right", "left"])
def test_text_collate_pads_exactly_like_the_tokenizer(side):
    bb = build_backbone("tiny-text")
    bb.tokenizer.padding_side = side
    texts = raw_items("text") + ["word " * 300]
    want = bb.tokenizer(texts, padding=True, truncation=True, max_length=bb._max_tokens(), return_tensors="pt")
    got = bb.collate(bb.encode(texts))
    assert set(got) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(torch.equal(got[k], want[k]) for k in got)


# ---------------------------------------------------------------- Hugging Face folders
def _save_text(folder: Path) -> None:
    from transformers import BertConfig, BertModel

    tiny = build_backbone("tiny-text")
    BertModel(BertConfig(vocab_size=len(tiny.tokenizer), hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)


def _save_vit(folder: Path) -> None:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32)).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


def _save_convnext(folder: Path) -> None:
    from transformers import ConvNextConfig, ConvNextImageProcessor, ConvNextModel

    ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)).save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(folder)


def _save_hubert(folder: Path) -> None:
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    HubertModel(HubertConfig(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                             conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8,
                             num_conv_pos_embedding_groups=2)).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=False).save_pretrained(folder)


def _save_whisper(folder: Path) -> None:
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    # A 2 s window: 200 mel frames -> 100 encoder positions.
    WhisperModel(WhisperConfig(d_model=24, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                               decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=64,
                               max_source_positions=100, max_target_positions=16, pad_token_id=0, bos_token_id=1,
                               eos_token_id=2, decoder_start_token_id=1)).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80, chunk_length=2).save_pretrained(folder)


@pytest.mark.parametrize("save, modality, dim, lora", [
    (_save_text, "text", 24, ["query", "value"]),
    (_save_vit, "image", 24, ["q_proj", "v_proj"]),  # transformers 5 names ViT's projections q_proj/v_proj
    (_save_convnext, "image", 16, None),
    (_save_hubert, "audio", 24, ["q_proj", "v_proj"]),
    (_save_whisper, "audio", 24, ["q_proj", "v_proj"]),
], ids=["bert", "vit", "convnext", "hubert", "whisper-encoder"])
def test_local_hf_folder(tmp_path, save, modality, dim, lora):
    torch.manual_seed(0)
    folder = tmp_path / "model"
    save(folder)
    spec = resolve_backbone(str(folder))  # modality detected from the folder's files
    assert (spec.modality, spec.dim, spec.extra["source"]) == (modality, dim, "folder") and spec.params > 0
    bb = spec.build().eval()
    assert bb.name == str(folder) and bb.dim == dim
    items = raw_items(modality)
    f = features(bb, items)
    assert f.shape == (len(items), dim) and f.dtype == torch.float32 and torch.isfinite(f).all()
    if modality != "image":  # padded text/audio: alone == in a batch
        torch.testing.assert_close(features(bb, [items[0]])[0], f[0], atol=1e-4, rtol=1e-3)
    targets = bb.targets("attention")
    if lora:
        assert targets == lora
    else:  # no attention: every Linear (ConvNeXt's pointwise layers)
        assert targets and {"pwconv1", "pwconv2"} <= set(targets)
    with pytest.raises(IncompatibleError, match="is for"):
        resolve_backbone(str(folder), "text" if modality != "text" else "audio")


# ---------------------------------------------------------------- real offline defaults
@pytest.mark.integration
def test_minilm_paraphrases_are_closer_and_lora_count():
    from peft import LoraConfig, inject_adapter_in_model

    bb = build_backbone("minilm-l6").eval()
    f = features(bb, ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."])
    assert f.shape == (3, 384)
    assert cos(f[0], f[1]) > 0.6 and cos(f[0], f[1]) > cos(f[0], f[2]) + 0.3
    bb.requires_grad_(False)
    inject_adapter_in_model(LoraConfig(r=8, target_modules=bb.targets("attention")), bb)
    assert sum(p.numel() for n, p in bb.named_parameters() if "lora_" in n) == 73_728


@pytest.mark.integration
def test_efficientnet_same_picture_is_closer_than_another_picture():
    from sklearn.datasets import load_sample_images

    china, flower = (Image.fromarray(im) for im in load_sample_images().images)
    bb = build_backbone("efficientnet-lite0").eval()
    moved = flower.transpose(Image.FLIP_LEFT_RIGHT).crop((40, 20, 600, 420))  # mirrored, cropped
    f = features(bb, [flower, moved, china])
    assert f.shape == (3, 1280) and torch.isfinite(f).all()
    assert cos(f[0], f[1]) > cos(f[0], f[2]) + 0.2
    # LoRA on the pointwise convs: peft must be able to build its layers there, and gradients must flow.
    from peft import LoraConfig, inject_adapter_in_model

    bb.requires_grad_(False)
    inject_adapter_in_model(LoraConfig(r=8, target_modules=bb.targets("attention")), bb)
    lora = [p for n, p in bb.named_parameters() if "lora_" in n]
    assert sum(p.numel() for p in lora) == 182_272
    for p in lora:
        p.requires_grad_(True)
    bb.train().forward_features(**bb.preprocess([flower, china])).sum().backward()
    assert all(p.grad is not None for p in lora)


def _spoken_words(tmp_path: Path) -> dict[str, list]:
    """word -> [(wave, sr)] from the shipped demo, else from espeak-ng (a few voices each)."""
    import soundfile as sf

    out: dict[str, list] = {}
    if DEMO_WORDS.exists():
        with zipfile.ZipFile(DEMO_WORDS) as z:
            for n in sorted(z.namelist()):
                word = Path(n).parent.name
                if word in ("yes", "left", "stop") and len(out.setdefault(word, [])) < 8 and not n.endswith("/"):
                    wave, sr = sf.read(io.BytesIO(z.read(n)), dtype="float32")
                    out[word].append((wave, sr))
        return out
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs assets/demo/spoken_words.zip or espeak-ng")
    for word in ("yes", "left", "stop"):
        for v in ("en-us+m1", "en-gb+f2", "en+m3", "en-gb-scotland+f1", "en-us+m5", "en+f3"):
            raw = subprocess.run(["espeak-ng", "-v", v, "--stdout", word], check=True, capture_output=True).stdout
            out.setdefault(word, []).append(sf.read(io.BytesIO(raw), dtype="float32"))
    return out


@pytest.mark.integration
def test_speech_embedding_same_word_is_closer_than_another_word(tmp_path):
    words = _spoken_words(tmp_path)
    bb = build_backbone("speech-embedding")
    assert not bb.trainable and bb.dim == 96
    feats = {w: features(bb, clips) for w, clips in words.items()}
    assert all(f.shape[1] == 96 and torch.isfinite(f).all() for f in feats.values())
    # Leave-one-out nearest centroid (cosine) on standardised features: same word beats other words.
    allf = torch.cat(list(feats.values()))
    mu, sd = allf.mean(0), allf.std(0) + 1e-6
    correct = total = 0
    for w, f in feats.items():
        for i in range(len(f)):
            x = (f[i] - mu) / sd
            scores = {}
            for w2, f2 in feats.items():
                rest = torch.cat([f2[:i], f2[i + 1:]]) if w2 == w else f2
                scores[w2] = cos(x, ((rest - mu) / sd).mean(0))
            correct += max(scores, key=scores.get) == w
            total += 1
    assert correct / total >= 0.8, f"{correct}/{total}"


def test_speech_embedding_refuses_training_adapters_and_names_what_works():
    bb = build_backbone("speech-embedding")
    spec = resolve_backbone("speech-embedding")
    from lepton.adapters import get_adapter
    from lepton.heads import classification_head

    assert spec.supports == ("linear-probe",)
    for adapter in ("lora", "full", "houlsby"):
        with pytest.raises(IncompatibleError, match=f"cannot be trained .*'{adapter}' adapter cannot wrap it; use one "
                                                    "of: linear-probe"):
            get_adapter(adapter).wrap(bb, classification_head(bb.dim, 2))
    # Crops/pads consistently: a 0.3 s and a 5 s clip at 44.1 kHz both become one 2 s window at 16 kHz.
    rng = np.random.default_rng(0)
    batch = bb.preprocess([(rng.standard_normal(4410).astype(np.float32) * 0.1, 44100),
                           (rng.standard_normal(220500).astype(np.float32) * 0.1, 44100)])
    assert batch["input_values"].shape == (2, 32000)
    f = bb.forward_features(**batch)
    assert f.shape == (2, 96) and torch.isfinite(f).all()
    import copy
    import pickle

    torch.testing.assert_close(copy.deepcopy(bb).forward_features(**batch), f)  # onnx sessions rebuild lazily
    assert pickle.loads(pickle.dumps(bb)).dim == 96


def test_image_items_of_any_mode_and_size_become_one_tensor():
    pics = raw_items("image") + [Image.new("RGB", (1000, 10), "blue")]
    img = ImageDraw.Draw(pics[0])
    img.line((0, 0, 39, 29), fill="white")
    bb = build_backbone("efficientnet-lite0")
    x = bb.preprocess(pics)["pixel_values"]
    assert x.shape == (5, 3, 224, 224) and x.dtype == torch.float32
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0  # (pixel - 127) / 128
