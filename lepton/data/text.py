"""Text: a .csv, .tsv or .jsonl table with a text column and a label column (HF conventions).

A folder or .zip may hold one table, or train/validation/test tables that set the split.
Labels are strings: numbers in the file become their decimal spelling ("1", not "1.0").
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any, Iterator

from lepton import filetypes
from lepton.data.base import (
    MODALITIES,
    TABLE_LIMIT,
    Bad,
    Collected,
    Entry,
    Modality,
    Options,
    Raw,
    Reason,
    Tree,
    clean_label,
    describe_bad,
    digest,
    over_limit,
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


DUPLICATE_KEY = Reason(
    "has the same key twice",
    "have the same key twice",
    "each line needs one value per key: remove the repeated key",
)

# A physical line longer than this is not a table row (a 10 GB file without line breaks would
# otherwise be read as one line); it matches the csv module's limit for one field, set above.
MAX_LINE_CHARS = 64 * 1024 * 1024
CHUNK = 1024 * 1024
_BREAK = re.compile(rb"\r\n|\r|\n")


class _Problem(Exception):
    """A whole-file problem, already worded; collected so one DataError can list every file."""


def _utf8_error_at(path: Path) -> int:
    """Byte offset of the first byte that is not UTF-8, found chunk by chunk (the file may be large)."""
    dec = codecs.getincrementaldecoder("utf-8")()
    base = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            held = len(dec.getstate()[0])  # the tail of a character cut by the previous chunk
            try:
                dec.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                return base - held + e.start
            if not chunk:
                return base
            base += len(chunk)


def _line_col(path: Path, pos: int) -> tuple[int, int]:
    """1-based line and column of byte `pos`; \\r\\n, \\r and \\n each end a line, as the csv reader sees it."""
    line, start, base = 1, 0, 0
    with open(path, "rb") as f:
        while base < pos:
            chunk = f.read(min(CHUNK, pos - base))
            if not chunk:
                break
            if chunk.endswith(b"\r") and base + len(chunk) < pos:
                chunk += f.read(1)  # keep a \r\n cut by the chunk boundary together
            for m in _BREAK.finditer(chunk):
                line, start = line + 1, base + m.end()
            base += len(chunk)
    return line, pos - start + 1


def not_utf8(path: Path, name: str) -> str:
    pos = _utf8_error_at(path)
    line, col = _line_col(path, pos)
    with open(path, "rb") as f:
        f.seek(pos)
        byte = f.read(1)
    guess = byte.decode("cp1252", errors="replace")
    looks = f" (in Windows-1252/Latin-1 that byte is `{guess}`)" if guess.isprintable() and guess != "\ufffd" else ""
    return (f"`{name}` is not UTF-8: byte 0x{byte.hex()} at line {line}, column {col} (byte offset {pos}) "
            f"cannot be decoded{looks}; re-save the file as UTF-8 (in Excel: Save As → “CSV UTF-8”)")


class _Lines:
    """The physical lines of a UTF-8 table, read as the parser asks for them, never the whole file.

    Lines end at \\r\\n, \\n or a lone \\r (old Mac files) and keep their ending, which is what the
    csv module expects. `last` is the most recent line, for re-reading a row leniently."""

    def __init__(self, path: Path, name: str):
        self.path, self.name = path, name
        self.n = 0
        self.last = ""
        self._f = io.TextIOWrapper(open(path, "rb"), encoding="utf-8-sig", errors="strict", newline="")

    def __enter__(self) -> "_Lines":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        try:
            line = self._f.readline(MAX_LINE_CHARS + 1)
        except UnicodeDecodeError:
            raise _Problem(not_utf8(self.path, self.name)) from None
        if not line:
            raise StopIteration
        self.n += 1
        if len(line) > MAX_LINE_CHARS and not line.endswith(("\n", "\r")):
            raise _Problem(f"`{self.name}` line {self.n} is longer than {MAX_LINE_CHARS:,} characters without a line "
                           "break, so it is not a table row: check that the file is a text table")
        if "\x00" in line:
            raise _Problem(f"`{self.name}` contains NUL bytes (line {self.n}), so it is not a plain text table: "
                           "export it again as UTF-8 CSV")
        self.last = line
        return line


def _open_lines(entry: Entry) -> _Lines:
    """Refuse what is not a UTF-8 text table from its size and first bytes, then stream its lines."""
    name = entry.rel
    problem = over_limit(name, entry.size, TABLE_LIMIT, "a table")
    if problem:
        raise _Problem(problem)
    if entry.size == 0:
        raise _Problem(f"`{name}` is empty: it needs a header line and one row per example")
    kind = filetypes.mislabelled(entry.path, entry.ext)
    if kind is not None:
        raise _Problem(filetypes.really(name, kind))
    with open(entry.path, "rb") as f:
        if f.read(2) in (b"\xff\xfe", b"\xfe\xff"):
            raise _Problem(f"`{name}` is saved as UTF-16: re-save it as UTF-8 (in Excel: Save As → “CSV UTF-8”)")
    return _Lines(entry.path, name)


def _peek(lines: _Lines, name: str) -> list[str]:
    """The lines up to the first one that is not blank (the header); the file is empty without one."""
    head: list[str] = []
    for line in lines:
        head.append(line)
        if line.strip():
            return head
    raise _Problem(f"`{name}` is empty: it needs a header line and one row per example")


def resolve_column(found: list[str], want: str) -> str | None:
    """Exact name first, then a unique case- and space-insensitive match (`Text` for `text`)."""
    if want in found:
        return want
    hits = [c for c in found if c.strip().lower() == want.strip().lower()]
    return hits[0] if len(hits) == 1 else None


def _columns(found: list[str], tc: str, lc: str, name: str, csv_like: bool) -> tuple[str, str]:
    rt, rl = resolve_column(found, tc), resolve_column(found, lc)
    if rt and rl:
        for col in dict.fromkeys((rt, rl)):
            at = [i + 1 for i, c in enumerate(found) if c == col]
            if len(at) > 1:  # the csv reader would silently use the first of them
                raise _Problem(
                    f"`{name}` has {len(at)} columns named `{col}` (columns {', '.join(map(str, at))}): "
                    "rename or remove the extra ones so each column name appears once"
                )
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
    if isinstance(v, list):  # a JSON Lines label list: the multi-label task reads it (lepton/tasks/multi_label.py)
        return json.dumps(v, ensure_ascii=False)
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


def _csv_rows(lines: Iterator[str], source: _Lines, delim: str, name: str) -> Iterator[tuple[int, list[str]]]:
    """(first physical line of the record, fields); a header row comes first, line numbers start at 1.

    The reader is strict, so a quote that is never closed, or that pairs with a quote rows later,
    stops with an error instead of swallowing the rows in between into one text. A one-line record
    with a stray quote (`"5" screen`) is re-read leniently, as spreadsheets do."""
    reader = csv.reader(lines, delimiter=delim, strict=True)
    prev = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            start, end = prev + 1, reader.line_num
            why = str(e)
            if "field larger than field limit" in why:
                raise _Problem(f"`{name}` line {start} has a field longer than {csv.field_size_limit():,} characters: "
                               "check the quotes on that line, or shorten that text") from None
            if "unexpected end of data" in why:
                swallowed = f", so the {end - start} lines after it would become one text" if end > start else ""
                raise _Problem(f"`{name}` line {start}: a quote opened there is never closed{swallowed}: close the "
                               "quote, or write a quote inside a text as two (\"\")") from None
            if end > start:
                raise _Problem(f"`{name}` line {start}: a quote opened there closes only on line {end}, so lines "
                               f"{start}-{end} would run together into one text: check the quotes on line {start}") from None
            row = next(csv.reader([source.last.rstrip("\r\n")], delimiter=delim), [])
        start, prev = prev + 1, reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        yield start, row


def _pick_delimiter(first: str, ext: str, tc: str, lc: str) -> str:
    if ext == ".tsv":
        return "\t"
    first = first.rstrip("\r\n")
    for d in (",", ";", "\t", "|"):
        try:
            cols = next(csv.reader([first], delimiter=d), [])
        except csv.Error:  # e.g. a header that opens a quote; the full reader reports it with its line
            continue
        if resolve_column(cols, tc) and resolve_column(cols, lc):
            return d  # European Excel writes ';' into .csv files
    return ","


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):  # json.loads would keep the last value without a word
        raise ValueError("duplicate key")
    return dict(pairs)


def _read_jsonl(lines: Iterator[str], name: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]], list[Bad], int]:
    records, keys, bad, seen = [], {}, [], 0
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if not s:
            continue
        seen += 1
        try:
            obj = json.loads(s, object_pairs_hook=_json_object)
        except ValueError as e:
            bad.append(Bad(name, DUPLICATE_KEY if str(e) == "duplicate key" else BAD_JSON, i))
            continue
        if not isinstance(obj, dict):
            bad.append(Bad(name, BAD_JSON, i))
            continue
        keys.update(dict.fromkeys(obj))
        records.append((i, obj))
    if not records:
        dup = [b for b in bad if b.reason is DUPLICATE_KEY]
        why = f" ({describe_bad(dup, 'row')[0]})" if dup else ""
        raise _Problem(f"`{name}` has no JSON object lines{why}: each line must be one object like "
                       '{"text": "…", "label": "…"}')
    return list(keys), records, bad, seen


def read_records(entry: Entry, tc: str = "text", lc: str = "label"
                 ) -> tuple[list[str], list[tuple[int, dict[str, Any]]], list[Bad], int]:
    """-> (the columns, rows as (line, {column: raw value}), bad rows, rows seen) of a CSV/TSV/JSONL table.
    tc and lc are two columns it should have: they pick a CSV's delimiter."""
    name = entry.rel
    with _open_lines(entry) as source:
        head = _peek(source, name)
        lines = itertools.chain(head, source)
        if entry.ext == ".jsonl":
            return _read_jsonl(lines, name)
        delim = _pick_delimiter(head[-1], entry.ext, tc, lc)
        it = _csv_rows(lines, source, delim, name)
        first = next(it, None)
        if first is None:
            raise _Problem(f"`{name}` is empty: it needs a header line and one row per example")
        header = [h.strip() for h in first[1]]
        width = len(header)
        records: list[tuple[int, dict[str, Any]]] = []
        bad: list[Bad] = []
        seen = 0
        for line, row in it:
            seen += 1
            if len(row) > width and any(c.strip() for c in row[width:]):
                bad.append(Bad(name, EXTRA_FIELDS, line))
                continue
            row = row + [""] * (width - len(row))
            # a repeated column name keeps its first cell, as a csv reader's first-match would (_columns refuses it)
            records.append((line, {h: row[i] for i, h in reversed(list(enumerate(header)))}))
        return header, records, bad, seen


def read_table(entry: Entry, tc: str, lc: str) -> tuple[list[tuple[int, Any, Any]], list[Bad], int, tuple[str, str]]:
    """-> (rows as (line, text, label) raw values, bad rows, rows seen, (text col, label col) used)."""
    header, records, bad, seen = read_records(entry, tc, lc)
    used = _columns(header, tc, lc, entry.rel, csv_like=entry.ext != ".jsonl")
    return [(i, rec.get(used[0]), rec.get(used[1])) for i, rec in records], bad, seen, used


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
                            file=t.rel,
                            line=line,
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
