"""Tasks decide what a label is and how a run is scored. One file per task, each registered in TASKS."""

from lepton.tasks.base import TASKS, Probe, Task, task_of
from lepton.tasks import multi_label, regression, single_label  # noqa: F401  (registration)

DEFAULT = "single-label"


def list_tasks() -> list[str]:
    return list(TASKS)


__all__ = ["DEFAULT", "TASKS", "Probe", "Task", "list_tasks", "task_of"]
