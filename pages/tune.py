"""Tune: a study searches for the best way to fine-tune within a time budget; `?study=ID` opens one."""

import streamlit as st

from lepton.ui import common, frame, tune

frame.require_router()  # a deep link right after a server start still gets the full frame
st.title("Tune")
st.markdown("<p class='lp-lead'>Let a strategy search for the best recipe within a time budget: the learned policy, "
            "Optuna's TPE or random search. Every trial is a run you can open.</p>", unsafe_allow_html=True)
common.show_flash()
tune.page()
