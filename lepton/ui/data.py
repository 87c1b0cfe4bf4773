"""Data page: upload → pick columns → ingest → validation report → preview; stored datasets."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from lepton.ui import access, charts, common, modality_views, task_views

TABLE_TYPES = (".csv", ".tsv", ".jsonl")
UPLOAD_TYPES = ["csv", "tsv", "jsonl", "zip"]
HEADER_ROWS = 200  # rows read to list columns and guess which is which


# ---------------------------------------------------------------- core calls (the same ones the CLI makes)
def ingest_file(path: str | Path, *, text_column: str = "text", label_column: str = "label", name: str | None = None,
                modality: str = "auto", task: str = "auto") -> Any:
    """Validate and store a dataset owned by the current user; returns lepton.data.IngestResult, whose
    `reused` says whether this user had stored the same content before. The upload widget calls this."""
    from lepton.data import ingest

    res = ingest(str(path), modality=modality, text_column=text_column, label_column=label_column, name=name or None,
                 task=task)
    access.claim_dataset(res, name or Path(path).stem)
    return res


def list_datasets() -> list[dict]:
    """The datasets the current user may see, named as they named them."""
    return access.datasets()

def table_columns(path: str | Path) -> tuple[list[str], pd.DataFrame]:
    """Columns of a CSV/TSV/JSONL file and its first rows (for picking text and label columns)."""
    p = Path(path)
    ext = p.suffix.lower()
    try:
        if ext == ".jsonl":
            df = pd.read_json(p, lines=True, nrows=HEADER_ROWS)
        else:
            df = pd.read_csv(p, sep="\t" if ext == ".tsv" else ",", nrows=HEADER_ROWS, encoding_errors="replace")
    except Exception as e:  # noqa: BLE001 - any parse failure becomes one readable message
        from lepton.errors import DataError

        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"`{p.name}`: could not read it as a {ext[1:].upper()} table ({first}); "
                        "check the delimiter and that the first line is a header") from None
    return [str(c) for c in df.columns], df


def guess_columns(columns: list[str], df: pd.DataFrame) -> tuple[int, int]:
    """Indexes of the text and label columns: by name when present, else longest text / fewest values."""
    low = [c.lower() for c in columns]

    def named(*names: str) -> int | None:
        for n in names:
            if n in low:
                return low.index(n)
        return None

    text_i = named("text", "sentence", "content", "review", "body", "utterance")
    label_i = named("label", "labels", "class", "category", "target", "intent")
    if text_i is None:
        lengths = [df[c].astype(str).str.len().mean() if c in df else 0 for c in df.columns]
        text_i = int(max(range(len(columns)), key=lambda i: lengths[i])) if columns else 0
    if label_i is None:
        uniq = [df[c].nunique() if c in df else 1e9 for c in df.columns]
        order = sorted((i for i in range(len(columns)) if i != text_i), key=lambda i: uniq[i])
        label_i = order[0] if order else 0
    return text_i, label_i


# ---------------------------------------------------------------- upload
def _staged(upload: Any) -> Path:
    """Write the upload once to LEPTON_HOME/tmp/<token>/<original name>, so messages name the user's file."""
    from lepton import paths

    staged: dict[str, str] = st.session_state.setdefault("_staged_uploads", {})
    key = f"{upload.file_id}"
    if key in staged and Path(staged[key]).exists():
        return Path(staged[key])
    folder = paths.tmp_dir() / f"upload-{secrets.token_hex(4)}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(upload.name).name
    target.write_bytes(upload.getbuffer())
    staged[key] = str(target)
    return target


def _unstage(path: Path) -> None:
    shutil.rmtree(path.parent, ignore_errors=True)
    staged: dict[str, str] = st.session_state.get("_staged_uploads", {})
    for k, v in list(staged.items()):
        if v == str(path):
            del staged[k]


