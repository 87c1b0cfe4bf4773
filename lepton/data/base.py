"""What every modality shares: the MODALITIES registry, the upload tree, and how problems are worded.

A modality turns an upload tree into candidate examples (`collect`) and loads one raw item (`load`).
Ingest never branches on modality names: it asks each registered modality how many files it
recognises, picks one, and calls its methods.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lepton import filetypes
from lepton.errors import DataError
from lepton.registry import Registry

# Split folder / file names users already use, mapped to the three splits Lepton stores.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
SPLITS = ("train", "val", "test")

# Shown when a list of offending files is long; the manifest keeps the full list.
LIST_LIMIT = 6

# Size limits in MB, read from the environment on every call so a deployment (or a test) can change
# them: a table is read line by line but its rows stay in memory, and an image or audio file is
# decoded whole, so both need a ceiling well below the machine's memory.
TABLE_LIMIT = ("LEPTON_MAX_TABLE_MB", 1024)
FILE_LIMIT = ("LEPTON_MAX_FILE_MB", 512)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def limit_bytes(limit: tuple[str, int]) -> int:
    var, default = limit
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default * 1024**2
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb > 0:
        raise DataError(f"the environment variable {var}={raw!r} is not a positive number of megabytes: "
                        f"set it to e.g. {default}, or unset it for the default ({default} MB)")
    return int(mb * 1024**2)


def over_limit(name: str, size: int, limit: tuple[str, int], what: str) -> str | None:
    """"`big.csv` is 10.0 GB, over the 1.0 GB limit for a table (…)", or None when `size` fits."""
    cap = limit_bytes(limit)
    if size <= cap:
        return None
    return (f"`{name}` is {human_bytes(size)}, over the {human_bytes(cap)} limit for {what}: use a smaller file "
            f"(or split it), or raise the limit with the environment variable {limit[0]} (in MB)")


def check_input_file(path: Path, what: str) -> None:
    """A file given to predict (the CLI, the Playground): there, regular, and within the one-file limit."""
    special = filetypes.special(path)
    if special:
        raise DataError(f"{what} `{path.name}` is {special}, not a regular file: give a regular file")
    if not path.is_file():
        raise DataError(f"{what} `{path.name}` does not exist")
    problem = over_limit(path.name, path.stat().st_size, FILE_LIMIT, f"one {what} file")
    if problem:
        raise DataError(problem)


def clean_label(label: str) -> str:
    """NFC-normalised and stripped: macOS zips spell `café/` in NFD, spreadsheets add stray spaces."""
    return unicodedata.normalize("NFC", label).strip()


def split_alias(name: str) -> str | None:
    return SPLIT_ALIASES.get(name.strip().lower())


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Reason:
    """Why an item was rejected, worded for one and for many, plus what to do about it."""

    one: str
    many: str
    hint: str = ""


@dataclass(frozen=True)
class Bad:
    """One rejected item: a file (relative to the upload) or a line of a table file."""

    file: str
    reason: Reason
    line: int | None = None

    @property
    def where(self) -> str:
        return f"{self.file} line {self.line}" if self.line is not None else self.file


@dataclass
class Entry:
    """One file of the upload. `rel` is what the user sees (relative to the upload, original
    spelling); `parts` is the same path with wrapper folders removed, used for the layout."""

    rel: str
    parts: tuple[str, ...]
    path: Path
    size: int

    @property
    def ext(self) -> str:
        return Path(self.rel).suffix.lower()


@dataclass
class Tree:
    display: str  # the upload's basename, used in every message
    entries: list[Entry]
    single_file: bool = False  # the upload is one file, not a folder or zip
    notes: list[str] = field(default_factory=list)  # warnings gathered while opening it


@dataclass
class Raw:
    """A candidate example before splitting and storage."""

    label: str
    ref: str
    content_digest: str
    split: str | None = None  # set by split folders/files; None means "split me"
    text: str | None = None
    path: Path | None = None
    file: str | None = None  # a table row's file and line, for messages about its label (a file's own ref says it)
    line: int | None = None
    media: dict[str, Any] | None = None  # a multimodal row: {modality: text, Path or None (missing)}

    def bad(self, reason: Reason) -> Bad:
        return Bad(self.file or self.ref, reason, self.line)

    def fields(self) -> dict[str, Any]:
        """What items.jsonl stores for it: text as is, a Path as the stored copy's path (None: missing)."""
        if self.media is not None:
            return dict(self.media)
        return {"text": self.text} if self.text is not None else {"file": self.path}


