"""`lepton predict RUN --batch PATH`: classify a whole file, folder or zip; one CSV row per input.

Inputs: a CSV/TSV/JSONL of texts (column `text`, or the only column), a metadata CSV/TSV/JSONL naming
image or audio files (column file/path/filename/image/audio, relative to the metadata file), for a multimodal
run a metadata table with its columns (text, image_file_name, audio_file_name; blank = missing), a folder of
files (recursive), a .zip of files (read in memory after the same checks as an upload), or a .txt of one
text per line. A row that cannot be read or decoded is reported on stderr and skipped; the rest go on.
The CSV is written to a temporary file beside --out and renamed at the end, so it is never half-written.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from lepton.data import load_item
from lepton.errors import DataError

FILE_COLUMNS = ("file", "path", "filename", "image", "audio")
BATCH = 32

Source = Iterator[tuple[str, Callable[[], Any]]]  # (name of the input, a thunk that reads it)


def _table(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
        else:
            with path.open(newline="", encoding="utf-8-sig") as f:
                # strict: a quote that is never closed stops here instead of swallowing every later row into one
                reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",", strict=True)
                try:
                    rows = list(reader)
                except csv.Error as e:
                    raise DataError(f"`{path.name}`: {e} after line {reader.line_num}: a quote after it is probably "
                                    "never closed; close it, or write a quote inside a text as two (\"\")") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise DataError(f"`{path.name}` cannot be read as {suffix[1:].upper()} ({str(e).splitlines()[0]}): "
                        "save it as UTF-8 with a header row") from None
    if not all(isinstance(r, dict) for r in rows):
        raise DataError(f"`{path.name}`: every JSONL line must be an object like {{\"text\": \"...\"}}")
    return rows


def _from_table(path: Path, modality: str) -> Source:
    rows = _table(path)
    columns = list(rows[0]) if rows else []
    if modality == "multimodal":
        yield from _multimodal_rows(path, rows, columns)
        return
    if modality == "text":
        col = "text" if "text" in columns else (columns[0] if len(columns) == 1 else None)
        if col is None:
            raise DataError(f"`{path.name}` has columns {', '.join(columns) or '(none)'}: name the texts' column `text`")
        for i, r in enumerate(rows):  # a text's row is named by the text itself
            v = r.get(col)
            yield (v if isinstance(v, str) else f"row {i + 1}"), (
                lambda v=v, n=i + 1: v if isinstance(v, str) else _bad(f"row {n}: `{col}` is {type(v).__name__}, not text"))
        return
    col = next((c for c in FILE_COLUMNS if c in columns), None)
    if col is None:
        raise DataError(f"`{path.name}` has columns {', '.join(columns) or '(none)'}: for {modality} give a column "
                        f"named one of {', '.join(FILE_COLUMNS)} with file paths (relative to `{path.name}`)")
    for i, r in enumerate(rows):
        rel = str(r.get(col) or "")
        yield rel or f"row {i + 1}", (lambda rel=rel: path.parent / rel if rel else _bad("no file named"))


def _multimodal_rows(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> Source:
    """A metadata table like the training one (text, image_file_name, audio_file_name; a blank cell is a missing
    modality; other columns such as label are ignored): one {modality: text, path or None} per row."""
    from lepton.data.multimodal import COLUMNS

    given = {m: c for m, c in COLUMNS.items() if c in columns}
    if not given:
        raise DataError(f"`{path.name}` has columns {', '.join(columns) or '(none)'}: a multimodal run reads "
                        f"{', '.join(COLUMNS.values())} (any of them; a blank cell is a missing modality)")
    for i, r in enumerate(rows):
        cells = {m: (r.get(c) or None) for m, c in given.items()}
        yield f"row {i + 1}", (lambda cells=cells: {m: v if m == "text" or v is None else path.parent / str(v)
                                                    for m, v in cells.items()})


def _bad(why: str) -> Any:
    raise DataError(why)


def _from_folder(root: Path) -> Source:
    from lepton.data.zipsafe import is_junk

    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        rel = p.relative_to(root)
        if not is_junk(rel.parts):
            yield rel.as_posix(), (lambda p=p: p)


def _from_zip(path: Path) -> Source:
    from lepton.data.zipsafe import check_header, open_zip

    zf = open_zip(path, path.name)
    for info in check_header(zf, path.name):
        yield PurePosixPath(info.filename).as_posix(), (lambda info=info: zf.read(info))


def sources(path: Path, modality: str) -> Source:
    if path.is_dir():
        return _from_folder(path)
    if not path.is_file():
        raise DataError(f"`{path}`: no such file or folder; give a CSV/TSV/JSONL, a .txt, a folder or a .zip")
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return _from_zip(path)
    if suffix in (".csv", ".tsv", ".jsonl"):
        return _from_table(path, modality)
    if suffix == ".txt" and modality == "text":
        lines = path.read_text("utf-8", errors="replace").splitlines()
        return ((t, (lambda t=t: t)) for t in lines if t.strip())
    raise DataError(f"`{path.name}`: give a CSV/TSV/JSONL{', a .txt' if modality == 'text' else ''}, a folder or a .zip")


def predict_batch(predictor: Any, path: str | Path, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Write one CSV row per readable input (input, then the run's task's answer: label, score and one column per
    class; labels and one column per class; or value); returns a summary."""
    from tqdm import tqdm

    path, out = Path(path).expanduser(), Path(out).expanduser()
    todo = list(sources(path, predictor.modality))
    skipped: list[dict[str, str]] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    rows = 0
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f, \
                tqdm(total=len(todo), desc="predict", unit="input", file=sys.stderr, disable=not progress) as bar:
            w = csv.writer(f)
            w.writerow(["input", *predictor.task.answer_columns()])
            for start in range(0, len(todo), BATCH):
                names, items = [], []
                for name, read in todo[start:start + BATCH]:
                    try:
                        items.append(load_item(predictor.modality, read()))
                        names.append(name)
                    except Exception as e:  # noqa: BLE001 - any unreadable input is one skipped row, never the end of the batch
                        skipped.append({"input": name, "error": str(e).splitlines()[0] if str(e) else type(e).__name__})
                        bar.write(f"lepton predict: skipped {name}: {skipped[-1]['error']}", file=sys.stderr)
                for name, output in zip(names, predictor.outputs(items) if items else []):
                    w.writerow([name, *predictor.task.answer_cells(output)])
                    rows += 1
                bar.update(len(todo[start:start + BATCH]))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"out": str(out), "rows": rows, "skipped": len(skipped), "skipped_inputs": skipped[:50]}
