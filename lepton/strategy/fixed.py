from __future__ import annotations

from lepton.strategy.base import CONTROLLERS, Controller, Decision, EpochReport


@CONTROLLERS.register("fixed")
class Fixed(Controller):
    name = "fixed"
    description = "The planned schedule as it is: train until the epochs or the time window run out (early stopping if set)"

    def decide(self, report: EpochReport) -> Decision:
        patience = self.config.early_stopping
        if report.epoch == 0 or not patience:
            return Decision()
        since_best = len(report.val_history) - 1 - max(range(len(report.val_history)), key=report.val_history.__getitem__)
        if since_best >= patience:
            return Decision(stop=True, why=f"early stopping (no better validation macro-F1 for {patience} epochs)")
        return Decision()
