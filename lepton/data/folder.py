"""The `<label>/<file>` layout shared by image and audio (HF imagefolder / audiofolder).

Optional split folders on top: `train/<label>/<file>`, `validation/` (or `val/`), `test/`. An upload with a
`metadata.csv` or `metadata.jsonl` is read through it instead (lepton/data/metadata.py).
"""

from __future__ import annotations

from lepton import filetypes
from lepton.data import metadata
from lepton.data.base import (FILE_LIMIT, Bad, Collected, Entry, Modality, Options, Raw, Reason, Tree, clean_label,
                               digest, human_bytes, limit_bytes, split_alias)

EMPTY = Reason("is empty", "are empty", "0 bytes; re-export them or remove them")
LOOSE = Reason(
    "is not inside a class folder",
    "are not inside a class folder",
    "put every file in a folder named after its label: `<label>/<file>`",
)
LOOSE_SPLIT = Reason(
    "is not inside a class folder",
    "are not inside a class folder",
    "inside each split folder, put every file in a folder named after its label: `train/<label>/<file>`",
)
DEEP = Reason(
    "is nested deeper than `<label>/<file>`",
    "are nested deeper than `<label>/<file>`",
    "the folder right above each file is its label: move the files up into their class folder",
)
DEEP_SPLIT = Reason(
    "is nested deeper than `<split>/<label>/<file>`",
    "are nested deeper than `<split>/<label>/<file>`",
    "the folder right above each file is its label: move the files up into their class folder",
)


def too_large() -> Reason:
    cap = human_bytes(limit_bytes(FILE_LIMIT))
    return Reason(f"is over the {cap} limit for one file", f"are over the {cap} limit for one file",
                  f"shrink them, or raise the limit with the environment variable {FILE_LIMIT[0]} (in MB)")


class FolderModality(Modality):
    """Subclasses set name/nouns/extensions and implement `check(data, entry)` and `load(x)`."""

    min_depth = 3  # wrapper/label/file: a single top folder that holds class folders is peeled off

    @classmethod
    def check(cls, data: bytes, entry: Entry) -> Reason | None:
        """Decode the file fully; return why it is unusable, or None."""
        raise NotImplementedError

    @classmethod
    def not_mine(cls) -> Reason:
        return Reason(
            f"is not {cls.article} {cls.noun}",
            f"are not {cls.nouns}",
            f"accepted: {cls.describe_extensions()}",
        )

    @classmethod
    def corrupt(cls) -> Reason:
        return Reason(
            f"could not be decoded as {cls.article} {cls.noun}",
            f"could not be decoded as {cls.nouns}",
            "they are corrupt or truncated; re-export them or remove them",
        )

    @classmethod
    def really(cls, entry: Entry) -> Reason:
        """Why a file that did not decode failed: another format under this extension, else corrupt."""
        kind = filetypes.mislabelled(entry.path, entry.ext)
        if kind is None or kind.modality == cls.name:  # a PNG named .jpg decodes fine; failing, it is damaged
            return cls.corrupt()
        return Reason(f"is really {kind.one}", f"are really {kind.many}", filetypes.ADVICE[kind.family])

    @classmethod
    def collect(cls, tree: Tree, opts: Options) -> Collected:
        out = Collected(unit="file", units=len(tree.entries))
        if tree.single_file:
            e = tree.entries[0]
            if not cls.recognises(e):
                out.problems.append(
                    f"it is not {cls.article} {cls.noun} ({e.ext or 'no extension'}); {cls.name} data is a folder "
                    f"or .zip of `<label>/<file>` with {cls.describe_extensions()} files"
                )
                return out
            out.problems.append(
                f"a single {cls.noun} is not a dataset: upload a folder or .zip of `<label>/<file>` "
                f"(one folder per class, e.g. `cat/1{e.ext or '.png'}`, `dog/2{e.ext or '.png'}`)"
            )
            return out

        described = metadata.find(tree)
        if described:  # metadata.csv / metadata.jsonl beside the files: its rows, not the folders, say the labels
            return metadata.collect(cls, tree, described, opts)
        top = {e.parts[0] for e in tree.entries if len(e.parts) > 1}
        split_dirs = {d for d in top if split_alias(d)}
        other_dirs = sorted(top - split_dirs)
        out.has_splits = bool(split_dirs)
        if split_dirs and other_dirs:
            out.problems.append(
                f"it mixes split folders ({', '.join(f'`{d}/`' for d in sorted(split_dirs))}) with other top folders "
                f"({', '.join(f'`{d}/`' for d in other_dirs[:6])}): put every class folder inside "
                "`train/`, `validation/` or `test/`, or remove the split folders"
            )
            return out

        depth = 3 if out.has_splits else 2
        loose = LOOSE_SPLIT if out.has_splits else LOOSE
        deep = DEEP_SPLIT if out.has_splits else DEEP
        total = len(tree.entries)
        for i, e in enumerate(tree.entries):
            if opts.progress and (i % 25 == 0 or i == total - 1):
                opts.progress((i + 1) / total, e.rel)
            if len(e.parts) < depth:
                out.bad.append(Bad(e.rel, loose))
                continue
            if len(e.parts) > depth:
                out.bad.append(Bad(e.rel, deep))
                continue
            if not cls.recognises(e):
                out.bad.append(Bad(e.rel, cls.not_mine()))
                continue
            if e.size == 0:
                out.bad.append(Bad(e.rel, EMPTY))
                continue
            if e.size > limit_bytes(FILE_LIMIT):  # read_bytes below holds the whole file in memory
                out.bad.append(Bad(e.rel, too_large()))
                continue
            data = e.path.read_bytes()
            if not data:
                out.bad.append(Bad(e.rel, EMPTY))
                continue
            why = cls.check(data, e)
            if why is not None:
                out.bad.append(Bad(e.rel, cls.really(e) if why == cls.corrupt() else why))
                continue
            out.examples.append(
                Raw(
                    label=clean_label(e.parts[-2]),
                    ref=e.rel,
                    content_digest=digest(data),
                    split=split_alias(e.parts[0]) if out.has_splits else None,
                    path=e.path,
                )
            )
        return out
