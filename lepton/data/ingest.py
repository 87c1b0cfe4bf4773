"""Upload -> validated, split, content-addressed dataset in LEPTON_HOME/datasets/<id>/.

    ingest(source) : open (folder / zip / file) -> pick modality -> peel wrapper folders
                     -> modality.collect -> triage (skip a few bad items or raise ONE DataError)
                     -> split -> content hash -> reuse or write in tmp/ and rename into datasets/

Everything is staged under paths.tmp_dir() (same filesystem as datasets/), so a finished dataset
appears with one os.rename and a failure leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from lepton import filetypes, paths
from lepton.data import zipsafe
from lepton.data.base import (
    MODALITIES,
    SPLITS,
    Collected,
    Entry,
    Modality,
    Options,
    Raw,
    Reason,
    Tree,
    describe_bad,
    digest,
    plural,
    quote_list,
    split_alias,
)
from lepton.data.dataset import Dataset
from lepton.errors import DataError

if TYPE_CHECKING:
    from lepton.tasks import Task

FORMAT_VERSION = 1
ID_LEN = 12
SKIP_FRACTION = 0.10  # skip-and-warn when bad items are at most this share of all items, else error
SAFE_FOLDER = re.compile(r"[^/\\\0;]{1,100}")  # a label usable as a folder name in files/ (and not . or ..)
MIN_PREFIX = 4  # shortest id prefix accepted by load_dataset / delete_dataset
ARCHIVES = {".zip"}
# Files users keep next to their data; never examples, never worth a warning.
DOC_FILE = re.compile(r"^(readme|license|licence|changelog|citation|notice)(\.[a-z0-9]+)?$", re.IGNORECASE)
SINGLE_FILE_HINTS = {
    ".xlsx": "save it from Excel as “CSV UTF-8”",
    ".xls": "save it from Excel as “CSV UTF-8”",
    ".ods": "save it as CSV (UTF-8)",
    ".json": "write one JSON object per line and name it .jsonl",
    ".parquet": "convert it to .csv or .jsonl",
    ".txt": "make it a .csv with `text` and `label` columns",
    ".tar": "create a .zip instead",
    ".gz": "create a .zip instead",
    ".tgz": "create a .zip instead",
    ".7z": "create a .zip instead",
    ".rar": "create a .zip instead",
}


@dataclass
class IngestResult:
    dataset: Dataset
    warnings: list[str] = field(default_factory=list)
    reused: bool = False


# ---------------------------------------------------------------- public API


def _ingest(
    source: str | os.PathLike,
    *,
    modality: str = "auto",
    text_column: str = "text",
    label_column: str = "label",
    name: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split: str | None = None,
    task: str = "auto",
    progress: Callable[[float, str], None] | None = None,
) -> IngestResult:
    """Validate `source` (a .csv/.tsv/.jsonl file, a folder or a .zip) and store it once.

    `split` forces every example into that split (e.g. "test" for a separate test set); class-count
    checks are then relaxed, since a test set may hold few examples of a class.
    `task` says what a label is (lepton/tasks): auto reads JSON-list labels as multi-label, anything else as
    single-label. `progress(fraction, message)` is called while files are checked.
    """
    forced = _forced_split(split)
    _check_fractions(val_fraction, test_fraction)
    src, display = check_path(source)

    staging = Path(tempfile.mkdtemp(prefix="ingest-", dir=paths.tmp_dir()))
    try:
        # 1. open the upload
        tree = _open(src, display, staging / "upload")
        # 2. pick the modality and peel wrapper folders (photos.zip -> photos/cat/1.png)
        mod = _pick_modality(tree, modality)
        _unwrap(tree, mod)
        # 3. the modality reads and checks every file / row
        got = mod.collect(tree, Options(text_column, label_column, progress))
        # 4. the task reads every label; skip a few bad items or raise one DataError listing everything
        kind = _labels(got, task)
        examples, skipped, warnings = _triage(got, tree, forced, kind)
        # 5. splits
        splits, layout, more = _assign_splits(examples, got.has_splits, forced, seed, val_fraction, test_fraction, kind)
        warnings += more + _duplicate_warnings(examples, splits, kind.exact)
        # 6. content address: same content -> same id -> reuse
        # Seed and fractions enter only when they chose the splits: a separate test file (forced split) or data
        # with its own train/test folders is the same dataset whatever --seed the run that brought it had.
        chosen = forced is None and not got.has_splits
        split_opts = {"seed": seed if chosen else 0, "val_fraction": val_fraction if chosen else 0.1,
                      "test_fraction": test_fraction if chosen else 0.1, "split": forced}
        content_hash = _content_hash(mod.name, got.columns, split_opts, examples, splits, kind.name)
        ds_id = content_hash[:ID_LEN]
        target = paths.datasets_dir() / ds_id
        if (target / "manifest.json").is_file():
            return IngestResult(Dataset(target), warnings, reused=True)
        # 7. build in staging, then one rename
        build = staging / "dataset"
        manifest = {
            "format": FORMAT_VERSION,
            "id": ds_id,
            "name": name or (src.stem if src.is_file() else src.name) or ds_id,
            "modality": mod.name,
            "modalities": got.modalities or [mod.name],
            "task": kind.name,
            "content_hash": content_hash,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": display,
            "columns": got.columns,
            "layout": layout,
            "split_options": split_opts,
            "warnings": warnings,
            "skipped": skipped,
        }
        _write(build, manifest, examples, splits, staging, kind)
        if target.exists() and not (target / "manifest.json").is_file():
            shutil.rmtree(target, ignore_errors=True)  # debris of a crashed delete; the id says it is ours
        try:
            os.rename(build, target)
        except OSError:
            if (target / "manifest.json").is_file():  # a concurrent ingest of the same content won
                return IngestResult(Dataset(target), warnings, reused=True)
            raise
        return IngestResult(Dataset(target), warnings, reused=False)
    except OSError as e:
        raise DataError(f"`{display}`: could not read or write data ({e.strerror or type(e).__name__}): check disk space and permissions") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_path(source: str | os.PathLike) -> tuple[Path, str]:
    """(resolved path, display name) of an upload that exists and is a regular file or a folder.

    Cheap (one stat), so a caller can run it before creating anything: train's preflight, for one."""
    given = Path(os.fspath(source)).expanduser()
    # Messages name the upload by its basename only, never a machine path: "." and "data/" get their
    # real folder name, and a symbolic link keeps its own name (not its target's).
    display = Path(os.path.abspath(given)).name or str(source)
    src = given.resolve() if given.exists() else given
    if not src.exists():
        raise DataError(f"`{display}` does not exist: check the path")
    what = filetypes.special(src)
    if what:  # opening a FIFO blocks until someone writes to it, and a device never ends
        raise DataError(f"`{display}` is {what}, not a regular file or folder: Lepton reads only regular files and "
                        "folders; save the data to a file and give that")
    return src, display


