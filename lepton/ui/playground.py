"""Playground: try a finished run on your own input (text, an image or a sound; several at once for a multimodal
run, with what each one contributes)."""

from __future__ import annotations

import random
from typing import Any

import streamlit as st

from lepton.ui import access, charts, common, modality_views, task_views


@st.cache_resource(show_spinner=False, max_entries=4)
def _load(run_id: str, stamp: float) -> Any:
    """One loaded model per run (and saved-model version), shared by every session."""
    from lepton.predict import Predictor

    return Predictor.load(run_id)


def predictor(run_id: str) -> Any:
    from pathlib import Path

    run = common.store().get_run(run_id) or {}
    weights = Path(run.get("run_dir") or "") / "model" / "model.safetensors"
    # A resumed or re-finished run writes new weights under the same id: reload then.
    stamp = weights.stat().st_mtime if weights.exists() else 0.0
    return _load(run_id, stamp)


def predict(run_id: str, x: Any) -> dict:
    return predictor(run_id).predict(x)


def pick_run() -> dict | None:
    runs = access.runs(status="finished", limit=200)
    wanted = common.query_param("run")
    if wanted and wanted not in {r["id"] for r in runs}:
        access.not_found([wanted], "finished runs")
    if not runs:
        common.empty_state("No finished runs yet. Train one on **Train** (or start a demo on **Home**); when it "
                           "finishes you can try it here.", common.PAGE_TRAIN, "Train a model", ":material/model_training:")
        return None
    ids = [r["id"] for r in runs]
    if st.session_state.get("pg_run") not in ids:
        st.session_state["pg_run"] = wanted if wanted in ids else ids[0]
    by_id = {r["id"]: r for r in runs}
    datasets = common.datasets_by_id()

    def label(i: str) -> str:
        r = by_id[i]
        cfg = r.get("config") or {}
        m = (r.get("result") or {}).get("metrics") or {}
        acc, primary = m.get("accuracy"), m.get("primary")
        score = (f" · accuracy {acc:.1%}" if acc is not None else
                 f" · {task_views.title(primary)} {m[primary]:.3f}" if isinstance(m.get(primary), float) else "")
        name = r.get("name") or cfg.get("name") or i
        _, backbone, adapter = common.run_parts(r, datasets)
        return f"{name} · {backbone} + {adapter}" + score + (f" · {i}" if name != i else "")

    chosen = st.selectbox("Model (a finished run)", ids, key="pg_run", format_func=label)
    common.set_query_param("run", chosen)
    return by_id[chosen]


def _random_example(run: dict) -> tuple[Any, str, str] | None:
    """(raw input, true label, reference) from the run's dataset, test split first."""
    from lepton.data import load_dataset

    from pathlib import Path

    report = common.read_json(Path(run.get("run_dir") or "") / "report.json") or {}
    # The stored dataset the run trained on: a CLI run's config may name a file, and ingesting that again with
    # the defaults (task auto) would read a regression set as single-label and fail.
    ds = load_dataset(report.get("dataset") or (run.get("config") or {}).get("data"))
    for split in ("test", "val", "train"):
        examples = list(ds.examples(split))
        if examples:
            ex = random.choice(examples)
            return ex.x, task_views.view_of(ds.task).truth(ex.label, ds.classes), ex.ref
    return None


def text_input(run_id: str) -> None:
    pending = st.session_state.pop("pg_text_pending", None)
    if pending is not None:  # an example picked last run: fill the box before it is drawn
        st.session_state[f"pg_text_{run_id}"] = pending
    text = st.text_area("Text", key=f"pg_text_{run_id}", height=120, placeholder="Type or paste a sentence…")
    # Never disabled: a text area only sends its value on blur, so a button disabled "until there is
    # text" would still look disabled right after the user typed.
    if st.button("Predict", type="primary", icon=":material/bolt:", key="pg_predict"):
        if not text.strip():
            st.warning("Type a sentence first.")
            return
        with common.guard("Could not predict"):
            st.session_state["pg_out"] = (run_id, predict(run_id, text), None)
            st.session_state.pop("pg_truth", None)


def media_input(run: dict, modality: str) -> None:
    run_id = run["id"]
    source = modality_views.VIEWS.get(modality).source(run_id)  # an upload, or a picture or recording taken here
    if source is not None:
        data = source.getvalue()
        sig = (run_id, getattr(source, "file_id", None) or len(data))
        if st.session_state.get("pg_sig") != sig:
            with common.guard(f"Could not read that {'image' if modality == 'image' else 'sound'}"):
                st.session_state["pg_out"] = (run_id, predict(run_id, data), data)
                st.session_state["pg_sig"] = sig
                st.session_state.pop("pg_truth", None)


# ---------------------------------------------------------------- several inputs at once (a multimodal run)
def multimodal_input(run_id: str, modalities: list[str]) -> None:
    """One input per branch side by side (type, upload, take or record), any of them left empty: the model
    predicts without it. Predict answers and says what each given input contributes."""
    st.markdown("**Inputs** <span class='lp-muted'>(give any of them; one left empty is missing, and the model "
                "predicts without it)</span>", unsafe_allow_html=True)
    given: dict[str, Any] = {}
    cols = st.columns([modality_views.VIEWS.get(m).weight for m in modalities])
    for col, m in zip(cols, modalities):
        with col, st.container(border=True, key=f"pg_input_{m}"):
            st.markdown(modality_views.label(m))
            view = modality_views.VIEWS.get(m)
            given[m] = view.value(view.source(f"{m}_{run_id}"))
    if st.button("Predict", type="primary", icon=":material/bolt:", key="pg_predict"):
        if all(v is None for v in given.values()):
            st.warning("Give at least one input first: " + ", ".join(modalities) + ".")
            return
        with common.guard("Could not predict"):
            predict_row(run_id, given)
            st.session_state.pop("pg_truth", None)


