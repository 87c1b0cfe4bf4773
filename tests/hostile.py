"""Builders for hostile inputs, generated at test time: planted pickles and code, special files, and
model folders broken in every way the model-folder check knows. Shared by test_hostile_corpus.py and
test_untrusted_models.py.

A "plant" writes a marker file if it ever runs, so a test can prove that nothing ran.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

# The text every plant writes into its marker; the tests look for the file, not its content.
PWNED = "pwned"


class Plant:
    """Unpickling this calls exec on code that writes the marker: what a hostile checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write({PWNED!r})",))


def planted_pickle(marker: Path) -> bytes:
    """A pickle that writes `marker` when loaded with pickle.load / torch.load(weights_only=False)."""
    return pickle.dumps(Plant(marker), protocol=2)


def planted_code(marker: Path) -> str:
    """Python that writes `marker` on import, then defines what an auto_map would point at."""
    return (f"open({str(marker)!r}, 'w').write({PWNED!r})\n"
            "from transformers import PretrainedConfig, PreTrainedModel\n"
            "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n"
            "class EvilModel(PreTrainedModel):\n    config_class = EvilConfig\n")


# ---------------------------------------------------------------- model folders
def save_tiny_text(folder: Path) -> Path:
    """A valid saved text model (tiny random BERT + tokenizer): the base every broken variant starts from."""
    from transformers import BertConfig, BertModel

    from lepton.backbones import build_backbone

    tok = build_backbone("tiny-text").tokenizer
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16), add_pooling_layer=False).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def save_tiny_vit(folder: Path, processor: bool = True) -> Path:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    ViTModel(ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=16)).save_pretrained(folder)
    if processor:
        ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    return folder


_TEMPLATE: dict[str, Path] = {}


def tiny_text_folder(dest: Path) -> Path:
    """A copy of one tiny saved model per test session (saving it again each time costs ~0.3 s)."""
    if "text" not in _TEMPLATE:
        root = Path(tempfile.mkdtemp(prefix="lepton-tiny-model-"))
        atexit.register(shutil.rmtree, root, True)
        _TEMPLATE["text"] = save_tiny_text(root / "model")
    shutil.copytree(_TEMPLATE["text"], dest)
    return dest


def edit_config(folder: Path, **changes) -> Path:
    cfg = json.loads((folder / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def custom_code_folder(folder: Path, marker: Path, model_type: str = "evil", where: str = "config.json") -> Path:
    """A model folder whose `auto_map` points at its own Python files, which write `marker` on import."""
    tiny_text_folder(folder)
    auto_map = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "modeling_evil.EvilModel"}
    if where == "config.json":
        edit_config(folder, model_type=model_type, auto_map=auto_map, architectures=["EvilModel"])
    else:  # a tokenizer (or processor) config can ask for code too
        cfg = json.loads((folder / where).read_text())
        cfg["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
        (folder / where).write_text(json.dumps(cfg))
    for name in ("configuration_evil.py", "modeling_evil.py", "tokenization_evil.py"):
        (folder / name).write_text(planted_code(marker))
    return folder


def pickle_only_folder(folder: Path, marker: Path, name: str = "pytorch_model.bin") -> Path:
    """A model folder whose only weights are a planted pickle."""
    tiny_text_folder(folder)
    (folder / "model.safetensors").unlink()
    (folder / name).write_bytes(planted_pickle(marker))
    return folder


def safetensors_header(tensors: dict[str, tuple[str, list[int]]], data_len: int | None = None) -> bytes:
    """A hand-built safetensors file: header JSON + a data section (`data_len` may lie)."""
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = 4
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    return struct.pack("<Q", len(blob)) + blob + b"\0" * (offset if data_len is None else data_len)


# ---------------------------------------------------------------- special files
# Every FIFO made here is listed in this file, so `deadline`'s watchdog can unblock a reader stuck on one.
_FIFO_LIST = Path(tempfile.mkstemp(prefix="lepton-fifos-", suffix=".txt")[1])
atexit.register(_FIFO_LIST.unlink, True)


def fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    with open(_FIFO_LIST, "a") as f:
        f.write(f"{path}\n")
    return path


# Run as a separate process: a reader blocked in native code may hold the GIL, so no thread of ours could
# run. Opening a FIFO for writing (non-blocking: it fails when no reader waits) releases a blocked reader,
# which then sees end of file.
_WATCHDOG = """
import os, sys, time
time.sleep(float(sys.argv[1]))
while True:
    for p in open(sys.argv[2]).read().split():
        try:
            os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    time.sleep(0.5)
"""


@contextlib.contextmanager
def unix_socket(name: str = "data.csv") -> Iterator[Path]:
    """A listening AF_UNIX socket file (its path must be short: sockets allow ~100 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="lps-", dir="/tmp"))
    path = d / name
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(str(path))
        yield path
    finally:
        s.close()
        shutil.rmtree(d, ignore_errors=True)


class Hung(BaseException):
    """Raised by `deadline`: a BaseException, so no `except OSError` or `except Exception` can swallow it."""


@contextlib.contextmanager
def deadline(seconds: int, what: str) -> Iterator[None]:
    """Fail instead of hanging. SIGALRM raises Hung in the main thread, again every second in case the code
    under test swallows it; a reader blocked in native code that retries on EINTR (safetensors' Rust open)
    never returns to Python to see it, so a watchdog process also unblocks every FIFO made here."""
    def boom(signum, frame):
        raise Hung(f"{what} still running after {seconds} s: it blocked (a FIFO or a device was opened?)")

    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    guard = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(seconds), str(_FIFO_LIST)])
    try:
        yield
    finally:
        guard.kill()
        guard.wait()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def leftovers(home: Path) -> list[str]:
    """What a failed ingest or check left in LEPTON_HOME: staging folders, datasets, runs."""
    out = []
    for sub in ("tmp", "datasets", "runs"):
        if (home / sub).exists():
            out += [f"{sub}/{p.name}" for p in (home / sub).iterdir()]
    return out
