"""Lepton dashboard: `streamlit run app.py` (or `make run`). The router and the frame; pages live in pages/."""

from lepton.ui import common, frame

page = frame.navigation()
try:
    frame.sidebar()
    with common.guard("This page hit an unexpected error"):  # a bug shows as a message, never a traceback
        page.run()
finally:
    frame.done()
