"""Any Hugging Face model as a backbone: a hub id (`org/name`) or a local folder with a config.json.

Three wrappers share the transformers plumbing and differ in preprocessing and pooling:
- HFText: AutoTokenizer, dynamic padding, attention-masked mean pooling (what sentence-transformers does);
- HFVision: AutoImageProcessor, pooler_output when the checkpoint trained one, else mean over tokens/space;
- HFAudio: AutoFeatureExtractor at the model's rate, masked mean over output frames (Whisper: its encoder only).
The registered MiniLM and tiny models reuse them. transformers is imported lazily: listing backbones stays fast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import numpy as np
import torch
from torch import nn

from lepton.backbones.base import BACKBONES, Backbone, BackboneSpec
from lepton.backbones.model_folder import PICKLE_SUFFIXES, TOKENIZER_FILES, check_model_folder, check_preprocessing
from lepton.errors import LeptonError, ModelError

# model_type -> modality for folders whose files alone do not say it (e.g. a bare config + weights).
_VISION_TYPES = {
    "vit", "deit", "beit", "dinov2", "dinov2_with_registers", "dinov3_vit", "convnext", "convnextv2", "resnet",
    "swin", "swinv2", "efficientnet", "mobilenet_v1", "mobilenet_v2", "mobilevit", "mobilevitv2", "regnet",
    "levit", "poolformer", "pvt", "pvt_v2", "focalnet", "hiera", "data2vec-vision", "bit", "dit", "vit_msn",
    "vit_mae", "clip_vision_model", "siglip_vision_model", "siglip2_vision_model", "timm_wrapper", "hgnet_v2",
}
_CNN_TYPES = {"resnet", "convnext", "convnextv2", "efficientnet", "mobilenet_v1", "mobilenet_v2", "regnet", "bit",
              "poolformer", "hgnet_v2"}
_AUDIO_TYPES = {
    "wav2vec2", "wav2vec2-conformer", "wav2vec2-bert", "hubert", "wavlm", "whisper", "audio-spectrogram-transformer",
    "data2vec-audio", "unispeech", "unispeech-sat", "sew", "sew-d", "clap_audio_model", "speech_to_text",
    "moonshine", "encodec", "mimi",
}
# Attention projections peft's LoRA usually targets, most specific first (q and v, as in the LoRA paper).
_LORA_PAIRS = [
    ("query", "value"),  # BERT, RoBERTa, ViT, DeiT, DINOv2, Swin, AST
    ("q_proj", "v_proj"),  # wav2vec2, HuBERT, WavLM, Whisper, CLIP, SigLIP, BART, Llama
    ("q_lin", "v_lin"),  # DistilBERT
    ("q", "v"),  # T5
    ("query_proj", "value_proj"),  # DeBERTa-v2/v3
    ("qkv",),  # fused projections (timm-style ViTs, some DINO variants)
    ("query_key_value",),  # BLOOM, Falcon, GPT-NeoX
    ("c_attn",),  # GPT-2 (transformers Conv1D, which peft supports)
    ("Wqkv",),  # ModernBERT
]


# ---------------------------------------------------------------- helpers shared by all families
@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence load reports, progress bars and backend warnings while building a model (the loop logs via emit)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def waveforms(items: list[Any], rate: int) -> list[np.ndarray]:
    """[(float32 wave, sample_rate), …] -> mono float32 numpy waves at `rate` (stereo is averaged)."""
    import torchaudio

    out = []
    for i, item in enumerate(items):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise LeptonError(f"audio item {i}: expected (waveform, sample_rate), got {type(item).__name__}")
        wave, sr = item
        w = torch.as_tensor(np.asarray(wave), dtype=torch.float32)
        if w.ndim == 2:  # (samples, channels) as soundfile reads it, or (channels, samples)
            w = w.mean(dim=1 if w.shape[0] > w.shape[1] else 0)
        w = w.reshape(-1)
        if int(sr) != rate and w.numel():
            w = torchaudio.functional.resample(w, int(sr), rate)
        out.append(w.numpy())
    return out


def rgb(items: list[Any]) -> list[Any]:
    from PIL import Image

    out = []
    for i, im in enumerate(items):
        if not isinstance(im, Image.Image):
            raise LeptonError(f"image item {i}: expected a PIL image, got {type(im).__name__}")
        out.append(im if im.mode == "RGB" else im.convert("RGB"))
    return out


def _linear_like(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return type(module).__name__ == "Conv1D"  # transformers.pytorch_utils.Conv1D (GPT-2)


def lora_targets(model: nn.Module) -> list[str]:
    """Module-name suffixes for peft's LoraConfig(target_modules=...): known q/v projections, else every Linear."""
    leaves = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if name and _linear_like(m)}
    for pair in _LORA_PAIRS:
        if all(p in leaves for p in pair):
            return list(pair)
    if leaves:
        return sorted(leaves)
    convs = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if name and isinstance(m, nn.Conv2d) and m.groups == 1}
    return sorted(convs)


