"""Every speed benchmark, each in its own process, then one summary table against the goals.

    .venv/bin/python benchmarks/run_all.py [--device cuda] [--only speed_vs_trainer ...]   (make bench)

About 10-15 minutes on 2 CPUs. Each script prints its own table and `name: value` lines; this collects
the lines and ends with one `name: value` line per figure (the same lines, so tools can parse either).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["speed_vs_trainer", "linear_probe", "memory", "mfu", "submit_latency"]
# figure -> (goal, higher is better); figures without a goal are printed for context.
GOALS = {
    "full_ft_vs_trainer": (1.3, True),
    "full_ft_vs_tuned_trainer": (1.0, True),
    "lora_vs_trainer": (1.3, True),
    "linear_probe_vs_trainer": (10.0, True),
    "lora_peak_memory_ratio": (0.6, False),
    "matmul_peak_fraction": (0.35, True),
    "submit_to_first_metric_s": (5.0, False),
}
LINE = re.compile(r"^([a-z][a-z0-9_]*): (-?[0-9.]+)$")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", nargs="+", choices=SCRIPTS)
    args = ap.parse_args()
    figures: dict[str, float] = {}
    t_all = time.time()
    for name in args.only or SCRIPTS:
        print(f"\n==== {name} " + "=" * (60 - len(name)), flush=True)
        t0 = time.time()
        env = {k: v for k, v in os.environ.items() if k != "LEPTON_HOME"}  # each script makes a fresh home
        cmd = [sys.executable, str(HERE / f"{name}.py"), "--device", args.device]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in proc.stdout:
            print(line, end="", flush=True)
            m = LINE.match(line.strip())
            if m:
                figures[m.group(1)] = float(m.group(2))
        if proc.wait():
            print(f"!! {name} exited with {proc.returncode}", flush=True)
        print(f"---- {name}: {time.time() - t0:.0f} s", flush=True)

    print(f"\n==== summary ({time.time() - t_all:.0f} s; load average now {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} CPUs, device {args.device}) " + "=" * 10)
    width = max(map(len, figures), default=10)
    for k, v in figures.items():
        goal = GOALS.get(k)
        verdict = "" if goal is None else (
            f"goal {'>=' if goal[1] else '<='} {goal[0]:g}: " + ("met" if (v >= goal[0]) == goal[1] or v == goal[0]
                                                                 else "MISSED"))
        print(f"  {k:<{width}}  {v:>9.2f}  {verdict}")
    print()
    for k, v in figures.items():
        print(f"{k}: {v:.2f}")


if __name__ == "__main__":
    main()
