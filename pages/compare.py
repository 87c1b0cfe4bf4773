"""Compare: two or more runs side by side; `?runs=a,b&metric=val/macro_f1&x=epoch` is a shareable view."""

import streamlit as st

from lepton.ui import common, compare, frame

frame.require_router()  # a deep link right after a server start still gets the full frame
st.title("Compare runs")
st.markdown("<p class='lp-lead'>Overlay the curves of any runs, see which settings differ and which run won.</p>",
            unsafe_allow_html=True)
common.show_flash()
compare.page()
