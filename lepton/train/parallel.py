"""Several processes training one run (`--devices N`): PyTorch DistributedDataParallel behind a small seam.

The loop talks to one `Parallel` whether it trains alone or as one of N ranks; alone, every call is a no-op:
- `shard(idx)`: this rank's part of the global batch (`--batch-size` is the global batch) and the share its
  loss is scaled by, so the gradients DDP averages are those of the whole batch's mean loss;
- `wrap(module)`: what the training forward runs through (DDP all-reduces the gradients during backward);
- `follow(*numbers)`: rank 0's numbers on every rank. The learning rate each step, the time budget's stop and
  the controller's decisions are all timing-dependent; following rank 0 keeps the ranks' weights identical and
  keeps every rank at the same collectives (one rank leaving a loop early would leave the others waiting);
- `mean(t)`: the mean over ranks (the logged training loss is the global batch's);
- `close()`: waits for the other ranks and takes the process group down.

Rank 0 is the run itself, with the real emit, run folder, budget and controller. It plans alone (phases 1-5),
then at phase 7 starts ranks 1..N-1 as spawned processes with its resolved plan. They load the same data and
model, follow rank 0 through training in a scratch folder, and stop before evaluation, which rank 0 alone does.
Checkpoints are rank 0's and count steps of the global batch, so a run resumes on any number of devices.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from lepton import paths
from lepton.config import device_count
from lepton.errors import ConfigError, RunError
from lepton.train.events import Emit

JOIN_TIMEOUT_S = 600.0  # a rank that has not reached the group by then will not (its data and model load took far less)
COLLECTIVE_TIMEOUT = timedelta(minutes=10)  # a collective waits this long for a stalled rank before the run fails


def world_size(devices: str, device: torch.device) -> int:
    """How many processes train: one per GPU; on CPU, N gloo processes when N is asked for (auto: one)."""
    n = device_count(devices)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if n is None:
        return max(gpus, 1)
    if device.type == "cuda" and n > gpus:
        raise ConfigError(f"devices={n} but {gpus} CUDA GPU{'s are' if gpus != 1 else ' is'} visible here; "
                          f"use --devices {gpus} or auto")
    if device.type == "mps" and n > 1:
        raise ConfigError("devices>1 needs CUDA GPUs or the CPU; Apple MPS trains in one process")
    return n


class Parallel:
    """One process: the default, every call a no-op."""

    rank, world = 0, 1

    def shard(self, idx):
        return idx, 1.0

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        return module

    def follow(self, *values: float) -> tuple[float, ...]:
        return values

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def close(self) -> None:
        pass

    def __enter__(self) -> "Parallel":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


class Group(Parallel):
    """This process's place in a DistributedDataParallel group of `world` processes."""

    def __init__(self, device: torch.device, helpers: list | None = None, scratch: Path | None = None,
                 said: queue.Queue | None = None):
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device, self.helpers, self.scratch, self.said = device, helpers or [], scratch, said
        # follow() runs every step: over NCCL its .tolist() would wait for the GPU each time, so the few control
        # numbers travel over a gloo group on the CPU instead (every rank builds it here, in the same order).
        self.control = dist.new_group(backend="gloo") if dist.get_backend() == "nccl" else None

    def shard(self, idx):
        part = idx[self.rank::self.world]
        if not len(part):  # a last batch smaller than the group: this rank steps on one example that counts for nothing
            return idx[:1], 0.0
        return part, len(part) * self.world / len(idx)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
            if self.device.type == "cuda" else None
        # static_graph: backbones carry parameters no forward uses (a BERT folder's pooler, say), which plain DDP
        # waits for forever. The set is the same every step, so DDP can learn it in the first step, where
        # find_unused_parameters would walk the autograd graph again at every step.
        return DistributedDataParallel(module, device_ids=ids, static_graph=True)

    def follow(self, *values: float) -> tuple[float, ...]:
        t = torch.tensor(values, dtype=torch.float64)
        dist.broadcast(t, src=0, group=self.control)
        return tuple(t.tolist())

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        t = t.detach().clone()
        dist.all_reduce(t)
        return t / self.world

    def close(self) -> None:
        """Training is over on every rank: the helpers return now, and rank 0 evaluates alone."""
        for p in self.helpers:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass  # __exit__ kills it
        self.__exit__()
        self.helpers, self.said = [], None  # done: a later error in rank 0's evaluation is its own

    def __exit__(self, *exc: Any) -> None:
        failed = self._failure() if exc and exc[1] is not None else None
        for p in self.helpers:
            if p.poll() is None:
                p.kill()
                p.wait()
        if dist.is_initialized() and (not exc or exc[1] is None):
            dist.destroy_process_group()  # (after a failure the group is left as it is: its peers are gone)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        if failed:  # the run failed because another rank did: say what that rank said, not "connection closed"
            raise RunError(f"devices: another training process failed: {failed}") from exc[1]

    def _failure(self) -> str | None:
        """What a failed helper reported (it reports before it exits, so wait for that a moment)."""
        deadline = time.time() + 5.0
        while self.said is not None and time.time() < deadline:
            try:
                msg = self.said.get(timeout=0.2)
            except queue.Empty:
                if all(p.poll() is None for p in self.helpers):
                    return None  # nobody failed: rank 0's own error stands
                continue
            if msg.startswith(FAILED):
                return msg[len(FAILED):]
        return None