def predict_row(run_id: str, x: dict[str, Any]) -> None:
    """The answer for a multimodal row, and the answer with each given modality left out."""
    model = predictor(run_id)
    x = model.row({m: v for m, v in x.items() if v is not None})
    st.session_state["pg_mm_out"] = (run_id, x, model.predict(x), model.without(x))


def multimodal_result(run_id: str, model: Any) -> None:
    out = st.session_state.get("pg_mm_out")
    if not out or out[0] != run_id:
        return
    _, x, result, without = out
    view = task_views.view_of(model.task.name)
    truth = st.session_state.get("pg_truth")
    example = bool(truth and truth[0] == run_id)
    with st.container(key="pg_given"):
        # Uploads cannot be filled in from an example, so say which input this answer is for.
        st.caption("The example (a row of its dataset, not the inputs above)" if example else "The input")
        modality_views.row(model.modalities, x)
    if example:
        st.caption(f"Example `{truth[2]}`, true {'value' if not model.classes else 'label'} **{truth[1]}**")
    view.answer(result)
    with st.container(key="without", border=True):
        st.markdown("**What each input contributes** <span class='lp-muted'>(the same model, that input left "
                    "out)</span>", unsafe_allow_html=True)
        if not without:
            st.caption("Give two or more inputs to see what each one adds: with only one, there is nothing to leave out.")
            return
        rows = {"every input given": result, **{f"without {m}": o for m, o in without.items()}}
        held = {k: view.held(o, result) for k, o in rows.items()}
        left, right = st.columns([1, 1.3])
        with left:
            st.dataframe([{"input": k, "answer": view.short(o)} for k, o in rows.items()], hide_index=True,
                         width="stretch")
        what = next((h[0] for h in held.values() if h), None)
        with right:
            if what is not None:
                st.plotly_chart(charts.compare_bars({k: h[1] for k, h in held.items() if h}, None, what,
                                                    share=view.share), key="fig_without",
                                config={"displayModeBar": False})
        full = held["every input given"]
        moved = {m: abs(h[1] - full[1]) for m, o in without.items() if full and (h := view.held(o, result))}
        if moved:
            m = max(moved, key=moved.get)
            value = (lambda v: f"{v:.0%}") if view.share else (lambda v: f"{v:.4g}")
            st.caption(f"Leaving out **{m}** moves the answer most: {what} {value(full[1])} → "
                       f"{value(held[f'without {m}'][1])}.")


def example_button(run: dict, modality: str) -> None:
    if not access.viewer().admin and (run.get("config") or {}).get("data") not in common.datasets_by_id():
        return  # a shared run on someone else's private dataset: the run is shared, its data is not
    if st.button("Try a random example from its dataset", icon=":material/shuffle:", key="pg_example",
                 help="Picks an example from the run's test split (the model did not train on it)"):
        with common.guard("Could not load an example from the dataset"):
            ex = _random_example(run)
            if ex is None:
                st.info("Its dataset has no examples left to try.")
                return
            x, true, ref = ex
            if isinstance(x, dict):  # a multimodal row: every modality it has, at once
                predict_row(run["id"], x)
            elif modality == "text":
                st.session_state["pg_text_pending"] = str(x)
                st.session_state["pg_out"] = (run["id"], predict(run["id"], str(x)), None)
            else:
                data = open(x, "rb").read() if not isinstance(x, (bytes, bytearray)) else bytes(x)
                st.session_state["pg_out"] = (run["id"], predict(run["id"], data), data)
                st.session_state["pg_sig"] = None
            st.session_state["pg_truth"] = (run["id"], true, ref)
            st.rerun()


def page() -> None:
    run = pick_run()
    if run is None:
        return
    run_id = run["id"]
    model = None
    with common.guard("Could not load this run's model"):
        with st.spinner("Loading the model…"):
            model = predictor(run_id)
    if model is None:
        return
    modality = model.modality
    st.caption(f"{modality} {model.task.name} model" + (f" · {len(model.classes)} labels: " + ", ".join(
        map(str, model.classes[:12])) + (" …" if len(model.classes) > 12 else "") if model.classes else
        " · it predicts a number"))
    several = len(model.modalities) > 1
    if several:
        fusion = model.meta.get("fusion")  # none when the run shipped its probe: one linear model, no fusion module
        st.caption("Inputs: " + ", ".join(model.modalities) + " · " + (f"fusion: {fusion}" if fusion else
                   "a linear probe over every branch's features (the run shipped its probe)"))
        multimodal_input(run_id, model.modalities)
    elif modality == "text":
        text_input(run_id)
    else:
        media_input(run, modality)
    example_button(run, modality)
    if several:
        multimodal_result(run_id, model)
        return
    out = st.session_state.get("pg_out")
    if out and out[0] == run_id:
        _, result, media = out
        if media is not None:
            if modality == "image":
                st.image(media, width=220)
            else:
                st.audio(media)
        truth = st.session_state.get("pg_truth")
        if truth and truth[0] == run_id:
            st.caption(f"Example `{truth[2]}`, true {'value' if not model.classes else 'label'} **{truth[1]}**")
        task_views.view_of(model.task.name).answer(result)
