"""Transfer view: how runs score across datasets (the transfer matrix), forgetting of warm-started
runs on their source data, and a button that evaluates a run on another dataset and stores it.
The run page shows one run's slice of the same (`run_section`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lepton.tasks import TASKS
from lepton.ui import access, charts, common, task_views


# ---------------------------------------------------------------- figure (pure)
def matrix_figure(m: dict[str, Any]) -> go.Figure:
    """Heatmap: rows = runs, columns = datasets, each cell the column's task's primary metric (macro-F1, micro-F1 or
    R², named under the column when it is not macro-F1); ● marks a run's own test split."""
    runs, cols = m["runs"], m["datasets"]
    z, text = [], []
    for r in runs:
        cells = m["cells"].get(r["id"], {})
        z.append([cells[c["id"]]["score"] if c["id"] in cells else None for c in cols])
        text.append([(f"{cells[c['id']]['score']:.3f}" + (" ●" if cells[c["id"]]["source"] == "own test report" else ""))
                     if c["id"] in cells else "–" for c in cols])
    names = {r["id"]: r["name"] or r["id"] for r in runs}
    ylabels = [names[r["id"]] + (f" (from {names.get(r['from_run'], r['from_run'])})" if r.get("from_run") else "")
               for r in runs]
    xlabels = [c["name"] + ("" if c.get("metric", "macro_f1") == "macro_f1" else f" ({task_views.title(c['metric'])})")
               for c in cols]
    # Cells sit at positions, and names are only tick labels: plotly merges category axes by label, so two
    # datasets (or runs) with the same name would share one column and shift the colours off their values.
    xs, ys = list(range(len(cols))), list(range(len(runs)))
    fig = go.Figure(go.Heatmap(z=z, x=xs, y=ys, text=text, texttemplate="%{text}", zmin=0, zmax=1,
                               customdata=[[[yl, xl] for xl in xlabels] for yl in ylabels],
                               colorscale=[[0, "#f5f6fa"], [1, charts.ACCENT]], showscale=False, xgap=2, ygap=2,
                               hovertemplate="run %{customdata[0]}<br>dataset %{customdata[1]}<br>score %{text}<extra></extra>"))
    fig.update_xaxes(side="top", tickvals=xs, ticktext=xlabels, showgrid=False, zeroline=False)
    fig.update_yaxes(autorange="reversed", tickvals=ys, ticktext=ylabels, showgrid=False, zeroline=False)
    fig.update_layout(height=max(220, 80 + 44 * len(runs)), margin=dict(l=8, r=8, t=40, b=8), hovermode="closest")
    return fig


# ---------------------------------------------------------------- actions (the same calls as the CLI)
def evaluate(run_id: str, dataset_id: str) -> dict:
    from lepton.transfer import evaluate_and_store

    return evaluate_and_store(run_id, dataset_id)


def measure_forgetting(run_id: str) -> dict:
    from lepton.transfer import measure_forgetting as measure

    return measure(run_id)


def matrix(run_ids: list[str] | None = None) -> dict:
    """Only runs and evaluations on datasets the current user may see (lepton.transfer.transfer_matrix)."""
    from lepton.transfer import transfer_matrix

    return transfer_matrix(run_ids, viewer=access.viewer())


def fitting_datasets(modality: str | None, classes: list[str]) -> list[dict]:
    """Stored datasets a run can be scored on: same modality, no labels it never learned."""
    return [d for d in common.datasets_by_id().values()
            if (modality is None or d.get("modality") == modality) and set(d.get("classes") or []) <= set(classes)]


# ---------------------------------------------------------------- sections
def evaluate_form(run: dict, key: str) -> None:
    from lepton.transfer import read_json

    meta = read_json(Path(run.get("run_dir") or "") / "model" / "meta.json") or {}
    options = fitting_datasets(meta.get("modality"), meta.get("classes") or [])
    if not options:
        st.caption("No other stored dataset fits this run (same modality, only labels it knows). Add one on **Data**.")
        return
    by_id = {d["id"]: d for d in options}
    bar = st.container(horizontal=True, vertical_alignment="bottom")
    ds_id = bar.selectbox("Evaluate on dataset", list(by_id), key=f"{key}_ds",
                          format_func=lambda i: f"{by_id[i].get('name') or i} · {i}",
                          help="Scores the run on the dataset's held-out split (or all of it for a test-only set) "
                               "and stores the result: the same as `lepton eval RUN --data DATASET`")
    if bar.button("Evaluate and store", key=f"{key}_go", icon=":material/assignment_turned_in:"):
        with common.guard("Could not evaluate the run"), st.spinner("Evaluating…"):
            rep = evaluate(run["id"], ds_id)
            primary = TASKS.get(rep["task"]).primary
            common.flash("success", f"{by_id[ds_id].get('name') or ds_id}: {task_views.title(primary)} {rep[primary]:.3f} "
                                    f"on {rep['n']} examples ({rep['split']}); stored.")
            st.rerun()