def upload_section() -> None:
    st.subheader("Add a dataset")
    st.markdown(
        "<span class='lp-muted'>Text: a <b>.csv</b>, <b>.tsv</b> or <b>.jsonl</b> file with a text and a label column. "
        "Images or audio: a <b>.zip</b> of <code>&lt;label&gt;/&lt;file&gt;</code> folders, or of files with a "
        "<code>metadata.csv</code> (<code>file_name</code>, <code>label</code>, optional <code>split</code>). Several "
        "modalities at once: a <b>.zip</b> whose <code>metadata.csv</code> has two or three of <code>text</code>, "
        "<code>image_file_name</code> and <code>audio_file_name</code> (a blank cell: that one is missing). Optional "
        "<code>train/</code>, <code>validation/</code>, <code>test/</code> top folders set the splits; otherwise "
        "Lepton splits them for you (stratified, fixed seed).</span>", unsafe_allow_html=True)
    nonce = st.session_state.setdefault("_upload_nonce", 0)
    upload = st.file_uploader("Dataset file", type=UPLOAD_TYPES, key=f"upload_{nonce}",
                              help="CSV/TSV/JSONL for text; a .zip of label folders for images or audio, or with a "
                                   "metadata.csv for one or several modalities")
    if upload is None:
        return
    with common.guard("Could not read the upload"):
        path = _staged(upload)
        ext = path.suffix.lower()
        options: dict[str, Any] = {}
        with st.container(border=True):
            if ext in TABLE_TYPES:
                columns, df = table_columns(path)
                if not columns:
                    st.error(f"`{upload.name}` has no columns: is it empty?")
                    return
                text_i, label_i = guess_columns(columns, df)
                st.markdown(f"**{upload.name}**: {len(columns)} columns found. Which hold the text and the label?")
                c1, c2, c3 = st.columns([1, 1, 1])
                options["text_column"] = c1.selectbox("Text column", columns, index=text_i, key=f"col_text_{upload.file_id}")
                options["label_column"] = c2.selectbox("Label column", columns, index=label_i, key=f"col_label_{upload.file_id}")
                options["name"] = c3.text_input("Name", value=Path(upload.name).stem, key=f"ds_name_{upload.file_id}")
                if options["text_column"] == options["label_column"]:
                    st.warning("The text and label columns are the same column: pick two different ones.")
                options["task"] = task_picker(upload.file_id, df[options["label_column"]].dropna().astype(str).tolist())
                with st.expander(f"First rows of {upload.name}"):
                    st.dataframe(df.head(8), hide_index=True, width="stretch")
            else:
                st.markdown(f"**{upload.name}** ({common.fmt_bytes(upload.size)}): images or audio in label folders, "
                            "or files named in a metadata file (one or several modalities).")
                options["name"] = st.text_input("Name", value=Path(upload.name).stem, key=f"ds_name_{upload.file_id}")
                options["task"] = task_picker(upload.file_id)
            go = st.button("Check and store dataset", type="primary", icon=":material/upload:", key="ingest",
                           disabled=options.get("text_column") is not None
                           and options.get("text_column") == options.get("label_column"))
        if go:
            with st.spinner(f"Checking {upload.name}…"):
                res = ingest_file(path, **options)
            _unstage(path)
            st.session_state["_upload_nonce"] = nonce + 1  # clears the uploader
            st.session_state["data_last"] = {"id": res.dataset.id, "file": upload.name,
                                             "warnings": list(res.warnings), "reused": bool(res.reused)}
            st.session_state["data_selected"] = res.dataset.id
            st.rerun()


def task_picker(file_id: str, labels: list[str] | None = None) -> str:
    """What a label is, stored with the dataset; the preview's labels say when another task looks likely."""
    from lepton.tasks import TASKS
    from lepton.tasks.single_label import SingleLabel

    names = ["auto", *TASKS]
    key = f"ds_task_{file_id}"
    chosen = st.selectbox("Task", names, key=key, format_func=lambda n: (
        "auto (JSON-list labels: multi-label, else single-label)" if n == "auto" else f"{n}: {TASKS.get(n).description}"),
        help="Single-label: one class per example. Multi-label: a JSON list or `a;b` of labels. Regression: a number.")
    for task, why in SingleLabel.others(labels or []) if chosen in ("auto", "single-label") else []:
        st.info(f"{why[0].upper()}{why[1:]}.", icon=":material/lightbulb:")
        st.button(f"Use {task}", key=f"use_{task}_{file_id}", on_click=lambda t=task: st.session_state.update({key: t}))
    return chosen