def load_dataset(id_or_path: str | os.PathLike | Dataset, **ingest_kwargs: Any) -> Dataset:
    """A stored dataset by id (or unique id prefix); a path is ingested first (reused if unchanged)."""
    if isinstance(id_or_path, Dataset):
        return id_or_path
    key = os.fspath(id_or_path)
    matches = _match_ids(key)
    if len(matches) == 1:
        return Dataset(matches[0])
    p = Path(key).expanduser()
    if p.exists():
        return ingest(p, **ingest_kwargs).dataset
    if len(matches) > 1:
        raise DataError(f"`{key}` matches {len(matches)} datasets ({quote_list([m.name for m in matches])}): give more of the id")
    raise DataError(
        f"no dataset or file `{Path(key).name or key}`: give a dataset id (see the Data page or `lepton datasets`) "
        "or a path to a .csv/.tsv/.jsonl file, a folder or a .zip"
    )


def list_datasets() -> list[dict[str, Any]]:
    """Manifests of every stored dataset, newest first."""
    found = []
    for d in paths.datasets_dir().iterdir():
        mf = d / "manifest.json"
        if not mf.is_file():
            continue
        try:
            m = json.loads(mf.read_text("utf-8"))
            found.append((m.get("created", ""), mf.stat().st_mtime_ns, m))
        except (OSError, ValueError):
            continue
    found.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [m for _, _, m in found]


def ingest(source: str | os.PathLike, **options: Any) -> IngestResult:
    """Validate and store a dataset (see `_ingest` for the options), and list it in the job store."""
    from lepton.jobs.store import get_store  # the store indexes datasets; the folders stay the truth

    result = _ingest(source, **options)
    get_store().record_dataset(result.dataset.manifest)
    return result


