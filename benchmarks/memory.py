"""Peak memory of LoRA vs full fine-tuning: same backbone (minilm-l6), data, batch and steps.

Each run is its own subprocess, so each peak is clean: a `lepton.train.run` job (1 epoch of 30 steps
of 32 on topics.csv x3, bf16 where supported) and the process's peak RSS (ru_maxrss) at the end.
Also printed: the RSS right after `import torch, transformers, peft` in that process (the floor every
Lepton job pays before it touches a model), and the peaks above that floor.
Sides alternate (lora, full, lora, full, ...); medians are compared. With --device cuda the GPU peak
(torch.cuda.max_memory_allocated) is reported as well.

    .venv/bin/python benchmarks/memory.py [--reps 2] [--device cuda]

Last lines: lora_peak_memory_ratio (peak RSS, LoRA / full), lora_peak_memory_ratio_above_import
(the same, minus the import floor), and lora_gpu_peak_memory_ratio on CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import _common as C


def child(adapter: str, data: str, device: str, batch_size: int) -> None:
    import peft  # noqa: F401
    import psutil
    import torch
    import transformers  # noqa: F401

    floor = psutil.Process().memory_info().rss / 2**20
    out = C.lepton_run(Path(data), adapter, epochs=1, batch_size=batch_size, device=device)
    res = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "import_rss_mb": floor,
           "samples_per_s": out["samples_per_s"]}
    if device == "cuda":
        res["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(res), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.common_args(ap)
    ap.set_defaults(reps=2)
    ap.add_argument("--copies", type=int, default=3)
    ap.add_argument("--child", nargs=2, metavar=("ADAPTER", "DATA"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.device, args.batch_size)
    home = C.home("memory")
    print(C.load_line("at start"))
    data, splits = C.write_text_data(home, args.copies)
    print(f"{C.BACKBONE}; {len(splits['train'])} training rows, batch {args.batch_size}, 1 epoch; device {args.device}")

    def side(adapter):
        def fn():
            with tempfile.TemporaryDirectory(dir=home) as tmp:  # own runs/, shared dataset via the data path
                env = dict(os.environ, LEPTON_HOME=str(home))
                p = subprocess.run([sys.executable, __file__, "--child", adapter, str(data), "--device", args.device,
                                    "--batch-size", str(args.batch_size)], capture_output=True, text=True, env=env,
                                   cwd=tmp)
            line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
            if p.returncode or not line:
                raise SystemExit(f"{adapter} child failed:\n{p.stderr[-3000:]}")
            r = json.loads(line[-1][7:])
            r["above_import_mb"] = r["peak_rss_mb"] - r["import_rss_mb"]
            return r
        return fn

    res = C.alternate({"lora": side("lora"), "full": side("full")}, args.reps)
    keys = ["peak_rss_mb", "import_rss_mb", "above_import_mb"] + (["gpu_peak_mb"] if args.device == "cuda" else [])
    print()
    print(C.table([[k, *(C.median(v, x) for x in keys)] for k, v in res.items()], ["adapter", *keys]))
    print(C.load_line("at end"))
    m = {k: {x: C.median(v, x) for x in keys} for k, v in res.items()}
    print(f"lora_peak_memory_ratio: {m['lora']['peak_rss_mb'] / m['full']['peak_rss_mb']:.2f}")
    print(f"lora_peak_memory_ratio_above_import: {m['lora']['above_import_mb'] / m['full']['above_import_mb']:.2f}")
    if args.device == "cuda":
        print(f"lora_gpu_peak_memory_ratio: {m['lora']['gpu_peak_mb'] / m['full']['gpu_peak_mb']:.2f}")


if __name__ == "__main__":
    main()