def forgetting_table(m: dict, key: str) -> None:
    if not m["forgetting"]:
        return
    names = {r["id"]: r["name"] or r["id"] for r in m["runs"]}
    dnames = {d["id"]: d["name"] for d in m["datasets"]}
    st.markdown("**Forgetting** <span class='lp-muted'>a warm-started run's score (its task's primary metric) on its source run's dataset, "
                "before (the source run) and after learning the new data</span>", unsafe_allow_html=True)
    rows = [{"run": names.get(rid, rid), "source run": names.get(f["source_run"], f["source_run"]),
             "source dataset": dnames.get(f["source_dataset"], f["source_dataset"]), "before": f["before"],
             "after": f["after"], "forgetting": f["forgetting"]} for rid, f in m["forgetting"].items()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "before": st.column_config.NumberColumn(format="%.3f"), "after": st.column_config.NumberColumn(format="%.3f"),
        "forgetting": st.column_config.NumberColumn(format="%+.3f", help="before − after: how much was lost")})
    # Forgetting is measured on the source run's dataset: only where this user may use that dataset.
    usable = common.datasets_by_id()
    todo = [rid for rid, f in m["forgetting"].items()
            if f["after"] is None and (access.viewer().admin or f["source_dataset"] in usable)]
    if todo and st.button(f"Measure forgetting ({len(todo)} run{'s' if len(todo) > 1 else ''})", key=f"{key}_forget",
                          icon=":material/history:", help="Evaluates each warm-started run on its source dataset"):
        with common.guard("Could not measure forgetting"), st.spinner("Evaluating on the source datasets…"):
            for rid in todo:
                measure_forgetting(rid)
            st.rerun()


def run_section(run: dict) -> None:
    """The run page's transfer block: this run (and its source) across datasets, plus the evaluate button."""
    with st.container(key="transfer"), common.guard("Could not show the transfer results"):
        st.subheader("Transfer")
        m = matrix([run["id"]])
        if len(m["datasets"]) > 1 or m["forgetting"]:
            st.plotly_chart(matrix_figure(m), key="tr_run_fig", config={"displayModeBar": False})
        else:
            st.caption("Evaluated only on its own data so far. Score it on another dataset to see how it transfers.")
        forgetting_table(m, f"tr_run_{run['id']}")
        evaluate_form(run, f"tr_run_{run['id']}")


def page() -> None:
    common.show_flash()
    with common.guard("Could not build the transfer matrix"):
        m = matrix()
        if not m["runs"]:
            common.empty_state("No finished runs yet. Train one, then evaluate it on other datasets here.",
                               common.PAGE_TRAIN, "Train a model", ":material/model_training:")
            return
        st.caption("Rows are runs, columns are datasets; each cell is the dataset's primary metric (macro-F1 unless "
                   "the column names another). ● = the run's own test split; "
                   "other cells are stored evaluations. A run marked (from …) was warm-started from another run (`--from`).")
        with st.container(key="tr-matrix"):
            st.plotly_chart(matrix_figure(m), key="tr_fig", config={"displayModeBar": False})
        forgetting_table(m, "tr_page")
        st.markdown("**Evaluate a run on another dataset**")
        finished = {r["id"]: r for r in m["runs"]}
        wanted = common.query_param("run")  # ?run=<id> opens this page on one run
        if wanted and wanted not in finished:
            access.not_found([wanted], "finished runs")
        elif wanted and "tr_run" not in st.session_state:
            st.session_state["tr_run"] = wanted
        rid = st.selectbox("Run", list(finished), key="tr_run", format_func=lambda i: finished[i]["name"] or i)
        run = common.store().get_run(rid)
        if run:
            evaluate_form(run, "tr_page")