def delete_dataset(dataset_id: str) -> None:
    """Remove a stored dataset (by id or unique prefix)."""
    matches = _match_ids(str(dataset_id))
    if not matches:
        raise DataError(f"no dataset `{dataset_id}`: see the Data page or `lepton datasets` for ids")
    if len(matches) > 1:
        raise DataError(f"`{dataset_id}` matches {len(matches)} datasets ({quote_list([m.name for m in matches])}): give more of the id")
    # Rename first so a half-deleted folder is never seen as a dataset.
    doomed = Path(tempfile.mkdtemp(prefix="delete-", dir=paths.tmp_dir()))
    os.rename(matches[0], doomed / "ds")
    shutil.rmtree(doomed, ignore_errors=True)
    from lepton.jobs.store import get_store

    get_store().delete_dataset(matches[0].name)


# ---------------------------------------------------------------- 1. open


def _forced_split(split: str | None) -> str | None:
    if split is None or split == "":
        return None
    s = split_alias(str(split))
    if s is None:
        raise DataError(f"unknown split '{split}'; valid splits: {', '.join(SPLITS)}")
    return s


def _check_fractions(val: float, test: float) -> None:
    for label, f in (("val_fraction", val), ("test_fraction", test)):
        if not (isinstance(f, (int, float)) and 0.0 <= f < 1.0):
            raise DataError(f"{label} must be at least 0 and below 1, got {f!r}")
    if val + test >= 1.0:
        raise DataError(f"val_fraction + test_fraction must be below 1 (got {val} + {test}): leave some data to train on")


def _entry(rel: str, path: Path) -> Entry:
    return Entry(rel=rel, parts=tuple(rel.split("/")), path=path, size=path.stat().st_size)


def _open(src: Path, display: str, dest: Path) -> Tree:
    unreadable: list[str] = []
    specials: list[str] = []
    if src.is_dir():
        entries = []
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames[:] = sorted(d for d in dirnames if not zipsafe.is_junk((d,)))
            base = Path(dirpath)
            for f in filenames:
                p = base / f
                if zipsafe.is_junk((f,)) or DOC_FILE.match(f):
                    continue
                what = filetypes.special(p)
                if what:
                    specials.append(f"{p.relative_to(src).as_posix()}: {what}")
                    continue
                if not p.is_file():  # a broken symbolic link: nothing to read
                    continue
                rel = p.relative_to(src).as_posix()
                try:
                    rel.encode("utf-8")
                except UnicodeEncodeError:  # a name in a legacy encoding: it could not be stored or shown
                    unreadable.append(rel.encode("utf-8", "replace").decode("utf-8"))
                    continue
                entries.append(_entry(rel, p))
                if len(entries) > zipsafe.MAX_FILES:
                    raise DataError(f"`{display}` holds more than {zipsafe.MAX_FILES:,} files: use a smaller folder")
        if specials:
            raise DataError(
                f"`{display}` holds {plural(len(specials), 'special file')} ({quote_list(specials)}): Lepton reads only "
                "regular files and folders; remove them from the folder"
            )
        tree = Tree(display, sorted(entries, key=lambda e: e.rel))
    elif src.suffix.lower() in ARCHIVES:
        rels = zipsafe.safe_extract(src, dest, display)
        entries = [_entry(r, dest / r) for r in rels if not DOC_FILE.match(r.rsplit("/", 1)[-1])]
        tree = Tree(display, sorted(entries, key=lambda e: e.rel))
    else:
        tree = Tree(display, [_entry(src.name, src)], single_file=True)
    if unreadable:
        tree.notes.append(f"ignored {plural(len(unreadable), 'file')} whose name is not valid UTF-8: {quote_list(unreadable)}; rename them")
    if not tree.entries:
        what = "archive" if src.suffix.lower() in ARCHIVES else "folder"
        raise DataError(
            f"`{display}` is empty: the {what} has no files (hidden files and __MACOSX are ignored); "
            "add one folder per class with the files inside, or a .csv/.tsv/.jsonl table"
        )
    return tree


# ---------------------------------------------------------------- 2. modality and wrappers


