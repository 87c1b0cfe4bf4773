"""`ray`: each run is a Ray task on a cluster, with the CPUs and GPUs its config asks for.

    lepton worker --executor ray [--address auto|HOST:PORT|ray://HOST:PORT]

The task trains through child.execute on whichever node Ray picks. Its events go into a Ray queue (an actor
pinned to the worker's node, so it lives as long as the worker does); the worker drains it every turn and
writes the store, which stays on this machine. The task returns its verdict and the worker records it.
Run folders and datasets must be on storage every node reaches at the same path (LEPTON_STORAGE, paths.py).
Cancel is ray.cancel (a KeyboardInterrupt in the task, then force). A node that dies or a task process that is
killed leaves the run interrupted; `lepton resume` continues it from its last checkpoint on any node.
Tasks are not retried by Ray: a resume is the user's decision, and a retry would train the same run twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import IO, Any

from lepton import paths
from lepton.errors import LeptonError
from lepton.jobs.executors.base import EXECUTORS, Executor, Exit, Job

FLUSH_S = 0.5  # a task sends its buffered metric events at most this often (one actor call each time)
DRAIN_MAX = 10_000

log = logging.getLogger("lepton.worker")


def _ray():
    try:
        import ray
    except ImportError:
        raise LeptonError("the ray executor needs the optional extra: `pip install 'lepton[ray]'` (or `make extras`)") from None
    return ray


def _reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Ray waits about a minute for a cluster that is not there; a person at a terminal should hear sooner."""
    if not address or address == "auto":
        return  # Ray finds a cluster on this machine itself, and says at once when there is none
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise LeptonError(f"--address {address}: give auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise LeptonError(f"no Ray cluster answers at {address} ({e.strerror or e}): start one with "
                          "`ray start --head` there, or check the address `ray status` prints") from None


class QueueEmit:
    """emit for a task: events, tagged with the run and attempt, into the worker's queue. Metrics and progress
    wait up to FLUSH_S; anything else (a log line, a checkpoint, the result) goes at once with what waited."""

    def __init__(self, queue, run_id: str, attempt: int):
        self.queue, self.tag = queue, (run_id, attempt)
        self._buf: list[tuple] = []
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, kind: str, **data: Any) -> None:
        with self._lock:
            self._buf.append((*self.tag, kind, data))
        if kind not in ("metrics", "progress") or time.monotonic() - self._last >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            buf, self._buf = self._buf, []
            self._last = time.monotonic()
        if buf:
            self.queue.put_nowait_batch(buf)


def _task(run: dict, queue) -> dict:
    """What runs on the node: the same training as a local child, its output in the run's worker.log."""
    import ray

    from lepton.jobs import child

    child.lower_priority()
    child.output_to(Path(run["run_dir"]) / "worker.log")
    node = f"{socket.gethostname()}:{ray.get_runtime_context().get_node_id()}"
    emit = QueueEmit(queue, run["id"], run["attempt"])
    emit("node", node=node)
    print(f"lepton ray task: run {run['id']} attempt {run['attempt']} pid {os.getpid()} on node {node}", flush=True)
    return child.execute(run, emit)


