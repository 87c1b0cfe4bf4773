"""Seconds from `lepton submit` to the first metric row in the job store, with a worker already running.

Two sides, alternating, each with its own LEPTON_HOME, `lepton worker` and the demo text ingested once:
  spare     the default worker: while idle it keeps a spare job process with torch, transformers and
            peft imported, and hands it the next run;
  no-spare  `lepton worker --no-spare`: every run starts a fresh Python process.
Each rep runs `python -m lepton submit --data assets/demo/topics.csv` as a subprocess (the default text
backbone, minilm-l6, with its recommended adapter, LoRA), then polls the store every 20 ms for the run's
first metric row; the run is cancelled right after. Before each submit the worker has been idle for
--idle seconds, as when a user looks at the Train page before clicking Start. The clock starts before
the submit process is spawned.

What the seconds are made of (printed per rep): the submit command itself, the wait for the worker's next
poll (0-0.25 s), the job process's imports (~3 s on 2 CPUs, done ahead by the spare), loading MiniLM and
the first training step.

    .venv/bin/python benchmarks/submit_latency.py [--reps 3] [--idle 5]

Last lines: submit_to_first_metric_s (median, default worker) and
submit_to_first_metric_no_spare_s (median, --no-spare).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import _common as C

LEPTON = [sys.executable, "-m", "lepton"]


class Side:
    def __init__(self, name: str, worker_flags: list[str], idle: float, device: str):
        self.home, self.idle, self.device = C.home("submit") / name, idle, device  # one home per side
        self.env = dict(os.environ, LEPTON_HOME=str(self.home), PYTHONPATH=str(C.ROOT))
        subprocess.run([*LEPTON, "ingest", str(C.DEMO_TEXT)], env=self.env, capture_output=True, check=True, cwd=C.ROOT)
        self.worker = subprocess.Popen([*LEPTON, "worker", *worker_flags], env=self.env, cwd=C.ROOT,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def store(self):
        from lepton.jobs.store import Store

        return Store(Path(self.home) / "lepton.db")

    def __call__(self) -> dict[str, float]:
        store = self.store()
        time.sleep(self.idle)
        t0 = time.perf_counter()
        out = subprocess.run([*LEPTON, "submit", "--data", str(C.DEMO_TEXT), "--device", self.device], env=self.env,
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
        subprocess.run([*LEPTON, "cancel", run_id], env=self.env, cwd=C.ROOT, capture_output=True)
        while store.get_run(run_id)["status"] == "running":
            time.sleep(0.1)
        return {"submit_s": t_submit, "claimed_s": t_claim or first, "first_metric_s": first}

    def stop(self) -> None:
        os.killpg(self.worker.pid, signal.SIGTERM)
        self.worker.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.common_args(ap)
    ap.add_argument("--idle", type=float, default=5.0, help="seconds the worker is idle before each submit (default 5)")
    args = ap.parse_args()
    print(C.load_line("at start"))
    sides = {"spare": Side("spare", [], args.idle, args.device),
             "no-spare": Side("no-spare", ["--no-spare"], args.idle, args.device)}
    try:
        res = C.alternate(sides, args.reps)
    finally:
        for side in sides.values():
            side.stop()
    keys = ["submit_s", "claimed_s", "first_metric_s"]
    print()
    print(C.table([[k, *(C.median(v, x) for x in keys)] for k, v in res.items()], ["worker", *keys]))
    print(C.load_line("at end"))
    print(f"submit_to_first_metric_s: {C.median(res['spare'], 'first_metric_s'):.2f}")
    print(f"submit_to_first_metric_no_spare_s: {C.median(res['no-spare'], 'first_metric_s'):.2f}")


if __name__ == "__main__":
    main()
