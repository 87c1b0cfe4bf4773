"""Export page (pick a finished run and a format, see parity and the model card, download a zip) and the
run page's Serve panel (the command that serves the run, and a curl call for it)."""

from __future__ import annotations

import functools
import io
import json
import shlex
import zipfile
from pathlib import Path

import streamlit as st

from lepton.ui import access, common


def zipped(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, f"{folder.name}/{p.relative_to(folder).as_posix()}")
    return buf.getvalue()


def _card_body(text: str) -> tuple[str, str]:
    """(YAML front matter, Markdown body) of a model card."""
    if text.startswith("---\n") and "\n---" in text[4:]:
        end = text.index("\n---", 4)
        return text[4:end], text[end + 4:].lstrip()
    return "", text


def show_result(result: dict) -> None:
    folder = Path(result["path"])
    p = result["parity"]
    with st.container(border=True, key="export_result"):
        st.markdown(f"**{result['format']}** export of `{result['run_id']}` · {result['size_mb']:.2f} MB")
        c = st.columns(4 if "int8" in result else 3)
        c[0].metric("Top-1 agreement", f"{p['top1_agreement']:.1%}", help="Same top label as the run's torch model")
        c[1].metric("Max probability difference", f"{p['max_abs_diff']:.1e}", help="Largest |p_export − p_torch|")
        c[2].metric("Test examples checked", p["n"])
        if "int8" in result:
            q = result["int8"]
            c[3].metric("int8 macro-F1", f"{q['test_macro_f1']:.3f}", f"{q['test_macro_f1'] - q['fp32_test_macro_f1']:+.3f} vs fp32",
                        help=f"model.int8.onnx is {q['size_mb']:.2f} MB, fp32 {q['fp32_size_mb']:.2f} MB")
        if folder.is_dir():
            # Deferred: the zip (100+ MB for a text model) is built when clicked, not held in memory on every rerun.
            st.download_button("Download the folder (zip)", functools.partial(zipped, folder),
                               file_name=f"{result['run_id']}-{result['format']}.zip", mime="application/zip",
                               icon=":material/download:", key="export_download", type="primary", on_click="ignore")
            st.caption(f"Files in `{folder}`: " + ", ".join(f"`{f}`" for f in result["files"]))
            card = folder / "README.md"
            if card.is_file():
                meta, body = _card_body(card.read_text("utf-8"))
                with st.expander("Model card (README.md)", expanded=True, icon=":material/badge:"):
                    st.code(meta, language="yaml")
                    # the card's own headings, two levels down, so they sit under the page's
                    st.markdown("\n".join("##" + ln if ln.startswith("#") else ln for ln in body.splitlines()))


def page() -> None:
    from lepton.export import formats
    from lepton.tasks import TASKS
    from lepton.ui.playground import pick_run

    run = pick_run()
    if run is None:
        return
    if not access.can_manage(run):
        st.info("This run is shared with you: its owner can export it. You can try it in the Playground.")
        return
    task = TASKS.get(common.run_task(run))
    if not task.exclusive:
        st.info(f"This is a {task.name} run. Export checks an export against the run's class probabilities, so it takes "
                "single-label runs for now; try this one in the Playground or with `lepton predict`.")
        return
    if ((run.get("result") or {}).get("metrics") or {}).get("modalities"):
        st.info("This is a multimodal run. Export takes single-modality runs for now; try this one in the Playground "
                "or with `lepton predict RUN --text … --image … --audio …`.")
        return
    fmts = {f["name"]: f for f in formats()}
    fmt = st.radio("Format", list(fmts), horizontal=True, key="export_format",
                   captions=[fmts[n]["description"] for n in fmts])
    int8 = st.checkbox("Also write an int8 copy (text models; re-scored on the test split)", key="export_int8",
                       disabled=fmt != "onnx", help="onnxruntime dynamic quantisation of the ONNX graph")
    if st.button("Export", type="primary", icon=":material/ios_share:", key="export_go"):
        from lepton.export import export

        with common.guard("Could not export the run"):
            with st.status(f"Exporting {run['id']} as {fmt}…", expanded=True) as status:
                result = export(run["id"], fmt, int8=int8 and fmt == "onnx", progress=st.write)
                status.update(label="Exported and checked", state="complete", expanded=False)
            st.session_state["export_result"] = result
    result = st.session_state.get("export_result")
    if result and result["run_id"] == run["id"]:
        show_result(result)


# The call that reaches `lepton serve` for each modality it takes; a multimodal run is not served yet, so its
# page shows no Serve panel.
CALLS = {
    "text": "curl -s localhost:8000/predict -H 'Content-Type: application/json' -d "
            + shlex.quote(json.dumps({"inputs": "some text"})),
    "image": "curl -s localhost:8000/predict -F file=@example.png",
    "audio": "curl -s localhost:8000/predict -F file=@example.wav",
}


def serve_panel(run: dict, modality: str) -> None:
    """The command that serves this run, and a call to it: what a user copies into a terminal."""
    rid = run["id"]
    if modality not in CALLS:
        return
    with st.expander("Serve it over HTTP", icon=":material/dns:", key="serve_panel"):
        st.code(f"lepton serve {shlex.quote(rid)} --port 8000", language="bash")
        st.code(CALLS[modality], language="bash")
        st.caption("It binds 127.0.0.1. Add `--token TOKEN` to require `Authorization: Bearer TOKEN`; "
                   "`/docs` lists every endpoint, `/metrics` is Prometheus, `/v2/models/" + rid + "/infer` is KServe V2.")