def _pick_modality(tree: Tree, modality: str) -> type[Modality]:
    if modality and modality != "auto":
        if modality not in MODALITIES:
            raise DataError(f"unknown modality '{modality}'; valid: auto, {', '.join(MODALITIES)}")
        return MODALITIES.get(modality)
    claimed = [m for _, m in MODALITIES.items() if m.claims(tree)]
    if claimed:
        return claimed[0]
    counts = {n: sum(1 for e in tree.entries if m.recognises(e)) for n, m in MODALITIES.items()}
    best = max(counts.values())
    if best == 0:
        accepted = "; ".join(f"{n}: {m.describe_extensions()}" for n, m in MODALITIES.items())
        if tree.single_file:
            ext = tree.entries[0].ext
            kind = filetypes.mislabelled(tree.entries[0].path, ext)
            if kind is not None:
                raise DataError(f"{filetypes.really(tree.display, kind)} (accepted: {accepted})")
            hint = SINGLE_FILE_HINTS.get(ext, "upload a .csv, .tsv or .jsonl table, or a folder or .zip of `<label>/<file>`")
            raise DataError(f"`{tree.display}` is not a supported file ({ext or 'no extension'}): {hint} (accepted: {accepted})")
        exts = Counter(e.ext or "(none)" for e in tree.entries).most_common(8)
        found = ", ".join(f"{x} ({n})" for x, n in exts)
        raise DataError(f"`{tree.display}` has no supported files (found {found}): accepted are {accepted}")
    winners = [n for n, c in counts.items() if c == best]
    if len(winners) > 1:
        raise DataError(
            f"`{tree.display}` holds as many {' as '.join(winners)} files ({best} each): "
            f"choose the modality ({' or '.join(winners)}) instead of auto"
        )
    return MODALITIES.get(winners[0])


def _unwrap(tree: Tree, mod: type[Modality]) -> None:
    """Drop single top-level wrapper folders (`photos/cat/1.png` -> `cat/1.png`), never a split folder.

    Only the files the modality recognises decide, so a stray `photos/notes.txt` does not stop the
    peeling (it then shows up as a loose file, with its own message)."""
    while True:
        decide = [e for e in tree.entries if mod.recognises(e)] or tree.entries
        tops = {e.parts[0] for e in decide}
        if len(tops) != 1 or any(len(e.parts) < mod.min_depth for e in decide):
            return
        top = tops.pop()
        if split_alias(top):
            return
        for e in tree.entries:
            if e.parts[0] == top and len(e.parts) > 1:
                e.parts = e.parts[1:]


# ---------------------------------------------------------------- 4. triage


MIXED_LABELS = Reason("has a label of the other kind (a JSON list among plain labels, or a plain label among lists)",
                      "have labels of the other kind (JSON lists among plain labels, or plain labels among lists)",
                      "write every label as a JSON list for multi-label data (one label as [\"a\"]), or none; "
                      "or choose the task (--task multi-label reads a plain label as a set of one)")


def _labels(got: Collected, task: str) -> type[Task]:
    """The task (auto: multi-label when any label is a JSON list), with every example's label in its canonical
    form; a label the task cannot read makes its example a bad item."""
    from lepton.tasks import DEFAULT, TASKS
    from lepton.tasks.multi_label import is_json_list

    if task == "auto":
        lists = [is_json_list(r.label) for r in got.examples]
        task = "multi-label" if any(lists) else DEFAULT
        if any(lists) and not all(lists):  # labels of mixed types: the fewer kind are named, not read silently
            minority = sum(lists) * 2 < len(lists)
            got.bad += [r.bad(MIXED_LABELS) for r, is_list in zip(got.examples, lists) if is_list == minority]
            got.examples = [r for r, is_list in zip(got.examples, lists) if is_list != minority]
            task = DEFAULT if minority else task
    kind = TASKS.get(task)
    kept = []
    for r in got.examples:
        label = kind.parse(r.label)
        if isinstance(label, str):
            r.label = label
            kept.append(r)
        else:
            got.bad.append(r.bad(label))
    got.examples = kept
    return kind


