"""Tasks: Lepton's default on a multi-label text set and an image regression set, against classical baselines.

    .venv/bin/python benchmarks/tasks.py [--minutes 3] [--seeds 0] [--only stdlib-multi glyph-angle] [--json FILE]

The two datasets are built here, offline and seeded, into $LEPTON_SUITE_DIR (not into git):
- stdlib-multi (text, multi-label): 1 to 3 first sentences of Python standard-library docstrings joined
  into one text, labelled with the set of their module families (the suite's stdlib-docs families).
  Every sentence is used once, so no sentence sits in two splits.
- glyph-angle (image, regression): a letter in one of the installed fonts, rotated by a uniform angle in
  [-60, 60] degrees on a cluttered background with blur and noise; the target is the angle.

Both sides see the same split (Lepton's 80/10/10 for the seed). The baselines (scikit-learn) train on
train+validation: TF-IDF + one-vs-rest logistic regression (text), raw 32x32 pixels + ridge regression
with its strength chosen by cross-validation (images). Lepton runs `lepton train --data X --task T
--max-minutes M` with nothing else given (the auto strategy).

Prints a table, then `name: value` lines: each dataset's Lepton and baseline figures.
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

from quality import _pixels  # noqa: E402
from suite.build import (GLYPHS, STDLIB_FAMILIES, _fresh, docstrings, latin_fonts, py_files,  # noqa: E402
                         suite_dir)

ANGLE = 60.0


def _xy(ds, splits):
    """Loaded items and their labels (label sets stay tuples: numpy would choke on sets of unequal size)."""
    exs = [e for s in splits if s in ds.splits for e in ds.examples(s)]
    return [ds.load(e.x) for e in exs], [e.label for e in exs]


def build_stdlib_multi(out: Path, seed: int) -> Path:
    import sysconfig

    path = out / "stdlib-multi.jsonl"
    if path.exists():
        return path
    lib = Path(sysconfig.get_paths()["stdlib"])
    rng = np.random.default_rng(seed)
    pools: dict[str, list[str]] = {}
    owner: dict[str, set[str]] = {}
    for label, names in STDLIB_FAMILIES.items():
        files = [p for n in names for p in ([lib / n] if (lib / n).is_file() else py_files(lib / n) if (lib / n).is_dir() else [])]
        pools[label] = sorted({s for f in files for s in docstrings(f)})
        for s in pools[label]:
            owner.setdefault(s, set()).add(label)
    # A sentence two families share would carry a wrong label set: left out. Each pool is shuffled and used up.
    pools = {k: [s for s in (v[i] for i in rng.permutation(len(v))) if len(owner[s]) == 1][:300] for k, v in pools.items()}
    rows = []
    while True:
        alive = [k for k, v in pools.items() if v]
        if len(alive) < 3:
            break
        k = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
        labels = sorted(rng.choice(alive, k, replace=False).tolist())
        rows.append({"text": " ".join(pools[lab].pop() for lab in labels), "label": labels})
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def build_glyph_angle(out: Path, seed: int, n: int = 1200, size: int = 64) -> Path:
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    root = out / "glyph-angle"
    if (root / "metadata.done").exists():
        return root
    fonts = latin_fonts()
    if len(fonts) < 10:
        raise SystemExit("glyph-angle: run scripts/ensure_bench_deps.sh first (it installs the fonts)")
    rng = np.random.default_rng(seed)
    _fresh(root)
    for i in range(n):
        angle = float(rng.uniform(-ANGLE, ANGLE))
        ch = GLYPHS[int(rng.integers(len(GLYPHS)))]
        font = ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), int(rng.integers(30, 46)) * 2)
        big = size * 2
        bg, fg = int(rng.integers(0, 256)), int(rng.integers(0, 256))
        while abs(fg - bg) < 90:
            fg = int(rng.integers(0, 256))
        canvas = Image.new("L", (big, big), bg)
        draw = ImageDraw.Draw(canvas)
        left, top, right, bottom = draw.textbbox((0, 0), ch, font=font)
        draw.text(((big - (right - left)) / 2 - left, (big - (bottom - top)) / 2 - top), ch, fill=fg, font=font)
        im = canvas.rotate(angle, resample=Image.BICUBIC, fillcolor=bg)
        im = im.resize((size, size), Image.LANCZOS).filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.0))))
        a = np.clip(np.asarray(im, np.float32) + rng.normal(0, rng.uniform(2, 20), (size, size)), 0, 255)
        folder = root / f"{angle:.2f}"  # the label is the folder name: the angle in degrees
        folder.mkdir(exist_ok=True)
        Image.fromarray(np.repeat(a[..., None], 3, 2).astype(np.uint8)).save(folder / f"{i:04d}.png")
    (root / "metadata.done").write_text("")
    return root


DATASETS = {"stdlib-multi": ("text", "multi-label", build_stdlib_multi),
            "glyph-angle": ("image", "regression", build_glyph_angle)}


def baseline(task: str, ds) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from lepton.tasks import TASKS, task_of

    train_x, train_y = _xy(ds, ["train", "val"])
    test_x, test_y = _xy(ds, ["test"])
    scorer = task_of(task, ds.classes)
    t0 = time.time()
    if task == "multi-label":
        hot = lambda ys: scorer.tensor(list(ys)).numpy()  # noqa: E731
        clf = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                            OneVsRestClassifier(LogisticRegression(max_iter=3000, C=10)))
        clf.fit(train_x, hot(train_y))
        out, name = clf.predict_proba(test_x), "TF-IDF + one-vs-rest LR"
    else:
        clf = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 5, 13)))
        clf.fit(_pixels(train_x), np.asarray(train_y, np.float64))
        out, name = clf.predict(_pixels(test_x))[:, None], "pixels + ridge"
    report = scorer.report(list(test_y), out, [str(i) for i in range(len(test_y))])  # the run's own metric code
    return {"name": name, **{k: report[k] for k in TASKS.get(task).headline}, "seconds": time.time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--only", nargs="*", choices=list(DATASETS))
    ap.add_argument("--json", type=Path, help="write every row here too")
    args = ap.parse_args()
    os.environ.setdefault("LEPTON_HOME", tempfile.mkdtemp(prefix="lepton-tasks-"))
    from lepton.config import RunConfig
    from lepton.data import ingest
    from lepton.tasks import TASKS
    from lepton.train import run

    out = suite_dir()
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (modality, task, build) in DATASETS.items():
        if args.only and name not in args.only:
            continue
        path = build(out, 0)
        primary = TASKS.get(task).primary
        for seed in args.seeds:
            ds = ingest(path, task=task, seed=seed).dataset
            base = baseline(task, ds)
            t0 = time.time()
            m = run(RunConfig(data=ds.id, max_minutes=args.minutes, seed=seed))["metrics"]
            wall = time.time() - t0
            rows.append({"dataset": name, "task": task, "seed": seed, "n": len(ds), "adapter": m["adapter"],
                         "kept": m["kept"], "lepton": {k: m[k] for k in TASKS.get(task).headline},
                         "baseline": {k: base[k] for k in TASKS.get(task).headline if k in base},
                         "baseline_name": base["name"], "wall_s": round(wall, 1)})
            print(f"{name} seed {seed}: {m['backbone']}+{m['adapter']} kept={m['kept']} {primary} {m[primary]:.3f} | "
                  f"{base['name']} {base[primary]:.3f} | {wall:.0f} s of {args.minutes * 60:.0f}", file=sys.stderr,
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print(f"\n| dataset | task | examples | metric | Lepton auto ({args.minutes:g} min) | baseline | baseline's figure |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        for k, v in r["lepton"].items():
            b = r["baseline"].get(k)
            print(f"| {r['dataset']} (seed {r['seed']}) | {r['task']} | {r['n']} | {k} | {v:.3f} | {r['baseline_name']} | "
                  f"{'–' if b is None else f'{b:.3f}'} |")
    print()
    for name in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == name]
        key = name.replace("-", "_")
        for k in rs[0]["lepton"]:
            print(f"{key}_lepton_{k}: {np.mean([r['lepton'][k] for r in rs]):.4f}")
            if k in rs[0]["baseline"]:
                print(f"{key}_baseline_{k}: {np.mean([r['baseline'][k] for r in rs]):.4f}")


if __name__ == "__main__":
    main()
