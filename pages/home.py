"""Home: what Lepton is, a one-click demo per modality, and the recent runs."""

from lepton.ui import common, frame, home

frame.require_router()  # a deep link right after a server start still gets the full frame
common.show_flash()
home.intro()
home.quick_start()
home.recent_runs()
