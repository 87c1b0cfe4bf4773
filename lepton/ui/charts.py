"""Plotly figures for the dashboard. Pure functions: data in, figure out (easy to test, no streamlit)."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import plotly.graph_objects as go

ACCENT = "#5b5bd6"
PALETTE = ["#5b5bd6", "#e5484d", "#12a594", "#f76b15", "#8e4ec6", "#0090ff", "#ffc53d", "#6b7085"]
SPLIT_COLORS = {"train": "#5b5bd6", "val": "#12a594", "test": "#f76b15"}
SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}
MAX_POINTS = 2000  # per trace: more than a chart's pixel width shows nothing new and slows the browser down


def thin(xs: Iterable, ys: Iterable, limit: int = MAX_POINTS) -> tuple[list, list]:
    """At most `limit` points of a curve with its shape kept: MinMax-LTTB (tsdownsample) keeps every bucket's
    spikes and both ends, where a plain stride would drop a loss spike. NaNs (a diverged step) are kept too."""
    xs, ys = list(xs), list(ys)
    if len(xs) <= limit:
        return xs, ys
    from tsdownsample import NaNMinMaxLTTBDownsampler

    x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    order = np.argsort(x, kind="stable")  # the downsampler needs x sorted; a resumed run may repeat steps
    idx = order[NaNMinMaxLTTBDownsampler().downsample(x[order], y[order], n_out=limit)]
    return x[idx].tolist(), y[idx].tolist()


def _layout(fig: go.Figure, title: str | None = None, height: int = 260, **kw: Any) -> go.Figure:
    layout: dict[str, Any] = dict(
        title=dict(text=title, x=0, xanchor="left", font=dict(size=14)) if title else None,
        height=height,
        margin=dict(l=8, r=8, t=36 if title else 8, b=8),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1),
        hovermode="x unified",
    )
    fig.update_layout(**{**layout, **kw})
    return fig


def curve(series: dict[str, tuple[list, list]], title: str, x_title: str = "step", y_title: str | None = None,
          y_range: tuple[float, float] | None = None, height: int = 260, empty_note: str = "waiting for the first point…",
          y_format: str | None = None, x_range: tuple[float, float] | None = None) -> go.Figure:
    """Line chart of named series {name: (xs, ys)}; markers when there are few points."""
    fig = go.Figure()
    series = {name: thin(xs, ys) for name, (xs, ys) in series.items()}
    for i, (name, (xs, ys)) in enumerate(series.items()):
        few = len(xs) <= 30
        fig.add_trace(go.Scatter(x=list(xs), y=list(ys), name=name, mode="lines+markers" if few else "lines",
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=2, dash="dot" if i else "solid"),
                                 marker=dict(size=6)))
    if not any(len(xs) for xs, _ in series.values()):
        fig.add_annotation(text=empty_note, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                           font=dict(color="#8b8fa3"))
    fig.update_xaxes(title_text=x_title, rangemode="tozero")
    fig.update_yaxes(title_text=y_title, rangemode="tozero")
    if y_format:
        fig.update_yaxes(tickformat=y_format)
    if y_range:
        fig.update_yaxes(range=list(y_range))
    if x_range:
        most = max((max(xs) for xs, _ in series.values() if len(xs)), default=0)
        fig.update_xaxes(range=[x_range[0], max(x_range[1], most) * 1.02 or 1])
    return _layout(fig, title, height, showlegend=len(series) > 1)


def label_distribution(counts: dict[str, dict[str, int]], classes: Iterable[str]) -> go.Figure:
    """Grouped bars: examples per class, one colour per split."""
    classes = list(classes)
    fig = go.Figure()
    for split in ("train", "val", "test"):
        c = counts.get(split) or {}
        if not c:
            continue
        fig.add_trace(go.Bar(x=classes, y=[c.get(k, 0) for k in classes], name=SPLIT_NAMES[split],
                             marker_color=SPLIT_COLORS[split]))
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_xaxes(title_text="label", type="category")
    fig.update_yaxes(title_text="examples")
    return _layout(fig, "Examples per label and split", 300, hovermode="closest")


def confusion(matrix: list[list[float]], classes: list[str], normalise: bool = False) -> go.Figure:
    """Heatmap, rows = true label, columns = predicted label."""
    z = [list(map(float, row)) for row in matrix]
    if normalise:
        z = [[v / s if (s := sum(row)) else 0.0 for v in row] for row in z]
        text = [[f"{v:.0%}" for v in row] for row in z]
    else:
        text = [[f"{v:.0f}" for v in row] for row in z]
    n = len(classes)
    fig = go.Figure(go.Heatmap(
        z=z, x=classes, y=classes, text=text, texttemplate="%{text}" if n <= 20 else None,
        colorscale=[[0, "#f5f6fa"], [1, ACCENT]], showscale=False,
        hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>",
    ))
    fig.update_xaxes(title_text="predicted", type="category", side="bottom")
    fig.update_yaxes(title_text="true", type="category", autorange="reversed")
    size = min(640, max(280, 60 + 36 * n))
    return _layout(fig, "Confusion matrix" + (" (share of each true label)" if normalise else ""), size,
                   hovermode="closest")


def probabilities(probs: dict[str, float], top: int = 10) -> go.Figure:
    """Horizontal bars, most likely label on top."""
    items = sorted(probs.items(), key=lambda kv: kv[1], reverse=True)[:top]
    items.reverse()
    fig = go.Figure(go.Bar(
        x=[p for _, p in items], y=[k for k, _ in items], orientation="h",
        marker_color=[ACCENT if i == len(items) - 1 else "#c7c8f2" for i in range(len(items))],
        text=[f"{p:.1%}" for _, p in items], textposition="auto",
        hovertemplate="%{y}: %{x:.1%}<extra></extra>",
    ))
    fig.update_xaxes(range=[0, 1], tickformat=".0%", title_text="probability")
    fig.update_yaxes(type="category")
    return _layout(fig, None, max(160, 40 + 30 * len(items)), hovermode="closest", showlegend=False)


def predicted_vs_true(true: list[float], pred: list[float], refs: list[str] | None = None) -> go.Figure:
    """Regression: one point per example, against the diagonal a perfect model sits on."""
    lo = min(min(true, default=0.0), min(pred, default=0.0))
    hi = max(max(true, default=1.0), max(pred, default=1.0))
    fig = go.Figure(go.Scattergl(x=true, y=pred, mode="markers", marker=dict(color=ACCENT, size=6, opacity=0.6),
                                 text=refs, hovertemplate="%{text}<br>true %{x:.4g}<br>predicted %{y:.4g}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="#8b8fa3", dash="dot"),
                             hoverinfo="skip", name="perfect"))
    fig.update_xaxes(title_text="true")
    fig.update_yaxes(title_text="predicted", scaleanchor="x")
    return _layout(fig, "Predicted against true", 360, hovermode="closest", showlegend=False)


def residual_histogram(edges: list[float], counts: list[int], title: str = "Residuals",
                       x_title: str = "residual (predicted − true)", zero_line: bool = True) -> go.Figure:
    """Regression: how far predictions miss (predicted − true), binned; or the targets themselves."""
    mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    width = (edges[1] - edges[0]) if len(edges) > 1 else 1.0
    fig = go.Figure(go.Bar(x=mids, y=counts, width=width * 0.95, marker_color=ACCENT,
                           hovertemplate="error %{x:.3g}: %{y} examples<extra></extra>"))
    if zero_line:
        fig.add_vline(x=0, line=dict(color="#8b8fa3", dash="dot"))
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text="examples")
    return _layout(fig, title, 360, hovermode="closest", showlegend=False)


def threshold_explorer(curves: dict[str, list[float]], thresholds: list[float], chosen: float, label: str) -> go.Figure:
    """Multi-label: one label's precision, recall and F1 as its decision threshold moves; the line is the tuned one."""
    fig = curve({name: (thresholds, curves[name]) for name in ("precision", "recall", "f1")},
                f"“{label}”: precision, recall and F1 by threshold", x_title="threshold", y_range=(0, 1.02), height=300)
    fig.add_vline(x=chosen, line=dict(color="#e5484d", dash="dash"),
                  annotation_text=f"tuned {chosen:.2f}", annotation_position="bottom right")
    return fig


