"""Compare page: two or more runs side by side (curves, config diff, final metrics, per-class F1).

The URL is the state worth sharing: `?runs=a,b&metric=val/macro_f1&x=epoch` opens the same view.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lepton import compare as core
from lepton.ui import access, charts, common

X_LABELS = {"epoch": "epoch", "step": "step", "time": "wall time (s)"}
ACTIVE = {"queued", "running"}
LIVE_EVERY_S = 2.0  # curves of runs still training redraw this often
METRIC_HELP = "Any metric the runs logged, as split/name: val/macro_f1, train/loss, …"


# ---------------------------------------------------------------- figures (pure)
def curves_figure(series: dict[str, tuple[list, list]], names: dict[str, str], metric: str, x: str) -> go.Figure:
    fig = go.Figure()
    for i, (rid, (xs, ys)) in enumerate(series.items()):
        fig.add_trace(go.Scatter(x=xs, y=ys, name=names.get(rid, rid), mode="lines+markers" if len(xs) <= 40 else "lines",
                                 line=dict(color=charts.PALETTE[i % len(charts.PALETTE)], width=2), marker=dict(size=6)))
    if not any(xs for xs, _ in series.values()):
        fig.add_annotation(text=f"none of these runs logged {metric}", showarrow=False, xref="paper", yref="paper",
                           x=0.5, y=0.5, font=dict(color="#8b8fa3"))
    fig.update_xaxes(title_text=X_LABELS.get(x, x), rangemode="tozero")
    fig.update_yaxes(title_text=metric)
    fig.update_layout(height=360, margin=dict(l=8, r=8, t=36, b=8), hovermode="x unified",
                      title=dict(text=f"{metric} by {X_LABELS.get(x, x)}", x=0, font=dict(size=14)),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1))
    return fig


def per_class_figure(per_class: dict[str, dict[str, float | None]], names: dict[str, str]) -> go.Figure:
    classes = list(per_class)
    fig = go.Figure()
    for i, rid in enumerate(names):
        fig.add_trace(go.Bar(x=classes, y=[per_class[c].get(rid) for c in classes], name=names[rid],
                             marker_color=charts.PALETTE[i % len(charts.PALETTE)]))
    fig.update_layout(barmode="group", height=300, margin=dict(l=8, r=8, t=36, b=8), hovermode="closest",
                      title=dict(text="Per-class F1", x=0, font=dict(size=14)),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1))
    fig.update_yaxes(range=[0, 1.02], title_text="F1")
    fig.update_xaxes(type="category")
    return fig


# ---------------------------------------------------------------- state
def _query_runs() -> list[str]:
    raw = common.query_param("runs") or ""
    return [r for r in (s.strip() for s in raw.split(",")) if r]


def _sync_query(run_ids: list[str], metric: str, x: str) -> None:
    common.set_query_param("runs", ",".join(run_ids) if run_ids else None)
    common.set_query_param("metric", metric if run_ids else None)
    common.set_query_param("x", x if run_ids else None)


def pick_runs() -> list[str]:
    runs = access.runs(limit=300)
    by_id = {r["id"]: r for r in runs}
    first = "cmp_runs" not in st.session_state
    wanted, missing = [], []
    for ref in _query_runs() if first else []:
        rid = ref if ref in by_id else next((i for i in by_id if i.startswith(ref)), None)
        if rid and rid not in wanted:
            wanted.append(rid)
        elif not rid:
            missing.append(ref)  # deleted, mistyped, or someone else's private run: all the same to this user
    if missing:
        access.not_found(missing)
    if len(runs) < 2:
        common.empty_state("Comparing needs at least two runs. Train another on **Train**.", common.PAGE_TRAIN,
                           "Train a model", ":material/model_training:")
        return []
    datasets = common.datasets_by_id()
    if first:
        finished = [r["id"] for r in runs if r["status"] == "finished"]
        st.session_state["cmp_runs"] = wanted or finished[:2]

    def fmt(rid: str) -> str:
        r = by_id[rid]
        cfg = r.get("config") or {}
        data, backbone, adapter = common.run_parts(r, datasets)
        name = r.get("name") or cfg.get("name") or rid
        return f"{name} · {data} · {backbone} + {adapter}" + (f" · {rid}" if name != rid else "")

    st.session_state["cmp_runs"] = [r for r in st.session_state["cmp_runs"] if r in by_id]
    return st.multiselect("Runs to compare", list(by_id), key="cmp_runs", format_func=fmt,
                          help="Pick two or more runs, on any datasets", placeholder="Choose runs")


def controls(metrics: list[str]) -> tuple[str, str]:
    if "cmp_metric" not in st.session_state:
        st.session_state["cmp_metric"] = common.query_param("metric") or core.DEFAULT_METRIC
    if "cmp_x" not in st.session_state:
        x = common.query_param("x")
        st.session_state["cmp_x"] = x if x in core.X_AXES else "epoch"
    options = list(metrics) or [core.DEFAULT_METRIC]
    if st.session_state["cmp_metric"] not in options:
        options.insert(0, st.session_state["cmp_metric"])
    a, b = st.columns([2, 2])
    metric = a.selectbox("Metric", options, key="cmp_metric", help=METRIC_HELP)
    x = b.segmented_control("Align by", list(core.X_AXES), key="cmp_x", format_func=lambda v: X_LABELS[v],
                            help="Epochs and steps line runs up by progress; wall time by how long they took")
    return metric, x or "epoch"


# ---------------------------------------------------------------- sections
def table_section(table: list[dict[str, Any]]) -> None:
    from lepton.ui.task_views import title

    st.markdown("**Final metrics** <span class='lp-muted'>★ best test score among runs on the same test data</span>",
                unsafe_allow_html=True)
    df = pd.DataFrame([{"best": "★" if r["best"] else "", "run": r["name"], "dataset": r["dataset"],
                        "model": f"{r['backbone']} + {r['adapter']}",
                        "score": r["score"], "metric": title(r["primary"]), "accuracy": r["accuracy"],
                        "macro-F1": r["macro_f1"], "pretrained": r["pretrained_macro_f1"], "ECE": r["ece"],
                        "best val": r["best_val_score"],
                        "train s": r["train_seconds"], "trainable": common.fmt_count(r["trainable_params"])}
                       for r in table])
    num = lambda fmt, h=None, w=72: st.column_config.NumberColumn(format=fmt, help=h, width=w)  # noqa: E731
    with st.container(key="cmp-table"):
        st.dataframe(df, hide_index=True, width="stretch", column_config={
            "best": st.column_config.TextColumn("", width=28), "run": st.column_config.TextColumn(width=130),
            "dataset": st.column_config.TextColumn(width=110), "model": st.column_config.TextColumn(width=130),
            "score": num("%.3f", "The task's primary test metric: macro-F1, micro-F1 (multi-label) or R² (regression)", 64),
            "metric": st.column_config.TextColumn(width=70),
            "accuracy": num("percent"), "macro-F1": num("%.3f", "Test macro-F1"),
            "pretrained": num("%.3f", "Macro-F1 of a logistic probe on the untuned backbone, same test examples", 84),
            "ECE": num("%.3f", "Expected calibration error: 0 = confidence matches accuracy", 60),
            "best val": num("%.3f", "Best validation score (the task's primary metric)"),
            "train s": num("%.1f", "Training time in seconds", 64),
            "trainable": st.column_config.TextColumn(width=72, help="Trainable parameters")})


def diff_section(diff: dict[str, dict[str, Any]], names: dict[str, str]) -> None:
    st.markdown("**Configuration differences**")
    with st.container(key="cmp-diff"):
        if not diff:
            st.caption("These runs used the same configuration.")
            return
        rows = [{"field": f, **{names[rid]: ("auto" if v is None else str(v)) for rid, v in values.items()}}
                for f, values in diff.items()]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def per_class_section(per_class: dict[str, dict[str, float | None]], names: dict[str, str]) -> None:
    if not per_class:
        return
    with st.container(key="cmp-per-class"):
        st.plotly_chart(per_class_figure(per_class, names), key="cmp_fig_pc", config={"displayModeBar": False})


def _curves(ids: list[str], metric: str, x: str, names: dict[str, str], was_live: bool) -> None:
    """The overlaid curves; redrawn every second or two while any of the runs is still training."""
    with st.container(key="cmp-curves"), common.guard("Could not read the curves"):
        runs = core.load_runs(ids)
        if was_live and not any(r["status"] in ACTIVE for r in runs):
            st.rerun()  # the last one finished: redraw the whole page (table, per-class F1); the timer stops
        st.plotly_chart(curves_figure(core.curves(runs, metric, x), names, metric, x), key="cmp_fig_curves",
                        config={"displayModeBar": False})


def page() -> None:
    with common.guard("Could not compare the runs"):
        ids = pick_runs()
        if len(ids) < 2:
            if ids:
                st.info("Pick at least one more run.")
            _sync_query(ids, core.DEFAULT_METRIC, "epoch")
            return
        runs = core.load_runs(ids)
        rows = core.metric_rows(runs)
        metric, x = controls(core.metric_names(rows))
        _sync_query(ids, metric, x)
        names = core.labels(runs)
        live = any(r["status"] in ACTIVE for r in runs)
        st.fragment(run_every=LIVE_EVERY_S if live else None)(_curves)(ids, metric, x, names, live)
        table_section(core.final_table(runs))
        left, right = st.columns([1, 1])
        with left:
            diff_section(core.config_diff(runs), names)
        with right:
            per_class_section(core.per_class_f1(runs), names)
        st.caption(f"Share this view: `?runs={','.join(ids)}&metric={metric}&x={x}` · "
                   f"CLI: `lepton compare {' '.join(ids)}`")
