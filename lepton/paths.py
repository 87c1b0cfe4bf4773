"""The LEPTON_HOME layout: datasets/, runs/, cache/, logs/ and lepton.db.

LEPTON_STORAGE (default: LEPTON_HOME) moves datasets/, runs/, cache/ and tmp/ to storage every node of a cluster
can reach at the same path (NFS, a shared volume); lepton.db and logs/ stay in LEPTON_HOME on the head machine,
since SQLite in WAL mode must not be shared over a network filesystem. Every Lepton process of one deployment
(dashboard, worker, nodes) sets the same two variables.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path


def new_run_id() -> str:
    """A run's id and the name of its folder under runs/: the time, then 4 hex digits from `secrets` (not `random`,
    which every run seeds with its seed: drawn from it, two runs in one second got the same id and folder)."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def home() -> Path:
    # Read the variable on every call so tests and subprocesses can point at a temp home.
    root = Path(os.environ.get("LEPTON_HOME", "~/.lepton")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def storage() -> Path:
    root = Path(os.environ["LEPTON_STORAGE"]).expanduser() if os.environ.get("LEPTON_STORAGE") else home()
    root.mkdir(parents=True, exist_ok=True)
    return root


def checkout() -> str:
    """The folder this lepton package sits in: job processes get it on PYTHONPATH (lepton may not be installed)."""
    return str(Path(__file__).resolve().parents[1])


def _sub(name: str, root: Path | None = None) -> Path:
    p = (root or storage()) / name
    p.mkdir(parents=True, exist_ok=True)
    return p


def datasets_dir() -> Path:
    return _sub("datasets")


def runs_dir() -> Path:
    return _sub("runs")


def cache_dir() -> Path:
    return _sub("cache")


def logs_dir() -> Path:
    return _sub("logs", home())


def tmp_dir() -> Path:
    # Staging area on the same filesystem as datasets/ so a finished ingest is one atomic rename.
    return _sub("tmp")


def db_path() -> Path:
    return home() / "lepton.db"
