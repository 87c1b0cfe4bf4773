from lepton.train.loop import preflight, run

__all__ = ["preflight", "run"]