def start(config: Any, world: int, device: torch.device, frozen: bool, run_id: str, run_dir: Path, emit: Emit,
          join: Callable[[], None] | None = None, resume: bool = False) -> Parallel:
    """The run's Parallel: this process alone, rank 0 starting the others, or (join given) a helper joining them.

    config is rank 0's resolved plan with its epochs bound, which the other ranks train to exactly. The result is
    a context manager: leaving it by an exception stops the other ranks at once instead of leaving them waiting."""
    if join is not None:  # a helper: the group forms once every rank has built its model
        join()
        return Group(device)
    if world == 1:
        return Parallel()
    if frozen:
        emit("log", level="info", message=f"devices={config.devices}: {config.adapter} trains a head on cached "
             "features, which one process does fastest, so it trains in one")
        return Parallel()
    # Each other rank resumes its own scratch copy of what rank 0 has so far: the plan, and the last checkpoint when
    # this is a resume (hard-linked: rank 0 replaces last.pt atomically later, so the link keeps the version loaded).
    scratch = Path(tempfile.mkdtemp(prefix=f"ddp-{run_id}-", dir=paths.tmp_dir()))
    last = run_dir / "checkpoints" / "last.pt"
    for rank in range(1, world):
        mine = scratch / f"rank-{rank}"
        (mine / "checkpoints").mkdir(parents=True)
        (mine / "plan.json").write_text(json.dumps({"config": config.to_dict(), "reasons": []}))
        if resume and last.exists():  # only what rank 0 itself resumed: a stale last.pt would put the ranks apart
            try:
                os.link(last, mine / "checkpoints" / "last.pt")
            except OSError:  # a filesystem without hard links (some network shares)
                shutil.copy2(last, mine / "checkpoints" / "last.pt")
    backend = "nccl" if device.type == "cuda" else "gloo"
    port = _free_port()
    threads = max(1, (os.cpu_count() or 1) // world) if device.type == "cpu" else torch.get_num_threads()
    # Plain subprocesses, not multiprocessing's spawn: that re-imports the caller's __main__ (a user's script,
    # Streamlit, a Ray worker) and pickles its arguments. The job is one JSON line on stdin.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(Path(__file__).resolve().parents[2]),
                                                                     os.environ.get("PYTHONPATH"))))}
    said: queue.Queue = queue.Queue()
    helpers = []
    try:
        for rank in range(1, world):
            p = subprocess.Popen([sys.executable, "-c", HELPER], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, env=env)
            p.stdin.write(json.dumps({"rank": rank, "world": world, "backend": backend, "port": port,
                                      "config": config.to_dict(), "run_id": run_id,
                                      "scratch": str(scratch / f"rank-{rank}"),
                                      "threads": threads}) + "\n")
            p.stdin.close()
            threading.Thread(target=_relay, args=(p, said), daemon=True).start()
            helpers.append(p)
        emit("log", level="info", message=f"devices={world}: started {world - 1} more training "
             f"process{'es' if world > 2 else ''} ({backend}); each step's batch of {config.batch_size} is split "
             f"across {world}")
        _wait_ready(helpers, said)
        if device.type == "cpu":
            torch.set_num_threads(threads)
        _init_group(backend, port, 0, world)
    except BaseException:
        for p in helpers:
            p.kill()
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return Group(device, helpers, scratch, said)


