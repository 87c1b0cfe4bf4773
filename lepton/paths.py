"""The LEPTON_HOME layout: datasets/, runs/, cache/, logs/ and lepton.db."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    # Read the variable on every call so tests and subprocesses can point at a temp home.
    root = Path(os.environ.get("LEPTON_HOME", "~/.lepton")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _sub(name: str) -> Path:
    p = home() / name
    p.mkdir(parents=True, exist_ok=True)
    return p


def datasets_dir() -> Path:
    return _sub("datasets")


def runs_dir() -> Path:
    return _sub("runs")


def cache_dir() -> Path:
    return _sub("cache")


def logs_dir() -> Path:
    return _sub("logs")


def tmp_dir() -> Path:
    # Staging area on the same filesystem as datasets/ so a finished ingest is one atomic rename.
    return _sub("tmp")


def db_path() -> Path:
    return home() / "lepton.db"
