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


# ---- multi-label and regression versions of the same three modalities (lepton/tasks) ----
TOPICS = {"food": ["pasta", "bread", "soup", "cheese"], "travel": ["train", "flight", "hotel", "beach"],
          "music": ["guitar", "piano", "song", "drums"]}
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def write_multilabel_jsonl(path: Path, n: int = 60, seed: int = 0) -> Path:
    """Texts naming one or two topics; the label is the JSON list of them."""
    import json

    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            labels = rng.sample(sorted(TOPICS), 1 + i % 2)
            words = [TOPICS[t][(i // 3) % 4] for t in labels] + ["today"]
            f.write(json.dumps({"text": " and ".join(words) + f" {i}", "label": labels}) + "\n")
    return path


def write_regression_csv(path: Path, n: int = 60, seed: int = 0) -> Path:
    """'it costs <number> coins': the label is 1.5 x the number, plus a little noise."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            k = i % 10
            w.writerow([f"it costs {NUMBERS[k]} coins, item {i}", f"{1.5 * k + rng.gauss(0, 0.1):.3f}"])
    return path


def write_image_tasks(root: Path, task: str, n: int = 6, seed: int = 0) -> Path:
    """Multi-label: a red and/or a blue square (folders red, blue, blue;red). Regression: grey level (folder = value)."""
    rng = random.Random(seed)
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220)}
    folders = ["red", "blue", "blue;red"] if task == "multi-label" else [str(v) for v in (40, 80, 120, 160, 200, 240)]
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            if task == "multi-label":
                img = Image.new("RGB", (32, 32), (235, 235, 235))
                for j, name in enumerate(folder.split(";")):
                    x = rng.randint(0, 4) + 16 * j
                    ImageDraw.Draw(img).rectangle([x, 8, x + 12, 20], fill=colours[name])
            else:
                v = int(folder) + rng.randint(-5, 5)
                img = Image.new("RGB", (32, 32), (v, v, v))
            img.save(root / folder / f"{i}.png")
    return root


def write_audio_tasks(root: Path, task: str, n: int = 6, seed: int = 0, sr: int = 16000) -> Path:
    """Multi-label: a low and/or a high tone (folders low, high, high;low). Regression: the tone's frequency."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.5 * sr)) / sr
    tones = {"low": 220.0, "high": 1760.0}
    folders = ["low", "high", "high;low"] if task == "multi-label" else [str(v) for v in (200, 400, 800, 1200, 1600, 2000)]
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
        freqs = [tones[x] for x in folder.split(";")] if task == "multi-label" else [float(folder)]
        for i in range(n):
            wave = sum(0.3 * np.sin(2 * np.pi * f * rng.uniform(0.97, 1.03) * t) for f in freqs)
            sf.write(root / folder / f"{i}.wav", (wave + 0.02 * rng.standard_normal(t.size)).astype(np.float32), sr)
    return root


def task_data_for(task: str, modality: str, tmp_path: Path) -> Path:
    """A tiny dataset of this task and modality (single-label: the ones above)."""
    if task == "single-label":
        return tiny_data_for(modality, tmp_path)
    if modality == "text":
        return (write_multilabel_jsonl(tmp_path / "topics.jsonl") if task == "multi-label"
                else write_regression_csv(tmp_path / "prices.csv"))
    writer = write_image_tasks if modality == "image" else write_audio_tasks
    return writer(tmp_path / f"{modality}-{task}", task)


def write_multimodal(root: Path, task: str = "single-label", modalities: tuple[str, ...] = ("text", "image", "audio"),
                     n: int = 48, seed: int = 0, missing: float = 0.2, sr: int = 16000) -> Path:
    """A folder with metadata.csv and one row per example over `modalities`: a review (text), a red or blue square
    (image), a low or high tone (audio), all saying the same class; each cell blank (missing) with chance `missing`,
    never every cell of a row. Multi-label rows carry one or both classes; regression rows a number."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    t = np.arange(int(0.4 * sr)) / sr
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "sounds").mkdir(parents=True, exist_ok=True)
    columns = {"text": "text", "image": "image_file_name", "audio": "audio_file_name"}
    rows = []
    for i in range(n):
        pos = i % 2 == 0
        cells: dict[str, str] = {}
        if "text" in modalities:
            word = rng.choice(POS if pos else NEG)
            cells["text"] = f"the {rng.choice(THINGS)} was {word}, really {word}"
        if "image" in modalities:
            img = Image.new("RGB", (32, 32), tuple(rng.randint(150, 255) for _ in range(3)))
            x, y, s = rng.randint(0, 12), rng.randint(0, 12), rng.randint(10, 20)
            ImageDraw.Draw(img).rectangle([x, y, x + s, y + s], fill=(220, 30, 30) if pos else (30, 30, 220))
            img.save(root / "images" / f"{i}.png")
            cells["image_file_name"] = f"images/{i}.png"
        if "audio" in modalities:
            f = (1760.0 if pos else 220.0) * nrng.uniform(0.9, 1.1)
            wave = 0.4 * np.sin(2 * np.pi * f * t) + 0.02 * nrng.standard_normal(t.size)
            sf.write(root / "sounds" / f"{i}.wav", wave.astype(np.float32), sr)
            cells["audio_file_name"] = f"sounds/{i}.wav"
        gone = [c for c in cells if rng.random() < missing]
        for c in gone[: len(cells) - 1]:
            if c != "text":
                (root / cells[c]).unlink()
            cells[c] = ""
        if task == "multi-label":
            label = '["pos", "neg"]' if i % 3 == 0 else ('["pos"]' if pos else '["neg"]')
        elif task == "regression":
            label = f"{(10.0 if pos else -10.0) + rng.uniform(-1, 1):.3f}"
        else:
            label = "pos" if pos else "neg"
        rows.append({**cells, "label": label})
    with (root / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=[columns[m] for m in modalities] + ["label"])
        w.writeheader()
        w.writerows(rows)
    return root
