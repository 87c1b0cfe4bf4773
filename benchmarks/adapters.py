"""Adapters side by side: every registered adapter on the real offline backbones, at the same time budget.

    .venv/bin/python benchmarks/adapters.py [--minutes 1.5] [--seeds 0 1 2] [--only library-docs glyphs]
                                            [--adapters lora houlsby ...] [--json FILE]

Each run is `lepton train --adapter A --max-minutes M` in its own process (so its peak RSS is its own),
on a dataset of the quality suite (benchmarks/suite/build.py), with Lepton's other defaults (LP-FT head,
the budget's schedule) but with the probe fallback and the TF-IDF companion off, so the figure is the
adapter's own. The classical baseline (benchmarks/quality.py) is scored on the same split.

Prints a table per dataset, then `name: value` lines: `<adapter>_trainable_pct`, `<adapter>_macro_f1`,
`<adapter>_vs_full_f1` (a difference), `<adapter>_train_s`, `<adapter>_peak_rss_mb`, averaged over
datasets and seeds where the adapter applies.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def train(data: str, adapter: str, minutes: float, seed: int, backbone: str) -> dict:
    """One run in a child process: its JSON result and its own peak RSS."""
    cmd = [sys.executable, "-m", "lepton", "train", "--data", data, "--backbone", backbone, "--adapter", adapter,
           "--max-minutes", str(minutes), "--seed", str(seed), "--no-keep-probe", "--no-companion"]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=str(ROOT))
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (Popen.wait would not give it)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        return {"error": (stderr.strip().splitlines() or ["?"])[-1]}
    res = json.loads(stdout.strip().splitlines()[-1])
    res["peak_rss_mb"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=1.5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", nargs="*", default=["library-docs", "glyphs"])
    ap.add_argument("--adapters", nargs="*")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("LEPTON_HOME", tempfile.mkdtemp(prefix="lepton-adapters-"))
    from quality import baseline, datasets

    from lepton.adapters import ADAPTERS
    from lepton.backbones import default_backbone
    from lepton.data import ingest

    rows = []
    for name, (modality, path) in datasets(False, args.only).items():
        spec = default_backbone(modality)
        adapters = [a for a in spec.supports if not args.adapters or a in args.adapters]
        for seed in args.seeds:
            ds = ingest(path, seed=seed).dataset
            base = baseline(modality, ds)
            for adapter in adapters:
                res = train(ds.id, adapter, args.minutes, seed, spec.name)
                row = {"dataset": name, "seed": seed, "adapter": adapter, "backbone": spec.name,
                       "baseline": base["name"], "baseline_macro_f1": base["macro_f1"]}
                if "error" in res:
                    row["error"] = res["error"]
                else:
                    m = res["metrics"]
                    row.update(macro_f1=m["macro_f1"], trainable=m["trainable_params"], total=m["total_params"],
                               train_s=m["train_seconds"], epochs=m["epochs_run"], wall_s=res["seconds"],
                               peak_rss_mb=res["peak_rss_mb"])
                rows.append(row)
                if args.json:  # after every run: a long sweep that is stopped keeps what it measured
                    args.json.write_text(json.dumps(rows, indent=2))
                print(f"{name} seed {seed} {adapter}: " + (row.get("error") or
                      f"macro-F1 {row['macro_f1']:.3f}, {row['trainable']:,} trainable, {row['epochs']} epochs, "
                      f"{row['train_s']:.0f} s training, {row['peak_rss_mb']:.0f} MB"), file=sys.stderr, flush=True)
    ok = [r for r in rows if "error" not in r]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == name]
        print(f"\n{name} ({rs[0]['backbone']}, {args.minutes:g} min, seeds {' '.join(map(str, args.seeds))}; "
              f"{rs[0]['baseline']} {np.mean([r['baseline_macro_f1'] for r in rs]):.3f})")
        print("| adapter | trainable | % | macro-F1 | epochs | train s | peak RSS MB |")
        print("|---|---|---|---|---|---|---|")
        for a in dict.fromkeys(r["adapter"] for r in rs):
            ar = [r for r in rs if r["adapter"] == a and "error" not in r]
            if not ar:
                print(f"| {a} | – | – | {next(r['error'] for r in rs if r['adapter'] == a)} | | | |")
                continue
            f1 = [r["macro_f1"] for r in ar]
            print(f"| {a} | {ar[0]['trainable']:,} | {100 * ar[0]['trainable'] / ar[0]['total']:.3f} | "
                  f"{np.mean(f1):.3f} ± {np.std(f1):.3f} | {np.mean([r['epochs'] for r in ar]):.1f} | "
                  f"{np.mean([r['train_s'] for r in ar]):.0f} | {max(r['peak_rss_mb'] for r in ar):.0f} |")
    print()
    full = {(r["dataset"], r["seed"]): r["macro_f1"] for r in ok if r["adapter"] == "full"}
    for a in ADAPTERS:
        ar = [r for r in ok if r["adapter"] == a]
        if not ar:
            continue
        key = a.replace("-", "_")
        print(f"{key}_trainable_pct: {np.mean([100 * r['trainable'] / r['total'] for r in ar]):.4f}")
        print(f"{key}_macro_f1: {np.mean([r['macro_f1'] for r in ar]):.4f}")
        paired = [r["macro_f1"] - full[r["dataset"], r["seed"]] for r in ar if (r["dataset"], r["seed"]) in full]
        if paired:
            print(f"{key}_vs_full_f1: {np.mean(paired):+.4f}")
        print(f"{key}_train_s: {np.mean([r['train_s'] for r in ar]):.1f}")
        print(f"{key}_peak_rss_mb: {max(r['peak_rss_mb'] for r in ar):.0f}")


if __name__ == "__main__":
    main()
