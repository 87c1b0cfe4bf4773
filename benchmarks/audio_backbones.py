"""Which frozen audio backbone tells spoken words apart best? (picks Lepton's audio default)

Each candidate turns every clip into one feature vector with its weights frozen; a logistic
regression on those features is scored with stratified 5-fold cross-validation.

Data: assets/demo/spoken_words.zip when it exists, else a spoken-word set synthesised here with
espeak-ng (8 words, many voices, random speed/pitch, leading/trailing silence, light noise),
which is how the shipped demo is made too.

    .venv/bin/python benchmarks/audio_backbones.py [--data PATH] [--per-word 25] [--seed 0]

The last lines are `name: value` (accuracy, 0..1) for each candidate.

Measured 2026-11 on the 2-CPU machine (5-fold logistic regression on frozen features):

    data                          mfcc-logreg  speech-embedding  resemblyzer
    assets/demo spoken_words.zip  0.855        1.000             0.935
    espeak-ng, 50 per word (400)  0.878        0.993             0.970

speech-embedding is the audio default. Resemblyzer (a GE2E speaker encoder: it encodes voices,
not words) is worse on every set and ~10x slower, so it is not registered; the benchmark still
runs it when the package happens to be installed.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ["yes", "no", "up", "down", "left", "right", "stop", "go"]
VOICES = ["en", "en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp"]
VARIANTS = [f"m{i}" for i in range(1, 8)] + [f"f{i}" for i in range(1, 5)]
SR = 16000


# ---------------------------------------------------------------- data
def synthesise(out: Path, per_word: int = 25, seed: int = 0) -> Path:
    """Write <out>/<word>/<n>.wav, 16 kHz mono float, with espeak-ng."""
    import soundfile as sf
    import torch
    import torchaudio

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng), and no --data was given")
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    for word in WORDS:
        (out / word).mkdir(parents=True, exist_ok=True)
        for n in range(per_word):
            voice = f"{rng.choice(VOICES)}+{rng.choice(VARIANTS)}"
            speed, pitch = rng.randint(110, 210), rng.randint(20, 80)
            raw = subprocess.run([espeak, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
                                 check=True, capture_output=True).stdout
            wave, sr = sf.read(io.BytesIO(raw), dtype="float32")
            wave = torchaudio.functional.resample(torch.from_numpy(wave), sr, SR).numpy()
            # Recordings are never tight: random silence around the word, random gain, light noise.
            lead, tail = (int(SR * rng.uniform(0.05, 0.5)) for _ in range(2))
            wave = np.concatenate([np.zeros(lead, np.float32), wave, np.zeros(tail, np.float32)])
            wave = wave * rng.uniform(0.3, 1.0) + nrng.normal(0, rng.uniform(0.001, 0.01), wave.shape)
            sf.write(out / word / f"{n:03d}.wav", np.clip(wave, -1, 1).astype(np.float32), SR)
    return out


def load_folder(path: Path) -> tuple[list[tuple[np.ndarray, int]], list[str]]:
    """<label>/<file> folder or .zip (optionally under train/validation/test) -> items, labels."""
    import soundfile as sf

    items, labels = [], []
    if path.suffix == ".zip":
        tmp = Path(tempfile.mkdtemp(prefix="lepton_bench_"))
        with zipfile.ZipFile(path) as z:
            z.extractall(tmp)
        path = tmp
    for f in sorted(path.rglob("*")):
        if f.suffix.lower() not in (".wav", ".flac", ".ogg") or f.name.startswith("."):
            continue
        wave, sr = sf.read(f, dtype="float32", always_2d=True)
        items.append((wave.mean(axis=1), sr))
        labels.append(f.parent.name)
    return items, labels


# ---------------------------------------------------------------- candidates
def feats_backbone(name: str, items, batch_size: int = 32) -> np.ndarray:
    """Frozen features from a registered Lepton backbone, exactly as the training loop gets them."""
    import torch

    from lepton.backbones import build_backbone

    bb = build_backbone(name).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(items), batch_size):
            out.append(bb.forward_features(**bb.preprocess(items[i:i + batch_size])).float().numpy())
    return np.concatenate(out)


def feats_mfcc(items) -> np.ndarray:
    """Reference: 40 MFCCs, mean and std over time (80-d), no pretrained weights at all."""
    import torch
    import torchaudio

    mfcc = torchaudio.transforms.MFCC(sample_rate=SR, n_mfcc=40,
                                      melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 64})
    out = []
    for wave, sr in items:
        w = torch.from_numpy(wave)
        if sr != SR:
            w = torchaudio.functional.resample(w, sr, SR)
        m = mfcc(w)  # (40, frames)
        out.append(torch.cat([m.mean(1), m.std(1)]).numpy())
    return np.stack(out)


def feats_resemblyzer(items) -> np.ndarray:
    """GE2E speaker encoder as its authors use it: VAD-trimmed, volume-normalised, 256-d utterance embedding."""
    import contextlib

    from resemblyzer import VoiceEncoder, preprocess_wav

    with contextlib.redirect_stdout(io.StringIO()):
        enc = VoiceEncoder("cpu")
    out = []
    for wave, sr in items:
        w = preprocess_wav(wave, source_sr=sr)
        if len(w) < SR // 10:  # VAD removed (nearly) everything: embed the raw clip instead
            w = wave
        out.append(enc.embed_utterance(w))
    return np.stack(out)


def cv_accuracy(x: np.ndarray, y: list[str], seed: int = 0) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))
    scores = cross_val_score(clf, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    return float(scores.mean()), float(scores.std())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="folder/.zip of <word>/<clip>; default: the demo zip or espeak-ng")
    ap.add_argument("--per-word", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    data = args.data
    demo = ROOT / "assets" / "demo" / "spoken_words.zip"
    if data is None and demo.exists():
        data = demo
    if data is None:
        data = synthesise(Path(tempfile.mkdtemp(prefix="lepton_words_")), args.per_word, args.seed)
    items, labels = load_folder(data)
    print(f"data: {data} ({len(items)} clips, {len(set(labels))} classes)")

    candidates = {
        "mfcc-logreg": feats_mfcc,
        "speech-embedding": lambda it: feats_backbone("speech-embedding", it),
        "resemblyzer": feats_resemblyzer,
    }
    rows = []
    for name, fn in candidates.items():
        t0 = time.perf_counter()
        try:
            x = fn(items)
        except ImportError as e:  # e.g. Resemblyzer no longer installed
            print(f"{name}: skipped ({e})")
            continue
        secs = time.perf_counter() - t0
        mean, std = cv_accuracy(x, labels, args.seed)
        rows.append((name, x.shape[1], mean, std, 1000 * secs / len(items)))

    print(f"\n{'backbone':<18} {'dim':>5} {'5-fold acc':>12} {'ms/clip':>8}")
    for name, dim, mean, std, ms in rows:
        print(f"{name:<18} {dim:>5} {mean:>7.3f}±{std:.3f} {ms:>8.1f}")
    print()
    for name, _, mean, _, _ in rows:
        print(f"{name}: {mean:.4f}")


if __name__ == "__main__":
    main()
