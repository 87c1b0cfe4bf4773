"""Where a run's events go besides the job store: one file per sink, each in SINKS.

A sink is opened for a run folder and called like emit (lepton/train/events.py). `lepton.train.run`
tees every event into each sink, so a foreground `lepton train`, a worker's child and a Ray task all write
the same files into the run folder. MLflow is not a live sink but a push after the fact
(`lepton export-tracking`, lepton/tracking/mlflow_export.py): a user's server may be down, and a run must
never fail because its tracking server did.
"""

from lepton.tracking.base import SINKS, Sink, open_sinks
from lepton.tracking import tensorboard  # noqa: F401  (registers the sink)

__all__ = ["SINKS", "Sink", "open_sinks"]
