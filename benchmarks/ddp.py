"""--devices: training throughput of one run with 1 and with 2 DistributedDataParallel processes, side by side.

Both sides are `lepton.train.run` full fine-tuning of MiniLM on the demo topics (320 training rows repeated
--copies times), 1 epoch, the same global batch, alternating repetitions. samples/s is over the training loop
(train_seconds of rank 0, whose steps wait for every rank's gradients), so it is the run's throughput.

On CPU the two processes use gloo and split the cores (one thread each on 2 cores, against one process with
both threads). With --device cuda each process has its own GPU and NCCL, and the script also prints MFU
(model FLOPs utilisation: FLOPs counted by mfu.py over the epoch, against the bf16 matmul peak of one GPU
times the processes).

    .venv/bin/python benchmarks/ddp.py [--copies 2] [--reps 3] [--batch-size 32] [--device cuda]

Last lines: ddp_throughput_ratio (2 processes over 1), samples_per_s_1, samples_per_s_2, and mfu_2 on CUDA.
"""

from __future__ import annotations

import argparse

import _common as C


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.common_args(ap)
    ap.add_argument("--copies", type=int, default=2)
    args = ap.parse_args()

    home = C.home("ddp")
    print(C.load_line("at start"))
    data, splits = C.write_text_data(home, args.copies)
    bs, dev = args.batch_size, args.device
    run = lambda devices: C.lepton_run(data, "full", epochs=1, batch_size=bs, device=dev,  # noqa: E731
                                       devices=devices, companion=False)
    run("1")  # warm-up: ingest, imports, the feature cache the probe fills
    res = C.alternate({"1 process": lambda: run("1"), "2 processes": lambda: run("2")}, args.reps)
    one, two = C.median(res["1 process"], "samples_per_s"), C.median(res["2 processes"], "samples_per_s")
    print()
    print(C.spread_table(res, "samples_per_s", "samples/s", "wall_s", "wall s"))
    print(C.load_line("at end"))
    print(f"{C.BACKBONE} full fine-tuning, {len(splits['train'])} rows, global batch {bs}, device {dev}")
    if dev == "cuda":
        import torch

        from mfu import epoch_flops, matmul_peak

        flops, _ = epoch_flops(data, bs, dev)
        achieved = flops * two / len(splits["train"])
        print(f"mfu_2: {achieved / (2 * matmul_peak(dev, torch.bfloat16) * 1e9):.3f}")
    else:
        print("mfu: not measured (no GPU here; run with --device cuda on a machine with 2 GPUs)")
    print(f"samples_per_s_1: {one:.2f}")
    print(f"samples_per_s_2: {two:.2f}")
    print(f"ddp_throughput_ratio: {two / one:.3f}")


if __name__ == "__main__":
    main()