def _triage(got: Collected, tree: Tree, forced: str | None, task: type[Task]) -> tuple[list[Raw], list[dict], list[str]]:
    problems = list(got.problems)
    warnings = list(tree.notes) + list(got.warnings)
    skipped: list[dict] = []
    good = got.examples
    if got.bad:
        if good and len(got.bad) <= SKIP_FRACTION * max(got.units, 1):
            warnings += describe_bad(got.bad, got.unit, skipped=True)
            skipped = [{"file": b.where, "reason": b.reason.one} for b in got.bad]
        else:
            problems += describe_bad(got.bad, got.unit)
    if not good and not problems:
        problems.append(f"no examples found: it needs one {got.unit} per example")

    more: list[str] = []
    if good:
        found, more = task.check([r.label for r in good], got.unit, forced is not None)
        problems += found
    if good and forced is None and got.has_splits:
        in_train = {n for r in good if r.split == "train" for n in task.names(r.label)}
        present = sorted({r.split for r in good if r.split})
        if not any(r.split == "train" for r in good):
            problems.append(f"it has {', '.join(present)} splits but no train split: add a `train/` folder (or `train.csv`)")
        else:
            orphans = sorted({n for r in good for n in task.names(r.label)} - in_train)
            if orphans:
                problems.append(
                    f"{plural(len(orphans), 'class', 'classes')} "
                    f"{'is' if len(orphans) == 1 else 'are'} missing from the train split ({quote_list(orphans)}): "
                    "add training examples for them"
                )
    if problems:
        # A single-file upload's own problems already start with its name.
        lead = "" if problems[0].startswith(f"`{tree.display}` ") else f"`{tree.display}`: "
        msg = lead + "; ".join(problems)
        raise DataError(msg if msg.endswith((".", "!", "?")) else msg + ".")
    return good, skipped, warnings + more


# ---------------------------------------------------------------- 5. splits


