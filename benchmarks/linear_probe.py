"""A whole linear-probe job: Lepton vs a plain Hugging Face Trainer, wall time from model load to test accuracy.

Both train a classifier head for 10 epochs on a frozen MiniLM (minilm-l6), batch 32, on the same
320 / 40 / 40 split of assets/demo/topics.csv. The Trainer runs the frozen backbone on every batch of
every epoch; Lepton runs it once per split into the frozen-feature cache (LEPTON_HOME/cache/features)
and trains the head on cached features. Lepton's job is a real `lepton.train.run`: validation every
epoch, test report, the pretrained-baseline extras, checkpoints and the saved model all count.

  lepton (cold cache)  the feature cache is emptied before each run: the first job on this data
  lepton (warm cache)  a later job on the same backbone and data (another lr, more epochs, ...)
  trainer (tutorial)   padding="max_length" (128), fp32; trainer (tuned): dynamic padding + bf16

    .venv/bin/python benchmarks/linear_probe.py [--reps 2] [--epochs 10] [--device cuda]

Last lines: linear_probe_vs_trainer (Trainer tutorial / Lepton cold), linear_probe_warm_vs_trainer,
linear_probe_vs_tuned_trainer (Trainer tuned / Lepton cold).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import _common as C


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.common_args(ap)
    ap.set_defaults(reps=2)  # the tutorial Trainer side alone takes 1.5-3 minutes a rep on 2 CPUs
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    home = C.home("probe")
    print(C.load_line("at start"))
    work = Path(tempfile.mkdtemp(prefix="trainer-", dir=home))
    data, splits = C.write_text_data(home, 1)
    bs, dev, ep = args.batch_size, args.device, args.epochs
    print(f"{C.BACKBONE} frozen; {len(splits['train'])} training rows, {ep} epochs of batch {bs}; device {dev}")

    def lepton(cold):
        def fn():
            if cold:
                shutil.rmtree(home / "cache" / "features", ignore_errors=True)
            return C.lepton_run(data, "linear-probe", epochs=ep, batch_size=bs, device=dev, lr=3e-3)
        return fn

    def trainer(tuned):
        return lambda: C.trainer_run(splits, "linear-probe", padding="dynamic" if tuned else "max_length", bf16=tuned,
                                     batch_size=bs, device=dev, lr=3e-3, epochs=ep, out_dir=work, evaluate=True)

    sides = {"lepton (cold cache)": lepton(True), "lepton (warm cache)": lepton(False),
             "trainer (tutorial)": trainer(False), "trainer (tuned)": trainer(True)}
    print("warm-up: one short run per side (imports, kernels), not counted")
    C.lepton_run(data, "linear-probe", epochs=1, batch_size=bs, device=dev)
    C.trainer_run(splits, "linear-probe", padding="dynamic", bf16=True, batch_size=bs, device=dev, lr=3e-3,
                  max_steps=2, out_dir=work)
    res = C.alternate(sides, args.reps)

    print()
    print(C.spread_table(res, "wall_s", "job wall s", "accuracy", "test accuracy"))
    print(C.load_line("at end"))
    wall = {k: C.median(v, "wall_s") for k, v in res.items()}
    print(f"linear_probe_vs_trainer: {wall['trainer (tutorial)'] / wall['lepton (cold cache)']:.2f}")
    print(f"linear_probe_warm_vs_trainer: {wall['trainer (tutorial)'] / wall['lepton (warm cache)']:.2f}")
    print(f"linear_probe_vs_tuned_trainer: {wall['trainer (tuned)'] / wall['lepton (cold cache)']:.2f}")


if __name__ == "__main__":
    main()