class HFBackbone(Backbone):
    """Shared parts: where adapters go. Subclasses set modality and implement preprocess/forward_features."""

    def __init__(self, model: nn.Module, dim: int, lora: list[str] | None = None):
        super().__init__()
        self.model = model
        self.dim = int(dim)
        self._lora = lora

    def targets(self, kind: str) -> list[str]:
        leaves = {name for name, m in self.model.named_modules() if name and _linear_like(m)}
        if kind == "attention":
            return list(self._lora) if self._lora else lora_targets(self.model)
        if kind == "houlsby":
            return _first_pair(leaves, _HOULSBY_PAIRS)
        if kind in ("ia3", "ia3-feedforward"):
            from peft.utils.constants import (TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FF,
                                              TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TARGETS)

            # peft's own per-architecture choice (keys, values and the feed-forward output), else the same found by
            # name: the key and value projections, and the feed-forward output (IA3 scales its input activations).
            model_type = getattr(getattr(self.model, "config", None), "model_type", "")
            found = [t for t in TARGETS.get(model_type, []) if any(n.endswith(t) for n in leaves)]
            if found:
                return [t for t in FF.get(model_type, []) if t in found] if kind == "ia3-feedforward" else found
            ff = self.targets("houlsby")[1:]
            if kind == "ia3-feedforward":
                return ff
            return (_first_pair(leaves, [("key", "value"), ("k_proj", "v_proj"), ("k_lin", "v_lin")])
                    or self.targets("attention")) + ff
        return []


def _saved(folder: Path, save: Any) -> list[str]:
    """Files a transformers save_pretrained call added to the folder."""
    before = {p.name for p in Path(folder).iterdir()}
    save(str(folder))
    return sorted({p.name for p in Path(folder).iterdir()} - before)


def _first_pair(leaves: set[str], pairs: list[tuple[str, ...]]) -> list[str]:
    for pair in pairs:
        if all(any(n == p or n.endswith("." + p) for n in leaves) for p in pair):
            return list(pair)
    return []


# Where Houlsby et al. put their bottlenecks: after the attention output projection and after the feed-forward
# output projection, before each residual sum and LayerNorm.
_HOULSBY_PAIRS = [
    ("attention.output.dense", "output.dense"),  # BERT, RoBERTa, MiniLM, ViT, DeiT, DINOv2
    ("attention.o_proj", "mlp.fc2"),  # ViT in transformers 5
    ("attention.out_proj", "feed_forward.output_dense"),  # wav2vec2, HuBERT, WavLM
    ("self_attn.out_proj", "fc2"),  # Whisper, CLIP, SigLIP, BART
    ("attention.out_lin", "ffn.lin2"),  # DistilBERT
    ("o_proj", "down_proj"),  # Llama-style
]


# ---------------------------------------------------------------- text
# Measured on 2 CPU cores (MiniLM, batch 32, bf16, forward+backward): without attention dropout SDPA takes
# its CPU flash kernel, whose backward is 25-40 % slower than eager attention up to 128 tokens; with dropout
# (MiniLM trains with 0.1) SDPA falls back to plain math and eager is still ~5 % faster. Inference is even,
# and by 256 tokens SDPA wins. So short CPU batches that will be backpropagated use eager attention.
EAGER_TRAIN_MAX_TOKENS = 128


