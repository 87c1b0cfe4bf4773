"""Quality: a Lepton recipe against a classical baseline on the suite (benchmarks/suite/build.py).

    .venv/bin/python benchmarks/quality.py [--recipe auto|fixed|ADAPTER] [--minutes 3] [--seeds 0 1 2]
                                           [--only NAME ...] [--demo] [--json FILE]

For every dataset and seed, both sides see the same split (Lepton's stratified 80/10/10 for that
seed): the baseline trains on train+validation, Lepton on train with validation for its choices,
and both are scored on the same test split. Baselines (scikit-learn): TF-IDF + logistic
regression (text), raw 32x32 pixels + LR (images), MFCC statistics + LR (audio).

Recipes:
- auto:    `lepton train --data X --max-minutes M`, nothing else given (the default);
- fixed:   the first wave's fixed default: the backbone's recommended adapter with its default
           epochs and learning rate (given explicitly, so auto does not take over);
- ADAPTER: that adapter with its defaults.

Prints a table, then `name: value` lines: per dataset the recipe's and the baseline's mean
macro-F1, and `error_ratio_vs_baseline` (the recipe's error / the baseline's error, mean over the
datasets; below 0.5 halves the baseline's error).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("GOMP_SPINCOUNT", "1000")  # before torch loads: what Lepton's job processes run with
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DEMO = ROOT / "assets" / "demo"
DEMO_DATA = {"topics": ("text", DEMO / "topics.csv"), "shapes": ("image", DEMO / "shapes.zip"),
             "spoken-words": ("audio", DEMO / "spoken_words.zip")}


def _xy(ds, splits):
    exs = [e for s in splits if s in ds.splits for e in ds.examples(s)]
    return [ds.load(e.x) for e in exs], np.array([e.label for e in exs])


def _pixels(items):
    return np.stack([np.asarray(im.convert("RGB").resize((32, 32)), dtype=np.float32).ravel() / 255 for im in items])


def _mfcc(items, sr_target=16000):
    import torch
    import torchaudio

    mfcc = torchaudio.transforms.MFCC(sample_rate=sr_target, n_mfcc=20, melkwargs={"n_mels": 40, "n_fft": 400})
    out = []
    for wave, sr in items:
        w = torch.from_numpy(np.asarray(wave, np.float32).reshape(len(wave), -1).mean(1))
        if sr != sr_target:
            w = torchaudio.functional.resample(w, sr, sr_target)
        m = mfcc(w)  # (n_mfcc, frames)
        d = m[:, 1:] - m[:, :-1] if m.shape[1] > 1 else torch.zeros_like(m)
        out.append(torch.cat([m.mean(1), m.std(1), d.mean(1), d.std(1)]).nan_to_num().numpy())
    return np.stack(out)


def baseline(modality, ds) -> dict:
    """The classical baseline, trained on train+val and scored on test."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_x, train_y = _xy(ds, ["train", "val"])
    test_x, test_y = _xy(ds, ["test"])
    t0 = time.time()
    if modality == "text":
        clf = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=3000, C=10))
        clf.fit(train_x, train_y)
        pred = clf.predict(test_x)
        name = "TF-IDF + LR"
    else:
        feat, name = (_pixels, "pixels + LR") if modality == "image" else (_mfcc, "MFCC stats + LR")
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))
        clf.fit(feat(train_x), train_y)
        pred = clf.predict(feat(test_x))
    return {"name": name, "accuracy": float(accuracy_score(test_y, pred)),
            "macro_f1": float(f1_score(test_y, pred, average="macro")), "seconds": time.time() - t0}


def recipe_config(recipe: str, data: str, minutes: float, seed: int):
    from lepton.adapters import get_adapter
    from lepton.backbones import default_backbone
    from lepton.config import RunConfig
    from lepton.data import load_dataset

    cfg = RunConfig(data=data, max_minutes=minutes, seed=seed)
    if recipe == "auto":
        return cfg
    spec = default_backbone(load_dataset(data).modality)
    adapter = spec.recommended_adapter if recipe == "fixed" else recipe
    a = get_adapter(adapter)
    return RunConfig(data=data, backbone=spec.name, adapter=adapter, epochs=a.default_epochs, lr=a.default_lr,
                     max_minutes=minutes, seed=seed)