def stratified_split(labels: list[str], val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """Per-example split names, stratified by label, deterministic for a seed.

    Totals are round(N * fraction), shared out over classes by largest remainder; every class keeps
    at least one example in train, so tiny classes never vanish from training (sklearn's
    train_test_split refuses such classes instead).
    """
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        groups.setdefault(lab, []).append(i)
    order = sorted(groups)
    pools = {c: [groups[c][j] for j in rng.permutation(len(groups[c]))] for c in order}
    out = ["train"] * len(labels)
    spare = {c: len(pools[c]) - 1 for c in order}  # what each class can still give away
    taken = {c: 0 for c in order}
    n = len(labels)
    for split, frac in (("test", test_fraction), ("val", val_fraction)):
        if frac <= 0:
            continue
        target = min(int(round(n * frac)), sum(spare.values()))
        quota = {c: len(pools[c]) * frac for c in order}
        alloc = {c: min(int(math.floor(quota[c])), spare[c]) for c in order}
        left = target - sum(alloc.values())
        # Largest remainder first; bigger classes break ties so small ones keep their examples.
        ranked = sorted(order, key=lambda c: (-(quota[c] - math.floor(quota[c])), -len(pools[c]), c))
        while left > 0:
            moved = False
            for c in ranked:
                if left > 0 and alloc[c] < spare[c]:
                    alloc[c] += 1
                    left -= 1
                    moved = True
            if not moved:
                break
        while left < 0:  # floors can overshoot a rounded-down target
            c = max((c for c in order if alloc[c] > 0), key=lambda c: alloc[c] - quota[c])
            alloc[c] -= 1
            left += 1
        for c in order:
            for i in pools[c][taken[c] : taken[c] + alloc[c]]:
                out[i] = split
            taken[c] += alloc[c]
            spare[c] -= alloc[c]
    return out


def _assign_splits(
    examples: list[Raw], has_splits: bool, forced: str | None, seed: int, val_fraction: float, test_fraction: float,
    task: type[Task],
) -> tuple[list[str], str, list[str]]:
    labels = task.strata([r.label for r in examples])
    warnings: list[str] = []
    if forced:
        return [forced] * len(examples), f"all {forced}", warnings
    if has_splits:
        splits = [r.split or "train" for r in examples]
        if "val" not in splits and val_fraction > 0:
            idx = [i for i, s in enumerate(splits) if s == "train"]
            sub = stratified_split([labels[i] for i in idx], val_fraction, 0.0, seed)
            for i, s in zip(idx, sub):
                splits[i] = s
            warnings.append(f"no validation split was given: {sub.count('val')} training examples were held out for validation")
        return splits, "given", warnings
    splits = stratified_split(labels, val_fraction, test_fraction, seed)
    for s, frac in (("val", val_fraction), ("test", test_fraction)):
        if frac > 0 and s not in splits:
            warnings.append(f"the {'validation' if s == 'val' else s} split is empty: there are too few examples to hold any out")
    return splits, "stratified", warnings


def _duplicate_warnings(examples: list[Raw], splits: list[str], exact: bool = True) -> list[str]:
    """Identical content in two splits inflates test scores; with two labels it is a labelling error
    (where the task's labels are exact: a measured number may differ between repeats)."""
    seen: dict[str, tuple[str, str, str]] = {}
    leaks, conflicts = [], []
    for r, s in zip(examples, splits):
        first = seen.setdefault(r.content_digest, (r.label, s, r.ref))
        if first[2] == r.ref:
            continue
        if first[0] != r.label and exact:
            conflicts.append(f"{first[2]} / {r.ref}")
        elif first[1] != s:
            leaks.append(f"{first[2]} / {r.ref}")
    out = []
    if conflicts:
        out.append(
            f"{plural(len(conflicts), 'example')} {'has' if len(conflicts) == 1 else 'have'} identical content under "
            f"different labels ({quote_list(conflicts)}): check those labels"
        )
    if leaks:
        out.append(
            f"{plural(len(leaks), 'example')} {'is' if len(leaks) == 1 else 'are'} repeated in more than one split "
            f"({quote_list(leaks)}): test scores may be optimistic; remove the duplicates"
        )
    return out


# ---------------------------------------------------------------- 6. hash, 7. write


def _content_hash(modality: str, columns: dict | None, split_opts: dict, examples: list[Raw], splits: list[str],
                  task: str) -> str:
    h = hashlib.sha256()
    head = {"format": FORMAT_VERSION, "modality": modality, "columns": columns, "split_options": split_opts}
    if task != "single-label":  # the same file read as another task is another dataset; single-label ids stay as they were
        head["task"] = task
    h.update(json.dumps(head, sort_keys=True).encode("utf-8"))
    # Sorted per-example digests: the hash is about content, not about enumeration order.
    items = sorted(hashlib.sha256(f"{r.label}\0{s}\0{r.content_digest}".encode("utf-8")).digest() for r, s in zip(examples, splits))
    for d in items:
        h.update(d)
    return h.hexdigest()


def _write(build: Path, manifest: dict, examples: list[Raw], splits: list[str], staging: Path,
           task: type[Task]) -> None:
    build.mkdir(parents=True)
    classes = task.classes([r.label for r in examples])
    counts = {s: {c: 0 for c in classes} for s in SPLITS}
    used: set[str] = set()
    moved: dict[Path, Path] = {}
    total = 0
    with open(build / "items.jsonl", "w", encoding="utf-8") as f:
        for r, s in zip(examples, splits):
            for c in task.names(r.label):
                counts[s][c] += 1
            rec: dict[str, Any] = {"split": s, "label": r.label, "ref": r.ref}
            for key, value in r.fields().items():
                if not isinstance(value, Path):  # a text, or a missing modality
                    rec[key] = value
                    continue
                # A folder per label keeps the stored dataset browsable; a label that is no folder name is hashed.
                named = SAFE_FOLDER.fullmatch(r.label) and r.label not in (".", "..")
                folder = r.label if named else digest(r.label.encode("utf-8"))[:12]
                rel = _unique(f"files/{s}/{folder}", value.name, used)
                dst = build / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                if value in moved:  # a metadata file may name one file in several rows
                    shutil.copyfile(moved[value], dst)
                elif staging in value.parents:
                    os.replace(value, dst)  # extracted from a zip: already ours, move it
                    moved[value] = dst
                else:
                    shutil.copyfile(value, dst)  # the user's folder: copy verbatim, never touch it
                total += dst.stat().st_size
                rec[key] = rel
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    total += (build / "items.jsonl").stat().st_size
    manifest.update(
        classes=classes,
        counts=counts,
        sizes={s: splits.count(s) for s in SPLITS},
        bytes=total,
    )
    # The manifest is written last: a folder without one is never a dataset.
    tmp = build / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, build / "manifest.json")


def _unique(folder: str, name: str, used: set[str]) -> str:
    rel = f"{folder}/{name}"
    k = 1
    stem, dot, ext = name.rpartition(".")
    while rel in used:
        k += 1
        rel = f"{folder}/{stem}-{k}.{ext}" if dot else f"{folder}/{name}-{k}"
    used.add(rel)
    return rel


def _match_ids(key: str) -> list[Path]:
    key = key.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{%d,64}" % MIN_PREFIX, key):
        return []
    root = paths.datasets_dir()
    exact = root / key[:ID_LEN]
    if len(key) >= ID_LEN and (exact / "manifest.json").is_file():
        return [exact]
    return sorted(d for d in root.iterdir() if d.name.startswith(key) and (d / "manifest.json").is_file())