class HFText(HFBackbone):
    modality = "text"

    def __init__(self, model: nn.Module, tokenizer: Any, dim: int, lora: list[str] | None = None, max_length: int = 128):
        super().__init__(model, dim, lora)
        self.tokenizer = tokenizer
        self.max_length = max_length  # the loop may set it from RunConfig.max_length
        # Prompt and prefix tuning set a module here that extends the model's inputs (soft tokens, a key/value
        # prefix) and says how many leading positions to drop before pooling.
        self.prompt: nn.Module | None = None
        import inspect

        params = inspect.signature(model.forward).parameters
        self._accepts = {k for k in ("input_ids", "attention_mask", "token_type_ids") if k in params}
        if "input_ids" not in self._accepts:  # forward(**kwargs): pass the two every text model takes
            self._accepts = {"input_ids", "attention_mask"}
        if getattr(tokenizer, "pad_token", None) is None:  # GPT-style tokenizers: padding is masked out anyway
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        config = getattr(model, "config", None)
        self._attention = getattr(config, "_attn_implementation", None)  # the model's own choice, kept for inference
        self._can_switch = self._attention == "sdpa" and bool(getattr(model, "_can_set_attn_implementation", lambda: False)())

    def preprocess(self, items: list[str]) -> dict[str, torch.Tensor]:
        return self.collate(self.encode(items))

    def encode(self, items: list[str]) -> list[dict[str, np.ndarray]]:
        """Token ids per text, truncated to max_length and not padded (int32: a million tokens take 4 MB per key)."""
        texts = ["" if t is None else str(t) for t in items]
        enc = self.tokenizer(texts, truncation=True, max_length=self._max_tokens())
        keys = [k for k in enc.keys() if k in self._accepts or k == "attention_mask"]
        return [{k: np.asarray(enc[k][i], dtype=np.int32) for k in keys} for i in range(len(texts))]

    def collate(self, encoded: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        # Dynamic padding: pad to the longest text in this batch, never to max_length (what tokenizer.pad does).
        width = max((len(e["input_ids"]) for e in encoded), default=0)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        fill = {"input_ids": self.tokenizer.pad_token_id, "token_type_ids": getattr(self.tokenizer, "pad_token_type_id", 0)}
        batch = {}
        for k in encoded[0] if encoded else ("input_ids", "attention_mask"):
            out = np.full((len(encoded), width), fill.get(k) or 0, dtype=np.int64)  # (N, T)
            for i, e in enumerate(encoded):
                n = len(e[k])
                out[i, slice(width - n, width) if left else slice(0, n)] = e[k]
            batch[k] = torch.from_numpy(out)
        return batch

    def _max_tokens(self) -> int:
        """max_length, but never past what the model's position embeddings allow (MiniLM: 512)."""
        limits = [int(self.max_length)]
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and tok_max < 1_000_000:  # "unset" is a huge sentinel
            limits.append(tok_max)
        pos = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        if isinstance(pos, int) and pos > 0:
            limits.append(pos)
        return min(limits)

    def forward_features(self, **batch: torch.Tensor) -> torch.Tensor:
        mask = batch["attention_mask"]
        if self._can_switch:  # see EAGER_TRAIN_MAX_TOKENS; switching costs ~0.1 ms and happens per phase, not per step
            short_cpu_backward = (torch.is_grad_enabled() and mask.device.type == "cpu"
                                  and mask.shape[1] <= EAGER_TRAIN_MAX_TOKENS)
            want = "eager" if short_cpu_backward else self._attention
            if self.model.config._attn_implementation != want:
                self.model.set_attn_implementation(want)
        inputs = {k: v for k, v in batch.items() if k in self._accepts}
        strip = 0
        if self.prompt is not None:
            inputs, strip = self.prompt(self.model, inputs)
        hidden = self.model(**inputs).last_hidden_state[:, strip:]  # (N, T, dim)
        m = mask.unsqueeze(-1).to(torch.float32)
        return (hidden.float() * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (N, dim)

    def collate_key(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["input_ids"].shape[1])

    def save_preprocessing(self, folder: Any) -> list[str]:
        files = _saved(folder, self.tokenizer.save_pretrained)
        tok = Path(folder) / "tokenizer.json"
        if tok.is_file():  # MiniLM's tokenizer.json pads every input to 128: pad to the batch's longest instead
            doc = json.loads(tok.read_text("utf-8"))
            if doc.get("padding"):
                doc["padding"]["strategy"] = "BatchLongest"
            doc["truncation"] = {"direction": "Right", "max_length": self._max_tokens(), "strategy": "LongestFirst", "stride": 0}
            tok.write_text(json.dumps(doc, ensure_ascii=False))
        return files


# ---------------------------------------------------------------- vision
class HFVision(HFBackbone):
    modality = "image"

    def __init__(self, model: nn.Module, processor: Any, dim: int, lora: list[str] | None = None, use_pooler: bool = True):
        super().__init__(model, dim, lora)
        self.processor = processor
        self.use_pooler = use_pooler  # False when the checkpoint has no trained pooler (random init is useless)

    def preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        kwargs: dict[str, Any] = {}
        if self.image_size:  # RunConfig.image_size: the processor resizes (and crops) to this side instead
            kwargs["size"] = {"height": self.image_size, "width": self.image_size}
            if getattr(self.processor, "do_center_crop", False):
                kwargs["crop_size"] = kwargs["size"]
        out = self.processor(images=rgb(items), return_tensors="pt", **kwargs)
        return {"pixel_values": out["pixel_values"]}

    def encode(self, items: list[Any]) -> list[torch.Tensor]:
        return list(self.preprocess(items)["pixel_values"])  # decoded, resized, normalised: (3, H, W) each

    def augment(self, encoded: list[torch.Tensor], rng: np.random.Generator, flip: bool) -> list[torch.Tensor]:
        from lepton.data.augment import augment_chw

        return [augment_chw(e, rng, flip) for e in encoded]

    def collate(self, encoded: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.stack(encoded)}

    def save_preprocessing(self, folder: Any) -> list[str]:
        return _saved(folder, self.processor.save_pretrained)

    def forward_features(self, pixel_values: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        import inspect

        kwargs = {}
        if self.image_size and "interpolate_pos_encoding" in inspect.signature(self.model.forward).parameters:
            kwargs["interpolate_pos_encoding"] = True  # ViTs: position embeddings resized to the new grid
        out = self.model(pixel_values=pixel_values, **kwargs)
        pooled = getattr(out, "pooler_output", None) if self.use_pooler else None
        if pooled is not None:
            return pooled.float().flatten(1)  # ResNet: (N, C, 1, 1) -> (N, C)
        h = out.last_hidden_state
        if h.ndim == 4:  # conv nets: (N, C, H, W)
            return h.float().mean((2, 3))
        return h.float().mean(1)  # transformers: (N, tokens, dim)


# ---------------------------------------------------------------- audio
class HFAudio(HFBackbone):
    """kind: "wave" (wav2vec2, HuBERT, WavLM: raw samples, padded to the longest clip, masked mean over frames),
    "whisper" (its encoder on 80-mel features padded to a fixed window, mean over the frames that hold audio),
    "spectrogram" (AST and similar: fixed-size spectrogram, pooler_output when there is one)."""

    modality = "audio"

    def __init__(self, model: nn.Module, extractor: Any, dim: int, lora: list[str] | None = None,
                 kind: str = "wave", max_seconds: float = 10.0):
        super().__init__(model, dim, lora)
        self.extractor = extractor
        self.kind = kind
        self.sample_rate = int(getattr(extractor, "sampling_rate", 16000))
        self.max_seconds = max_seconds  # longer clips are cropped (bounds memory); whisper/AST fix their own length
        self.input_name = (getattr(extractor, "model_input_names", None) or ["input_values"])[0]

    def preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        return self.collate(self.encode(items))

    def encode(self, items: list[Any]) -> list[np.ndarray]:
        """Mono float32 waves at the model's rate, cropped to max_seconds (the decoding and resampling work)."""
        limit = int(self.max_seconds * self.sample_rate)
        return [w[:limit] if len(w) else np.zeros(self.sample_rate // 10, np.float32)
                for w in waveforms(items, self.sample_rate)]

    def save_preprocessing(self, folder: Any) -> list[str]:
        return _saved(folder, self.extractor.save_pretrained)

    def augment(self, encoded: list[np.ndarray], rng: np.random.Generator, flip: bool) -> list[np.ndarray]:
        from lepton.data.augment import augment_wave

        return [augment_wave(w, rng) for w in encoded]

    def augment_batch(self, batch: dict[str, torch.Tensor], rng: np.random.Generator) -> dict[str, torch.Tensor]:
        # Spectrogram inputs (Whisper, AST) get SpecAugment here; wave models (wav2vec2, HuBERT) mask their
        # own hidden states in train mode (config.mask_time_prob), as they were pretrained to.
        if self.kind in ("whisper", "spectrogram"):
            from lepton.data.augment import spec_augment

            x = batch[self.input_name]  # whisper: (N, mels, frames); AST: (N, frames, mels)
            batch[self.input_name] = spec_augment(x if self.kind == "whisper" else x.transpose(1, 2), rng)
            if self.kind == "spectrogram":
                batch[self.input_name] = batch[self.input_name].transpose(1, 2)
        return batch

    def collate(self, waves: list[np.ndarray]) -> dict[str, torch.Tensor]:
        kwargs: dict[str, Any] = {"sampling_rate": self.sample_rate, "return_tensors": "pt"}
        if self.kind == "whisper":
            kwargs["return_attention_mask"] = True  # per mel frame: which frames hold audio, not padding
        elif self.kind == "wave":
            kwargs.update(padding=True, return_attention_mask=True)  # pad to the longest clip in the batch
        out = self.extractor(waves, **kwargs)
        batch = {self.input_name: out[self.input_name]}
        if self.kind == "whisper" and "attention_mask" in out:
            batch["frame_mask"] = out["attention_mask"]  # (N, mel frames)
        elif self.kind == "wave":
            batch["attention_mask"] = out["attention_mask"]  # (N, samples)
            batch["audio_lengths"] = torch.tensor([len(w) for w in waves], dtype=torch.long)
        return batch

    def forward_features(self, **batch: torch.Tensor) -> torch.Tensor:
        group_norm = getattr(self.model.config, "feat_extract_norm", "layer") == "group"
        lengths = batch.get("audio_lengths")
        if group_norm and lengths is not None and len(lengths) > 1 and bool((lengths != lengths[0]).any()):
            # Group-norm feature encoders (wav2vec2-base, HuBERT-base) normalise over time, padding included, and take
            # no mask (HF docs): run clips of different lengths one by one so padding cannot change the features.
            x = batch[self.input_name]
            return torch.cat([self.forward_features(**{self.input_name: x[i:i + 1, : int(n)], "audio_lengths": lengths[i:i + 1]})
                              for i, n in enumerate(lengths.tolist())])
        kwargs = {self.input_name: batch[self.input_name]}
        if "attention_mask" in batch and not group_norm:
            kwargs["attention_mask"] = batch["attention_mask"]
        out = self.model(**kwargs)
        if self.kind == "spectrogram" and getattr(out, "pooler_output", None) is not None:
            return out.pooler_output.float()
        h = out.last_hidden_state.float()  # (N, frames, dim)
        mask = None
        if "frame_mask" in batch:
            mask = batch["frame_mask"][:, ::2][:, : h.shape[1]]  # whisper's conv stem halves the mel frames
        elif "audio_lengths" in batch and hasattr(self.model, "_get_feat_extract_output_lengths"):
            n = self.model._get_feat_extract_output_lengths(batch["audio_lengths"]).clamp(min=1, max=h.shape[1])
            mask = torch.arange(h.shape[1], device=h.device)[None, :] < n.to(h.device)[:, None]
        if mask is None:
            return h.mean(1)
        m = mask.to(h.device, torch.float32).unsqueeze(-1)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)  # (N, dim)


# ---------------------------------------------------------------- folders and hub ids
def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def detect_modality(folder: Path, hint: str | None = None) -> str:
    """text / image / audio from a model folder's files (config, preprocessor, tokenizer)."""
    cfg = _read_json(folder / "config.json")
    mt = str(cfg.get("model_type", ""))
    pre = _read_json(folder / "preprocessor_config.json")
    has_tok = any((folder / f).exists() for f in TOKENIZER_FILES)
    kinds = set()
    if pre:
        ptype = str(pre.get("image_processor_type", "") or pre.get("feature_extractor_type", ""))
        if "image_processor_type" in pre or "ImageProcessor" in ptype or "image_mean" in pre:
            kinds.add("image")
        elif "sampling_rate" in pre or "FeatureExtractor" in ptype:
            kinds.add("audio")
    if has_tok:
        kinds.add("text")
    if mt in _VISION_TYPES:
        kinds = {"image"}
    elif mt in _AUDIO_TYPES:
        kinds = {"audio"}
    if not kinds:
        arch = " ".join(cfg.get("architectures") or [])
        if any(k in arch for k in ("Image", "Vision", "ViT")):
            kinds.add("image")
        elif any(k in arch for k in ("Audio", "CTC", "Speech", "Wav2Vec")):
            kinds.add("audio")
        elif arch:
            kinds.add("text")
    if hint in kinds or (hint and not kinds):
        return hint
    if len(kinds) == 1:
        return kinds.pop()
    if not kinds:
        raise LeptonError(
            f"{folder}: cannot tell whether this model is for text, images or audio (no tokenizer or preprocessor_config.json); "
            "save the tokenizer/processor next to the model (save_pretrained) or choose the data modality explicitly"
        )
    raise LeptonError(
        f"{folder}: this model takes {' and '.join(sorted(kinds))}; choose the data modality explicitly"
    )


def config_dim(cfg: dict[str, Any]) -> int:
    for k in ("hidden_size", "d_model", "dim", "embed_dim", "projection_dim"):
        if isinstance(cfg.get(k), int):
            return int(cfg[k])
    for k in ("hidden_sizes", "dims", "embed_dims", "num_channels_list"):
        v = cfg.get(k)
        if isinstance(v, list) and v and isinstance(v[-1], int):
            return int(v[-1])
    for sub in ("vision_config", "text_config", "audio_config", "encoder"):
        if isinstance(cfg.get(sub), dict):
            d = config_dim(cfg[sub])
            if d:
                return d
    return 0


def looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~")) and " " not in name


# Passed to every from_pretrained on a folder: never import the folder's own Python (no prompt either:
# an explicit False is what stops transformers asking), never reach the network for a local folder.
SAFE = {"trust_remote_code": False, "local_files_only": True}


def load_folder(folder: str | os.PathLike, modality: str | None = None, name: str | None = None,
                where: str | None = None) -> Backbone:
    """Build the right wrapper for a local model folder (save_pretrained layout), checked first."""
    folder = Path(folder).expanduser()
    where = where or f"model folder `{name or folder}`"
    check_model_folder(folder, where)  # again: the folder may have changed since the name was resolved
    modality = detect_modality(folder, modality)
    check_preprocessing(folder, modality, where)
    try:
        return _load_checked(folder, modality, name or str(folder))
    except LeptonError:
        raise
    except Exception as e:  # transformers raises many types for files that do not belong together
        detail = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise ModelError(f"{where} could not be loaded by transformers ({type(e).__name__}: {detail}): check that its "
                         "config, weights and tokenizer or preprocessor belong together, or save it again with "
                         "save_pretrained") from e


def _load_checked(folder: Path, modality: str, name: str) -> Backbone:
    from transformers import AutoConfig, AutoModel

    with quiet_transformers():
        config = AutoConfig.from_pretrained(folder, **SAFE)
        model, info = AutoModel.from_pretrained(folder, output_loading_info=True, use_safetensors=True, **SAFE)
    missing = " ".join(info.get("missing_keys", []))
    pooler_trained = "pooler" not in missing
    if getattr(config, "model_type", "") == "whisper" or (modality != "text" and hasattr(model, "get_encoder") and getattr(config, "is_encoder_decoder", False)):
        model = model.get_encoder()  # the decoder is for generating text; classification needs the encoder only
    tower = getattr(model, {"text": "text_model", "image": "vision_model", "audio": "audio_model"}[modality], None)
    if isinstance(tower, nn.Module):
        model = tower  # dual-tower models (CLIP, SigLIP, CLAP): keep the tower for this modality
    cfg = _read_json(folder / "config.json")
    dim = config_dim(cfg.get({"text": "text_config", "image": "vision_config", "audio": "audio_config"}[modality]) or cfg) or config_dim(cfg)
    model.eval()
    with quiet_transformers():
        if modality == "text":
            from transformers import AutoTokenizer

            bb: Backbone = HFText(model, AutoTokenizer.from_pretrained(folder, **SAFE), dim)
        elif modality == "image":
            from transformers import AutoImageProcessor

            bb = HFVision(model, AutoImageProcessor.from_pretrained(folder, **SAFE), dim, use_pooler=pooler_trained)
        else:
            from transformers import AutoFeatureExtractor

            extractor = AutoFeatureExtractor.from_pretrained(folder, **SAFE)
            name_in = (getattr(extractor, "model_input_names", None) or ["input_values"])[0]
            if getattr(config, "model_type", "") == "whisper" or hasattr(model, "conv1") and name_in == "input_features":
                kind = "whisper"
            elif hasattr(model, "_get_feat_extract_output_lengths"):  # conv feature encoder over raw samples
                kind = "wave"
            else:
                kind = "spectrogram"
            bb = HFAudio(model, extractor, dim, kind=kind)
    bb._lepton_name = name
    return bb


def _hub_reachable(timeout: float = 3.0) -> bool:
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a proxy may reach it where a direct socket cannot; let the hub client try
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def _valid_names() -> str:
    return ", ".join(n for n, s in BACKBONES.items() if not s.tiny)


# What a hub snapshot may bring: configs, tokenizer files and safetensors weights. Never *.py (a
# repository's own code) and never pickles (pytorch_model.bin): neither is ever loaded.
HUB_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "*.tiktoken", "merges.txt"]


def cached_snapshot(repo_id: str) -> Path | None:
    """The hub model's snapshot in the local HF cache, or None (nothing goes to the network)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError), or a cache we cannot read: the loader retries
        return None


def fetch_hub(repo_id: str) -> Path:
    """Local snapshot of a hub model: the HF cache first, then a download when the hub is reachable."""
    from huggingface_hub import snapshot_download

    cached = cached_snapshot(repo_id)
    if cached is not None:
        return cached
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or not _hub_reachable()
    if offline:
        raise LeptonError(
            f"backbone '{repo_id}': this machine is offline (the Hugging Face hub cannot be reached) and the model is not "
            f"in the local cache. Use a registered backbone ({_valid_names()}) or a local model folder "
            "(a directory with config.json and weights, e.g. written by save_pretrained on a machine with internet)."
        )
    try:
        from huggingface_hub import list_repo_files

        files = list_repo_files(repo_id)
        if any(f.endswith(".safetensors") for f in files):
            return Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))
    except Exception as e:
        raise LeptonError(
            f"backbone '{repo_id}': could not download it from the Hugging Face hub ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Check the id (org/name), and log in for gated models, "
            f"or use a registered backbone ({_valid_names()}) or a local model folder."
        ) from None
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    raise ModelError(f"hub model `{repo_id}` has no safetensors weights"
                     + (f", only a pickle checkpoint ({', '.join(pickles[:3])})" if pickles else "")
                     + ": loading a pickle can run any code hidden in it, so Lepton loads only safetensors; pick a "
                     "repository that ships model.safetensors")


def _fingerprint(folder: Path) -> str:
    import hashlib

    h = hashlib.sha1()
    for f in sorted(folder.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def folder_spec(path: str | os.PathLike, modality: str | None = None) -> BackboneSpec:
    """A local model folder as a spec, refused here (before any run exists) when it is unsafe or broken."""
    name = str(path)
    checked = check_model_folder(path, f"model folder `{name}`")
    folder, cfg = checked.path.resolve(), checked.config
    mod = detect_modality(folder, modality)
    check_preprocessing(folder, mod, f"model folder `{name}`")
    sub = cfg.get({"text": "text_config", "image": "vision_config", "audio": "audio_config"}[mod])
    return BackboneSpec(
        name=name, modality=mod, dim=config_dim(sub or cfg) or config_dim(cfg), params=checked.params,
        description=f"Local Hugging Face model ({cfg.get('model_type', 'unknown type')}) from {folder}",
        loader=lambda: load_folder(folder, mod, name),
        recommended_adapter="lora" if mod == "text" else "linear-probe",
        arch="cnn" if cfg.get("model_type") in _CNN_TYPES else "transformer",
        # identity keys the frozen-feature cache: a re-saved folder must not reuse old features.
        extra={"source": "folder", "path": str(folder), "model_type": cfg.get("model_type"),
               "identity": {"path": str(folder), "files": _fingerprint(folder)}},
    )


def hub_spec(repo_id: str, modality: str | None = None) -> BackboneSpec:
    """A spec built on the fly; nothing touches the network until the loader runs."""

    cached = cached_snapshot(repo_id)
    if cached is not None:  # already on disk: refuse a bad one now, not when the run starts
        check_model_folder(cached, f"hub model `{repo_id}`")

    def loader() -> Backbone:
        return load_folder(fetch_hub(repo_id), modality, repo_id, where=f"hub model `{repo_id}`")

    return BackboneSpec(
        name=repo_id, modality=modality or "auto", dim=0, params=0,
        description=f"Hugging Face hub model {repo_id} (downloaded on first use; needs internet)",
        loader=loader,
        recommended_adapter="lora" if modality == "text" else "linear-probe",
        extra={"source": "hub", "repo_id": repo_id},
    )
