"""Shared bits of the dashboard: style, status badges, readable errors, formatting, query params."""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

import streamlit as st

from lepton.errors import LeptonError

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "assets"

# Page files, as st.navigation / st.switch_page / st.page_link want them (relative to app.py).
PAGE_HOME = "pages/home.py"
PAGE_DATA = "pages/data.py"
PAGE_TRAIN = "pages/train.py"
PAGE_RUNS = "pages/runs.py"
PAGE_PLAYGROUND = "pages/playground.py"

# One colour and icon per status, everywhere (badges, tables, the home page).
STATUS_STYLE: dict[str, tuple[str, str]] = {
    "queued": ("gray", ":material/schedule:"),
    "running": ("blue", ":material/progress_activity:"),
    "finished": ("green", ":material/check_circle:"),
    "failed": ("red", ":material/error:"),
    "cancelled": ("orange", ":material/cancel:"),
    "interrupted": ("violet", ":material/pause_circle:"),
}
# (text, background) for table cells, matching the badge colours above.
STATUS_CSS = {
    "queued": ("#4b5563", "#eef0f3"), "running": ("#1d4ed8", "#e6efff"), "finished": ("#15803d", "#e7f7ec"),
    "failed": ("#b91c1c", "#fdecec"), "cancelled": ("#c2410c", "#fff1e6"), "interrupted": ("#7c3aed", "#f2ecff"),
}
MODALITY_ICON = {"text": ":material/article:", "image": ":material/image:", "audio": ":material/graphic_eq:"}


def inject_css() -> None:
    css = ASSETS / "style.css"
    if css.exists():
        st.html(f"<style>{css.read_text(encoding='utf-8')}</style>")


# ---------------------------------------------------------------- status
def status_badge(status: str) -> None:
    color, icon = STATUS_STYLE.get(status, ("gray", None))
    st.badge(status, icon=icon, color=color)


def status_markdown(status: str) -> str:
    """Inline badge for st.markdown, e.g. inside a line of text."""
    color, icon = STATUS_STYLE.get(status, ("gray", ""))
    return f":{color}-badge[{icon} {status}]"


# ---------------------------------------------------------------- errors
@contextlib.contextmanager
def guard(what: str = "That did not work") -> Iterator[None]:
    """Turn any error raised by a user action into a readable message, never a bare traceback.

    LeptonError messages are written for people and are shown as they are. Anything else is a bug
    on our side: a short message, with the details folded away for a bug report.
    Streamlit's own control flow (st.rerun, st.switch_page, st.stop) derives from BaseException
    and passes through untouched.
    """
    try:
        yield
    except LeptonError as e:
        st.error(str(e), icon=":material/error:")
    except Exception as e:  # noqa: BLE001 - the point is to catch what we did not foresee
        st.error(f"{what}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unexpected error'}",
                 icon=":material/error:")
        with st.expander("Details for a bug report"):
            st.code("".join(traceback.format_exception(e))[-4000:], language=None)


def flash(kind: str, message: str) -> None:
    """A message that survives one st.rerun / st.switch_page (shown by show_flash)."""
    st.session_state.setdefault("_flash", []).append((kind, message))


def show_flash() -> None:
    for kind, message in st.session_state.pop("_flash", []):
        {"success": st.success, "error": st.error, "warning": st.warning}.get(kind, st.info)(message)


# ---------------------------------------------------------------- formatting
def fmt_count(n: float | int | None) -> str:
    """22_700_000 -> 22.7M; 73_728 -> 73.7k."""
    if n is None:
        return "–"
    n = float(n)
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


def fmt_bytes(n: float | int | None) -> str:
    if n is None:
        return "–"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "–"
    s = max(0.0, float(s))
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def to_epoch(t: float | str | None) -> float | None:
    """Unix seconds from a float (the job store) or an ISO-8601 string (dataset manifests)."""
    if t is None or t == "":
        return None
    if isinstance(t, (int, float)):
        return float(t)
    try:
        from datetime import datetime

        return datetime.fromisoformat(str(t)).timestamp()
    except ValueError:
        return None


def fmt_ago(t: float | str | None) -> str:
    t = to_epoch(t)
    if not t:
        return "–"
    d = time.time() - float(t)
    if d < 60:
        return "just now"
    if d < 3600:
        return f"{int(d // 60)} min ago"
    if d < 86400:
        return f"{int(d // 3600)} h ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def run_task(run: dict) -> str:
    """A finished run's task, from its result (runs from before tasks existed are single-label)."""
    return ((run.get("result") or {}).get("metrics") or {}).get("task") or "single-label"


