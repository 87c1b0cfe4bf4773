"""Runs: every run with its status; `?run=<id>` opens one run's live view and report."""

from lepton.ui import frame, runs

frame.require_router()  # a deep link right after a server start still gets the full frame
runs.page()
