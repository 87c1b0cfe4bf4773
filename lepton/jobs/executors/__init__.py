"""Where the worker's runs execute: one file per executor, each in EXECUTORS (the names are a contract).

`local`: a child process on this machine (the default). `ray`: a Ray task on a cluster; its events come back to
the worker, which writes them to the store, so the store stays the one source of truth on the head machine.
"""

from lepton.jobs.executors.base import EXECUTORS, Executor, Exit, Job
from lepton.jobs.executors import local, ray  # noqa: F401  (register the executors)

__all__ = ["EXECUTORS", "Executor", "Exit", "Job"]
