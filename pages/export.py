"""Export: take a finished run away as ONNX, safetensors or torch.export, checked against the run."""

import streamlit as st

from lepton.ui import common, export, frame

frame.require_router()  # a deep link right after a server start still gets the full frame
st.title("Export")
common.show_flash()
export.page()