READY, FAILED = "lepton-ddp: ready", "lepton-ddp: failed: "
HELPER = "import json, sys; from lepton.train.parallel import helper; helper(json.loads(sys.stdin.readline()))"


def _relay(p: subprocess.Popen, said: queue.Queue) -> None:
    """A helper's stdout carries only its protocol lines (helper() sends everything else to stderr)."""
    for line in p.stdout:
        said.put(line.rstrip("\n"))


def _wait_ready(helpers: list[subprocess.Popen], said: queue.Queue) -> None:
    """Until every helper has loaded its data and model (or one failed: its error becomes the run's)."""
    deadline, seen = time.time() + JOIN_TIMEOUT_S, 0
    while seen < len(helpers):
        try:
            msg = said.get(timeout=0.5)
        except queue.Empty:
            msg = None
        if msg == READY:
            seen += 1
        elif msg is not None and msg.startswith(FAILED):
            raise RunError(f"devices: another training process {msg[len(FAILED):]}")
        elif any(p.poll() is not None for p in helpers):
            code = next(p.returncode for p in helpers if p.poll() is not None)
            raise RunError(f"devices: another training process exited before joining (exit code {code}); "
                           "its traceback is in this run's log")
        elif time.time() > deadline:
            raise RunError(f"devices: the other training processes did not start within {JOIN_TIMEOUT_S:.0f} s")


def _init_group(backend: str, port: int, rank: int, world: int) -> None:
    """Join the process group. Gloo prints "[Gloo] Rank 0 is connected to 1 peer ranks" on the C-level stdout,
    which is `lepton train`'s JSON channel: it goes to stderr instead."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                                timeout=COLLECTIVE_TIMEOUT)
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def helper(job: dict[str, Any]) -> None:
    """Ranks 1..N-1: rank 0's plan, the loop up to the end of training, nothing emitted, nothing kept.

    Always a resume of the scratch folder: that is how the loop takes a plan it did not make (and the
    checkpoint, when rank 0 has one)."""
    from lepton.config import RunConfig
    from lepton.train import loop
    from lepton.train.events import null_emit

    rank, world, backend = job["rank"], job["world"], job["backend"]
    # fd 1 is rank 0's pipe for the protocol lines alone: whatever a library prints (gloo's banner, say) goes to
    # stderr, like the rest of this rank's output.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)
    scratch = Path(job["scratch"])
    threading.Thread(target=_exit_with(os.getppid(), scratch), daemon=True).start()
    torch.set_num_threads(job["threads"])
    if backend == "nccl":
        torch.cuda.set_device(rank)

    def join() -> None:  # called by the loop once its model is built, where rank 0 waits
        print(READY, file=protocol, flush=True)
        _init_group(backend, job["port"], rank, world)

    # Not unwound on failure: destroying a process group that a peer is still waiting on can block for good.
    stack = contextlib.ExitStack()
    try:
        loop._train(RunConfig.from_dict(job["config"]), null_emit, job["run_id"], scratch, True, None, stack, join)
    except BaseException as e:  # noqa: BLE001 - anything: rank 0 names it instead of waiting
        _remove(scratch)
        try:
            traceback.print_exc()  # into rank 0's stderr: the run's log
            print(f"{FAILED}{type(e).__name__}: {e}", file=protocol, flush=True)
        except OSError:
            pass  # rank 0 is gone (its pipe is closed): nobody to tell
        os._exit(1)  # the closed connection ends rank 0's collective at once
    stack.close()
    _remove(scratch)


def _remove(scratch: Path) -> None:
    """A rank's scratch folder, and the run's folder of them once it is empty."""
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        scratch.parent.rmdir()
    except OSError:
        pass  # another rank's folder is still there, or rank 0 removed it first


def _exit_with(parent: int, scratch: Path):
    def watch() -> None:  # rank 0 gone (killed, out of memory): nobody will read this rank's work or clean up
        while os.getppid() == parent:
            time.sleep(1.0)
        _remove(scratch)
        os._exit(1)

    return watch
