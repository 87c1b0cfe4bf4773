"""Seconds from `lepton submit` to the first metric row in the job store, with a worker already running.

A fresh LEPTON_HOME gets a `lepton worker` (default settings: poll 1 s, concurrency 1) and the demo text
ingested once. Each rep runs `python -m lepton submit --data assets/demo/topics.csv` as a subprocess (the
default text backbone, minilm-l6, with its recommended adapter, LoRA), then polls the store every 20 ms
for the run's first metric row; the run is cancelled right after, and the next rep waits until the worker
is idle. The clock starts before the submit process is spawned.

What the seconds are made of (printed per rep): the submit command itself, the wait for the worker's next
poll (0-1 s), the job process importing torch + transformers + peft and loading MiniLM (~3.5 s idle on
2 CPUs), and the first training step.

    .venv/bin/python benchmarks/submit_latency.py [--reps 3] [--poll 0.25]

Last line: submit_to_first_metric_s (median).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import _common as C


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.common_args(ap)
    ap.add_argument("--poll", type=float, help="the worker's --poll seconds (default: the worker's own default)")
    args = ap.parse_args()
    home = C.home("submit")
    print(C.load_line("at start"))
    env = dict(os.environ, LEPTON_HOME=str(home), PYTHONPATH=str(C.ROOT))
    lepton = [sys.executable, "-m", "lepton"]
    subprocess.run([*lepton, "ingest", str(C.DEMO_TEXT)], env=env, capture_output=True, check=True, cwd=C.ROOT)
    poll = ["--poll", str(args.poll)] if args.poll else []
    worker = subprocess.Popen([*lepton, "worker", *poll], env=env, cwd=C.ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    from lepton.jobs.store import get_store

    store = get_store()
    try:
        deadline = time.time() + 60
        while not store.live_workers() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # let the worker finish its own start-up
        times = []
        for r in range(args.reps):
            t0 = time.perf_counter()
            out = subprocess.run([*lepton, "submit", "--data", str(C.DEMO_TEXT), "--device", args.device], env=env,
                                 cwd=C.ROOT, capture_output=True, text=True, check=True)
            t_submit = time.perf_counter() - t0
            run_id = json.loads(out.stdout.strip().splitlines()[-1])["run_id"]
            t_claim = None
            while time.perf_counter() - t0 < 180:
                run = store.get_run(run_id)
                if t_claim is None and run["status"] != "queued":
                    t_claim = time.perf_counter() - t0
                if store.metrics(run_id):
                    break
                if run["status"] in ("failed", "cancelled"):
                    raise SystemExit(f"run {run_id} {run['status']}: {run['error']}")
                time.sleep(0.02)
            first = time.perf_counter() - t0
            times.append(first)
            print(f"  rep {r + 1}/{args.reps}: submit command {t_submit:.2f} s, claimed at {t_claim:.2f} s, "
                  f"first metric row at {first:.2f} s  [load {os.getloadavg()[0]:.1f}]", flush=True)
            subprocess.run([*lepton, "cancel", run_id], env=env, cwd=C.ROOT, capture_output=True)
            while store.get_run(run_id)["status"] == "running":
                time.sleep(0.1)
            time.sleep(1.0)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    print(C.load_line("at end"))
    print(f"submit_to_first_metric_s: {C.statistics.median(times):.2f}")


if __name__ == "__main__":
    main()
