"""The dashboard's widgets, charts and state helpers: the only part of lepton that imports streamlit.

Pages under pages/ are thin tables of contents that call into these modules; the core never
imports from here, and nothing here trains: actions go through lepton.jobs (the store and launcher).
"""
