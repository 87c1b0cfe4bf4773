"""Images or audio described by a metadata file: a folder or .zip holding `metadata.csv` or `metadata.jsonl`
beside its files (the Hugging Face imagefolder / audiofolder convention), one row per example:
`file_name` (relative to the metadata file), `label`, and optionally `split` (train / validation / test).

Every row is checked and a bad one is named by its line: a missing or unsafe path, a file of the wrong kind,
a missing label or an unknown split. Files the metadata does not list are left out, with a warning.
The columns that describe several modalities at once (`text`, `image_file_name`, `audio_file_name`) need a
fusion model and are refused with that reason.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING

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


def collect(mod: type[FolderModality], tree: Tree, metas: list[Entry], opts: Options) -> Collected:
    from lepton.data.folder import EMPTY, too_large
    from lepton.data.text import NO_LABEL, NOT_SCALAR, _Problem, norm_label, read_records

    out = Collected(unit="row")
    if len(metas) > 1:
        out.problems.append(f"it has {len(metas)} metadata files ({quote_list([m.rel for m in metas])}): keep one")
        return out
    meta = metas[0]
    try:
        header, records, bad, seen = read_records(meta, "file_name", "label")
    except _Problem as p:
        out.problems.append(str(p))
        return out
    out.units, out.bad = seen, list(bad)
    several = [c for c in header if c in MULTIMODAL]
    if several:
        out.problems.append(f"`{meta.rel}` has {quote_list(several)} columns, which describe several modalities in one "
                            "example: that needs a fusion model, which Lepton does not train yet; keep one media "
                            f"column named `file_name` for {mod.nouns} alone")
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
    for i, (line, rec) in enumerate(records):
        if opts.progress and (i % 25 == 0 or i == len(records) - 1):
            opts.progress((i + 1) / len(records), meta.rel)
        where = lambda reason: Bad(meta.rel, reason, line)  # noqa: E731
        name = rec.get("file_name")
        if not isinstance(name, str) or not name.strip():
            out.bad.append(where(NO_FILE))
            continue
        rel = PurePosixPath(name.strip())
        if rel.is_absolute() or ".." in rel.parts or "\\" in name or ":" in rel.parts[0]:
            out.bad.append(where(UNSAFE))
            continue
        entry = files.get(base + rel.parts)
        if entry is None:
            out.bad.append(where(MISSING))
            continue
        listed.add(entry.parts)
        label = norm_label(rec.get("label"))
        given = rec.get("split")
        split = None if given in (None, "") else (split_alias(given) if isinstance(given, str) else None) or ""
        if label is None or isinstance(label, Reason):
            out.bad.append(where(NO_LABEL if label is None else NOT_SCALAR))
        elif split == "":  # given, but not a split Lepton knows
            out.bad.append(where(BAD_SPLIT))
        elif not mod.recognises(entry):
            out.bad.append(where(mod.not_mine()))
        elif entry.size == 0:
            out.bad.append(where(EMPTY))
        elif entry.size > limit_bytes(FILE_LIMIT):
            out.bad.append(where(too_large()))
        else:
            data = entry.path.read_bytes()
            why = mod.check(data, entry)
            if why is not None:
                out.bad.append(where(mod.really(entry) if why == mod.corrupt() else why))
                continue
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
