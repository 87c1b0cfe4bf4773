"""Text: a .csv, .tsv or .jsonl table with a text column and a label column (HF conventions).

A folder or .zip may hold one table, or train/validation/test tables that set the split.
Labels are strings: numbers in the file become their decimal spelling ("1", not "1.0").
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Iterator

from lepton.data.base import (
    MODALITIES,
    Bad,
    Collected,
    Entry,
    Modality,
    Options,
    Raw,
    Reason,
    Tree,
    clean_label,
    digest,
    plural,
    quote_list,
    split_alias,
)
from lepton.errors import DataError

csv.field_size_limit(64 * 1024 * 1024)  # long documents in one cell are fine; the default 128 KiB is not

EMPTY_TEXT = Reason("has an empty text", "have an empty text", "fill them in or remove those rows")
NO_LABEL = Reason("has no label", "have no label", "add a label or remove those rows")
BAD_JSON = Reason("is not a valid JSON object", "are not valid JSON objects", "each line must be one JSON object")
EXTRA_FIELDS = Reason(
    "has more fields than the header",
    "have more fields than the header",
    "put texts that contain the delimiter in double quotes",
)
NOT_SCALAR = Reason(
    "has a list or object where a text or label should be",
    "have a list or object where a text or label should be",
    "use one plain value per cell",
)


class _Problem(Exception):
    """A whole-file problem, already worded; collected so one DataError can list every file."""


def decode_utf8(data: bytes, name: str) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise _Problem(f"`{name}` is saved as UTF-16: re-save it as UTF-8 (in Excel: Save As → “CSV UTF-8”)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        byte = data[e.start : e.start + 1]
        guess = byte.decode("cp1252", errors="replace")
        looks = f" (in Windows-1252/Latin-1 that byte is `{guess}`)" if guess.isprintable() and guess != "\ufffd" else ""
        raise _Problem(
            f"`{name}` is not UTF-8: byte 0x{byte.hex()} at line {line}, column {col} (byte offset {e.start}) "
            f"cannot be decoded{looks}; re-save the file as UTF-8 (in Excel: Save As → “CSV UTF-8”)"
        ) from None
    if "\x00" in text:
        raise _Problem(f"`{name}` contains NUL bytes, so it is not a plain text table: export it again as UTF-8 CSV")
    return text


def resolve_column(found: list[str], want: str) -> str | None:
    """Exact name first, then a unique case- and space-insensitive match (`Text` for `text`)."""
    if want in found:
        return want
    hits = [c for c in found if c.strip().lower() == want.strip().lower()]
    return hits[0] if len(hits) == 1 else None


def _columns(found: list[str], tc: str, lc: str, name: str, csv_like: bool) -> tuple[str, str]:
    rt, rl = resolve_column(found, tc), resolve_column(found, lc)
    if rt and rl:
        return rt, rl
    shown = quote_list([c for c in found if c != ""], limit=12) or "none"
    if not rt and not rl:
        header = "; the first line must be a header naming the columns" if csv_like else ""
        raise _Problem(
            f"`{name}` has no `{tc}` or `{lc}` column (columns found: {shown}{header}): rename the columns, "
            "or choose which columns hold the text and the label (text column / label column options)"
        )
    missing, which = (tc, "text") if not rt else (lc, "label")
    raise _Problem(
        f"`{name}` has no `{missing}` column (columns found: {shown}): rename it, or choose the {which} column "
        f"({which} column option)"
    )


def norm_label(v: Any) -> str | None | Reason:
    if v is None:
        return None
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return None
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, str):
        return clean_label(v) or None
    return NOT_SCALAR


def norm_text(v: Any) -> str | None | Reason:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (int, float, bool)):
        return str(v)
    return NOT_SCALAR


def _csv_rows(text: str, delim: str, name: str) -> Iterator[tuple[int, list[str]]]:
    """(first physical line of the record, fields); a header row comes first, line numbers start at 1."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    prev = 0
    try:
        for row in reader:
            start, prev = prev + 1, reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            yield start, row
    except csv.Error as e:
        raise _Problem(f"`{name}` line {reader.line_num} cannot be parsed ({e}): check the quotes on that line") from None


def _pick_delimiter(text: str, ext: str, tc: str, lc: str) -> str:
    if ext == ".tsv":
        return "\t"
    first = text.lstrip("\r\n").split("\n", 1)[0]
    for d in (",", ";", "\t", "|"):
        cols = next(csv.reader([first], delimiter=d), [])
        if resolve_column(cols, tc) and resolve_column(cols, lc):
            return d  # European Excel writes ';' into .csv files
    return ","


