"""Data: upload and validate a dataset, see what was stored, preview and manage stored datasets."""

import streamlit as st

from lepton.ui import common, data, frame

frame.require_router()  # a deep link right after a server start still gets the full frame
st.title("Data")
common.show_flash()
data.upload_section()          # file → (columns for tables) → ingest
data.last_ingest_report()      # stored / reused, warnings, every skipped file
st.divider()
data.stored_section()          # table, preview (label chart, samples), train / delete
