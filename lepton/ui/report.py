"""A finished run's evaluation widgets: pretrained vs fine-tuned, embedding map, calibration,
a browser of mistakes (text, images, audio) and downloads. The run page calls `run_report`.

Everything here reads the run folder (report.json, embeddings.json/.safetensors, predictions.csv): no model loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lepton.ui import charts, common, modality_views

PAGE_SIZE = 12
CARDS_PER_ROW = {"image": 4, "audio": 4}  # a thumbnail or a player is narrower than a text or a multimodal row


# ---------------------------------------------------------------- figures (pure: data in, figure out)
def _layout(fig: go.Figure, title: str, height: int, **kw: Any) -> go.Figure:
    layout: dict[str, Any] = dict(title=dict(text=title, x=0, font=dict(size=14)), height=height,
                                  margin=dict(l=8, r=8, t=36, b=8), hovermode="closest",
                                  legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1))
    fig.update_layout(**{**layout, **kw})
    return fig


def per_class_diff_figure(per_class: dict[str, dict[str, float]]) -> go.Figure:
    """Grouped bars per class: pretrained probe vs fine-tuned F1, the change written on top."""
    classes = list(per_class)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=classes, y=[per_class[c]["pretrained"] for c in classes], name="pretrained (probe)",
                         marker_color="#c7c8f2"))
    fig.add_trace(go.Bar(x=classes, y=[per_class[c]["finetuned"] for c in classes], name="fine-tuned",
                         marker_color=charts.ACCENT, text=[f"{per_class[c]['diff']:+.2f}" for c in classes],
                         textposition="outside"))
    fig.update_yaxes(range=[0, 1.15], title_text="F1")
    fig.update_xaxes(type="category")
    return _layout(fig, "Per-class F1: pretrained vs fine-tuned", 300, barmode="group")


def embedding_figure(doc: dict[str, Any], which: str, tsne: list | None = None) -> go.Figure:
    """Scatter of the 2-D map ("before" or "after"), one colour per true label: PCA, or the given t-SNE points."""
    xy = doc[which]["xy"] if tsne is None else tsne
    classes, labels, refs = doc["classes"], doc["labels"], doc.get("refs") or []
    fig = go.Figure()
    for k, c in enumerate(classes):
        idx = [i for i, y in enumerate(labels) if y == k]
        fig.add_trace(go.Scattergl(x=[xy[i][0] for i in idx], y=[xy[i][1] for i in idx], mode="markers", name=c,
                                   text=[refs[i] if i < len(refs) else "" for i in idx],
                                   hovertemplate=f"{c}<br>%{{text}}<extra></extra>",
                                   marker=dict(size=7, opacity=0.8, color=charts.PALETTE[k % len(charts.PALETTE)])))
    var = doc[which].get("explained") or [0, 0]
    axes = ("t-SNE 1", "t-SNE 2") if tsne is not None else (f"PC1 ({var[0]:.0%})", f"PC2 ({var[1]:.0%})")
    fig.update_xaxes(title_text=axes[0], showticklabels=False, zeroline=False)
    fig.update_yaxes(title_text=axes[1], showticklabels=False, zeroline=False)
    title = "Before: pretrained features" if which == "before" else "After: fine-tuned features (head input)"
    return _layout(fig, title, 380, legend=dict(orientation="h", yanchor="top", y=-0.12, xanchor="left", x=0))


def reliability_figure(cal: dict[str, Any]) -> go.Figure:
    """Reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration."""
    bins = [b for b in cal.get("bins", []) if b["count"]]
    mids = [(b["lo"] + b["hi"]) / 2 for b in bins]
    width = (cal["bins"][0]["hi"] - cal["bins"][0]["lo"]) if cal.get("bins") else 0.1
    fig = go.Figure()
    fig.add_trace(go.Bar(x=mids, y=[b["accuracy"] for b in bins], width=width * 0.92, name="accuracy",
                         marker_color=charts.ACCENT, customdata=[[b["count"], b["confidence"]] for b in bins],
                         hovertemplate="confidence %{customdata[1]:.2f}<br>accuracy %{y:.2f}<br>"
                                       "%{customdata[0]} examples<extra></extra>"))
    # The diamond is the bin's mean confidence at the same x: a bar above it is under-confident, below over-confident.
    fig.add_trace(go.Scatter(x=mids, y=[b["confidence"] for b in bins], mode="markers", name="mean confidence",
                             marker=dict(color="#e5484d", size=9, symbol="diamond"),
                             hovertemplate="mean confidence %{y:.2f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line=dict(color="#8b8fa3", dash="dot")))
    fig.update_xaxes(range=[0, 1], title_text="confidence (top-class probability)")
    fig.update_yaxes(range=[0, 1.02], title_text="accuracy")
    return _layout(fig, f"Reliability (ECE {cal.get('ece', 0):.3f})", 320)


# ---------------------------------------------------------------- data
@st.cache_data(show_spinner=False, max_entries=8)
def read_predictions(path: str, stamp: float) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, dtype={"ref": str, "x": str, "true": str, "pred": str,
                                                           "pretrained_pred": str})


@st.cache_data(show_spinner=False, max_entries=8)
def tsne_points(run_dir: str, stamp: float) -> dict[str, list] | None:
    from lepton.baseline import tsne_maps

    maps = tsne_maps(Path(run_dir))
    return None if maps is None else {k: v.tolist() for k, v in maps.items()}


def dataset_root(report: dict) -> Path | None:
    ds = report.get("test_dataset") or report.get("dataset")
    if not ds:
        return None
    try:
        from lepton.data import load_dataset

        return Path(load_dataset(ds).root)
    except Exception:  # noqa: BLE001 - a deleted dataset only hides the thumbnails
        return None


def modality_of(report: dict) -> str:
    if report.get("modality"):  # reports from before it was recorded: ask the dataset
        return report["modality"]
    try:
        from lepton.data import load_dataset

        return load_dataset(report.get("test_dataset") or report.get("dataset")).modality
    except Exception:  # noqa: BLE001
        return "text"


# ---------------------------------------------------------------- sections
def pretrained_section(report: dict) -> None:
    sec = report.get("pretrained_vs_finetuned")
    if not sec:
        st.caption("This run has no pretrained baseline (it was made before Lepton measured one).")
        return
    pre, fin = sec["pretrained"], sec["finetuned"]
    if "fixed" not in sec:  # multi-label, regression: the same metrics side by side, no single right answer to fix
        from lepton.ui.task_views import fmt, title

        primary = report.get("primary") or next(iter(fin))
        c = st.columns(2)
        c[0].metric(f"Pretrained {title(primary)}", fmt(primary, pre.get(primary)),
                    help="A linear model on the untuned backbone's frozen features, same test examples")
        c[1].metric(f"Fine-tuned {title(primary)}", fmt(primary, fin.get(primary)),
                    delta=f"{fin[primary] - pre[primary]:+.3f}")
        rows = [{"metric": title(k), "pretrained": pre[k], "fine-tuned": fin[k], "change": fin[k] - pre[k]} for k in fin]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="content", column_config={
            "pretrained": st.column_config.NumberColumn(format="%.4g"),
            "fine-tuned": st.column_config.NumberColumn(format="%.4g"),
            "change": st.column_config.NumberColumn(format="%+.4g")})
        st.caption("RMSE and MAE: lower is better; the others: higher is better.")
        return
    c = st.columns(4)
    c[0].metric("Pretrained macro-F1", f"{pre['macro_f1']:.3f}",
                help="A logistic-regression probe on the untuned backbone's frozen features, same test examples")
    c[1].metric("Fine-tuned macro-F1", f"{fin['macro_f1']:.3f}", delta=f"{fin['macro_f1'] - pre['macro_f1']:+.3f}")
    c[2].metric("Fixed by fine-tuning", sec["fixed"], help="Test examples the probe got wrong and the run gets right")
    c[3].metric("Broken by fine-tuning", sec["broken"], help="Test examples the probe got right and the run gets wrong")
    left, right = st.columns([1, 1.4])
    with left:
        rows = [{"metric": name, "pretrained": pre[k], "fine-tuned": fin[k], "change": fin[k] - pre[k]}
                for k, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("ece", "ECE (lower is better)"))]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
            "pretrained": st.column_config.NumberColumn(format="%.3f"),
            "fine-tuned": st.column_config.NumberColumn(format="%.3f"),
            "change": st.column_config.NumberColumn(format="%+.3f")})
        st.caption(f"{sec['both_right']} right both times · {sec['both_wrong']} wrong both times")
    with right:
        st.plotly_chart(per_class_diff_figure(sec["per_class_f1"]), key="rep_fig_pc_diff",
                        config={"displayModeBar": False})


def modalities_section(report: dict) -> None:
    """A multimodal run: the fused model against the same model given only one modality (the others missing),
    on the same test examples; nothing for a single-modality run."""
    alone = report.get("modalities") or {}
    if not alone:
        return
    from lepton.ui.task_views import fmt, title

    primary = report.get("primary") or "macro_f1"
    summary = report.get("summary") or {}
    split = summary.get("eval_split") or report.get("split") or "test"
    fused = report.get(primary)
    # A shipped probe has no fusion module: it is one linear model over every branch's features side by side.
    how = ("the shipped probe reads every branch's features side by side" if (report.get("kept") or {}).get("model")
           == "probe" else f"fusion: {summary.get('fusion') or 'concat'}")
    with st.container(key="modality_scores", border=True):
        st.markdown(f"**Fused against each modality alone** <span class='lp-muted'>({title(primary)} on {split}; "
                    f"{how})</span>", unsafe_allow_html=True)
        left, right = st.columns([1.3, 1])
        with left:
            bars = {"fused (every modality)": fused, **{f"{m} alone": v.get(primary) for m, v in alone.items()}}
            st.plotly_chart(charts.compare_bars({k: v for k, v in bars.items() if isinstance(v, (int, float))}, None,
                                                title(primary)), key="rep_fig_modalities",
                            config={"displayModeBar": False})
        with right:
            metrics = [k for k in next(iter(alone.values())) if k != "loss"]
            rows = [{"model": "fused", **{title(k): report.get(k) for k in metrics}}]
            rows += [{"model": f"{m} alone", **{title(k): v.get(k) for k in metrics}} for m, v in alone.items()]
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                         column_config={title(k): st.column_config.NumberColumn(format="%.3f") for k in metrics})
            best = max(alone, key=lambda m: alone[m].get(primary, float("-inf")))
            if isinstance(fused, (int, float)) and isinstance(alone[best].get(primary), (int, float)):
                gain = fused - alone[best][primary]
                verdict = ("matches" if abs(gain) < 5e-4 else f"{'gains' if gain > 0 else 'loses'} {abs(gain):.3f} "
                           f"{title(primary)} over")
                st.caption(f"Fusion {verdict} the best single modality ({best}: {fmt(primary, alone[best][primary])}). "
                           "\"Alone\" is the same trained model with the other modalities left out, so it shows what "
                           "each one carries.")


def embedding_section(run_dir: Path) -> None:
    doc = common.read_json(run_dir / "embeddings.json")
    if not doc:
        st.caption("No embedding map for this run.")
        return
    method = st.segmented_control(
        "Projection", ["PCA", "t-SNE"], default="PCA", key="rep_emb_method",
        help="PCA is instant and keeps large distances. t-SNE keeps neighbourhoods, so clusters show more "
             "clearly; it takes a few seconds, and distances between clusters mean little.") or "PCA"
    tsne: dict[str, list | None] = {"before": None, "after": None}
    if method == "t-SNE":
        from lepton.baseline import EMBEDDING_FEATURES

        stored = run_dir / EMBEDDING_FEATURES
        if stored.exists():
            with st.spinner("Computing t-SNE of the test features…"):
                tsne = tsne_points(str(run_dir), stored.stat().st_mtime)
        else:
            st.info("This run kept no test features (runs from before t-SNE maps were added), so only PCA shows.")
            method = "PCA"
    shown = len(doc["labels"])
    note = f"{shown} of {doc['n_total']} test examples" if shown < doc["n_total"] else f"{shown} test examples"
    st.caption(f"{method} of the test features, coloured by true label ({note}). Tighter, better separated colours "
               "after fine-tuning mean the backbone learned the task's distinctions."
               + (" This backbone is frozen, so its features do not change: only the head learned." if doc.get("frozen") else ""))
    a, b = st.columns(2)
    with a:
        st.plotly_chart(embedding_figure(doc, "before", tsne["before"]), key="rep_fig_emb_before",
                        config={"displayModeBar": False})
    with b:
        st.plotly_chart(embedding_figure(doc, "after", tsne["after"]), key="rep_fig_emb_after",
                        config={"displayModeBar": False})


def calibration_section(report: dict) -> None:
    cal = report.get("calibration")
    if not cal:
        st.caption("No calibration data in this report.")
        return
    a, b = st.columns([1, 2.2])
    with a:
        st.metric("Expected calibration error", f"{cal['ece']:.3f}",
                  help="Average gap between confidence and accuracy over confidence bins, weighted by bin size")
        st.metric("Largest bin gap", f"{cal.get('mce', 0):.3f}")
        st.caption("A well-calibrated model that says 80 % is right 80 % of the time: its bars sit on the diagonal. "
                   "Bars below it mean over-confidence.")
    with b:
        st.plotly_chart(reliability_figure(cal), key="rep_fig_reliability", config={"displayModeBar": False})


def misclassified_section(run_id: str, run_dir: Path, report: dict) -> None:
    path = run_dir / "predictions.csv"
    if not path.exists():
        wrong = report.get("misclassified") or []
        st.caption(f"{len(wrong)} misclassified examples (this run predates predictions.csv, so only their refs).")
        if wrong:
            st.dataframe(pd.DataFrame(wrong), hide_index=True, width="stretch")
        return
    df = read_predictions(str(path), path.stat().st_mtime)
    if "error" in df:  # regression: no label to be wrong about, so the largest misses first
        df = df.assign(miss=df["error"].abs()).sort_values("miss", ascending=False)
        st.caption(f"The {min(len(df), 200)} largest errors of {len(df)} test examples (predicted − true)")
        st.dataframe(df.head(200)[["ref", "x", "true", "pred", "error", "pretrained_pred"]], hide_index=True,
                     width="stretch", column_config={"x": st.column_config.TextColumn("input", width="large"),
                                                     "pretrained_pred": st.column_config.TextColumn("pretrained")})
        return
    if "confidence" not in df:  # multi-label: per-example label sets
        df = df.assign(confidence=1.0)
    classes = list(report.get("classes") or sorted(set(df["true"])))
    views = {"wrong": "Misclassified", "fixed": "Fixed by fine-tuning", "broken": "Broken by fine-tuning", "all": "All"}
    has_pre = bool((df["pretrained_pred"] != "").any()) if "pretrained_pred" in df else False
    a, b, c = st.columns(3)
    true = a.selectbox("True label", ["(any)"] + classes, key=f"mis_true_{run_id}")
    pred = b.selectbox("Predicted label", ["(any)"] + classes, key=f"mis_pred_{run_id}")
    view = c.selectbox("Show", [k for k in views if has_pre or k in ("wrong", "all")], format_func=views.get,
                       key=f"mis_view_{run_id}")
    sel = df
    if view == "wrong":
        sel = sel[sel["true"] != sel["pred"]]
    elif view == "fixed":
        sel = sel[(sel["pretrained_pred"] != sel["true"]) & (sel["pred"] == sel["true"])]
    elif view == "broken":
        sel = sel[(sel["pretrained_pred"] == sel["true"]) & (sel["pred"] != sel["true"])]
    if true != "(any)":
        sel = sel[sel["true"] == true]
    if pred != "(any)":
        sel = sel[sel["pred"] == pred]
    sel = sel.sort_values("confidence", ascending=False)
    st.caption(f"{len(sel)} example{'s' if len(sel) != 1 else ''}, most confident first")
    if sel.empty:
        return
    pages = max(1, -(-len(sel) // PAGE_SIZE))
    page = st.number_input("Page", 1, pages, 1, key=f"mis_page_{run_id}") if pages > 1 else 1
    modality = modality_of(report)
    root = dataset_root(report) if modality != "text" else None
    cols = st.columns(CARDS_PER_ROW.get(modality, 3))
    with st.container(key="mistakes"):
        for i, (_, row) in enumerate(sel.iloc[(page - 1) * PAGE_SIZE: page * PAGE_SIZE].iterrows()):
            with cols[i % len(cols)].container(border=True):
                example(row, modality, root)


def example(row: Any, modality: str, root: Path | None) -> None:
    ok = row["true"] == row["pred"]
    icon = ":green[:material/check:]" if ok else ":red[:material/close:]"
    sure = f" · {float(row['confidence']):.0%}" if "prob_" + str(row["pred"]) in row else ""  # one class, one score
    st.markdown(f"{icon} true **{row['true']}** · predicted **{row['pred']}**{sure}")
    cells = inputs_of(str(row["x"]), modality)
    for m, value in cells.items():
        view = modality_views.VIEWS.get(m)
        if len(cells) > 1:
            st.caption(modality_views.label(m))
        if value is None:
            st.markdown(modality_views.MISSING)
        elif not view.file:
            st.markdown(modality_views.snippet(value))
        else:
            f = (root / value) if root is not None else None
            if f is None or not f.exists():
                st.caption(f"{value} (file not available: the dataset was deleted?)")
            else:
                view.show(f, width="stretch" if len(cells) == 1 else 160)
    pre = row.get("pretrained_pred") if hasattr(row, "get") else None
    st.caption(f"{row['ref']}" + (f" · pretrained said {pre}" if pre else ""))


def inputs_of(x: str, modality: str) -> dict[str, Any]:
    """{modality: the text, or a file relative to the dataset, or None (missing)}: the one input of a
    single-modality run, or the mapping predictions.csv holds (as JSON) for a multimodal row."""
    if modality in modality_views.VIEWS:
        return {modality: x}
    try:
        got = json.loads(x)
    except ValueError:
        return {}
    return {m: v for m, v in got.items() if m in modality_views.VIEWS} if isinstance(got, dict) else {}


def downloads(run: dict, run_dir: Path, report: dict) -> None:
    c = st.columns(2)  # the files are read when a button is clicked, not held in memory on every rerun
    c[0].download_button("Report (JSON)", lambda: json.dumps(report, indent=2), file_name=f"{run['id']}-report.json",
                         mime="application/json", icon=":material/download:", key=f"dl_report_{run['id']}",
                         on_click="ignore")
    pred = run_dir / "predictions.csv"
    if pred.exists():
        c[1].download_button("Predictions (CSV)", pred.read_bytes, file_name=f"{run['id']}-predictions.csv",
                             mime="text/csv", icon=":material/download:", key=f"dl_pred_{run['id']}", on_click="ignore")


def run_report(run: dict, report: dict) -> None:
    """The evaluation tabs of a finished run's page."""
    run_dir = Path(run.get("run_dir") or "")
    sections = {
        "Pretrained vs fine-tuned": ("the comparison", lambda: pretrained_section(report)),
        "Embedding map": ("the embedding map", lambda: embedding_section(run_dir)),
        "Calibration": ("the calibration", lambda: calibration_section(report)),
        "Mistakes": ("the examples", lambda: misclassified_section(run["id"], run_dir, report)),
        "Downloads": ("the downloads", lambda: downloads(run, run_dir, report)),
    }
    if "task" in report:  # reports that name their task list what they hold: a tab with nothing in it is left out
        has = {"Embedding map": "embeddings" in (report.get("artifacts") or {}), "Calibration": bool(report.get("calibration"))}
        sections = {k: v for k, v in sections.items() if has.get(k, True)}
    with st.container(key="evaluation"):
        st.subheader("Evaluation")
        # on_change="rerun" makes the tabs lazy: only the open one's figures are built and sent, the rest when
        # clicked (a finished run's page drew all five on every load, the embedding maps and mistakes included).
        tabs = st.tabs(list(sections), key="rep_tabs", on_change="rerun")
        for tab, (what, draw) in zip(tabs, sections.values()):
            if tab.open:
                with tab, common.guard(f"Could not show {what}"):
                    draw()
