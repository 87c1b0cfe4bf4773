"""Images or audio described by a metadata file: a folder or .zip holding `metadata.csv` or `metadata.jsonl`
beside its files (the Hugging Face imagefolder / audiofolder convention), one row per example:
`file_name` (relative to the metadata file), `label`, and optionally `split` (train / validation / test).

Every row is checked and a bad one is named by its line: a missing or unsafe path, a file of the wrong kind,
a missing label or an unknown split. Files the metadata does not list are left out, with a warning.
The columns that describe several modalities at once (`text`, `image_file_name`, `audio_file_name`) make the
upload multimodal (lepton/data/multimodal.py reads it with the helpers here).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Iterator

from lepton.data.base import (FILE_LIMIT, Bad, Collected, Entry, Options, Raw, Reason, Tree, digest, limit_bytes, plural,
                               quote_list, split_alias)

if TYPE_CHECKING:
    from lepton.data.folder import FolderModality

NAMES = ("metadata.csv", "metadata.jsonl")
COLUMNS = ("file_name", "label", "split")
MULTIMODAL = ("text", "image_file_name", "audio_file_name")
NO_FILE = Reason("has no file_name", "have no file_name", "name each example's file, relative to the metadata file")
UNSAFE = Reason("has a file_name outside the upload (absolute, `..` or a drive)",
                "have file_names outside the upload (absolute, `..` or a drive)",
                "give paths relative to the metadata file, inside the upload")
MISSING = Reason("names a file that is not in the upload", "name files that are not in the upload",
                 "add those files, or fix the file_name (paths are relative to the metadata file)")
BAD_SPLIT = Reason("has an unknown split", "have an unknown split", "use train, validation or test (or leave it empty)")


def find(tree: Tree) -> list[Entry]:
    """The upload's metadata files at the shallowest depth that has one (more than one is the caller's problem)."""
    found = [e for e in tree.entries if e.parts[-1].lower() in NAMES]
    if not found:
        return []
    depth = min(len(e.parts) for e in found)
    return [e for e in found if len(e.parts) == depth]


def media_file(mod: type[FolderModality], name: object, base: tuple[str, ...], files: dict[tuple[str, ...], Entry],
               listed: set[tuple[str, ...]]) -> tuple[Entry, bytes] | Reason:
    """The upload's file a metadata cell names (relative to the metadata file), read and decoded by `mod`, or why
    it cannot be used. Every file found is added to `listed`, usable or not."""
    from lepton.data.folder import EMPTY, too_large

    if not isinstance(name, str) or not name.strip():
        return NO_FILE
    rel = PurePosixPath(name.strip())
    if rel.is_absolute() or ".." in rel.parts or "\\" in name or ":" in rel.parts[0]:
        return UNSAFE
    entry = files.get(base + rel.parts)
    if entry is None:
        return MISSING
    listed.add(entry.parts)
    if not mod.recognises(entry):
        return mod.not_mine()
    if entry.size == 0:
        return EMPTY
    if entry.size > limit_bytes(FILE_LIMIT):
        return too_large()
    data = entry.path.read_bytes()
    why = mod.check(data, entry)
    if why is not None:
        return mod.really(entry) if why == mod.corrupt() else why
    return entry, data


def row_split(given: object) -> str | None:
    """A row's split: None when not given, "" when given but not one Lepton knows."""
    if given in (None, ""):
        return None
    return (split_alias(given) if isinstance(given, str) else None) or ""


def header_of(meta: Entry) -> list[str]:
    """The columns of a metadata file, or [] when it cannot be read (collect then says why)."""
    from lepton.data.text import _Problem, read_records

    try:
        return read_records(meta, "file_name", "label")[0]
    except (_Problem, OSError, ValueError):
        return []


def read_one(metas: list[Entry], out: Collected, column: str) -> tuple[Entry, list[str], list] | None:
    """(the metadata file, its columns, its rows) of an upload's one metadata file, or None with the problem in
    `out`; the rows seen and the unreadable ones go into `out` too. column: one it should have (for the delimiter)."""
    from lepton.data.text import _Problem, read_records

    if len(metas) > 1:
        out.problems.append(f"it has {len(metas)} metadata files ({quote_list([m.rel for m in metas])}): keep one")
        return None
    try:
        header, records, bad, seen = read_records(metas[0], column, "label")
    except _Problem as p:
        out.problems.append(str(p))
        return None
    out.units, out.bad = seen, list(bad)
    return metas[0], header, records


def rows(meta: Entry, records: list, opts: Options) -> Iterator[tuple[int, dict]]:
    """The table's (line, record) pairs, telling opts.progress every 25 rows and at the last."""
    for i, (line, rec) in enumerate(records):
        if opts.progress and (i % 25 == 0 or i == len(records) - 1):
            opts.progress((i + 1) / len(records), meta.rel)
        yield line, rec


def collect(mod: type[FolderModality], tree: Tree, metas: list[Entry], opts: Options) -> Collected:
    from lepton.data.text import NO_LABEL, NOT_SCALAR, norm_label

    out = Collected(unit="row")
    table = read_one(metas, out, "file_name")
    if table is None:
        return out
    meta, header, records = table
    several = [c for c in header if c in MULTIMODAL]
    if several:
        out.problems.append(f"`{meta.rel}` has {quote_list(several)} columns, which describe several modalities in one "
                            f"example, but the modality was set to {mod.name}: leave it as auto (or choose multimodal), "
                            f"or keep one media column named `file_name` for {mod.nouns} alone")
        return out
    unknown = [c for c in header if c not in COLUMNS]
    missing = [c for c in COLUMNS[:2] if c not in header]
    if unknown or missing:
        out.problems.append(f"`{meta.rel}`: " + "; ".join(filter(None, [
            f"no {quote_list(missing)} column" if missing else "",
            f"unknown columns {quote_list(unknown)}" if unknown else ""])) + f"; the columns understood are "
            f"{quote_list(list(COLUMNS))} (split optional)")
        return out
    out.columns = {"file_name": "file_name", "label": "label"}
    base = meta.parts[:-1]
    files = {e.parts: e for e in tree.entries}
    listed: set[tuple[str, ...]] = set()
    for line, rec in rows(meta, records, opts):
        where = lambda reason: Bad(meta.rel, reason, line)  # noqa: E731
        got = media_file(mod, rec.get("file_name"), base, files, listed)
        if isinstance(got, Reason):
            out.bad.append(where(got))
            continue
        entry, data = got
        label = norm_label(rec.get("label"))
        split = row_split(rec.get("split"))
        if label is None or isinstance(label, Reason):
            out.bad.append(where(NO_LABEL if label is None else NOT_SCALAR))
        elif split == "":  # given, but not a split Lepton knows
            out.bad.append(where(BAD_SPLIT))
        else:
            out.examples.append(Raw(label=label, ref=entry.rel, content_digest=digest(data), split=split,
                                    path=entry.path, file=meta.rel, line=line))
    out.has_splits = any(r.split for r in out.examples)
    for r in out.examples if out.has_splits else []:
        r.split = r.split or "train"  # a row without a split, beside rows with one, trains
    unlisted = [e.rel for e in tree.entries if e is not meta and e.parts not in listed and mod.recognises(e)]
    if unlisted:
        out.warnings.append(f"{plural(len(unlisted), mod.noun, mod.nouns)} {'is' if len(unlisted) == 1 else 'are'} not "
                            f"listed in `{meta.rel}` and {'was' if len(unlisted) == 1 else 'were'} left out: "
                            f"{quote_list(unlisted)}")
    return out
