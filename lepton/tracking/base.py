"""The sink interface, its registry, and the tee that `lepton.train.run` wraps its emit in."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from lepton.registry import Registry

if TYPE_CHECKING:  # lepton.train imports this package: a runtime import would be circular
    from lepton.train.events import Emit

log = logging.getLogger("lepton.tracking")


class Sink:
    """One run's events, written somewhere of the sink's own. Called like emit; closed once."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def __call__(self, kind: str, **data: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


SINKS: Registry[type[Sink]] = Registry("tracking sink")


@contextlib.contextmanager
def open_sinks(run_dir: Path, emit: "Emit") -> Iterator["Emit"]:
    """emit, teed into every sink. A sink that fails is dropped with one warning: tracking never stops training."""
    sinks: dict[str, Sink] = {}
    for name, cls in SINKS.items():
        try:
            sinks[name] = cls(run_dir)
        except Exception as e:
            emit("log", level="warning", message=f"{name} tracking is off for this run: {e}")

    def teed(kind: str, **data: Any) -> None:
        emit(kind, **data)
        for name, sink in list(sinks.items()):
            try:
                sink(kind, **data)
            except Exception as e:
                del sinks[name]
                emit("log", level="warning", message=f"{name} tracking stopped: {type(e).__name__}: {e}")

    try:
        yield teed
    finally:
        for name, sink in sinks.items():
            try:
                sink.close()
            except Exception as e:
                log.warning("%s: could not close: %s", name, e)
