"""Fusion: does combining two weak modalities beat the better one alone? Lepton's three fusion modules
(concat, gated, attention) against each single modality and against late averaging of the two.

    .venv/bin/python benchmarks/fusion.py [--seeds 0 1 2] [--epochs 40] [--image-size 96] [--resamples 2000]
                                          [--json FILE]

The dataset, `fusion-letters`, is built here offline and seeded into $LEPTON_SUITE_DIR (not into git;
scripts/ensure_bench_deps.sh installs espeak-ng and the fonts). 8 letter classes (A E H K N O R S),
120 rows each (960 rows). Each row has
- an image: the letter drawn in one of the installed fonts, jittered, rotated, blurred, with clutter
  strokes, noise and a colour cast (the suite's `glyphs` recipe, benchmarks/suite/build.py), and
- a sound: the same letter's name spoken by espeak-ng (8 English accents x 23 voices, random speed
  and pitch, lead-in, gain and coloured noise at 0-15 dB SNR: the suite's `commands` recipe).
In each row each modality is replaced, independently, by noise with probability one half (exactly half
of every class in every split, per modality): an image of pure noise (blurred Gaussian noise around a
random grey, with a colour cast) or a waveform of coloured noise (0.3-1.4 s). The file stays, so the
modality is present but says nothing: about 25 % of rows carry the letter in both modalities, 50 % in
one, 25 % in neither. Each modality alone can therefore be right on at most ~half the rows plus chance;
fusion can reach ~three quarters. The split is written into the files (stratified 60/20/20:
576 train, 192 validation, 192 test), so every run and seed sees the same rows.

The same files are given three ways: `fusion-letters/metadata.csv` (image_file_name, audio_file_name,
label, split: multimodal), `fusion-letters/image/metadata.csv` and `fusion-letters/audio/metadata.csv`
(file_name, label, split: one modality alone, the same split). Every configuration is one `lepton
train` subprocess with a fresh LEPTON_HOME for the benchmark, given the same budget and recipe:

    --adapter linear-probe --epochs E (default 40) --image-size 96 --no-keep-probe --seed S

- every backbone frozen (the offline defaults: efficientnet-lite0 for images, speech-embedding for
  audio), a head trained on cached features: the adapters' default lr (3e-3) and epochs (40), given
  explicitly so every head gets the same; multimodal data picks linear-probe by itself too;
- `--image-size 96` for every run: a single-image run chooses 96 px from the 64 px images by itself,
  a multimodal run would use the backbone's 224 px, and the image features must be the same;
- `--no-keep-probe`: the trained head is what is scored, never the logistic probe that a run ships
  when that validates higher (otherwise the three fusion modules could all ship the same probe).
  The multimodal runs' probe (a logistic regression on the concatenated frozen features, early
  fusion) is reported as one more row, from predictions.csv's `pretrained_pred`.

Configurations, each with seeds S (default 0, 1, 2; the split never changes, the seed moves the head's
initialisation, modality dropout and batch order):
- `image` and `audio`: the single-modality runs;
- `late average`: the mean of the image run's and the audio run's predicted probabilities (prob_<class>
  of their predictions.csv, matched by row), arg-max, for the same seed;
- `concat`, `gated`, `attention`: `--fusion X` on the multimodal table;
- `early probe`: the multimodal runs' logistic probe (see above).

Scores: test macro-F1 (Lepton's definition: every class, zero where a class is neither predicted nor
true), mean ± std over seeds (std with ddof 1; 0 with one seed). The "best single modality" is the
one of image and audio with the higher mean test macro-F1 (chosen on test, which favours the baseline,
so the gain is if anything understated). A fusion gain is the mean over seeds of
macro-F1(fusion, seed) - macro-F1(best single, seed).
Its 95 % confidence interval is a paired bootstrap over test rows, pooled over seeds: each of R
resamples (default 2000, seeded) draws 192 test rows with replacement; the same drawn rows score
every configuration in every seed (the split is fixed, so a row is the same example in every run);
the resample's gain is the mean over seeds of the fusion's macro-F1 minus the best single modality's
on those rows; the interval is the 2.5th and 97.5th percentile of the R gains. Row-level pairing keeps
the gain's noise to what the two models disagree on; resampling rows (not seeds) treats seeds as part
of the method, whose variation the mean over seeds already averages.

The table also gives each configuration's test accuracy on the four kinds of row (letter in both
modalities / image only / audio only / neither; from informative.csv, which the runs never see) and, for
the fusion runs, the run's own per-modality scores (metrics.modalities: the same fused model with the
other modality's features removed), which show whether a fusion module uses both modalities.

Prints a table, then `name: value` lines: `fusion_gain_<module>` with `_ci_low` and `_ci_high`, the
same for `late_average` and `early_probe`, `best_single`, `macro_f1_<configuration>` (+ `_std`),
`macro_f1_<module>_<modality>_alone`, and the wall time. About 8 minutes for 3 seeds on 2 CPU cores
(the first seed extracts the features; the feature cache serves the rest), under 3 for `--seeds 0`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from suite.build import (EN_VOICES, SR, _espeak, _espeak_version, _need_espeak, _noisy, _variant,  # noqa: E402
                         _write_flac, draw_glyph, latin_fonts, suite_dir)

NAME = "fusion-letters"
VERSION = 1  # bump when the builder changes what it writes
LETTERS = list("AEHKNORS")  # all in the suite's GLYPHS, so latin_fonts() has checked every font draws them
PER_CLASS = 120
SPLITS = (("train", 0.6), ("validation", 0.2), ("test", 0.2))
SIZE = 64
FUSIONS = ("concat", "gated", "attention")
SINGLES = ("image", "audio")


# ====================================================================== the dataset

def _noise_image(rng: np.random.Generator):
    """Pure noise: Gaussian noise around a random grey, blurred by a random amount, with a colour cast."""
    from PIL import Image, ImageFilter

    a = np.clip(rng.uniform(40, 215) + rng.normal(0, rng.uniform(20, 70), (SIZE, SIZE)), 0, 255)
    im = Image.fromarray(a.astype(np.uint8)).filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.5))))
    a = np.asarray(im, np.float32)[..., None] * rng.uniform(0.6, 1.0, 3)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _noise_wave(rng: np.random.Generator) -> np.ndarray:
    """Coloured noise (white hiss to low rumble), 0.3-1.4 s, at a random level: no speech in it."""
    n = int(rng.uniform(0.3, 1.4) * SR)
    white = rng.normal(0, 1, n + 1)
    noise = white[1:] + rng.uniform(0, 0.97) * white[:-1]
    return np.clip(noise / (np.abs(noise).max() + 1e-9) * rng.uniform(0.05, 0.9), -1, 1).astype(np.float32)


def build(out: Path, seed: int = 0) -> Path:
    """fusion-letters/ under `out` (kept when already built at this VERSION and seed)."""
    root = out / NAME
    marker = root / "build.json"
    if marker.exists() and json.loads(marker.read_text()).get("version") == VERSION and \
            json.loads(marker.read_text()).get("seed") == seed:
        return root
    _need_espeak(NAME)
    fonts = latin_fonts()
    if len(fonts) < 10:
        raise SystemExit(f"{NAME}: only {len(fonts)} usable fonts; run scripts/ensure_bench_deps.sh")
    t0 = time.time()
    print(f"building {NAME} ({len(LETTERS)} classes x {PER_CLASS} rows)…", file=sys.stderr, flush=True)
    if root.exists():
        shutil.rmtree(root)
    (root / "image").mkdir(parents=True)
    (root / "audio").mkdir()
    rng = np.random.default_rng(seed)
    rows = []  # (id, label, split, image informative, audio informative)
    for ch in LETTERS:
        order = rng.permutation(PER_CLASS)
        start = 0
        for split, frac in SPLITS:
            k = round(PER_CLASS * frac)
            members = order[start:start + k]
            start += k
            # exactly half of this class in this split is noise, per modality, drawn independently
            img_ok = set(rng.permutation(members)[:len(members) // 2].tolist())
            aud_ok = set(rng.permutation(members)[:len(members) // 2].tolist())
            rows += [(None, ch, split, int(i) in img_ok, int(i) in aud_ok) for i in sorted(members)]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    rows = [(f"{n:04d}", *r[1:]) for n, r in enumerate(rows)]
    with tempfile.TemporaryDirectory() as tmpd:
        for n, (rid, ch, _, img_ok, aud_ok) in enumerate(rows):
            (draw_glyph(ch, rng, fonts, SIZE) if img_ok else _noise_image(rng)).save(root / "image" / f"{rid}.png")
            if aud_ok:
                voice = f"{EN_VOICES[rng.integers(len(EN_VOICES))]}+{_variant(rng)}"
                wave = _noisy(_espeak(ch, voice, int(rng.integers(110, 230)), int(rng.integers(10, 90)), Path(tmpd)),
                              rng, (0.0, 15.0), total_s=1.0)
            else:
                wave = _noise_wave(rng)
            _write_flac(root / "audio" / f"{rid}.flac", wave)
            if (n + 1) % 200 == 0:
                print(f"  {n + 1}/{len(rows)} rows", file=sys.stderr, flush=True)
    _write_table(root / "metadata.csv", ["image_file_name", "audio_file_name", "label", "split"],
                 [[f"image/{r[0]}.png", f"audio/{r[0]}.flac", r[1], r[2]] for r in rows])
    for m, ext in (("image", "png"), ("audio", "flac")):
        _write_table(root / m / "metadata.csv", ["file_name", "label", "split"], [[f"{r[0]}.{ext}", r[1], r[2]] for r in rows])
    _write_table(root / "informative.csv", ["id", "label", "split", "image", "audio"],
                 [[r[0], r[1], r[2], int(r[3]), int(r[4])] for r in rows])  # beside the data, for analysis only
    both = sum(r[3] and r[4] for r in rows) / len(rows)
    neither = sum(not r[3] and not r[4] for r in rows) / len(rows)
    marker.write_text(json.dumps({
        "version": VERSION, "seed": seed, "rows": len(rows), "classes": LETTERS,
        "splits": {s: sum(r[2] == s for r in rows) for s, _ in SPLITS}, "both_informative": round(both, 3),
        "neither_informative": round(neither, 3),
        "source": f"{len(fonts)} fonts under /usr/share/fonts; espeak-ng {_espeak_version()}, SNR 0-15 dB",
        "build_seconds": round(time.time() - t0, 1)}, indent=2))
    return root


def _write_table(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


# ====================================================================== runs

def train(data: Path, seed: int, args, extra: list[str]) -> dict:
    """One `lepton train` subprocess: its result JSON, its test rows by id, and its wall time."""
    cmd = [sys.executable, "-m", "lepton", "train", "--data", str(data), "--seed", str(seed),
           "--adapter", "linear-probe", "--epochs", str(args.epochs), "--image-size", str(args.image_size),
           "--no-keep-probe", *extra]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.time() - t0
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:])
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}")
    result = json.loads(p.stdout.strip().splitlines()[-1])
    return {"result": result, "rows": _predictions(Path(result["run_dir"]) / "predictions.csv"), "wall_s": wall}


def _predictions(path: Path) -> dict[str, dict]:
    """{row id: {true, pred, pretrained_pred, probs}}; the id is the 4 digits of the row's file names."""
    out = {}
    with path.open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            ids = set(re.findall(r"(\d{4})\.(?:png|flac)", r["x"]))
            if len(ids) != 1:
                raise SystemExit(f"{path}: cannot tell which row {r['x']!r} is")
            out[ids.pop()] = {"true": r["true"], "pred": r["pred"], "probe": r["pretrained_pred"],
                              "probs": np.array([float(r[f"prob_{c}"]) for c in LETTERS])}
    return out