def last_ingest_report() -> None:
    """What happened to the last upload, in plain words: stored / reused, warnings, every skipped file."""
    last = st.session_state.get("data_last")
    if not last:
        return
    manifest = next((m for m in list_datasets() if m["id"] == last["id"]), None)
    if manifest is None:
        return
    n = sum((manifest.get("sizes") or {}).values())
    verb = "was already stored (same content): reusing" if last["reused"] else "is stored as"
    what = f"{len(manifest['classes'])} labels" if manifest.get("classes") else "a number to predict"
    st.success(f"`{last['file']}` {verb} **{manifest.get('name')}**: {n:,} examples, {what} "
               f"({manifest.get('modality')}, {manifest.get('task') or 'single-label'}).", icon=":material/check_circle:")
    validation_report(manifest, extra_warnings=last.get("warnings"))


def validation_report(manifest: dict, extra_warnings: list[str] | None = None) -> None:
    warnings = list(dict.fromkeys([*(extra_warnings or []), *(manifest.get("warnings") or [])]))
    for w in warnings:
        st.warning(w, icon=":material/warning:")
    skipped = manifest.get("skipped") or []
    if skipped:
        with st.expander(f"{len(skipped)} file(s) or line(s) skipped: the full list", expanded=len(skipped) <= 10):
            st.dataframe(pd.DataFrame([{"file": s.get("file"), "reason": s.get("reason")} for s in skipped]),
                         hide_index=True, width="stretch",
                         column_config={"file": st.column_config.TextColumn("file", width="medium"),
                                        "reason": st.column_config.TextColumn("why it was skipped", width="large")})
    elif not warnings:
        st.caption(":material/verified: Every file was usable: nothing skipped.")


# ---------------------------------------------------------------- stored datasets
def datasets_table(manifests: list[dict]) -> None:
    rows = []
    for m in manifests:
        sizes = m.get("sizes") or {}
        classes = m.get("classes") or []
        rows.append({
            "name": m.get("name"), "modality": m.get("modality"), "task": m.get("task") or "single-label",
            "labels": len(classes) or None,  # regression: a number, no labels
            "label names": ", ".join(map(str, classes[:8])) + (" …" if len(classes) > 8 else ""),
            "train": sizes.get("train", 0), "val": sizes.get("val", 0), "test": sizes.get("test", 0),
            "size": common.fmt_bytes(m.get("bytes")), "added": common.fmt_ago(m.get("created")), "id": m["id"],
        })
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "name": st.column_config.TextColumn(width=150),
        "modality": st.column_config.TextColumn(width=75),
        "task": st.column_config.TextColumn(width=90, help="What a label is: one class, a set of labels, or a number"),
        "labels": st.column_config.NumberColumn(width=60),
        "label names": st.column_config.TextColumn(width=200),
        "train": st.column_config.NumberColumn(width=60),
        "val": st.column_config.NumberColumn(width=50),
        "test": st.column_config.NumberColumn(width=50),
        "size": st.column_config.TextColumn(width=80),
        "added": st.column_config.TextColumn(width=90),
        "id": st.column_config.TextColumn(width=110),
    })


def pick_dataset(manifests: list[dict], key: str = "data_selected", label: str = "Dataset") -> dict | None:
    if not manifests:
        return None
    ids = [m["id"] for m in manifests]
    wanted = st.session_state.get(key) or common.query_param("dataset")
    if wanted not in ids:
        wanted = ids[0]
    st.session_state[key] = wanted
    by_id = {m["id"]: m for m in manifests}
    chosen = st.selectbox(label, ids, key=key, format_func=lambda i: describe(by_id[i]))
    return by_id.get(chosen)


def describe(m: dict) -> str:
    n = sum((m.get("sizes") or {}).values())
    labels = f"{len(m['classes'])} labels" if m.get("classes") else "regression"
    return f"{m.get('name')} · {m.get('modality')} · {labels} · {n:,} examples"


