"""What a file really is, whatever its name says: special files (FIFO, device, socket) and magic bytes.

Both the data layer and the model-folder checks use it, before they open anything:
- `special(path)` names a path that is not a regular file or folder. Opening a FIFO blocks until
  someone writes to it and a device never ends, so such paths are refused from their stat alone.
- `identify(path)` reads the first bytes of a regular file and names a binary format it starts
  with (zip and the Office files built on it, gzip, PDF, images, audio, executables, databases…),
  so "`data.csv` is not UTF-8" becomes "`data.csv` is really a gzip-compressed file".
Nothing here parses more than a zip's central directory.
"""

from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

HEAD_BYTES = 4096  # enough for every signature below (tar's sits at offset 257)

_SPECIAL = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def special(path: str | os.PathLike) -> str | None:
    """'a FIFO (named pipe)' / 'a character device' / … for a path that is neither a regular file nor a
    folder (symbolic links are followed); None for files, folders and paths that do not exist."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    for test, what in _SPECIAL:
        if test(mode):
            return what
    return "not a regular file"


@dataclass(frozen=True)
class Kind:
    """A recognised format: `one` reads "`x.csv` is really {one}", `many` is its plural, `family` picks
    the advice (see ADVICE), `exts` are the names it usually goes by, and `modality` says which data
    modality would accept it (or None)."""

    one: str
    many: str
    family: str
    exts: tuple[str, ...] = ()
    modality: str | None = None


ADVICE = {
    "zip": "rename it to .zip, or unzip it and upload what is inside",
    "compressed": "decompress it first and upload the file inside",
    "archive": "extract it and upload the files as a folder or .zip",
    "spreadsheet": "open it and save it as “CSV UTF-8”",
    "document": "export the data as a .csv, .tsv or .jsonl table",
    "data": "convert it to .csv or .jsonl (e.g. with pandas: `df.to_csv(\"data.csv\", index=False)`)",
    "media": "images and audio go in a folder or .zip of `<label>/<file>` with the matching extension",
    "program": "it is a program, not data: upload the data file instead",
}

ZIP = Kind("a zip archive", "zip archives", "zip",
           (".zip", ".xlsx", ".docx", ".pptx", ".ods", ".odt", ".epub", ".jar", ".apk", ".whl"))
_ZIP_MEMBERS = (  # (member name prefix, kind): the Office and packaging formats that are zips inside
    ("xl/", Kind("an Excel workbook (.xlsx)", "Excel workbooks (.xlsx)", "spreadsheet", (".xlsx", ".xlsm"))),
    ("word/", Kind("a Word document (.docx)", "Word documents (.docx)", "document", (".docx",))),
    ("ppt/", Kind("a PowerPoint file (.pptx)", "PowerPoint files (.pptx)", "document", (".pptx",))),
    ("AndroidManifest.xml", Kind("an Android app (.apk)", "Android apps (.apk)", "program", (".apk",))),
    ("META-INF/MANIFEST.MF", Kind("a Java archive (.jar)", "Java archives (.jar)", "program", (".jar",))),
)
_OPENDOCUMENT = {
    b"application/vnd.oasis.opendocument.spreadsheet":
        Kind("an OpenDocument spreadsheet (.ods)", "OpenDocument spreadsheets (.ods)", "spreadsheet", (".ods",)),
    b"application/vnd.oasis.opendocument.text":
        Kind("an OpenDocument text (.odt)", "OpenDocument texts (.odt)", "document", (".odt",)),
    b"application/epub+zip": Kind("an EPUB e-book", "EPUB e-books", "document", (".epub",)),
}
_IMAGE = "image"
_AUDIO = "audio"
_MP3 = Kind("an MP3 audio file", "MP3 audio files", "media", (".mp3",), _AUDIO)
_GIF = Kind("a GIF image", "GIF images", "media", (".gif",), _IMAGE)
_TIFF = Kind("a TIFF image", "TIFF images", "media", (".tif", ".tiff"), _IMAGE)

# (offset, signature, kind), first match wins. Signatures a text table could plausibly start with
# ("BM", "MZ") are checked only in _binary below, once the head holds a NUL byte.
_SIGNATURES: tuple[tuple[int, bytes, Kind], ...] = (
    (0, b"\x1f\x8b", Kind("a gzip-compressed file (.gz)", "gzip-compressed files (.gz)", "compressed", (".gz", ".tgz"))),
    (0, b"\xfd7zXZ\x00", Kind("an xz-compressed file (.xz)", "xz-compressed files (.xz)", "compressed", (".xz",))),
    (0, b"\x28\xb5\x2f\xfd", Kind("a zstd-compressed file (.zst)", "zstd-compressed files (.zst)", "compressed",
                                (".zst",))),
    (4, b"1AY&SY", Kind("a bzip2-compressed file (.bz2)", "bzip2-compressed files (.bz2)", "compressed", (".bz2",))),
    (0, b"7z\xbc\xaf\x27\x1c", Kind("a 7-Zip archive (.7z)", "7-Zip archives (.7z)", "archive", (".7z",))),
    (0, b"Rar!\x1a\x07", Kind("a RAR archive (.rar)", "RAR archives (.rar)", "archive", (".rar",))),
    (257, b"ustar", Kind("a tar archive (.tar)", "tar archives (.tar)", "archive", (".tar",))),
    (0, b"%PDF-", Kind("a PDF document", "PDF documents", "document", (".pdf",))),
    (0, b"{\\rtf", Kind("an RTF document", "RTF documents", "document", (".rtf",))),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", Kind("an old Office file (.xls/.doc)", "old Office files (.xls/.doc)",
                                                  "spreadsheet", (".xls", ".doc", ".ppt", ".msg"))),
    (0, b"\x89PNG\r\n\x1a\n", Kind("a PNG image", "PNG images", "media", (".png",), _IMAGE)),
    (0, b"\xff\xd8\xff", Kind("a JPEG image", "JPEG images", "media", (".jpg", ".jpeg"), _IMAGE)),
    (0, b"GIF87a", _GIF),
    (0, b"GIF89a", _GIF),
    (0, b"II*\x00", _TIFF),
    (0, b"MM\x00*", _TIFF),
    (0, b"fLaC", Kind("a FLAC audio file", "FLAC audio files", "media", (".flac",), _AUDIO)),
    (0, b"OggS", Kind("an Ogg audio file", "Ogg audio files", "media", (".ogg", ".oga", ".opus"), _AUDIO)),
    (0, b"ID3", _MP3),
    (0, b"\xff\xfb", _MP3),  # 0xff never starts UTF-8 text, so two bytes are enough
    (0, b"\xff\xf3", _MP3),
    (0, b"\x1aE\xdf\xa3", Kind("a Matroska/WebM video", "Matroska/WebM videos", "media", (".mkv", ".webm"))),
    (0, b"\x7fELF", Kind("an ELF executable", "ELF executables", "program", ("", ".so", ".o"))),
    (0, b"\xcf\xfa\xed\xfe", Kind("a macOS executable", "macOS executables", "program", ("", ".dylib"))),
    (0, b"\xca\xfe\xba\xbe", Kind("a Java class or macOS executable", "Java classes or macOS executables", "program",
                                ("", ".class"))),
    (0, b"\x00asm", Kind("a WebAssembly module", "WebAssembly modules", "program", (".wasm",))),
    (0, b"SQLite format 3\x00", Kind("an SQLite database", "SQLite databases", "data", (".db", ".sqlite", ".sqlite3"))),
    (0, b"PAR1", Kind("a Parquet file", "Parquet files", "data", (".parquet",))),
    (0, b"ARROW1", Kind("an Arrow/Feather file", "Arrow/Feather files", "data", (".arrow", ".feather"))),
    (0, b"\x89HDF\r\n\x1a\n", Kind("an HDF5 file", "HDF5 files", "data", (".h5", ".hdf5"))),
    (0, b"\x93NUMPY", Kind("a NumPy array file (.npy)", "NumPy array files (.npy)", "data", (".npy",))),
)
_RIFF = {
    b"WEBP": Kind("a WebP image", "WebP images", "media", (".webp",), _IMAGE),
    b"WAVE": Kind("a WAV audio file", "WAV audio files", "media", (".wav",), _AUDIO),
    b"AVI ": Kind("an AVI video", "AVI videos", "media", (".avi",)),
}
_PICKLE = Kind("a Python pickle (never unpickled: it can run code)", "Python pickles (never unpickled: they can run code)",
               "data", (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt"))
_HTML = Kind("an HTML web page (perhaps a download link's error page)", "HTML web pages", "document", (".html", ".htm"))
_BMP = Kind("a BMP image", "BMP images", "media", (".bmp",), _IMAGE)
_EXE = Kind("a Windows executable", "Windows executables", "program", (".exe", ".dll"))
_HEIF = Kind("a HEIC/AVIF image", "HEIC/AVIF images", "media", (".heic", ".heif", ".avif"))
_M4A = Kind("an M4A audio file", "M4A audio files", "media", (".m4a", ".m4b"))
_MP4 = Kind("an MP4/QuickTime video", "MP4/QuickTime videos", "media", (".mp4", ".mov", ".m4v"))


def _zip_kind(path: Path) -> Kind:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if "mimetype" in names:
                kind = _OPENDOCUMENT.get(zf.read("mimetype").strip())
                if kind:
                    return kind
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, NotImplementedError):
        return ZIP  # a damaged zip is still a zip as far as the name goes
    for prefix, kind in _ZIP_MEMBERS:
        if any(n.startswith(prefix) for n in names):
            return kind
    return ZIP


def _iso_media(head: bytes) -> Kind | None:
    if head[4:8] != b"ftyp":
        return None
    brand = head[8:12]
    if brand in (b"heic", b"heix", b"mif1", b"msf1", b"avif"):
        return _HEIF
    return _M4A if brand in (b"M4A ", b"M4B ") else _MP4


def _binary(head: bytes) -> Kind | None:
    if b"\x00" not in head:
        return None
    if head[:2] == b"BM" and head[6:10] == b"\x00\x00\x00\x00":
        return _BMP
    return _EXE if head[:2] == b"MZ" else None


def identify_head(head: bytes, path: Path | None = None) -> Kind | None:
    """The format `head` (a file's first bytes) starts with; `path` lets a zip be told from an .xlsx."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return _zip_kind(path) if path is not None else ZIP
    for offset, sig, kind in _SIGNATURES:
        if head[offset:offset + len(sig)] == sig:
            return kind
    if head[:4] == b"RIFF" and head[8:12] in _RIFF:
        return _RIFF[head[8:12]]
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return _PICKLE  # 0x80 never starts UTF-8 text, so this cannot be a table
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return _HTML
    return _iso_media(head) or _binary(head)


def mislabelled(path: str | os.PathLike, ext: str) -> Kind | None:
    """The format of a file whose extension `ext` (".csv") does not fit what its first bytes say, or None."""
    kind = identify(path)
    return kind if kind is not None and ext.lower() not in kind.exts else None


def identify(path: str | os.PathLike) -> Kind | None:
    """The format a regular file's first bytes say it is, or None (plain text, or nothing we know)."""
    p = Path(path)
    if special(p):
        return None  # opening it could block; callers refuse special files on their own terms
    try:
        with open(p, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError:
        return None
    return identify_head(head, p)


def really(name: str, kind: Kind) -> str:
    """"`data.csv` is really a gzip-compressed file (.gz): decompress it first and upload the file inside"."""
    return f"`{name}` is really {kind.one}: {ADVICE[kind.family]}"
