"""How each task's results read on a run's page and in the Playground: one view per task in lepton/tasks,
registered under the same name, so the pages never branch on a task's name."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from lepton.registry import Registry
from lepton.ui import charts

VIEWS: Registry[type["View"]] = Registry("task view")

METRIC_TITLES = {"accuracy": "Accuracy", "macro_f1": "Macro-F1", "micro_f1": "Micro-F1", "map": "mAP", "r2": "R²",
                 "rmse": "RMSE", "mae": "MAE", "subset_accuracy": "Exact-match accuracy"}
METRIC_HELP = {
    "macro_f1": "The mean of per-label F1: every label counts the same, however rare",
    "micro_f1": "F1 over every (example, label) decision pooled: frequent labels weigh more",
    "map": "Mean average precision: how well each label's scores rank its examples, threshold-free",
    "r2": "The share of the target's variance the model explains: 1 is perfect, 0 is predicting the mean",
    "rmse": "Root mean squared error, in the target's own units",
    "mae": "Mean absolute error, in the target's own units",
}


def title(metric: str) -> str:
    return METRIC_TITLES.get(metric, metric)


def fmt(metric: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    return f"{100 * value:.1f} %" if metric == "accuracy" else f"{value:.4g}" if metric in ("rmse", "mae") else f"{value:.3f}"


class View:
    """A task's result section (below the headline metrics) and its Playground answer."""

    @staticmethod
    def body(run: dict, report: dict) -> None:
        raise NotImplementedError

    @staticmethod
    def answer(out: dict) -> None:
        raise NotImplementedError

    @staticmethod
    def truth(label: Any, classes: list[str]) -> str:
        return classes[label]

    # What a Playground answer comes to in one cell, and how much of the full answer another answer keeps (the
    # Playground's "without each input": (what is measured, its value)); share: that value is a probability.
    share = True

    @staticmethod
    def short(out: dict) -> str:
        raise NotImplementedError

    @staticmethod
    def held(out: dict, full: dict) -> tuple[str, float] | None:
        raise NotImplementedError


def view_of(task: str | None) -> type[View]:
    """The view of a report's or a model's task (runs from before tasks existed are single-label)."""
    return VIEWS.get(task or "single-label")


def _per_label_table(per_class: dict[str, dict], extra: tuple[str, ...] = ()) -> None:
    df = pd.DataFrame([{"label": k, **{m: v.get(m) for m in ("precision", "recall", "f1", "support", *extra)}}
                       for k, v in per_class.items()])
    st.markdown("**Per label**")
    st.dataframe(df, hide_index=True, width="stretch", column_config={
        "label": st.column_config.TextColumn(width=140 if not extra else 100),
        "precision": st.column_config.NumberColumn(format="%.3f", width=80 if not extra else 66),
        "recall": st.column_config.NumberColumn(format="%.3f", width=80 if not extra else 56),
        "f1": st.column_config.NumberColumn("F1", format="%.3f", width=80 if not extra else 50),
        "support": st.column_config.NumberColumn(width=80 if not extra else 60,
                                                 help="Examples of this label in the evaluated split"),
        "threshold": st.column_config.NumberColumn(format="%.2f", width=70,
                                                   help="The decision threshold tuned on validation (best F1)"),
        "ap": st.column_config.NumberColumn("AP", format="%.3f", width=50, help="Average precision (threshold-free)"),
    })


@VIEWS.register("single-label")
class SingleLabelView(View):
    @staticmethod
    def body(run: dict, report: dict) -> None:
        left, right = st.columns([1, 1])
        with left:
            _per_label_table(report.get("per_class") or {})
        with right:
            with st.container(key="confusion"):
                norm = st.toggle("Normalise by row", key=f"cm_norm_{run['id']}",
                                 help="Show each true label's row as shares, so rare labels read as clearly as common ones")
                if report.get("confusion_matrix"):
                    st.plotly_chart(charts.confusion(report["confusion_matrix"], list(report.get("classes") or []), norm),
                                    key="fig_cm", config={"displayModeBar": False})

    @staticmethod
    def answer(out: dict) -> None:
        probs = out.get("probs") or {}
        label = out.get("label")
        with st.container(key="prediction", border=True):
            c1, c2 = st.columns([1, 2])
            with c1:
                st.caption("Prediction")
                st.markdown(f"<div class='lp-big'>{label}</div>", unsafe_allow_html=True)
                p = probs.get(label)
                st.caption((f"confidence {p:.1%} · " if p is not None else "") + f"{out.get('latency_ms', 0):.0f} ms")
            with c2:
                st.plotly_chart(charts.probabilities(probs), key="fig_probs", config={"displayModeBar": False})

    @staticmethod
    def short(out: dict) -> str:
        p = (out.get("probs") or {}).get(out.get("label"))
        return f"{out.get('label')}" + (f" ({p:.0%})" if p is not None else "")

    @staticmethod
    def held(out: dict, full: dict) -> tuple[str, float] | None:
        label = full.get("label")
        p = (out.get("probs") or {}).get(label)
        return None if p is None else (f"probability of “{label}”", float(p))