def macro_f1(true: np.ndarray, pred: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Lepton's macro-F1 (lepton/evaluate.py: every class, 0 where it is neither true nor predicted), for each
    row of `weights` (R, N): how often a resample drew each row. None: the rows once each."""
    w = np.ones((1, len(true))) if weights is None else weights
    f1 = np.zeros((len(w), len(LETTERS)))
    for c in range(len(LETTERS)):
        t, p = true == c, pred == c
        tp, denom = w @ (t & p), w @ t + w @ p
        f1[:, c] = np.divide(2 * tp, denom, out=np.zeros(len(w)), where=denom > 0)
    return f1.mean(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=40, help="every head run (the linear-probe adapters' default)")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--json", type=Path, help="write every run's figures here too")
    args = ap.parse_args()
    t_start = time.time()
    made_home = not os.environ.get("LEPTON_HOME")
    home = Path(os.environ.get("LEPTON_HOME") or tempfile.mkdtemp(prefix="lepton-fusion-"))
    os.environ["LEPTON_HOME"] = str(home)
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")  # what Lepton's job processes run with
    out = suite_dir()
    out.mkdir(parents=True, exist_ok=True)
    root = build(out)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)",
          file=sys.stderr, flush=True)

    configs = {"image": (root / "image", []), "audio": (root / "audio", [])}
    configs |= {f: (root, ["--fusion", f]) for f in FUSIONS}
    runs: dict[str, dict[int, dict]] = {k: {} for k in configs}
    try:
        for seed in args.seeds:
            for name, (data, extra) in configs.items():
                r = runs[name][seed] = train(data, seed, args, extra)
                m = r["result"]["metrics"]
                mods = m.get("modalities") or {}
                print(f"seed {seed} {name}: macro-F1 {m['macro_f1']:.3f} ({m['backbone']}, kept {m['kept']}, "
                      f"{m['epochs_run']} epochs)" + "".join(f"; {k} alone {v['macro_f1']:.3f}" for k, v in mods.items())
                      + f" | {r['wall_s']:.0f} s", file=sys.stderr, flush=True)
    finally:
        if made_home:
            shutil.rmtree(home, ignore_errors=True)

    # ---- every configuration's test predictions, on the same rows in the same order
    ids = sorted(runs["image"][args.seeds[0]]["rows"])
    for name in configs:
        for seed in args.seeds:
            if sorted(runs[name][seed]["rows"]) != ids:
                raise SystemExit(f"{name} seed {seed}: its test rows are not the image run's")
    cls = {c: i for i, c in enumerate(LETTERS)}
    true = np.array([cls[runs["image"][args.seeds[0]]["rows"][i]["true"]] for i in ids])
    preds: dict[str, dict[int, np.ndarray]] = {}
    for name in configs:
        preds[name] = {s: np.array([cls[runs[name][s]["rows"][i]["pred"]] for i in ids]) for s in args.seeds}
    preds["late average"] = {s: np.argmax(np.stack([runs["image"][s]["rows"][i]["probs"] + runs["audio"][s]["rows"][i]["probs"]
                                                    for i in ids]), 1) for s in args.seeds}
    preds["early probe"] = {s: np.array([cls[runs["concat"][s]["rows"][i]["probe"]] for i in ids]) for s in args.seeds}
    for name in configs:  # the figures recomputed here must be the runs' own
        for s in args.seeds:
            got, said = float(macro_f1(true, preds[name][s])[0]), runs[name][s]["result"]["metrics"]["macro_f1"]
            if abs(got - said) > 1e-6:
                print(f"warning: {name} seed {s}: macro-F1 from predictions.csv {got:.4f}, the run said {said:.4f}",
                      file=sys.stderr)

    scores = {k: np.array([macro_f1(true, v[s])[0] for s in args.seeds]) for k, v in preds.items()}
    best = max(SINGLES, key=lambda k: scores[k].mean())
    rng = np.random.default_rng(0)
    weights = rng.multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=args.resamples).astype(float)
    boot = {k: np.mean([macro_f1(true, v[s], weights) for s in args.seeds], 0) for k, v in preds.items()}
    gains = {k: (float(np.mean(scores[k] - scores[best])), *np.percentile(boot[k] - boot[best], [2.5, 97.5]))
             for k in ("late average", "early probe", *FUSIONS)}

    inf = {r["id"]: r for r in csv.DictReader((root / "informative.csv").open())}
    groups = {"both": ("1", "1"), "image only": ("1", "0"), "audio only": ("0", "1"), "neither": ("0", "0")}
    member = {g: np.array([(inf[i]["image"], inf[i]["audio"]) == v for i in ids]) for g, v in groups.items()}
    acc = {k: {g: float(np.mean([np.mean(v[s][mk] == true[mk]) for s in args.seeds])) for g, mk in member.items()}
           for k, v in preds.items()}
    std = lambda a: float(a.std(ddof=1)) if len(a) > 1 else 0.0  # noqa: E731
    wall = {k: float(np.mean([runs[k][s]["wall_s"] for s in args.seeds])) for k in configs}
    alone = {k: {m: float(np.mean([runs[k][s]["result"]["metrics"]["modalities"][m]["macro_f1"] for s in args.seeds]))
                 for m in SINGLES} for k in FUSIONS}  # the fused model given one modality (the run's own report)

    seeds = ",".join(map(str, args.seeds))
    print(f"\nfusion-letters: {len(ids)} test rows ({', '.join(f'{g} {int(m.sum())}' for g, m in member.items())} "
          f"informative), seeds {seeds}, {args.epochs} epochs, {args.image_size} px, {args.resamples} resamples\n")
    print("| configuration | test macro-F1 (mean ± std) | gain over best single [95 % CI] | accuracy: both / image only / "
          "audio only / neither informative | the fused model given only image / only audio | run wall s |")
    print("|---|---|---|---|---|---|")
    for k in ("image", "audio", "late average", "early probe", *FUSIONS):
        g = f"{gains[k][0]:+.3f} [{gains[k][1]:+.3f}, {gains[k][2]:+.3f}]" if k in gains else \
            ("(best single)" if k == best else "")
        a = " / ".join(f"{acc[k][x]:.2f}" for x in groups)
        one = f"{alone[k]['image']:.3f} / {alone[k]['audio']:.3f}" if k in alone else "–"
        print(f"| {k} | {scores[k].mean():.3f} ± {std(scores[k]):.3f} | {g} | {a} | {one} | "
              f"{f'{wall[k]:.0f}' if k in wall else '–'} |")
    print()
    for k in ("concat", "gated", "attention", "late average", "early probe"):
        key = k.replace(" ", "_")
        key = f"fusion_gain_{key}"
        print(f"{key}: {gains[k][0]:.4f}")
        print(f"{key}_ci_low: {gains[k][1]:.4f}")
        print(f"{key}_ci_high: {gains[k][2]:.4f}")
    print(f"best_single: {best}")
    for k in ("image", "audio", "late average", "early probe", *FUSIONS):
        key = k.replace(" ", "_")
        print(f"macro_f1_{key}: {scores[k].mean():.4f}")
        print(f"macro_f1_{key}_std: {std(scores[k]):.4f}")
    for k in FUSIONS:
        for m in SINGLES:
            print(f"macro_f1_{k}_{m}_alone: {alone[k][m]:.4f}")
    print(f"seeds: {seeds}")
    print(f"wall_s: {time.time() - t_start:.0f}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)",
          file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({
            "seeds": args.seeds, "epochs": args.epochs, "image_size": args.image_size, "best_single": best,
            "macro_f1": {k: v.tolist() for k, v in scores.items()},
            "gain": {k: {"mean": v[0], "ci": [v[1], v[2]]} for k, v in gains.items()}, "accuracy_by_group": acc,
            "fused_given_one_modality": alone,
            "runs": {k: {s: {**runs[k][s]["result"]["metrics"], "wall_s": runs[k][s]["wall_s"]} for s in args.seeds}
                     for k in configs}}, indent=2, default=float))


if __name__ == "__main__":
    main()
