"""Several modalities in one example: a folder or .zip holding `metadata.csv` or `metadata.jsonl` with any two or
three of `text`, `image_file_name` and `audio_file_name`, plus `label` and optionally `split` (the Hugging Face
imagefolder convention, one media column per modality). Paths are relative to the metadata file; a blank cell means
that modality is missing for that row, and the fusion model (lepton/fusion) predicts without it.

Every row is checked and a bad one is named by its line: a missing or unsafe path, a file whose type does not match
its column, a row with every modality missing, no label, an unknown split. Unknown columns are refused with the ones
understood. An item is `{modality: raw value or None}` for every modality of the dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lepton.data import metadata
from lepton.data.base import (MODALITIES, Bad, Collected, Modality, Options, Raw, Reason, Tree, digest, plural,
                               quote_list)
from lepton.errors import DataError

# The column of each modality, in the order items list them.
COLUMNS = {"text": "text", "image": "image_file_name", "audio": "audio_file_name"}
OTHER = ("label", "split")
NOTHING = Reason("has every modality missing", "have every modality missing",
                 "give at least one of the text, the image or the audio in each row, or remove those rows")


def _columns(header: list[str]) -> list[str]:
    return [m for m, c in COLUMNS.items() if c in header]


@MODALITIES.register("multimodal")
class Multimodal(Modality):
    name = "multimodal"
    noun = "row"
    nouns = "rows"
    min_depth = 2  # wrapper/metadata.csv

    @classmethod
    def claims(cls, tree: Tree) -> bool:
        metas = metadata.find(tree)
        return len(metas) == 1 and len(_columns(metadata.header_of(metas[0]))) >= 2

    @classmethod
    def describe_extensions(cls) -> str:
        return "a metadata.csv or metadata.jsonl with two or more of " + ", ".join(COLUMNS.values())

    @classmethod
    def collect(cls, tree: Tree, opts: Options) -> Collected:
        from lepton.data.text import NO_LABEL, NOT_SCALAR, norm_label, norm_text

        out = Collected(unit="row")
        metas = metadata.find(tree)
        if not metas:
            out.problems.append("multimodal data needs a metadata.csv or metadata.jsonl with two or more of the columns "
                                f"{quote_list(list(COLUMNS.values()))}, plus `label`")
            return out
        table = metadata.read_one(metas, out, "text")
        if table is None:
            return out
        meta, header, records = table
        mods = _columns(header)
        unknown = [c for c in header if c not in COLUMNS.values() and c not in OTHER]
        if len(mods) < 2 or unknown or "label" not in header:
            out.problems.append(f"`{meta.rel}`: " + "; ".join(filter(None, [
                f"only {len(mods)} media column{'s' if len(mods) != 1 else ''}" if len(mods) < 2 else "",
                "no `label` column" if "label" not in header else "",
                f"unknown columns {quote_list(unknown)}" if unknown else ""])) +
                f"; the columns understood are {quote_list(list(COLUMNS.values()) + list(OTHER))} (two or more media "
                "columns, split optional)")
            return out
        out.modalities = mods
        out.columns = {m: COLUMNS[m] for m in mods} | {"label": "label"}
        base = meta.parts[:-1]
        files = {e.parts: e for e in tree.entries}
        listed: set[tuple[str, ...]] = set()
        for line, rec in metadata.rows(meta, records, opts):
            media: dict[str, Any] = {}
            digests: list[str] = []
            why: Reason | None = None
            for m in mods:
                cell = rec.get(COLUMNS[m])
                if m == "text":
                    text = norm_text(cell)
                    if isinstance(text, Reason):
                        why = why or NOT_SCALAR
                    media[m] = text if isinstance(text, str) and text.strip() else None
                    digests.append(digest(media[m].encode("utf-8")) if media[m] else "-")
                    continue
                if cell is None or (isinstance(cell, str) and not cell.strip()):
                    media[m] = None
                    digests.append("-")
                    continue
                got = metadata.media_file(MODALITIES.get(m), cell, base, files, listed)
                if isinstance(got, Reason):
                    why = why or _in_column(got, COLUMNS[m])
                    continue
                media[m] = got[0].path
                digests.append(digest(got[1]))
            label = norm_label(rec.get("label"))
            split = metadata.row_split(rec.get("split"))
            why = why or (NOTHING if all(v is None for v in media.values()) else None)
            why = why or (NO_LABEL if label is None else NOT_SCALAR if isinstance(label, Reason) else None)
            why = why or (metadata.BAD_SPLIT if split == "" else None)
            if why is not None:
                out.bad.append(Bad(meta.rel, why, line))
                continue
            out.examples.append(Raw(label=label, ref=f"line {line}", content_digest=digest("\0".join(digests).encode()),
                                    split=split, file=meta.rel, line=line, media=media))
        out.has_splits = any(r.split for r in out.examples)
        for r in out.examples if out.has_splits else []:
            r.split = r.split or "train"
        unlisted = [e.rel for e in tree.entries if e is not meta and e.parts not in listed
                    and any(MODALITIES.get(m).recognises(e) for m in mods if m != "text")]
        if unlisted:
            out.warnings.append(f"{plural(len(unlisted), 'file')} {'is' if len(unlisted) == 1 else 'are'} not named in "
                                f"`{meta.rel}` and {'was' if len(unlisted) == 1 else 'were'} left out: "
                                f"{quote_list(unlisted)}")
        counts = {m: sum(r.media[m] is not None for r in out.examples) for m in mods}
        partial = {m: len(out.examples) - n for m, n in counts.items() if n < len(out.examples)}
        if partial and out.examples:
            out.warnings.append("some rows lack a modality (the model learns to predict without it): " + ", ".join(
                f"{m} missing in {plural(n, 'row')}" for m, n in partial.items()))
        return out

    @classmethod
    def stored(cls, rec: dict[str, Any], root: Path) -> dict[str, Any]:
        return {m: (v if m == "text" or v is None else root / v) for m, v in rec.items() if m in COLUMNS}

    @classmethod
    def load(cls, x: Any) -> dict[str, Any]:
        """{modality: raw value or None} -> {modality: loaded item or None}; a missing key is a missing modality."""
        if not isinstance(x, dict) or not x or set(x) - set(COLUMNS):
            raise DataError("a multimodal input is a mapping of " + ", ".join(COLUMNS) + " to a value (or None for a "
                            "missing one)" + (f"; unknown keys: {', '.join(sorted(map(str, set(x) - set(COLUMNS))))}"
                                              if isinstance(x, dict) and set(x) - set(COLUMNS) else ""))
        if all(v is None for v in x.values()):
            raise DataError("a multimodal input needs at least one of " + ", ".join(COLUMNS) + ": every one was missing")
        return {m: None if v is None else MODALITIES.get(m).load(v) for m, v in x.items()}


def _in_column(reason: Reason, column: str) -> Reason:
    """A file problem, saying which column named the file."""
    return Reason(f"{reason.one}, in `{column}`", f"{reason.many}, in `{column}`", reason.hint)