def fmt_pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * float(x):.1f} %"


def short_home() -> str:
    """LEPTON_HOME as the user would type it: ~/… when under the home folder."""
    from lepton import paths

    p = str(paths.home())
    user = os.path.expanduser("~")
    if user not in ("", "/") and (p == user or p.startswith(user + os.sep)):
        p = "~" + p[len(user):]
    return p if len(p) <= 42 else "…" + p[-41:]


# ---------------------------------------------------------------- query params
def query_param(name: str) -> str | None:
    v = st.query_params.get(name)
    return v or None


def set_query_param(name: str, value: str | None) -> None:
    if value:
        if st.query_params.get(name) != value:
            st.query_params[name] = value
    elif name in st.query_params:
        del st.query_params[name]


# ---------------------------------------------------------------- core access (lazy imports keep pages light)
def read_json(path: str | os.PathLike) -> dict | None:
    """A run's JSON file (report, plan, embeddings), parsed once per version of the file: the cache is keyed by
    its modification time and size, so a rewritten report is read again and an unchanged one never is."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return _json_version(str(path), info.st_mtime_ns, info.st_size)


@st.cache_data(show_spinner=False, max_entries=64)
def _json_version(path: str, mtime_ns: int, size: int) -> dict | None:
    import json

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def store() -> Any:
    from lepton.jobs.store import get_store

    return get_store()


def datasets_by_id() -> dict[str, dict]:
    """The datasets the current user may see (a run on someone else's private one shows its id, not its name)."""
    try:
        from lepton.ui import access

        return {m["id"]: m for m in access.datasets()}
    except Exception:  # noqa: BLE001 - names are a nicety; ids still show
        return {}


def where(run: dict) -> str | None:
    """Which executor and machine a run trains (or trained) on: "local · vm", "ray · node-3/6536ee16"."""
    if not run.get("executor"):
        return None  # queued, or from before runs recorded it
    node = run.get("node") or "waiting for a node"
    host, _, node_id = node.partition(":")
    return f"{run['executor']} · {host}/{node_id[:8]}" if node_id else f"{run['executor']} · {node}"


def on_cluster(run: dict) -> bool:
    from lepton.jobs.executors import EXECUTORS

    return run.get("executor") in EXECUTORS and EXECUTORS.get(run["executor"]).cluster


def cluster_line(worker: dict) -> str | None:
    """A cluster worker's heartbeat as one line: nodes, free/total CPUs and GPUs."""
    res = worker.get("resources")
    if not res:
        return None
    (cpu_free, cpu_all), (gpu_free, gpu_all) = res["cpus"], res["gpus"]
    gpus = f" · {gpu_free:g}/{gpu_all:g} GPUs free" if gpu_all else " · no GPUs"
    return (f"{worker.get('executor')} cluster: {res['nodes']} node{'s' if res['nodes'] != 1 else ''}"
            f" · {cpu_free:g}/{cpu_all:g} CPUs free{gpus}")


def run_parts(run: dict, datasets: dict[str, dict]) -> tuple[str, str, str]:
    """(dataset name, backbone, adapter) for a run's titles and labels.

    The dashboard stores dataset ids; a CLI run may name a file path, shown by its file name. A finished
    run's result names the backbone and adapter it resolved, which a path's unknown modality cannot."""
    cfg = run.get("config") or {}
    ds = datasets.get(cfg.get("data")) or {}
    backbone, adapter = model_names(cfg, ds.get("modality"))
    done = (run.get("result") or {}).get("metrics") or {}
    return (ds.get("name") or Path(str(cfg.get("data") or "")).name, done.get("backbone") or backbone,
            done.get("adapter") or adapter)


def model_names(cfg: dict, modality: str | None) -> tuple[str, str]:
    """(backbone, adapter) a run uses, with the defaults an empty config means spelled out."""
    backbone, adapter = cfg.get("backbone"), cfg.get("adapter")
    try:
        from lepton.backbones import default_backbone, resolve_backbone

        spec = resolve_backbone(backbone, modality) if backbone else (default_backbone(modality) if modality else None)
        if spec is not None:
            backbone = backbone or spec.name
            adapter = adapter or spec.recommended_adapter
    except Exception:  # noqa: BLE001 - an unknown name still shows as typed
        pass
    return backbone or "default", adapter or "recommended"


def empty_state(message: str, page: str | None = None, label: str | None = None, icon: str | None = None) -> None:
    """An empty state says what to do next, with the link that does it."""
    with st.container(border=True):
        st.markdown(message)
        if page and label:
            st.page_link(page, label=label, icon=icon)