@VIEWS.register("multi-label")
class MultiLabelView(View):
    @staticmethod
    def body(run: dict, report: dict) -> None:
        per_class = report.get("per_class") or {}
        left, right = st.columns([1, 1])
        with left:
            _per_label_table(per_class, ("threshold", "ap"))
        with right, st.container(key="thresholds"):
            curves = report.get("threshold_curves") or {}
            labels = [c for c in per_class if c in curves]
            if not labels:
                st.caption("No threshold curves in this report.")
                return
            label = st.selectbox("Threshold explorer: label", labels, key=f"thr_label_{run['id']}",
                                 help="Precision, recall and F1 on the evaluated split as this label's threshold moves")
            st.plotly_chart(charts.threshold_explorer(curves[label], curves["thresholds"],
                                                      per_class[label].get("threshold", 0.5), label),
                            key="fig_thr", config={"displayModeBar": False})
            st.caption("The dashed line is the threshold tuned on validation, which predictions use. Lower it to "
                       "catch more of this label (recall), raise it to be surer of each one (precision).")

    @staticmethod
    def answer(out: dict) -> None:
        labels = out.get("labels") or []
        with st.container(key="prediction", border=True):
            c1, c2 = st.columns([1, 2])
            with c1:
                st.caption("Labels above their thresholds")
                st.markdown(f"<div class='lp-big'>{', '.join(labels) if labels else '(none)'}</div>",
                            unsafe_allow_html=True)
                st.caption(f"{len(labels)} label{'s' if len(labels) != 1 else ''} · {out.get('latency_ms', 0):.0f} ms")
            with c2:
                st.plotly_chart(charts.probabilities(out.get("probs") or {}), key="fig_probs",
                                config={"displayModeBar": False})

    @staticmethod
    def truth(label: Any, classes: list[str]) -> str:
        return ", ".join(classes[i] for i in label) or "(none)"

    @staticmethod
    def short(out: dict) -> str:
        return ", ".join(out.get("labels") or []) or "(none)"

    @staticmethod
    def held(out: dict, full: dict) -> tuple[str, float] | None:
        probs = out.get("probs") or {}
        # The labels the full answer gave (its most likely one when it gave none): how sure this answer is of them.
        labels = list(full.get("labels") or []) or sorted(full.get("probs") or {}, key=(full.get("probs") or {}).get)[-1:]
        ps = [probs[k] for k in labels if k in probs]
        return (f"mean probability of {', '.join(labels)}", float(sum(ps) / len(ps))) if ps else None


@VIEWS.register("regression")
class RegressionView(View):
    @staticmethod
    def body(run: dict, report: dict) -> None:
        scatter, res = report.get("scatter") or {}, report.get("residuals") or {}
        target = report.get("target") or {}
        if target:
            st.caption(f"Targets on training: mean {target.get('mean', 0):.4g}, standard deviation "
                       f"{target.get('std', 0):.4g} (the model trains on standardised targets and answers in these units).")
        left, right = st.columns([1, 1])
        with left, st.container(key="scatter"):
            st.plotly_chart(charts.predicted_vs_true(scatter.get("true") or [], scatter.get("pred") or [],
                                                     scatter.get("refs")), key="fig_scatter",
                            config={"displayModeBar": False})
        with right, st.container(key="residuals"):
            st.plotly_chart(charts.residual_histogram(res.get("edges") or [], res.get("counts") or []),
                            key="fig_resid", config={"displayModeBar": False})

    @staticmethod
    def answer(out: dict) -> None:
        with st.container(key="prediction", border=True):
            st.caption("Predicted value")
            st.markdown(f"<div class='lp-big'>{out.get('value', float('nan')):.4g}</div>", unsafe_allow_html=True)
            st.caption(f"{out.get('latency_ms', 0):.0f} ms")

    @staticmethod
    def truth(label: Any, classes: list[str]) -> str:
        return f"{float(label):g}"

    share = False

    @staticmethod
    def short(out: dict) -> str:
        return f"{out.get('value', float('nan')):.4g}"

    @staticmethod
    def held(out: dict, full: dict) -> tuple[str, float] | None:
        value = out.get("value")
        return None if value is None else ("predicted value", float(value))
