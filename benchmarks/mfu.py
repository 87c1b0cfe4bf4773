"""Model FLOPs utilisation: how close a Lepton full fine-tuning step gets to this machine's matmul peak.

  FLOPs   counted by torch.utils.flop_counter on forward + backward of exactly the batches Lepton trains
          on (same seed, same length bucketing and dynamic padding; one count per distinct batch shape)
  time    `lepton.train.run` full fine-tuning, 1 epoch: train_seconds (the whole step: data, forward,
          backward, clipping, fused AdamW, scheduler, logging)
  peak    the best of square bf16 and fp32 matmuls (2048 and 4096 on CPU, 8192 on CUDA) measured in the
          same process, between the runs, so both see the same machine load

matmul_peak_fraction = (FLOPs / time) / bf16 peak; the fp32 peak is printed beside it (Lepton trains in
bf16 autocast where the device supports it, so bf16 is the honest denominator).

    .venv/bin/python benchmarks/mfu.py [--copies 3] [--reps 3] [--batch-size 32] [--device cuda]

Last lines: matmul_peak_fraction (bf16 peak), matmul_peak_fraction_fp32, achieved_gflops.
"""

from __future__ import annotations

import argparse
import time

import _common as C


def matmul_peak(device: str, dtype) -> float:
    """GFLOP/s of the best square matmul size (median of 3 timings each)."""
    import torch

    best = 0.0
    for n in ((2048, 4096) if device == "cpu" else (8192,)):
        a = torch.randn(n, n, dtype=dtype, device=device)
        b = torch.randn(n, n, dtype=dtype, device=device)
        a @ b
        ts = []
        for _ in range(3):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            a @ b
            if device == "cuda":
                torch.cuda.synchronize()
            ts.append(time.perf_counter() - t)
        best = max(best, 2 * n ** 3 / sorted(ts)[1] / 1e9)
    return best


def epoch_flops(data, batch_size: int, device: str) -> tuple[float, int]:
    """Forward+backward FLOPs of Lepton's first training epoch on `data`, and its number of steps."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from lepton.adapters import get_adapter
    from lepton.backbones import build_backbone
    from lepton.data import load_dataset
    from lepton.heads import classification_head
    from lepton.train.device import autocast, pick_device, use_bf16
    from lepton.train.loop import _batches, _lengths

    ds = load_dataset(str(data))
    exs = ds.examples("train")
    dev = pick_device(device)
    bf16 = use_bf16("auto", dev)
    backbone = build_backbone(C.BACKBONE)
    model = get_adapter("full").wrap(backbone, classification_head(backbone.dim, ds.num_classes)).to(dev).train()
    per_shape: dict[tuple[int, int], float] = {}
    total = 0.0
    batches = _batches(len(exs), batch_size, 0, 0, _lengths(exs))  # what lepton.train.run trains on, in order
    for idx in batches:
        batch = backbone.preprocess([exs[i].x for i in idx])
        shape = tuple(batch["input_ids"].shape)
        if shape not in per_shape:
            counter = FlopCounterMode(display=False)
            with counter:
                with autocast(dev, bf16):
                    logits = model({k: v.to(dev) for k, v in batch.items()})
                F.cross_entropy(logits.float(), torch.zeros(len(idx), dtype=torch.long, device=dev)).backward()
            model.zero_grad(set_to_none=True)
            per_shape[shape] = float(counter.get_total_flops())
        total += per_shape[shape]
    return total, len(batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.common_args(ap)
    ap.add_argument("--copies", type=int, default=3)
    args = ap.parse_args()
    import torch

    home = C.home("mfu")
    print(C.load_line("at start"))
    data, splits = C.write_text_data(home, args.copies)
    bs, dev = args.batch_size, args.device
    C.lepton_run(data, "full", epochs=1, batch_size=bs, device=dev)  # warm-up: ingest, imports, kernels
    flops, steps = epoch_flops(data, bs, dev)
    print(f"{C.BACKBONE} full fine-tuning; {steps} steps of {bs}; {flops / steps / 1e9:.1f} GFLOP per step "
          f"(forward + backward, counted); device {dev}")

    sides = {"peak bf16": lambda: {"gflops": matmul_peak(dev, torch.bfloat16)},
             "peak fp32": lambda: {"gflops": matmul_peak(dev, torch.float32)},
             "lepton full": lambda: C.lepton_run(data, "full", epochs=1, batch_size=bs, device=dev)}
    res = C.alternate(sides, args.reps)
    # samples_per_s is over train_seconds; steps * bs / samples... -> seconds of the epoch
    seconds = [len(splits["train"]) / r["samples_per_s"] for r in res["lepton full"]]
    achieved = flops / C.statistics.median(seconds) / 1e9
    peak16, peak32 = C.median(res["peak bf16"], "gflops"), C.median(res["peak fp32"], "gflops")
    print()
    print(C.table([["lepton full step", achieved, flops / steps / 1e9, C.statistics.median(seconds) / steps * 1e3],
                   ["matmul peak bf16", peak16, "", ""], ["matmul peak fp32", peak32, "", ""]],
                  ["", "GFLOP/s", "GFLOP/step", "ms/step"]))
    print(C.load_line("at end"))
    print(f"matmul_peak_fraction: {achieved / peak16:.2f}")
    print(f"matmul_peak_fraction_fp32: {achieved / peak32:.2f}")
    print(f"achieved_gflops: {achieved:.1f}")


if __name__ == "__main__":
    main()