def datasets(demo: bool, only: list[str] | None) -> dict[str, tuple[str, Path]]:
    if demo:
        found = DEMO_DATA
    else:
        from suite.build import BUILDERS, build, path_of

        build([n for n in BUILDERS if not only or n in only])
        found = {n: (m, path_of(n)) for n, (m, _) in BUILDERS.items()}
    return {n: v for n, v in found.items() if not only or n in only}


def _logger(name: str, seed: int):
    def emit(kind: str, **d) -> None:
        if kind == "log":
            print(f"  [{name} {seed}] {d['message']}", file=sys.stderr, flush=True)

    return emit


def mean_std(xs: list[float]) -> str:
    return f"{np.mean(xs):.3f} ± {np.std(xs):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="auto")
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--demo", action="store_true", help="the bundled demo datasets instead of the suite")
    ap.add_argument("--json", type=Path, help="write every row here too")
    ap.add_argument("--verbose", action="store_true", help="each run's log lines on stderr")
    args = ap.parse_args()
    os.environ.setdefault("LEPTON_HOME", tempfile.mkdtemp(prefix="lepton-quality-"))
    from lepton.data import ingest
    from lepton.train import run
    from lepton.train.events import null_emit

    rows = []
    for name, (modality, path) in datasets(args.demo, args.only).items():
        for seed in args.seeds:
            ds = ingest(path, seed=seed).dataset
            base = baseline(modality, ds)
            cfg = recipe_config(args.recipe, ds.id, args.minutes, seed)
            t0 = time.time()
            res = run(cfg, _logger(name, seed) if args.verbose else null_emit)
            wall = time.time() - t0
            m = res["metrics"]
            rep = json.loads((Path(res["run_dir"]) / "report.json").read_text())
            probe = (rep.get("pretrained_vs_finetuned") or {}).get("pretrained", {}).get("macro_f1")
            rows.append({"dataset": name, "modality": modality, "seed": seed, "recipe": args.recipe,
                         "adapter": m["adapter"], "kept": m.get("kept"), "macro_f1": m["macro_f1"],
                         "probe_macro_f1": probe, "baseline": base["name"], "baseline_macro_f1": base["macro_f1"],
                         "wall_s": round(wall, 1), "budget_s": args.minutes * 60, "n_test": rep["n"]})
            print(f"{name} seed {seed}: {m['backbone']}+{m['adapter']} kept={m.get('kept')} macro-F1 {m['macro_f1']:.3f} "
                  f"(probe {probe if probe is None else round(probe, 3)}) | {base['name']} {base['macro_f1']:.3f} | "
                  f"{wall:.0f} s of {args.minutes * 60:.0f}", file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    names = list(dict.fromkeys(r["dataset"] for r in rows))
    print(f"\n| dataset | n test | Lepton {args.recipe} ({args.minutes:g} min) | untuned probe | baseline | "
          f"baseline macro-F1 | error ratio | wall s (max) |")
    print("|---|---|---|---|---|---|---|---|")
    ratios = []
    for n in names:
        rs = [r for r in rows if r["dataset"] == n]
        f1 = [r["macro_f1"] for r in rs]
        b = [r["baseline_macro_f1"] for r in rs]
        pr = [r["probe_macro_f1"] for r in rs if r["probe_macro_f1"] is not None]
        ratio = (1 - np.mean(f1)) / max(1 - np.mean(b), 1e-9)
        ratios.append(ratio)
        print(f"| {n} | {rs[0]['n_test']} | {mean_std(f1)} | {mean_std(pr) if pr else '–'} | {rs[0]['baseline']} | "
              f"{mean_std(b)} | {ratio:.2f} | {max(r['wall_s'] for r in rs):.0f} |")
    print()
    for n in names:
        rs = [r for r in rows if r["dataset"] == n]
        key = n.replace("-", "_")
        print(f"{key}_{args.recipe}_macro_f1: {np.mean([r['macro_f1'] for r in rs]):.4f}")
        print(f"{key}_baseline_macro_f1: {np.mean([r['baseline_macro_f1'] for r in rs]):.4f}")
    print(f"error_ratio_vs_baseline: {np.mean(ratios):.4f}")
    print(f"max_wall_over_budget_s: {max(r['wall_s'] - r['budget_s'] for r in rows):.1f}")


if __name__ == "__main__":
    main()