def compare_bars(values: dict[str, float], title: str | None, x_title: str, share: bool = False,
                 height: int | None = None) -> go.Figure:
    """Horizontal bars, the first (the reference: the fused model, every input) on top in the accent colour and
    the rest lighter: a multimodal run against each modality alone, or a prediction without each input.
    share: values are probabilities (0-1, shown as %); otherwise scores such as F1 or R² (which can go below 0)."""
    items = list(values.items())[::-1]  # plotly draws the first bar at the bottom
    xs = [v for _, v in items]
    fig = go.Figure(go.Bar(
        x=xs, y=[k for k, _ in items], orientation="h",
        marker_color=[ACCENT if i == len(items) - 1 else "#c7c8f2" for i in range(len(items))],
        text=[f"{v:.1%}" if share else f"{v:.3f}" for v in xs], textposition="auto",
        hovertemplate="%{y}: %{x:" + (".1%" if share else ".3f") + "}<extra></extra>"))
    low = min(xs, default=0.0)
    fig.update_xaxes(range=[min(0.0, low * 1.1), 1.0 if share or max(xs, default=0) <= 1 else max(xs) * 1.1],
                     tickformat=".0%" if share else None, title_text=x_title)
    fig.update_yaxes(type="category")
    return _layout(fig, title, height or max(160, 60 + 34 * len(items)), hovermode="closest", showlegend=False)
