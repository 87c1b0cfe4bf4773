"""Playground: try a finished run on your own text, image or sound."""

import streamlit as st

from lepton.ui import common, frame, playground

frame.require_router()  # a deep link right after a server start still gets the full frame
st.title("Playground")
common.show_flash()
playground.page()