def preview(manifest: dict) -> None:
    sizes = manifest.get("sizes") or {}
    classes = list(manifest.get("classes") or [])
    c = st.columns(4)
    c[0].metric("Examples", f"{sum(sizes.values()):,}")
    c[1].metric("Labels", len(classes) if classes else "a number", help=f"task: {manifest.get('task') or 'single-label'}")
    c[2].metric("Split", " / ".join(f"{sizes.get(s, 0)}" for s in ("train", "val", "test")),
                help="train / validation / test examples")
    c[3].metric("Stored size", common.fmt_bytes(manifest.get("bytes")))
    if classes:
        st.plotly_chart(charts.label_distribution(manifest.get("counts") or {}, classes), key=f"dist_{manifest['id']}",
                        config={"displayModeBar": False})
    else:  # regression: the targets' spread instead of class counts
        from lepton.data import load_dataset

        values = [e.label for s in ("train", "val", "test") if sizes.get(s) for e in load_dataset(manifest["id"]).examples(s)]
        counts, edges = np.histogram(values, bins=30)
        st.plotly_chart(charts.residual_histogram(edges.tolist(), counts.tolist(), "Targets", "target value",
                                                                  zero_line=False),
                        key=f"dist_{manifest['id']}", config={"displayModeBar": False})
    validation_report(manifest)
    with common.guard("Could not load examples"):
        if len(manifest.get("modalities") or []) > 1:
            modality_presence(manifest)
            rows_as_they_are(manifest)
        else:
            samples(manifest)


@st.cache_data(show_spinner=False, max_entries=16)
def presence(dataset_id: str) -> dict[str, tuple[int, int]]:
    """{modality: (rows that have it, rows)} over every split of a multimodal dataset (its content never changes
    under an id, so this is read once)."""
    from lepton.data import load_dataset

    ds = load_dataset(dataset_id)
    xs = [ex.x for s in ds.splits for ex in ds.examples(s)]
    return {m: (sum(x.get(m) is not None for x in xs), len(xs)) for m in ds.modalities}


def modality_presence(manifest: dict) -> None:
    """The dataset's modalities, and how many rows lack each (the model learns to predict without them)."""
    counts = presence(manifest["id"])
    st.markdown("**Modalities** <span class='lp-muted'>(each row holds some of them; a blank cell is a missing "
                "one, which the fusion model learns to do without)</span>", unsafe_allow_html=True)
    with st.container(key="modality_presence"):
        cols = st.columns(max(len(counts), 3))
        for col, (m, (have, n)) in zip(cols, counts.items()):
            col.metric(f"{common.MODALITY_ICON.get(m, '')} {m}", f"{have:,} / {n:,} rows",
                       help=f"Rows that have {m}: a row without it leaves the cell blank")
            col.caption(f"missing in {n - have:,} row{'s' if n - have != 1 else ''}" if have < n else "in every row")


def rows_as_they_are(manifest: dict, per_label: int = 3, most: int = 8) -> None:
    """A few rows of a multimodal dataset side by side: the label, the text, an image thumbnail, an audio player."""
    from lepton.data import load_dataset

    ds = load_dataset(manifest["id"])
    classes = list(manifest.get("classes") or [])
    split = next((s for s in ("train", "val", "test") if (manifest.get("sizes") or {}).get(s)), "train")
    truth = task_views.view_of(manifest.get("task")).truth
    picked, seen = [], {}
    for ex in ds.examples(split):
        key = str(ex.label)  # a set of labels (multi-label) or a number (regression) counts as one kind of row
        if seen.get(key, 0) < per_label and len(picked) < most:
            seen[key] = seen.get(key, 0) + 1
            picked.append(ex)
    st.markdown(f"**Rows** <span class='lp-muted'>({len(picked)} of the {split} split as they are, up to {per_label} "
                "per label)</span>",
                unsafe_allow_html=True)
    with st.container(key="multimodal_rows"):
        modality_views.header(ds.modalities, lead="**label**")
        for ex in picked:
            with st.container(border=True):
                modality_views.row(ds.modalities, ex.x, lead=f"**{truth(ex.label, classes)}**", note=ex.ref)


