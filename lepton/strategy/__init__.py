"""Strategies: how to fine-tune, decided from the data and the budget.

- `auto` fills the choices a user left empty (lepton/strategy/auto.py);
- controllers steer a run at its epoch boundaries (`CONTROLLERS`: fixed, policy);
Importing this package registers every controller.
"""

# base first: lepton.train.loop imports CONTROLLERS from here, and record.py imports lepton.train.
from lepton.strategy.base import CONTROLLERS, Context, Controller, Decision, EpochReport
from lepton.strategy import auto, fixed, policy, record  # noqa: E402,F401  (registration)

__all__ = ["CONTROLLERS", "Context", "Controller", "Decision", "EpochReport", "auto", "list_controllers"]


def list_controllers() -> list[str]:
    return list(CONTROLLERS)