@dataclass
class Collected:
    examples: list[Raw] = field(default_factory=list)
    bad: list[Bad] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # fatal, already worded
    warnings: list[str] = field(default_factory=list)
    units: int = 0  # how many files or rows were looked at (the 10% rule's denominator)
    unit: str = "file"
    has_splits: bool = False
    columns: dict[str, str] | None = None
    modalities: list[str] | None = None  # a multimodal upload's, in MODALITIES order


@dataclass
class Options:
    text_column: str = "text"
    label_column: str = "label"
    progress: Callable[[float, str], None] | None = None


class Modality:
    """Base class of the MODALITIES entries. Modalities hold no state, so the registry holds the
    classes themselves and every method is a classmethod: `MODALITIES.get("image").load(x)`."""

    name: str = ""
    noun: str = "file"  # "an image" / "images" read better than the modality name in messages
    article: str = "a"
    nouns: str = "files"
    extensions: frozenset[str] = frozenset()
    # Wrapper folders are peeled off while every file is at least this deep (label/file = 2).
    min_depth: int = 2

    @classmethod
    def recognises(cls, entry: Entry) -> bool:
        return entry.ext in cls.extensions

    @classmethod
    def claims(cls, tree: Tree) -> bool:
        """Whether the upload is this modality's whatever its files are (a multimodal metadata file); auto
        detection asks this first, then counts the files each modality recognises."""
        return False

    @classmethod
    def collect(cls, tree: Tree, opts: Options) -> Collected:
        raise NotImplementedError

    @classmethod
    def stored(cls, rec: dict[str, Any], root: Path) -> Any:
        """An items.jsonl record -> what `load` takes: the text, or the stored file's absolute path."""
        return rec["text"] if "text" in rec else root / rec["file"]

    @classmethod
    def load(cls, x: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def describe_extensions(cls) -> str:
        return ", ".join(sorted(cls.extensions))


MODALITIES: Registry[type[Modality]] = Registry("modality")


# ---- wording ----

def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


def quote_list(items: list[str], limit: int = LIST_LIMIT) -> str:
    shown = [f"`{s}`" for s in items[:limit]]
    if len(items) > limit:
        shown.append(f"… and {len(items) - limit} more")
    return ", ".join(shown)


def where_list(bads: list[Bad], limit: int = LIST_LIMIT) -> str:
    """`a/x.txt`, `b/y.txt` for files; `topics.csv` lines 4, 9 for rows of a table."""
    if all(b.line is None for b in bads):
        return quote_list([b.file for b in bads], limit)
    by_file: dict[str, list[int]] = {}
    for b in bads:
        by_file.setdefault(b.file, []).append(b.line or 0)
    parts, shown = [], 0
    for f, lines in by_file.items():
        if shown >= limit:
            break
        take = lines[: limit - shown]
        shown += len(take)
        more = f" and {len(lines) - len(take)} more" if len(lines) > len(take) else ""
        word = "line" if len(lines) == 1 else "lines"
        parts.append(f"`{f}` {word} {', '.join(map(str, take))}{more}")
    rest = len(by_file) - len(parts)
    if rest > 0:
        parts.append(f"… and {rest} more files")
    return ", ".join(parts)


def group_bad(bads: list[Bad]) -> dict[Reason, list[Bad]]:
    groups: dict[Reason, list[Bad]] = {}
    for b in bads:
        groups.setdefault(b.reason, []).append(b)
    return groups


def describe_bad(bads: list[Bad], unit: str, skipped: bool = False) -> list[str]:
    """One sentence per reason: '3 files are not images (`a/x.txt`, …): accepted: .png, .jpg'."""
    out = []
    for reason, items in group_bad(bads).items():
        n = len(items)
        verb = reason.one if n == 1 else reason.many
        if skipped:
            out.append(f"skipped {plural(n, unit)} that {verb}: {where_list(items)}")
        else:
            hint = f": {reason.hint}" if reason.hint else ""
            out.append(f"{plural(n, unit)} {verb} ({where_list(items)}){hint}")
    return out
