"""The frame around every page: navigation, sidebar (product, worker status, LEPTON_HOME) and style."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import streamlit as st

from lepton.ui import access, common

PAGES = [
    (common.PAGE_HOME, "Home", ":material/home:"),
    (common.PAGE_DATA, "Data", ":material/database:"),
    (common.PAGE_TRAIN, "Train", ":material/model_training:"),
    (common.PAGE_RUNS, "Runs", ":material/monitoring:"),
    ("pages/tune.py", "Tune", ":material/tune:"),
    ("pages/compare.py", "Compare", ":material/compare_arrows:"),
    ("pages/transfer.py", "Transfer", ":material/swap_horiz:"),
    (common.PAGE_PLAYGROUND, "Playground", ":material/science:"),
    ("pages/export.py", "Export", ":material/ios_share:"),
]


def _warm_imports() -> None:
    # torch (behind the backbone registry), plotly and pandas take seconds to import on a small
    # CPU; importing them in the background once makes the first visit to every page fast.
    try:
        import plotly.graph_objects  # noqa: F401

        import lepton.adapters  # noqa: F401
        import lepton.backbones  # noqa: F401
        import lepton.data  # noqa: F401
    except Exception:  # noqa: BLE001 - the pages report real import problems themselves
        pass


@st.cache_resource(show_spinner=False)
def _start_worker_once(home: str) -> int | None:
    """Once per server process and LEPTON_HOME: `make run` alone gives a working system."""
    threading.Thread(target=_warm_imports, name="lepton-warm-imports", daemon=True).start()
    if os.environ.get("LEPTON_NO_WORKER"):
        return None
    from lepton.jobs import launcher

    return launcher.ensure_worker()


# True while app.py's router is running this script run (each session runs in its own thread).
_run = threading.local()


def _pages() -> list:
    # Pages other areas add (Compare, Transfer) join the navigation once their file exists.
    return [st.Page(path, title=title, icon=icon, default=(path == common.PAGE_HOME))
            for path, title, icon in PAGES if (common.ROOT / path).exists()]


def _page_setup() -> None:
    st.set_page_config(page_title="Lepton", page_icon=str(common.ASSETS / "logo.svg"), layout="wide",
                       initial_sidebar_state="expanded")
    common.inject_css()


def _login_pages() -> list:
    """The sign-in screen, also under every page's address: a deep link opens it without a "page not found"."""
    aliases = [st.Page(access.login_screen, title=title, url_path=Path(path).stem) for path, title, _ in PAGES]
    return [st.Page(access.login_screen, title="Sign in", icon=":material/login:", url_path="sign-in", default=True),
            *aliases]


def navigation():
    """app.py's router: page setup and st.navigation; the caller runs the returned page.

    Until someone may use the dashboard (login on and nobody signed in), the only page is the
    sign-in screen, whatever the URL asks for: deep links never reach a page."""
    _run.routed = True
    _page_setup()
    if access.current().user is None:
        return st.navigation(_login_pages(), position="hidden")
    return st.navigation(_pages())


def done() -> None:
    _run.routed = False


def require_router() -> None:
    """Make sure a page runs inside the frame, even when app.py did not route it.

    Streamlit starts in its legacy "pages/ folder" mode until some script run calls st.navigation:
    if the first request after a server start is a deep link (/runs?run=…), it runs the page file
    alone (no sidebar, no style, file names as navigation, and it stays so for every session).
    The public st.navigation call switches that mode off for the server, and a rerun then goes
    through app.py; that is the first run of a fresh page load, so no click is lost.
    AppTest resets the mode before every run: there the frame is drawn inline instead, since a
    rerun would swallow the click that started the run.
    """
    if getattr(_run, "routed", False):
        return
    from streamlit import config as st_config  # AppTest patches this module's get_option, not st.get_option

    if not st_config.get_option("global.appTest"):
        st.navigation(_pages(), position="hidden")
        st.rerun()
    _page_setup()
    if access.current().user is None:
        st.navigation(_login_pages(), position="hidden")
        sidebar()
        access.login_screen()
        st.stop()
    st.navigation(_pages())
    sidebar()


def sidebar() -> None:
    from lepton import paths

    with st.sidebar:
        logo = common.ASSETS / "logo.svg"
        if logo.exists():
            st.logo(str(logo), size="large")
        st.markdown("### Lepton\n<span class='lp-muted'>transfer learning for text, images and audio</span>",
                    unsafe_allow_html=True)
        access.sidebar_identity()
        if access.current().user is None:
            return  # nothing about this machine for someone who has not signed in
        started_pid = None
        with common.guard("Could not start the background worker"):
            started_pid = _start_worker_once(str(paths.home()))
        _worker_status(started_pid)
        if access.current().user.admin:  # a server path is for whoever runs the machine (the only user when local)
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
        for line in filter(None, map(common.cluster_line, common.store().live_workers())):
            st.caption(f":material/hub: {line}", help="What the worker's cluster has free now (its heartbeat, every 2 s)")
    elif os.environ.get("LEPTON_NO_WORKER"):
        st.markdown(":gray-badge[:material/memory: worker off]", help="LEPTON_NO_WORKER is set: start `lepton worker` yourself")
    else:
        st.markdown(":orange-badge[:material/memory: no worker]",
                    help="Queued runs wait until a worker runs. Start one here or with `lepton worker`.")
        if st.button("Start worker", key="start_worker", icon=":material/play_arrow:"):
            with common.guard("Could not start the background worker"):
                launcher.ensure_worker()
                st.rerun()