class RayJob(Job):
    def __init__(self, executor: "RayExecutor", run: dict, ref):
        self.executor, self.run_id, self.attempt, self.ref = executor, run["id"], run["attempt"], ref
        self._exit: Exit | None = None

    def poll(self) -> Exit | None:
        if self._exit is None:
            ray = self.executor.ray
            if not ray.wait([self.ref], timeout=0)[0]:
                return None
            self.executor.drain()  # the task's last events before its verdict
            self._exit = self._verdict(ray)
        return self._exit

    def _verdict(self, ray) -> Exit:
        from lepton.jobs.child import record

        try:
            verdict = ray.get(self.ref)
        except ray.exceptions.TaskCancelledError:
            return Exit(143, "stopped by ray.cancel")
        except (ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError, ray.exceptions.OwnerDiedError,
                ray.exceptions.ObjectLostError) as e:
            where = f" ({self.node})" if self.node else ""
            return Exit(-9, f"{type(e).__name__}: the Ray node or task process running it{where} went away", lost=True)
        except ray.exceptions.RayError as e:  # the task could not start: lepton missing on the node, say
            return Exit(1, f"the Ray task failed: {str(e).strip().splitlines()[-1][:500]}")
        if verdict.get("stopped"):
            return Exit(143, "stopped")
        record(self.executor.store, self.run_id, verdict)
        return Exit(0, "done")

    def stop(self) -> None:
        self.executor.ray.cancel(self.ref)  # KeyboardInterrupt in the task: it stops and returns "stopped"

    def kill(self) -> None:
        self.executor.ray.cancel(self.ref, force=True)

    def wait(self, timeout: float) -> Exit | None:
        self.executor.ray.wait([self.ref], timeout=timeout)
        return self.poll()


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    name = "ray"
    cluster = True

    def __init__(self, worker_id, store, threads, spare, address):
        super().__init__(worker_id, store, threads, spare, address)
        ray = self.ray = _ray()
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        env = {"LEPTON_HOME": str(paths.home()), "LEPTON_STORAGE": str(paths.storage()), "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [paths.checkout(), os.environ.get("PYTHONPATH")]))}
        _reachable(address)
        try:
            ray.init(address=address or "auto", logging_level="WARNING", log_to_driver=False,
                     runtime_env={"env_vars": env})
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise LeptonError(f"could not connect to a Ray cluster at {address or 'auto'}: {str(e).rstrip('.')}. "
                              "Start one with `ray start --head`, or give --address HOST:PORT") from None
        here = ray.get_runtime_context().get_node_id()
        self.queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy":
                                          NodeAffinitySchedulingStrategy(here, soft=False)})
        # One fresh process per run (max_calls=1): torch's threads and memory go with it.
        self.remote = ray.remote(max_calls=1, max_retries=0)(_task)
        self.jobs: dict[str, RayJob] = {}
        self.emitters: dict[str, Any] = {}
        log.info("ray executor: connected to %s (%s)", address or "auto", self.resources())

    def start(self, run: dict, log_file: IO[bytes]) -> Job:
        from lepton.config import RunConfig, device_count
        from lepton.jobs.child import forget_replayed

        config = RunConfig.from_dict(run["config"], source=f"run {run['id']}")
        gpus = config.num_gpus
        if gpus is None:  # a GPU (one per --devices process) where the cluster has one, unless the run asked for the CPU
            wanted = device_count(config.devices) or 1  # auto: every GPU Ray gives the task, at least one
            gpus = wanted if self.ray.cluster_resources().get("GPU") and config.device != "cpu" else 0
        forget_replayed(self.store, run)
        ref = self.remote.options(num_cpus=config.num_cpus, num_gpus=gpus).remote(run, self.queue)
        job = self.jobs[run["id"]] = RayJob(self, run, ref)
        self.emitters[run["id"]] = self.store.emitter(run["id"])
        self.store.update_run(run["id"], message=f"submitted to Ray: waiting for a node with {config.num_cpus:g} CPU"
                                                 f"{f' and {gpus:g} GPU' if gpus else ''} free")
        log.info("run %s: submitted to Ray (attempt %d, %g CPU, %g GPU)", run["id"], run["attempt"],
                 config.num_cpus, gpus)
        return job

    def tend(self, idle: bool) -> None:
        self.drain()

    def drain(self) -> None:
        """Write the tasks' events into the store. Events of an attempt that is no longer the current one (a
        cancelled task still flushing) are dropped: its run has moved on."""
        events = self.queue.get_nowait_batch(min(self.queue.qsize(), DRAIN_MAX))
        for run_id, attempt, kind, data in events:
            job = self.jobs.get(run_id)
            if job is None or job.attempt != attempt:
                continue
            if kind == "node":
                job.node = data["node"]
                self.store.update_run(run_id, node=job.node, message=f"training on Ray node {job.node}")
                log.info("run %s: running on node %s", run_id, job.node)
            else:
                self.emitters[run_id](kind, **data)
        for run_id, job in list(self.jobs.items()):
            self.emitters[run_id].flush()
            if job._exit is not None:
                del self.jobs[run_id], self.emitters[run_id]

    def capacity(self) -> int:
        """One run a CPU of the cluster as it is now (runs ask for one CPU unless their config says otherwise).
        More would sit in Ray's queue while the store calls them running."""
        return int(self.ray.cluster_resources().get("CPU", 1))

    def resources(self) -> dict[str, Any] | None:
        total, free = self.ray.cluster_resources(), self.ray.available_resources()
        nodes = sum(1 for n in self.ray.nodes() if n.get("Alive"))
        return {"nodes": nodes, "cpus": [free.get("CPU", 0.0), total.get("CPU", 0.0)],
                "gpus": [free.get("GPU", 0.0), total.get("GPU", 0.0)]}

    def close(self) -> None:
        try:
            self.ray.shutdown()
        except Exception as e:  # the cluster went first; the worker is stopping anyway
            log.warning("ray shutdown: %s", e)
