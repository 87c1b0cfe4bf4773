"""Data fixtures and tiny-dataset builders, shared by the data tests and anyone who needs a dataset.

Import from conftest.py:   from data_fixtures import lepton_home, tiny_text_csv, tiny_image_dir, tiny_audio_dir  # noqa: F401
Builders are plain functions, usable outside fixtures: make_text_csv, make_image_folder, make_audio_folder,
png_bytes, wav_bytes, write_files, make_zip.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"


@pytest.fixture
def lepton_home(tmp_path, monkeypatch) -> Path:
    """A fresh LEPTON_HOME for one test (paths.py reads the variable on every call)."""
    home = tmp_path / "lepton_home"
    home.mkdir()
    monkeypatch.setenv("LEPTON_HOME", str(home))
    return home


# ---------------------------------------------------------------- bytes


def png_bytes(seed: int = 0, size: tuple[int, int] = (8, 8), fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """A small distinct image (the seed changes its pixels, so content hashes differ)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ch = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, (size[1], size[0], ch), dtype=np.uint8)
    img = Image.fromarray(arr[..., 0] if ch == 1 else arr, mode if ch != 1 else "L")
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def wav_bytes(seed: int = 0, sr: int = 8000, seconds: float = 0.05, fmt: str = "WAV", channels: int = 1) -> bytes:
    """A short distinct tone (plus a little seeded noise) as WAV / FLAC / OGG bytes."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.01 * rng.standard_normal(t.size)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    buf = io.BytesIO()
    subtype = "VORBIS" if fmt == "OGG" else "PCM_16"
    sf.write(buf, data.astype(np.float32), sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def write_files(root: Path, files: dict[str, bytes | str]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            p.write_text(data, encoding="utf-8")
        else:
            p.write_bytes(data)
    return root


def make_zip(path: Path, files: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data.encode("utf-8") if isinstance(data, str) else data)
    return path


# ---------------------------------------------------------------- tiny datasets


def image_files(classes: dict[str, int], prefix: str = "", fmt: str = "PNG") -> dict[str, bytes]:
    ext = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "GIF": "gif", "WEBP": "webp"}[fmt]
    out, k = {}, 0
    for c, n in classes.items():
        for i in range(n):
            out[f"{prefix}{c}/{i}.{ext}"] = png_bytes(k, fmt=fmt)
            k += 1
    return out


def audio_files(classes: dict[str, int], prefix: str = "", fmt: str = "WAV") -> dict[str, bytes]:
    ext = {"WAV": "wav", "FLAC": "flac", "OGG": "ogg"}[fmt]
    out, k = {}, 0
    for c, n in classes.items():
        for i in range(n):
            out[f"{prefix}{c}/{i}.{ext}"] = wav_bytes(k, fmt=fmt)
            k += 1
    return out


def make_image_folder(root: Path, classes: dict[str, int] | None = None) -> Path:
    return write_files(root, image_files(classes or {"cat": 6, "dog": 6}))


def make_audio_folder(root: Path, classes: dict[str, int] | None = None) -> Path:
    return write_files(root, audio_files(classes or {"yes": 6, "no": 6}))


def make_text_csv(path: Path, per_class: int = 10, classes: tuple[str, ...] = ("pos", "neg"), sep: str = ",",
                  text_column: str = "text", label_column: str = "label") -> Path:
    words = {"pos": "good great lovely fine", "neg": "bad awful poor grim"}
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=sep)
        w.writerow([text_column, label_column])
        for c in classes:
            for i in range(per_class):
                w.writerow([f"{words.get(c, c)} example number {i}", c])
    return path


@pytest.fixture
def tiny_text_csv(tmp_path) -> Path:
    return make_text_csv(tmp_path / "tiny.csv")


@pytest.fixture
def tiny_image_dir(tmp_path) -> Path:
    return make_image_folder(tmp_path / "tiny_images")


@pytest.fixture
def tiny_audio_dir(tmp_path) -> Path:
    return make_audio_folder(tmp_path / "tiny_audio")
