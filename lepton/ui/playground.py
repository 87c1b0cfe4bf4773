"""Playground: try a finished run on your own input (text, an image or a sound)."""

from __future__ import annotations

import random
from typing import Any

import streamlit as st

from lepton.ui import access, common, task_views

IMAGE_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp"]
AUDIO_TYPES = ["wav", "flac", "ogg", "mp3"]


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

    ds_id = (run.get("config") or {}).get("data")
    ds = load_dataset(ds_id)
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
    is_image = modality == "image"
    tabs = st.tabs(["Upload a file", "Camera" if is_image else "Record"])
    with tabs[0]:
        up = st.file_uploader("Image" if is_image else "Sound", type=IMAGE_TYPES if is_image else AUDIO_TYPES,
                              key=f"pg_upload_{run_id}")
    with tabs[1]:
        shot = (st.camera_input("Take a picture", key=f"pg_camera_{run_id}") if is_image
                else st.audio_input("Record a few seconds", key=f"pg_mic_{run_id}"))
    source = up or shot
    if source is not None:
        data = source.getvalue()
        sig = (run_id, getattr(source, "file_id", None) or len(data))
        if st.session_state.get("pg_sig") != sig:
            with common.guard(f"Could not read that {'image' if is_image else 'sound'}"):
                st.session_state["pg_out"] = (run_id, predict(run_id, data), data)
                st.session_state["pg_sig"] = sig
                st.session_state.pop("pg_truth", None)


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
            if modality == "text":
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
    if modality == "text":
        text_input(run_id)
    else:
        media_input(run, modality)
    example_button(run, modality)
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
