"""What running the queue on Ray costs against the local executor, on the same machine, side by side.

A real local Ray cluster (ray.cluster_utils: a head with no CPUs and two one-CPU nodes) and, for each side, its own
LEPTON_HOME and a real `lepton worker`: `--executor ray --address ...` against the default local worker (child
processes, with its preloaded spare). The runs are tiny (the random tiny-text backbone, 40 rows, 1 epoch), so
the figures are the executor's overhead, not training.

  1. --reps single runs per side, alternating: seconds from `launcher.submit` to the run's first metric row,
     and to its finished status;
  2. a queue of --queue runs per side: the ray worker on the two nodes (one run a CPU), the local worker
     with --concurrency 2; wall time and the count finished.

    .venv/bin/python benchmarks/executor.py [--reps 3] [--queue 20]

Last lines: ray_vs_local_overhead_s (median whole-run seconds, ray minus local), submit_to_first_metric_{local,ray}_s,
queue_{local,ray}_wall_s and queue_{local,ray}_finished.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _common as C

LEPTON = [sys.executable, "-m", "lepton"]


def tiny_csv(path: Path) -> Path:
    sys.path.insert(0, str(C.ROOT / "tests"))
    from job_fixtures import write_job_csv

    return write_job_csv(path, n=40)


class Side:
    def __init__(self, name: str, flags: list[str], data: Path):
        from lepton.jobs.store import Store

        self.name, self.home = name, C.home("executor") / name
        self.env = dict(os.environ, LEPTON_HOME=str(self.home), PYTHONPATH=str(C.ROOT), RAY_AUTH_MODE="disabled")
        self.data = data
        self.worker = subprocess.Popen([*LEPTON, "worker", "--poll", "0.1", *flags], env=self.env, cwd=C.ROOT,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.store = Store(self.home / "lepton.db")

    def submit(self, seed: int) -> str:
        """As `lepton submit` does, into this side's home (the caller points LEPTON_HOME at it)."""
        from lepton.config import RunConfig
        from lepton.jobs import launcher

        return launcher.submit(RunConfig(data=str(self.data), backbone="tiny-text", adapter="full", epochs=1,
                                         batch_size=4, device="cpu", log_every=1, seed=seed))

    def wait(self, ids: list[str], timeout: float) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            done = [self.store.get_run(i)["status"] for i in ids]
            if all(s in ("finished", "failed", "cancelled", "interrupted") for s in done):
                break
            time.sleep(0.05)
        return sum(self.store.get_run(i)["status"] == "finished" for i in ids)

    def one(self, seed: int, timeout: float) -> tuple[float, float]:
        t0 = time.monotonic()
        rid = self.submit(seed)
        first = None
        while time.monotonic() - t0 < timeout:
            if first is None and self.store.metrics(rid):
                first = time.monotonic() - t0
            if self.store.get_run(rid)["status"] in ("finished", "failed"):
                break
            time.sleep(0.02)
        return first or float("nan"), time.monotonic() - t0

    def stop(self) -> None:
        self.worker.terminate()
        self.worker.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--queue", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=300, help="seconds a run or a queue may take before it counts as lost")
    args = ap.parse_args()
    from ray.cluster_utils import Cluster

    os.environ["RAY_AUTH_MODE"] = "disabled"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    data = tiny_csv(C.home("executor") / "tiny.csv")
    try:
        print(C.load_line("at start"))
        sides = {}
        for name, flags in (("local", ["--concurrency", "2"]), ("ray", ["--executor", "ray", "--address", cluster.address])):
            os.environ["LEPTON_HOME"] = str(C.home("executor") / name)
            sides[name] = Side(name, flags, data)
        os.environ["LEPTON_HOME"] = str(C.home("executor") / "ray")
        time.sleep(8)  # both workers up (the local one with its spare, the ray one connected)
        single: dict[str, list[tuple[float, float]]] = {n: [] for n in sides}
        for rep in range(args.reps):
            for name, side in sides.items():
                os.environ["LEPTON_HOME"] = str(side.home)
                single[name].append(side.one(rep, args.timeout))
                print(f"rep {rep} {name}: first metric {single[name][-1][0]:.2f} s, finished {single[name][-1][1]:.2f} s",
                      flush=True)
                time.sleep(3)  # the local worker's spare is ready again, as between a user's clicks
        queue = {}
        for name, side in sides.items():
            os.environ["LEPTON_HOME"] = str(side.home)
            t0 = time.monotonic()
            ids = [side.submit(100 + i) for i in range(args.queue)]
            n = side.wait(ids, args.timeout)
            queue[name] = (time.monotonic() - t0, n)
            print(f"queue {name}: {n}/{args.queue} finished in {queue[name][0]:.1f} s", flush=True)
        for side in sides.values():
            side.stop()
    finally:
        cluster.shutdown()
    med = {n: (statistics.median(f for f, _ in v), statistics.median(w for _, w in v)) for n, v in single.items()}
    print(C.table([[n, f"{med[n][0]:.2f}", f"{med[n][1]:.2f}", f"{queue[n][0]:.1f}", str(queue[n][1])] for n in sides],
                  ["executor", "submit → first metric (s)", "submit → finished (s)", f"queue of {args.queue}: wall (s)",
                   "finished"]))
    print(C.load_line("at end"))
    print(f"submit_to_first_metric_local_s: {med['local'][0]:.2f}")
    print(f"submit_to_first_metric_ray_s: {med['ray'][0]:.2f}")
    print(f"queue_local_wall_s: {queue['local'][0]:.1f}")
    print(f"queue_local_finished: {queue['local'][1]}")
    print(f"queue_ray_wall_s: {queue['ray'][0]:.1f}")
    print(f"queue_ray_finished: {queue['ray'][1]}")
    print(f"ray_vs_local_overhead_s: {med['ray'][1] - med['local'][1]:.2f}")


if __name__ == "__main__":
    main()
