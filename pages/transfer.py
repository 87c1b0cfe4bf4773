"""Transfer: runs × datasets macro-F1 matrix, forgetting of warm-started runs, evaluate on another dataset."""

import streamlit as st

from lepton.ui import frame, transfer

frame.require_router()  # a deep link right after a server start still gets the full frame
st.title("Transfer")
st.markdown("<p class='lp-lead'>How well does a run carry over to other data, and what did a warm start forget?</p>",
            unsafe_allow_html=True)
transfer.page()
