"""Extract an uploaded .zip without trusting it.

- zip-slip: an entry with an absolute path or a `..` component rejects the whole archive;
- zip bombs: the declared total size and file count are checked from the central directory
  before anything is written, and the bytes actually written are counted while extracting
  (a header that under-states a size cannot get past the limit either);
- junk (`__MACOSX/`, `.DS_Store`, `Thumbs.db`, hidden files) is never extracted;
- symbolic links and password-protected entries are refused.
Limits are module constants, read at call time so tests and deployments can change them.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from lepton import filetypes
from lepton.data.base import human_bytes, quote_list
from lepton.errors import DataError

MAX_TOTAL_BYTES = 2 * 1024**3  # uncompressed
MAX_FILES = 100_000
CHUNK = 1024 * 1024

JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "__macosx", "ehthumbs.db", "icon\r"}


def is_junk(parts: tuple[str, ...] | list[str]) -> bool:
    """OS litter and hidden files/folders, at any depth."""
    return any(p.startswith(".") or p.lower() in JUNK_NAMES or p.startswith("~$") for p in parts)


def _unsafe(name: str) -> bool:
    n = name.replace("\\", "/")
    if n.startswith("/") or re.match(r"^[A-Za-z]:", n):
        return True
    return any(p == ".." for p in n.split("/"))


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def open_zip(path: Path, display: str) -> zipfile.ZipFile:
    if not zipfile.is_zipfile(path):
        kind = filetypes.mislabelled(path, ".zip")
        if kind is not None:
            raise DataError(filetypes.really(display, kind))
        raise DataError(
            f"`{display}` is not a valid zip archive (it may be damaged, or another format such as .rar, .7z "
            "or .tar.gz): create a .zip of the dataset folder and upload that"
        )
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as e:
        raise DataError(f"`{display}` is a damaged zip archive ({e}): create the .zip again") from None


def check_header(zf: zipfile.ZipFile, display: str, dest: Path | None = None) -> list[zipfile.ZipInfo]:
    """Validate the central directory; return the entries worth extracting (files, no junk)."""
    infos = zf.infolist()
    unsafe = [i.filename for i in infos if _unsafe(i.filename)]
    if unsafe:
        raise DataError(
            f"`{display}` is rejected: {len(unsafe)} {'entry points' if len(unsafe) == 1 else 'entries point'} "
            f"outside the archive ({quote_list(unsafe)}); create the .zip again from the dataset folder itself"
        )
    max_files, max_bytes = MAX_FILES, MAX_TOTAL_BYTES
    files = [i for i in infos if not i.is_dir()]
    if len(files) > max_files:
        raise DataError(
            f"`{display}` holds {len(files):,} files (the limit is {max_files:,}): upload a smaller archive, "
            "or split the dataset"
        )
    total = sum(i.file_size for i in files)
    if total > max_bytes:
        raise DataError(
            f"`{display}` would expand to {human_bytes(total)} (the limit is {human_bytes(max_bytes)}); "
            "this looks like a zip bomb or is simply too large: upload a smaller archive"
        )
    if dest is not None:
        free = shutil.disk_usage(dest).free
        if total > free:
            raise DataError(f"`{display}` needs {human_bytes(total)} of disk space but only {human_bytes(free)} is free")
    keep = [i for i in files if not is_junk(PurePosixPath(i.filename.replace("\\", "/")).parts)]
    locked = [i.filename for i in keep if i.flag_bits & 0x1]
    if locked:
        raise DataError(f"`{display}` is password-protected ({quote_list(locked)}): create the .zip again without a password")
    links = [i.filename for i in keep if _is_symlink(i)]
    if links:
        raise DataError(f"`{display}` contains symbolic links ({quote_list(links)}): zip the real files instead")
    return keep


def safe_extract(path: Path, dest: Path, display: str) -> list[str]:
    """Extract `path` into `dest` (created); return the relative POSIX names written, in order."""
    dest.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    with open_zip(path, display) as zf:
        infos = check_header(zf, display, dest)
        max_bytes = MAX_TOTAL_BYTES
        total = 0
        seen: set[str] = set()
        for info in infos:
            rel = PurePosixPath(info.filename.replace("\\", "/")).as_posix().strip("/")
            if rel in seen:
                continue  # a duplicate entry: the first one wins
            seen.add(rel)
            target = dest.joinpath(*rel.split("/"))
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                n = 0
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(CHUNK):
                        n += len(chunk)
                        total += len(chunk)
                        # Guard while extracting too: never trust the sizes the header declared.
                        if n > info.file_size or total > max_bytes:
                            raise DataError(
                                f"`{display}` is rejected: `{rel}` expands beyond the size its header declares "
                                f"or past the {human_bytes(max_bytes)} limit; this looks like a zip bomb"
                            )
                        out.write(chunk)
            except DataError:
                raise
            except (zipfile.BadZipFile, EOFError, zlib.error) as e:
                raise DataError(f"`{display}` is damaged: `{rel}` cannot be extracted ({e}); create the .zip again") from None
            except NotImplementedError as e:
                raise DataError(f"`{display}`: `{rel}` uses an unsupported compression ({e}); create the .zip again with standard (deflate) compression") from None
            except (FileExistsError, IsADirectoryError, NotADirectoryError):
                raise DataError(f"`{display}` has conflicting entries at `{rel}` (a file and a folder with the same name)") from None
            written.append(rel)
    return written
