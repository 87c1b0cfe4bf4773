"""Training throughput: Lepton vs a plain Hugging Face Trainer script, same model, data, batch and steps.

Model: all-MiniLM-L6-v2 (minilm-l6). Data: assets/demo/topics.csv shuffled once, 320 training rows
(repeated --copies times; 1: 10 steps of 32), the same rows on both sides. Lepton runs `lepton.train.run`
with a RunConfig (1 epoch); the Trainer runs max_steps = the same number of steps. samples/s is over each side's
training loop only (Lepton: train_seconds, Trainer: train_runtime); model loading and evaluation are
outside it on both sides. Sides alternate (A, B, C, A, B, C, ...) and the medians are compared.

Trainer setups:
  tutorial  tokenized with padding="max_length", max_length=128, default collator, fp32 (the usual tutorial)
  tuned     DataCollatorWithPadding (pads per batch) and bf16=True
Both use the Trainer's defaults otherwise (fused AdamW, no checkpoints, same lr/schedule/clip as Lepton).

    .venv/bin/python benchmarks/speed_vs_trainer.py [--only full|lora] [--copies 1] [--reps 3] [--device cuda]

Last lines: full_ft_vs_trainer, full_ft_vs_tuned_trainer, lora_vs_trainer, lora_vs_tuned_trainer.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _common as C


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.common_args(ap)
    ap.add_argument("--copies", type=int, default=1, help="repeat the 320 training rows (10 steps of 32 each)")
    ap.add_argument("--only", choices=["full", "lora"], action="append")
    args = ap.parse_args()
    home = C.home("speed")
    print(C.load_line("at start"))
    work = Path(tempfile.mkdtemp(prefix="trainer-", dir=home))
    data, splits = C.write_text_data(home, args.copies)
    bs, dev = args.batch_size, args.device
    steps = len(splits["train"]) // bs
    print(f"{C.BACKBONE}; {len(splits['train'])} training rows = {steps} steps of {bs}; device {dev}; "
          f"OMP_WAIT_POLICY={C.os.environ.get('OMP_WAIT_POLICY', '(default)')}")

    def lepton(adapter, lr):
        return lambda: C.lepton_run(data, adapter, epochs=1, batch_size=bs, device=dev, lr=lr)

    def trainer(adapter, lr, tuned, n=steps):
        return lambda: C.trainer_run(splits, adapter, padding="dynamic" if tuned else "max_length", bf16=tuned,
                                     batch_size=bs, device=dev, lr=lr, max_steps=n, out_dir=work)

    groups = {
        "full": {"lepton full": lepton("full", 3e-5), "trainer full (tutorial)": trainer("full", 3e-5, False),
                 "trainer full (tuned)": trainer("full", 3e-5, True)},
        "lora": {"lepton lora": lepton("lora", 1e-3), "trainer lora (tutorial)": trainer("lora", 1e-3, False),
                 "trainer lora (tuned)": trainer("lora", 1e-3, True)},
    }
    results: dict[str, list] = {}
    for name in args.only or list(groups):
        print(f"{name}: warm-up (imports, kernels; not counted), then {args.reps} alternating reps")
        lr = 3e-5 if name == "full" else 1e-3
        lepton(name, lr)()
        trainer(name, lr, False, 2)()
        trainer(name, lr, True, 2)()
        results.update(C.alternate(groups[name], args.reps))

    print()
    print(C.spread_table(results, "samples_per_s", "samples/s", "wall_s", "job wall s"))
    print(C.load_line("at end"))
    sps = {k: C.median(v, "samples_per_s") for k, v in results.items()}
    figures = {}
    if "lepton full" in sps:
        figures["full_ft_vs_trainer"] = sps["lepton full"] / sps["trainer full (tutorial)"]
        figures["full_ft_vs_tuned_trainer"] = sps["lepton full"] / sps["trainer full (tuned)"]
    if "lepton lora" in sps:
        figures["lora_vs_trainer"] = sps["lepton lora"] / sps["trainer lora (tutorial)"]
        figures["lora_vs_tuned_trainer"] = sps["lepton lora"] / sps["trainer lora (tuned)"]
    for k, v in figures.items():
        print(f"{k}: {v:.2f}")


if __name__ == "__main__":
    main()