def read_table(entry: Entry, tc: str, lc: str) -> tuple[list[tuple[int, Any, Any]], list[Bad], int, tuple[str, str]]:
    """-> (rows as (line, text, label) raw values, bad rows, rows seen, (text col, label col) used)."""
    name = entry.rel
    data = entry.path.read_bytes()
    if not data.strip():
        raise _Problem(f"`{name}` is empty: it needs a header line and one row per example")
    text = decode_utf8(data, name)
    rows: list[tuple[int, Any, Any]] = []
    bad: list[Bad] = []
    seen = 0
    if entry.ext == ".jsonl":
        records, keys = [], {}
        for i, line in enumerate(text.split("\n"), 1):
            s = line.strip()
            if not s:
                continue
            seen += 1
            try:
                obj = json.loads(s)
            except ValueError:
                bad.append(Bad(name, BAD_JSON, i))
                continue
            if not isinstance(obj, dict):
                bad.append(Bad(name, BAD_JSON, i))
                continue
            keys.update(dict.fromkeys(obj))
            records.append((i, obj))
        if not records:
            raise _Problem(f"`{name}` has no JSON object lines: each line must be one object like " '{"text": "…", "label": "…"}')
        used = _columns(list(keys), tc, lc, name, csv_like=False)
        rows = [(i, obj.get(used[0]), obj.get(used[1])) for i, obj in records]
        return rows, bad, seen, used

    delim = _pick_delimiter(text, entry.ext, tc, lc)
    it = _csv_rows(text, delim, name)
    first = next(it, None)
    if first is None:
        raise _Problem(f"`{name}` is empty: it needs a header line and one row per example")
    header = [h.strip() for h in first[1]]
    used = _columns(header, tc, lc, name, csv_like=True)
    ti, li = header.index(used[0]), header.index(used[1])
    width = len(header)
    for line, row in it:
        seen += 1
        if len(row) > width and any(c.strip() for c in row[width:]):
            bad.append(Bad(name, EXTRA_FIELDS, line))
            continue
        row = row + [""] * (width - len(row))
        rows.append((line, row[ti], row[li]))
    return rows, bad, seen, used


@MODALITIES.register("text")
class TextModality(Modality):
    name = "text"
    noun = "table"
    nouns = "tables"
    extensions = frozenset({".csv", ".tsv", ".jsonl"})
    min_depth = 2  # wrapper/train.csv

    @classmethod
    def collect(cls, tree: Tree, opts: Options) -> Collected:
        out = Collected(unit="row")
        tables = [e for e in tree.entries if cls.recognises(e)]
        others = [e.rel for e in tree.entries if not cls.recognises(e)]
        if others:
            out.warnings.append(f"ignored {plural(len(others), 'file')} that {'is' if len(others) == 1 else 'are'} not .csv/.tsv/.jsonl: {quote_list(others)}")
        top = [t for t in tables if len(t.parts) == 1]
        nested = [t.rel for t in tables if len(t.parts) > 1]
        if nested:
            out.warnings.append(f"ignored {plural(len(nested), 'table')} inside sub-folders: {quote_list(nested)}")
        if not top:
            out.problems.append(f"no .csv, .tsv or .jsonl file at the top of the upload (found: {quote_list(nested or others)})")
            return out

        splits = {t.rel: split_alias(Path(t.parts[0]).stem) for t in top}
        named = [r for r, s in splits.items() if s]
        unnamed = [r for r, s in splits.items() if not s]
        if named and unnamed:
            out.problems.append(
                f"it has split tables ({quote_list(named)}) and other tables ({quote_list(unnamed)}): "
                "name every table train / validation / test, or upload one file"
            )
            return out
        if len(unnamed) > 1:
            out.problems.append(
                f"it has several tables ({quote_list(unnamed)}): upload one file, or name them "
                "`train.csv`, `validation.csv` and `test.csv` to set the splits"
            )
            return out
        by_split: dict[str, list[str]] = {}
        for r, s in splits.items():
            if s:
                by_split.setdefault(s, []).append(r)
        for s, rs in by_split.items():
            if len(rs) > 1:
                out.problems.append(f"{quote_list(rs)} are all the {s} split: keep one table per split")
        if out.problems:
            return out
        out.has_splits = bool(named)

        for t in sorted(top, key=lambda t: t.rel):
            try:
                rows, bad, seen, used = read_table(t, opts.text_column, opts.label_column)
            except _Problem as p:
                out.problems.append(str(p))
                continue
            out.columns = out.columns or {"text": used[0], "label": used[1]}
            out.units += seen
            out.bad.extend(bad)
            prefix = "" if len(top) == 1 else f"{t.rel} "
            for line, tv, lv in rows:
                txt, lab = norm_text(tv), norm_label(lv)
                if isinstance(txt, Reason) or isinstance(lab, Reason):
                    out.bad.append(Bad(t.rel, NOT_SCALAR, line))
                elif txt is None or not txt.strip():
                    out.bad.append(Bad(t.rel, EMPTY_TEXT, line))
                elif lab is None:
                    out.bad.append(Bad(t.rel, NO_LABEL, line))
                else:
                    out.examples.append(
                        Raw(
                            label=lab,
                            ref=f"{prefix}line {line}",
                            content_digest=digest(txt.encode("utf-8")),
                            split=splits[t.rel],
                            text=txt,
                        )
                    )
            if opts.progress:
                opts.progress(1.0, t.rel)
        return out

    @classmethod
    def load(cls, x: Any) -> str:
        if isinstance(x, str):
            return x
        if isinstance(x, (bytes, bytearray, memoryview)):
            try:
                return bytes(x).decode("utf-8")
            except UnicodeDecodeError:
                raise DataError("the text is not UTF-8: re-save it as UTF-8") from None
        raise DataError(f"cannot load text from {type(x).__name__}: give a string")
