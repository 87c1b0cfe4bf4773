"""Small datasets with real, learnable structure for the fast test matrix (seeded, generated in tmp)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image, ImageDraw

POS = ["great", "wonderful", "excellent", "lovely", "superb", "fantastic", "delightful", "brilliant"]
NEG = ["awful", "terrible", "horrible", "dreadful", "poor", "disappointing", "bad", "miserable"]
THINGS = ["film", "meal", "trip", "service", "book", "concert", "hotel", "game"]


def write_text_csv(path: Path, n: int = 48, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        word = rng.choice(POS if label == "pos" else NEG)
        rows.append({"text": f"the {rng.choice(THINGS)} was {word}, really {word}", "label": label})
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows(rows)
    return path


def write_word_csv(path: Path, words: dict[str, list[str]], frame: str, n: int) -> Path:
    """n rows of frame.format(word=, i=), labels in turn, each label's words in turn: texts a tiny model can learn."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        labels = list(words)
        for i in range(n):
            lab = labels[i % len(labels)]
            word = words[lab][i // len(labels) % len(words[lab])]
            w.writerow([frame.format(word=word, i=i), lab])
    return path


def write_image_folder(root: Path, n_per_class: int = 12, seed: int = 0) -> Path:
    rng = random.Random(seed)
    for label, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            img = Image.new("RGB", (32, 32), tuple(rng.randint(150, 255) for _ in range(3)))
            x, y, s = rng.randint(0, 12), rng.randint(0, 12), rng.randint(10, 20)
            ImageDraw.Draw(img).rectangle([x, y, x + s, y + s], fill=colour)
            img.save(root / label / f"{i}.png")
    return root


def write_audio_folder(root: Path, n_per_class: int = 10, seed: int = 0, sr: int = 16000) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.5 * sr)) / sr
    for label, freq in (("low", 220.0), ("high", 1760.0)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            f = freq * rng.uniform(0.9, 1.1)
            wave = 0.4 * np.sin(2 * np.pi * f * t) + 0.02 * rng.standard_normal(t.size)
            sf.write(root / label / f"{i}.wav", wave.astype(np.float32), sr)
    return root


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("LEPTON_HOME", str(h))
    return h


@pytest.fixture
def text_csv(tmp_path) -> Path:
    return write_text_csv(tmp_path / "reviews.csv")


@pytest.fixture
def image_dir(tmp_path) -> Path:
    return write_image_folder(tmp_path / "colours")


@pytest.fixture
def audio_dir(tmp_path) -> Path:
    return write_audio_folder(tmp_path / "tones")


def tiny_data_for(modality: str, tmp_path: Path) -> Path:
    return {"text": lambda: write_text_csv(tmp_path / "reviews.csv"),
            "image": lambda: write_image_folder(tmp_path / "colours"),
            "audio": lambda: write_audio_folder(tmp_path / "tones")}[modality]()


def train_tiny_run(env: dict, *args: str) -> str:
    """`lepton train` on tiny-text in a real subprocess; returns the run id from its JSON last line."""
    import json
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-m", "lepton", "train", "--backbone", "tiny-text", "--batch-size", "8", *args],
                         capture_output=True, text=True, timeout=240, env=env, cwd=str(repo))
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])["run_id"]
