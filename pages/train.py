"""Train: dataset → backbone → adapter → hyperparameters (from RunConfig) → command line → Start."""

import streamlit as st

from lepton.ui import common, frame, train

frame.require_router()  # a deep link right after a server start still gets the full frame
st.title("Train")
st.markdown("<p class='lp-lead'>Pick data, a pretrained backbone and how much of it to train. "
            "Training runs in the background: you can close the tab.</p>", unsafe_allow_html=True)
common.show_flash()
train.page()
