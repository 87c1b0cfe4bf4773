"""Tune page: start a study (rl, tpe or random inside a budget) and watch it live.

A study runs in the background worker like a run: closing the tab changes nothing, and a worker
restart resumes it with the trials it has. `?study=ID` opens one; its trials are ordinary runs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from lepton.config import StudyConfig
from lepton.errors import RunError
from lepton.ui import access, charts, common, task_views
from lepton.ui import data as data_ui

LIVE_EVERY_S = 2.0
EXPLICIT = {"data", "test_data", "strategy", "name"}  # set by the page's own widgets


# ---------------------------------------------------------------- figures (pure)
def trial_rows(trials: list[dict]) -> list[dict[str, Any]]:
    """One row per trial: what it tried, how it did, how long it took."""
    rows = []
    for t in trials:
        cfg, m = t.get("config") or {}, ((t.get("result") or {}).get("metrics") or {})
        what = cfg.get("adapter") or ("policy's choice" if cfg.get("controller") == "policy" else "auto")
        if m.get("adapter") and m["adapter"] != what:
            what = f"{m['adapter']} (policy's choice)"
        rows.append({"trial": t.get("trial"), "run": t["id"], "status": t["status"], "recipe": what,
                     "lr": cfg.get("lr"), "image size": m.get("image_size") or cfg.get("image_size"),
                     "val score": m.get("best_val_score", m.get("best_val_macro_f1")),
                     "test score": m.get(m.get("primary", "macro_f1")),
                     "kept": m.get("kept"), "pruned": bool((t.get("result") or {}).get("pruned")),
                     "seconds": (t.get("result") or {}).get("seconds"), "finished": t.get("finished")})
    return rows


def best_so_far_figure(rows: list[dict], started: float | None) -> go.Figure:
    """Best validation score (the task's primary metric) so far against the study's wall time."""
    done = sorted((r for r in rows if r["val score"] is not None and r["finished"]), key=lambda r: r["finished"])
    xs, ys, best = [], [], -math.inf
    for r in done:
        best = max(best, r["val score"])
        xs.append(r["finished"] - (started or done[0]["finished"]))
        ys.append(best)
    fig = charts.curve({"best so far": (xs, ys)}, "Best validation score so far", x_title="study time (s)",
                       y_title="the task's primary metric", empty_note="no trial has finished yet")
    fig.update_traces(line_shape="hv")
    return fig


def parallel_figure(rows: list[dict]) -> go.Figure:
    """Parallel coordinates: each finished trial's configuration against its validation score."""
    done = [r for r in rows if r["val score"] is not None]
    fig = go.Figure()
    if len(done) < 2:
        return _empty(fig, "Configuration against score", "needs two finished trials", 320)
    recipes = sorted({r["recipe"] for r in done})
    dims = [dict(label="recipe", values=[recipes.index(r["recipe"]) for r in done], tickvals=list(range(len(recipes))),
                 ticktext=recipes)]
    if any(r["lr"] for r in done):
        dims.append(dict(label="log10 lr", values=[math.log10(r["lr"]) if r["lr"] else -3 for r in done]))
    if any(r["image size"] for r in done):
        dims.append(dict(label="image size", values=[r["image size"] or 0 for r in done]))
    scores = [r["val score"] for r in done]
    dims.append(dict(label="val score", values=scores, range=[min(scores) - 0.01, max(scores) + 0.01]))
    fig.add_trace(go.Parcoords(line=dict(color=scores, colorscale="Viridis", showscale=True), dimensions=dims))
    return charts._layout(fig, "Configuration against score", 320, hovermode=False)


def importance_figure(importance: dict[str, float]) -> go.Figure:
    fig = go.Figure()
    if importance:
        names = list(importance)[::-1]
        fig.add_trace(go.Bar(x=[importance[n] for n in names], y=names, orientation="h", marker_color=charts.ACCENT))
        fig.update_xaxes(title_text="share of the score's variance (fANOVA)", range=[0, 1])
    else:
        return _empty(fig, "Parameter importance (Optuna)", "needs three finished trials that differ", 240)
    return charts._layout(fig, "Parameter importance (Optuna)", 240, hovermode=False)


def _empty(fig: go.Figure, title: str, note: str, height: int) -> go.Figure:
    fig.add_annotation(text=note, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5, font=dict(color="#8b8fa3"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return charts._layout(fig, title, height, hovermode=False)


# ---------------------------------------------------------------- starting a study
def strategies() -> dict[str, str]:
    from lepton.strategy.study import STUDIES

    return {name: cls.description for name, cls in STUDIES.items()}


def new_study() -> None:
    from lepton.ui.train import field_widget

    every = access.datasets()
    # A study's trials take one modality for now (lepton/strategy/study.py refuses the rest): list only those.
    manifests = [m for m in every if len(m.get("modalities") or [m.get("modality")]) < 2]
    if not manifests:
        common.empty_state("A study needs a dataset of one modality. Add one on **Data**." if every else
                           "A study needs a dataset. Add one on **Data**.", common.PAGE_DATA, "Add a dataset",
                           ":material/database:")
        return
    if len(manifests) < len(every):
        st.caption(f"{len(every) - len(manifests)} multimodal dataset(s) not listed: studies take one modality for "
                   "now; train those on **Train**.")
    by_id = {m["id"]: m for m in manifests}
    ds = st.selectbox("Dataset", list(by_id), key="tune_dataset", format_func=lambda i: data_ui.describe(by_id[i]))
    names = strategies()
    order = ["rl", "tpe", "random"]
    strategy = st.radio("Strategy", [n for n in order if n in names] + [n for n in names if n not in order],
                        key="tune_strategy", horizontal=True, format_func=lambda n: {"rl": "Learned policy (rl)",
                        "tpe": "Optuna TPE", "random": "Random search"}.get(n, n), help=RL_HELP)
    st.caption(names[strategy])
    hints = typing.get_type_hints(StudyConfig)
    values: dict[str, Any] = {}
    cols = st.columns(4)
    for i, f in enumerate(f for f in dataclasses.fields(StudyConfig) if f.name not in EXPLICIT):
        with cols[i % 4]:
            values[f.name] = field_widget(f, hints[f.name], key_prefix="study_")
    name = st.text_input("Study name (optional)", key="tune_name", placeholder=f"{by_id[ds].get('name')} · {strategy}")
    cfg = None
    with common.guard("The settings do not form a valid study"):
        cfg = StudyConfig.from_dict({"data": ds, "strategy": strategy, "name": name or None, **values}, source="the form")
    if cfg is None:
        return
    with st.expander("Reproduce from the command line", icon=":material/terminal:"):
        import shlex

        st.code("lepton tune " + " ".join(shlex.quote(a) for a in cfg.cli_args()), language="bash", wrap_lines=True)
    if st.button("Start study", type="primary", icon=":material/play_arrow:", key="tune_start"):
        with common.guard("Could not start the study"):
            from lepton.jobs import launcher
            from lepton.strategy.study import validate

            validate(cfg)
            study_id = common.store().create_study(cfg, owner=access.viewer().id)
            if not os.environ.get("LEPTON_NO_WORKER"):
                launcher.ensure_worker()
            common.set_query_param("study", study_id)
            st.rerun()


RL_HELP = ("rl: the policy Lepton ships (trained by reinforcement learning on its benchmark suite) picks the recipe "
           "and steers the run. tpe / random: a new trial every ~36 s, each a short run; weak trials are pruned.")


# ---------------------------------------------------------------- watching a study
def pick_study() -> dict | None:
    studies = common.store().list_studies(viewer=access.viewer())
    wanted = common.query_param("study")
    if wanted and wanted not in {s["id"] for s in studies}:
        try:
            wanted = common.store().find_study(wanted, viewer=access.viewer())["id"]
        except RunError:
            access.not_found([wanted], "studies")
            wanted = None
    if not studies:
        st.info("No studies yet: start one above.", icon=":material/info:")
        return None
    by_id = {s["id"]: s for s in studies}
    ids = list(by_id)
    if st.session_state.get("tune_pick") not in ids:
        st.session_state["tune_pick"] = wanted if wanted in ids else ids[0]
    chosen = st.selectbox("Study", ids, key="tune_pick", format_func=lambda i: _label(by_id[i]))
    common.set_query_param("study", chosen)
    return by_id[chosen]


def _label(s: dict) -> str:
    got = (s.get("result") or {}).get("best") or {}
    best = got.get("val_score", got.get("val_macro_f1"))
    return (f"{s.get('name') or s['id']} · {s['strategy']} · {s['config'].get('budget_minutes'):g} min · {s['status']}"
            + (f" · best {best:.3f}" if best is not None else ""))


def study_view(study_id: str) -> None:
    run_every = LIVE_EVERY_S if (common.store().get_study(study_id) or {}).get("status") in ("queued", "running") else None

    @st.fragment(run_every=run_every)
    def live() -> None:
        st_ = common.store().get_study(study_id, viewer=access.viewer())
        if st_ is None:
            access.not_found([study_id], "studies")
            return
        trials = common.store().study_trials(study_id)
        rows = trial_rows(trials)
        header(st_, rows)
        c1, c2 = st.columns(2)
        with c1:
            st.plotly_chart(best_so_far_figure(rows, st_.get("started")), key=f"best_{study_id}")
        with c2:
            st.plotly_chart(parallel_figure(rows), key=f"par_{study_id}")
        table(rows)
        from lepton.strategy.study import _trial_view, importance

        st.plotly_chart(importance_figure(importance([_trial_view(t) for t in trials])), key=f"imp_{study_id}")
        if st_["status"] not in ("queued", "running") and run_every:
            st.rerun(scope="app")  # the study ended: redraw the page (its picker too) once, without the timer

    live()


def header(study: dict, rows: list[dict]) -> None:
    cfg = study["config"]
    res = study.get("result") or {}
    left, right = st.columns([3, 2])
    with left:
        common.status_badge(study["status"])
        st.markdown(f"**{study.get('name') or study['id']}** · {study['strategy']} · budget "
                    f"{cfg.get('budget_minutes'):g} min · {len(rows)} trial(s)"
                    + (f" · {common.fmt_duration(res.get('seconds'))} used" if res.get("seconds") else ""))
        if study.get("message"):
            st.caption(study["message"])
        if study.get("error"):
            st.error(study["error"], icon=":material/error:")
        access.ownership_note(study, "study")
    with right:
        best = res.get("best")
        if best:
            name = task_views.title(best.get("primary", "macro_f1"))
            st.metric("Best trial (chosen on validation)", f"{best.get('val_score', best.get('val_macro_f1')):.3f} val",
                      f"test {name} {res['test'].get('score', res['test'].get('macro_f1')):.3f}", delta_color="off")
            b1, b2 = st.columns(2)
            if b1.button("Open best run", icon=":material/monitoring:", key=f"open_{study['id']}"):
                st.switch_page(common.PAGE_RUNS, query_params={"run": best["run_id"]})
            if b2.button("Try it", icon=":material/science:", key=f"try_{study['id']}"):
                st.switch_page(common.PAGE_PLAYGROUND, query_params={"run": best["run_id"]})
        if access.can_manage(study):
            access.share_toggle("studies", study["id"], bool(study.get("shared")), key=f"share_{study['id']}",
                                name=f"Study {study.get('name') or study['id']}")
            if study["status"] in ("queued", "running") and st.button("Stop study", icon=":material/stop:",
                                                                       key=f"stop_{study['id']}"):
                stop(study)


def stop(study: dict) -> None:
    """Cancel: the worker stops the study's process, which cancels its running trial."""
    store = common.store()
    store.set_study_status(study["id"], "cancelled", only_from=["queued", "running"], message="cancelled")
    for t in store.study_trials(study["id"]):
        if t["status"] in ("queued", "running"):
            store.request_cancel(t["id"])
    common.flash("info", f"Study {study.get('name') or study['id']} is stopping.")
    st.rerun()


def table(rows: list[dict]) -> None:
    if not rows:
        st.caption("The first trial starts as soon as a worker picks the study up.")
        return
    import pandas as pd

    df = pd.DataFrame(rows).drop(columns=["finished"])
    st.dataframe(df, hide_index=True, use_container_width=True, column_config={
        "lr": st.column_config.NumberColumn(format="%.2e"),
        "val score": st.column_config.NumberColumn(format="%.3f"),
        "test score": st.column_config.NumberColumn(format="%.3f"),
        "seconds": st.column_config.NumberColumn(format="%.0f"),
        "run": st.column_config.TextColumn(help="Open it on the Runs page: ?run=ID"),
    })


def page() -> None:
    with st.expander("New study", icon=":material/add:", expanded=not common.query_param("study")):
        new_study()
    study = pick_study()
    if study is not None:
        study_view(study["id"])