def samples(manifest: dict, per_class: int | None = None) -> None:
    from lepton.data import load_dataset

    ds = load_dataset(manifest["id"])
    modality = manifest.get("modality")
    classes = list(manifest.get("classes") or [])
    split = next((s for s in ("train", "val", "test") if (manifest.get("sizes") or {}).get(s)), "train")
    truth = task_views.view_of(manifest.get("task")).truth  # a class, a set of them, or a number
    by_class: dict[Any, list] = {}
    limit = per_class or {"text": 3, "image": 4, "audio": 2}.get(modality, 3)
    for ex in ds.examples(split):
        lst = by_class.setdefault(ex.label, [])
        if len(lst) < limit:
            lst.append(ex)
    st.markdown(f"**Examples** <span class='lp-muted'>({split} split, up to {limit} per label)</span>",
                unsafe_allow_html=True)
    if modality == "text":
        rows = [{"label": truth(ex.label, classes), "text": str(ex.x), "where": ex.ref}
                for k in sorted(by_class) for ex in by_class[k]]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
            "label": st.column_config.TextColumn(width="small"),
            "text": st.column_config.TextColumn(width="large"),
            "where": st.column_config.TextColumn(width="small")})
    elif modality == "image":
        for k in sorted(by_class)[:12]:
            st.caption(f"**{truth(k, classes)}**")
            cols = st.columns(8)
            for col, ex in zip(cols, by_class[k]):
                col.image(str(ex.x), caption=Path(ex.ref).name, width="stretch")
    elif modality == "audio":
        for k in sorted(by_class)[:12]:
            cols = st.columns([1, 2, 2])
            cols[0].markdown(f"**{truth(k, classes)}**")
            for col, ex in zip(cols[1:], by_class[k]):
                col.audio(str(ex.x))
                col.caption(Path(ex.ref).name)


def dataset_actions(manifest: dict) -> None:
    ds_id = manifest["id"]
    c1, c2, c3 = st.columns([1.2, 1, 3])
    if c1.button("Train on this dataset", type="primary", icon=":material/model_training:", key="to_train"):
        st.switch_page(common.PAGE_TRAIN, query_params={"dataset": ds_id})
    if manifest.get("mine"):  # a dataset is shared through one's own upload of it
        with c3:
            access.share_toggle("datasets", ds_id, bool(manifest.get("shared")), key=f"share_ds_{ds_id}",
                                name=manifest.get("name") or ds_id)
    if not access.can_manage(manifest):
        return  # shared with this user: train on it, but only its owner deletes it
    if st.session_state.get("confirm_delete") != ds_id:
        if c2.button("Delete…", icon=":material/delete:", key="delete"):
            st.session_state["confirm_delete"] = ds_id
            st.rerun()
        return
    with st.container(border=True):
        st.warning(f"Delete **{manifest.get('name')}** (`{ds_id}`) and its stored files? Runs trained on it keep "
                   "their models, but cannot be trained again from it.", icon=":material/delete_forever:")
        y, n, _ = st.columns([1, 1, 4])
        if y.button("Yes, delete", type="primary", key="delete_yes"):
            st.session_state.pop("confirm_delete", None)
            with common.guard("Could not delete the dataset"):
                access.delete_dataset(manifest)
                if st.session_state.get("data_last", {}).get("id") == ds_id:
                    st.session_state.pop("data_last", None)
                st.session_state.pop("data_selected", None)
                common.flash("success", f"Deleted dataset {manifest.get('name')}.")
                st.rerun()
        if n.button("Keep it", key="delete_no"):
            st.session_state.pop("confirm_delete", None)
            st.rerun()


def stored_section() -> None:
    manifests = list_datasets()
    st.subheader("Your datasets")
    if not manifests:
        common.empty_state("No datasets yet. Upload one above, or let a demo on **Home** add one and train on it "
                           "in one click.", common.PAGE_HOME, "Go to the quick start", ":material/rocket_launch:")
        return
    datasets_table(manifests)
    m = pick_dataset(manifests, label="Preview")
    if m is None:
        return
    with st.container(border=True):
        st.markdown(f"#### {m.get('name')}  \n<span class='lp-muted'>{m.get('modality')} · id <code>{m['id']}</code> · "
                    f"added {common.fmt_ago(m.get('created'))}</span>", unsafe_allow_html=True)
        access.ownership_note(m, "dataset")
        dataset_actions(m)
        preview(m)
