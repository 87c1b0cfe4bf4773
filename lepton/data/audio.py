"""Audio: a folder or .zip of `<label>/<file>` (wav, flac, ogg; mp3 where libsndfile decodes it).

Items load as (float32 mono waveform, sample_rate). torchaudio 2.9 decodes no files, so soundfile
reads them; torchaudio only resamples (imported lazily: it is slow to import).
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from lepton.data.base import MODALITIES, Entry, Reason, check_input_file
from lepton.data.folder import FolderModality
from lepton.errors import DataError

MP3_UNSUPPORTED = Reason(
    "is mp3, which is not supported by this libsndfile",
    "are mp3, which is not supported by this libsndfile",
    "convert them to wav or flac (e.g. `ffmpeg -i in.mp3 out.flac`)",
)
NO_SAMPLES = Reason("has no audio samples", "have no audio samples", "re-export them or remove them")


def _wav_truncated(data: bytes) -> bool:
    """libsndfile reads a cut-off WAV without complaint (it just stops early); the RIFF size tells."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return False
    declared = struct.unpack("<I", data[4:8])[0] + 8
    # 0 / 0xFFFFFFFF mean "unknown length" (streamed writers); allow a little slack for sloppy ones.
    return 0 < declared - 8 < 0xFFFFFFF0 and declared - len(data) > max(64, 0.01 * declared)


def mp3_supported() -> bool:
    # libsndfile decodes mp3 from 1.1 on; older builds do not list it.
    return "MP3" in sf.available_formats()


def to_mono(wave: np.ndarray) -> np.ndarray:
    """(frames,) or (frames, channels) or (channels, frames) -> float32 (frames,)."""
    a = np.asarray(wave)
    if np.issubdtype(a.dtype, np.integer):
        # Integer PCM: scale to [-1, 1) the way soundfile does for files.
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max + 1)
    a = a.astype(np.float32, copy=False)
    if a.ndim == 2:
        # soundfile gives (frames, channels); torch gives (channels, frames). Channels are few.
        if a.shape[0] <= 8 and a.shape[0] < a.shape[1]:
            a = a.T
        a = a.mean(axis=1)
    elif a.ndim != 1:
        raise DataError(f"an audio array must be 1-D or 2-D (frames x channels), got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


def _read(src: Any, name: str) -> tuple[np.ndarray, int]:
    if name.lower().endswith(".mp3") and not mp3_supported():
        raise DataError(f"`{name}`: mp3 is not supported by this libsndfile; convert it to wav or flac")
    try:
        wave, sr = sf.read(src, dtype="float32", always_2d=True)
    except Exception as e:
        raise DataError(f"`{name}` could not be read as audio ({type(e).__name__}): re-export it as wav or flac") from None
    return to_mono(wave), int(sr)


def resample(wave: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono float32 waveform with torchaudio (band-limited sinc interpolation)."""
    wave = np.asarray(wave, dtype=np.float32)
    if int(sr) == int(target_sr) or wave.size == 0:
        return wave
    import torch
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(np.ascontiguousarray(wave)), int(sr), int(target_sr))
    return out.numpy().astype(np.float32, copy=False)


@MODALITIES.register("audio")
class AudioModality(FolderModality):
    name = "audio"
    noun = "audio file"
    article = "an"
    nouns = "audio files"
    extensions = frozenset({".wav", ".flac", ".ogg", ".mp3"})

    @classmethod
    def check(cls, data: bytes, entry: Entry) -> Reason | None:
        if entry.ext == ".mp3" and not mp3_supported():
            return MP3_UNSUPPORTED
        if _wav_truncated(data):
            return cls.corrupt()
        try:
            # Decode everything: a truncated FLAC/OGG only fails part way through.
            wave, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except Exception:
            return cls.corrupt()
        if wave.shape[0] == 0:
            return NO_SAMPLES
        return None

    @classmethod
    def load(cls, x: Any) -> tuple[np.ndarray, int]:
        if isinstance(x, tuple) and len(x) == 2 and not isinstance(x[0], (str, Path, bytes)):
            wave, sr = x
            return to_mono(np.asarray(wave)), int(sr)
        if isinstance(x, (bytes, bytearray, memoryview)):
            return _read(io.BytesIO(bytes(x)), "uploaded audio")
        if isinstance(x, (str, Path)):
            p = Path(x)
            check_input_file(p, "audio")
            return _read(str(p), p.name)
        raise DataError(f"cannot load audio from {type(x).__name__}: give a path, file bytes or a (waveform, sample_rate) tuple")
