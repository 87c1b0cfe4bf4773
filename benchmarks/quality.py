"""Quality: Lepton's default recipe vs a classical baseline, per modality, on the bundled demo data.

Both sides see the same train+validation examples and are scored on the same test split.
Lepton runs with a 3-minute wall-clock budget (--max-minutes 3) on this machine.
Baselines: TF-IDF + logistic regression (text), raw pixels + LR (images), MFCC + LR (audio).

    .venv/bin/python benchmarks/quality.py [--modality text] [--minutes 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchaudio
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEMO = ROOT / "assets" / "demo"
DATA = {"text": DEMO / "topics.csv", "image": DEMO / "shapes.zip", "audio": DEMO / "spoken_words.zip"}


def _xy(ds, splits):
    exs = [e for s in splits if s in ds.splits for e in ds.examples(s)]
    return [ds.load(e.x) for e in exs], np.array([e.label for e in exs])


def _text_features(train, test):
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    return vec.fit_transform(train), vec.transform(test)


def _pixels(items):
    return np.stack([np.asarray(im.convert("RGB").resize((32, 32)), dtype=np.float32).ravel() / 255 for im in items])


def _mfcc(items, sr_target=16000):
    mfcc = torchaudio.transforms.MFCC(sample_rate=sr_target, n_mfcc=20, melkwargs={"n_mels": 40, "n_fft": 400})
    out = []
    for wave, sr in items:
        w = torch.from_numpy(wave).float()
        if sr != sr_target:
            w = torchaudio.functional.resample(w, sr, sr_target)
        m = mfcc(w)  # (n_mfcc, frames)
        out.append(torch.cat([m.mean(1), m.std(1)]).numpy())
    return np.stack(out)


def baseline(modality, ds):
    train_x, train_y = _xy(ds, ["train", "val"])
    test_x, test_y = _xy(ds, ["test"])
    t0 = time.time()
    if modality == "text":
        a, b = _text_features(train_x, test_x)
        clf = LogisticRegression(max_iter=2000, C=10)
    else:
        feat = _pixels if modality == "image" else _mfcc
        a, b = feat(train_x), feat(test_x)
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))
    clf.fit(a, train_y)
    pred = clf.predict(b)
    return {"accuracy": accuracy_score(test_y, pred), "macro_f1": f1_score(test_y, pred, average="macro"),
            "seconds": time.time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modality", choices=list(DATA), action="append")
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--adapter", default=None, help="override the recommended adapter")
    args = ap.parse_args()
    os.environ.setdefault("LEPTON_HOME", tempfile.mkdtemp(prefix="lepton-quality-"))
    from lepton.backbones import default_backbone
    from lepton.config import RunConfig
    from lepton.data import ingest
    from lepton.train import run

    rows = []
    for modality in args.modality or list(DATA):
        ds = ingest(DATA[modality]).dataset
        spec = default_backbone(modality)
        adapter = args.adapter or spec.recommended_adapter
        t0 = time.time()
        res = run(RunConfig(data=ds.id, backbone=spec.name, adapter=adapter, max_minutes=args.minutes))
        lep = {**res["metrics"], "seconds": time.time() - t0}
        base = baseline(modality, ds)
        rows.append((modality, f"{spec.name}+{adapter}", lep, base))
    print(f"{'modality':<8} {'recipe':<30} {'acc':>6} {'F1':>6} {'sec':>6} | {'baseline acc':>12} {'F1':>6} {'sec':>6}")
    for modality, recipe, lep, base in rows:
        print(f"{modality:<8} {recipe:<30} {lep['accuracy']:6.3f} {lep['macro_f1']:6.3f} {lep['seconds']:6.1f} | "
              f"{base['accuracy']:12.3f} {base['macro_f1']:6.3f} {base['seconds']:6.1f}")
    for modality, _, lep, base in rows:
        print(f"{modality}_lepton_macro_f1: {lep['macro_f1']:.4f}")
        print(f"{modality}_baseline_macro_f1: {base['macro_f1']:.4f}")


if __name__ == "__main__":
    main()
