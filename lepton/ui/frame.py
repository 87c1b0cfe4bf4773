"""The frame around every page: navigation, sidebar (product, worker status, LEPTON_HOME) and style."""

from __future__ import annotations

import os
import threading

import streamlit as st

from lepton.ui import common

PAGES = [
    (common.PAGE_HOME, "Home", ":material/home:"),
    (common.PAGE_DATA, "Data", ":material/database:"),
    (common.PAGE_TRAIN, "Train", ":material/model_training:"),
    (common.PAGE_RUNS, "Runs", ":material/monitoring:"),
    (common.PAGE_PLAYGROUND, "Playground", ":material/science:"),
]


@st.cache_resource(show_spinner=False)
def _start_worker_once(home: str) -> int | None:
    """Once per server process and LEPTON_HOME: `make run` alone gives a working system."""
    if os.environ.get("LEPTON_NO_WORKER"):
        return None
    from lepton.jobs import launcher

    return launcher.ensure_worker()


# True while app.py's router is running this script run (each session runs in its own thread).
_run = threading.local()


def navigation():
    _run.routed = True
    st.set_page_config(page_title="Lepton", page_icon=str(common.ASSETS / "logo.svg"), layout="wide",
                       initial_sidebar_state="expanded")
    common.inject_css()
    return st.navigation([st.Page(path, title=title, icon=icon, default=(path == common.PAGE_HOME))
                          for path, title, icon in PAGES])


def done() -> None:
    _run.routed = False


def require_router() -> None:
    """Make sure a page runs inside app.py's frame.

    Streamlit starts in its legacy "pages/ folder" mode until some run calls st.navigation; if the
    first request after a server start is a deep link (/runs?run=…), it would run the page file
    alone: no sidebar, no style, the folder's file names as navigation. The public st.navigation
    call switches that mode off for the server, and the rerun then goes through app.py.
    """
    if getattr(_run, "routed", False):
        return
    st.navigation([st.Page(path, title=title) for path, title, _ in PAGES], position="hidden")
    st.rerun()


def sidebar() -> None:
    from lepton import paths

    with st.sidebar:
        logo = common.ASSETS / "logo.svg"
        if logo.exists():
            st.logo(str(logo), size="large")
        st.markdown("### Lepton\n<span class='lp-muted'>transfer learning for text, images and audio</span>",
                    unsafe_allow_html=True)
        started_pid = None
        with common.guard("Could not start the background worker"):
            started_pid = _start_worker_once(str(paths.home()))
        _worker_status(started_pid)
        st.caption(f"Home: `{common.short_home()}`", help="LEPTON_HOME: datasets, runs and the job database live here")


@st.fragment(run_every=5.0)
def _worker_status(started_pid: int | None) -> None:
    from lepton.jobs import launcher

    try:
        alive = launcher.worker_alive()
    except Exception:  # noqa: BLE001 - a status line must never break the page
        alive = False
    if alive:
        note = "started by this dashboard" if started_pid else "running"
        st.markdown(f":green-badge[:material/memory: worker {note}]",
                    help="Runs train in a background `lepton worker` process, never in the dashboard; "
                         "closing the browser does not stop them.")
    elif os.environ.get("LEPTON_NO_WORKER"):
        st.markdown(":gray-badge[:material/memory: worker off]", help="LEPTON_NO_WORKER is set: start `lepton worker` yourself")
    else:
        st.markdown(":orange-badge[:material/memory: no worker]",
                    help="Queued runs wait until a worker runs. Start one here or with `lepton worker`.")
        if st.button("Start worker", key="start_worker", icon=":material/play_arrow:"):
            with common.guard("Could not start the background worker"):
                launcher.ensure_worker()
                st.rerun()
