"""Does bf16 autocast cost accuracy? Lepton's default recipe in bf16 vs fp32, LoRA and full, on the demo text.

Each run is `lepton.train.run` on assets/demo/topics.csv (its stratified 320 / 40 / 40 split) with the
adapter's default epochs and learning rate; only `precision` differs. Several seeds, because 40 test
examples move accuracy in steps of 2.5 %. Not part of run_all.py (it takes ~5-10 minutes on 2 CPUs).

    .venv/bin/python benchmarks/precision.py [--seeds 0 1 2] [--adapter lora --adapter full]

Last lines: <adapter>_bf16_minus_fp32_accuracy (mean over seeds), and the mean speed-up of bf16.
"""

from __future__ import annotations

import argparse
import statistics

import _common as C


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--adapter", action="append", choices=["lora", "full"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--spin", action="store_true")
    args = ap.parse_args()
    C.home("precision")
    print(C.load_line("at start"))
    from lepton.config import RunConfig
    from lepton.train import run

    rows, summary = [], {}
    for adapter in args.adapter or ["lora", "full"]:
        acc = {"bf16": [], "fp32": []}
        secs = {"bf16": [], "fp32": []}
        for seed in args.seeds:
            for precision in ("bf16", "fp32"):
                res = run(RunConfig(data=str(C.DEMO_TEXT), backbone=C.BACKBONE, adapter=adapter, precision=precision,
                                    seed=seed, device=args.device))
                m = res["metrics"]
                acc[precision].append(m["accuracy"])
                secs[precision].append(m["train_seconds"])
                rows.append([adapter, seed, precision, m["accuracy"], m["macro_f1"], m["best_val_macro_f1"],
                             m["train_seconds"]])
                print(f"  {adapter} seed {seed} {precision}: accuracy {m['accuracy']:.3f}, "
                      f"train {m['train_seconds']:.1f} s  [load {C.os.getloadavg()[0]:.1f}]", flush=True)
        summary[adapter] = (statistics.mean(acc["bf16"]) - statistics.mean(acc["fp32"]),
                            statistics.mean(secs["fp32"]) / statistics.mean(secs["bf16"]))
    print()
    print(C.table(rows, ["adapter", "seed", "precision", "test acc", "test macro-F1", "best val F1", "train s"]))
    print(C.load_line("at end"))
    for adapter, (delta, speed) in summary.items():
        print(f"{adapter}_bf16_minus_fp32_accuracy: {delta:+.3f}")
        print(f"{adapter}_bf16_speedup: {speed:.2f}")


if __name__ == "__main__":
    main()
