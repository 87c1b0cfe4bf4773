"""The Ray executor on a real local Ray cluster: a head with no CPUs and two one-CPU nodes (ray.cluster_utils), a
real `lepton worker --executor ray --address ...` process, the real engine on a tiny backbone.

Queued runs finish once each across both nodes, cancel stops a running task, and killing the node under a run
leaves it interrupted; `lepton resume` then finishes it on the other node from its checkpoint.
"""

from __future__ import annotations

import os
import re

import pytest

from job_fixtures import job_home, spawn_worker, wait_for, write_job_csv  # noqa: F401
from lepton.config import RunConfig
from lepton.jobs import launcher
from lepton.jobs.store import get_store

cluster_utils = pytest.importorskip("ray.cluster_utils", reason="the ray extra (make extras) is not installed")

LONG_ROWS, LONG_EPOCHS = 160, 8  # long enough to act on mid-run (see test_worker.py)


@pytest.fixture(scope="module")
def cluster():
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # the worker subprocesses inherit it
    c = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    yield c, nodes
    c.shutdown()
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before


def tiny(data, **kw) -> RunConfig:
    return RunConfig(**{"data": str(data), "backbone": "tiny-text", "adapter": "full", "epochs": 1, "batch_size": 4,
                        "device": "cpu", "log_every": 5, **kw})


def steps(run_id: str) -> list[int]:
    return [r["step"] for r in get_store().metrics(run_id, split="train", name="loss")]


def ray_worker(spawn_worker, cluster):
    return spawn_worker("--executor", "ray", "--address", cluster[0].address, "--poll", "0.2")


def test_queued_runs_finish_once_each_across_the_nodes(job_home, tmp_path, cluster, spawn_worker):
    data = write_job_csv(tmp_path / "tiny.csv")
    ids = [launcher.submit(tiny(data, seed=i, name=f"r{i}")) for i in range(3)]
    ray_worker(spawn_worker, cluster)
    st = get_store()
    wait_for(lambda: all(st.get_run(i)["status"] in ("finished", "failed") for i in ids), 180, every=0.5,
             what="three runs to finish on the cluster")
    runs = [st.get_run(i) for i in ids]
    assert [r["status"] for r in runs] == ["finished"] * 3, [r["error"] for r in runs]
    assert {r["executor"] for r in runs} == {"ray"} and all(r["attempt"] == 1 for r in runs)
    # The worker sends one run a CPU: two ran at once, so both nodes trained.
    node_ids = {n.node_id for n in cluster[1]}
    assert {r["node"].partition(":")[2] for r in runs} == node_ids
    for r in runs:
        log = (job_home / "runs" / r["id"] / "worker.log").read_text()
        assert len(re.findall(r"lepton ray task: run \S+ attempt 1", log)) == 1  # trained once, never twice
        assert steps(r["id"]) == sorted(set(steps(r["id"]))) and steps(r["id"])
        assert r["result"]["metrics"]["macro_f1"] is not None
        assert list((job_home / "runs" / r["id"] / "tensorboard").glob("events.out.tfevents.*"))  # written on the node
    # The heartbeat tells the dashboard what the cluster has free: everything, once the runs are done.
    beat = wait_for(lambda: [w for w in st.live_workers() if (w.get("resources") or {}).get("cpus") == [2.0, 2.0]],
                    20, what="a heartbeat with both CPUs free")[0]
    assert beat["executor"] == "ray" and beat["resources"]["nodes"] == 3 and beat["resources"]["gpus"] == [0.0, 0.0]


def test_cancel_stops_a_running_task(job_home, tmp_path, cluster, spawn_worker):
    data = write_job_csv(tmp_path / "long.csv", n=LONG_ROWS)
    rid = launcher.submit(tiny(data, epochs=50, log_every=1))
    ray_worker(spawn_worker, cluster)
    st = get_store()
    wait_for(lambda: steps(rid), 90, what="the run to train on a node")
    launcher.cancel(rid)
    wait_for(lambda: st.get_run(rid)["status"] == "cancelled", 30, what="the run to be cancelled")
    assert "lepton child: stopped" in (job_home / "runs" / rid / "worker.log").read_text()
    # Its CPU is free again: the task ended, it was not just forgotten.
    wait_for(lambda: any((w.get("resources") or {}).get("cpus") == [2.0, 2.0] for w in st.live_workers()), 20,
             what="the cancelled task's CPU to come back")


def test_a_lost_node_interrupts_the_run_and_resume_finishes_it_elsewhere(job_home, tmp_path, cluster, spawn_worker):
    c, nodes = cluster
    data = write_job_csv(tmp_path / "long.csv", n=LONG_ROWS)
    rid = launcher.submit(tiny(data, epochs=LONG_EPOCHS, log_every=1))
    ray_worker(spawn_worker, cluster)
    st = get_store()
    run = wait_for(lambda: (r := st.get_run(rid))["checkpoint_step"] and r["node"] and r, 120, every=0.05,
                   what="a checkpoint on a node")
    victim = next(n for n in nodes if run["node"].endswith(n.node_id))
    c.remove_node(victim, allow_graceful=False)  # the machine goes away: raylet, task process and all
    wait_for(lambda: st.get_run(rid)["status"] != "running", 60, what="the worker to notice the lost node")
    run = st.get_run(rid)
    assert run["status"] == "interrupted", (run["status"], run["error"])
    assert "went away" in run["message"] and f"lepton resume {rid}" in run["message"]
    ckpt_step = run["checkpoint_step"]

    assert launcher.resume(rid) == rid  # the same worker picks it up again; Ray places it on the node that is left
    wait_for(lambda: st.get_run(rid)["status"] in ("finished", "failed"), 180, every=0.5, what="the resumed run")
    run = st.get_run(rid)
    assert run["status"] == "finished" and run["attempt"] == 2, run["error"]
    assert not run["node"].endswith(victim.node_id)
    s = steps(rid)
    assert s == sorted(set(s)) and any(x > ckpt_step for x in s)  # the curve continues, nothing drawn twice
    assert "resumed at epoch" in run["log_tail"]


@pytest.mark.parametrize("args,says", [
    (["--executor", "ray", "--address", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1"),
    (["--executor", "ray", "--address", "nonsense"], "--address nonsense: give auto, HOST:PORT or ray://HOST:PORT"),
    (["--address", "127.0.0.1:6379"], "the local executor runs on this machine: add --executor ray"),
    (["--executor", "slurm"], "unknown executor 'slurm'; valid names: local, ray"),
])
def test_a_worker_that_cannot_start_says_why_and_leaves_nothing(job_home, args, says):
    from job_fixtures import run_lepton

    res = run_lepton("worker", "--once", *args, check=False, timeout=60)
    assert res.returncode == 2 and says in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (job_home / "worker.pid").exists()
