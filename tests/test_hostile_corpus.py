"""The hostile-input corpus: malformed text, images, audio, zips, paths and model folders, generated
here at test time, each handed to Lepton the way a user would (ingest, or resolve a backbone).

Every bad input must end in ONE one-line error of the right kind that names the file, within seconds
(no hang on a FIFO, no MemoryError on a 10 GB sparse file), leaving nothing behind in LEPTON_HOME.
The inputs that must succeed (BOMs, line endings, unusual image modes and WAV formats, unicode
names) must be stored and must load. The cases that test_ingest.py already covers one by one
(zip-slip with `..` and `/`, bombs, lying headers, encrypted zips, UTF-16, NUL, latin-1…) are not
repeated here except where a new twist (\\r-only lines, a chunk boundary) is the point.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import os
import pickle
import socket
import sqlite3
import struct
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from data_fixtures import image_files, png_bytes, wav_bytes
from hostile import (
    custom_code_folder,
    deadline,
    edit_config,
    fifo,
    leftovers,
    pickle_only_folder,
    planted_pickle,
    safetensors_header,
    save_tiny_vit,
    tiny_text_folder,
)
from lepton.errors import DataError, LeptonError, ModelError, RegistryError

GB10 = 10 * 1024**3


# ---------------------------------------------------------------- bytes of many formats
def table(n: int = 20, eol: str = "\n", bom: bool = False, sep: str = ",") -> bytes:
    """A valid text/label table, n rows per class, with the given line ending."""
    lines = [f"text{sep}label"] + [f"{w} example number {i}{sep}{lab}" for i in range(n)
                                   for w, lab in (("good lovely", "pos"), ("bad awful", "neg"))]
    return ("\ufeff" if bom else "").encode() + eol.join(lines).encode() + eol.encode()


def jsonl(n: int = 20, eol: str = "\n") -> bytes:
    rows = [{"text": f"{w} number {i}", "label": lab} for i in range(n) for w, lab in (("good", "pos"), ("bad", "neg"))]
    return eol.join(json.dumps(r) for r in rows).encode() + eol.encode()


def zip_bytes(files: dict[str, bytes], stored_first: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if stored_first:  # OpenDocument: an uncompressed `mimetype` member comes first
            zf.writestr(zipfile.ZipInfo(stored_first), files.pop(stored_first), compress_type=zipfile.ZIP_STORED)
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sqlite_bytes(tmp: Path) -> bytes:
    db = tmp / "scratch.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("create table t (text, label)")
        con.executemany("insert into t values (?, ?)", [("a", "x"), ("b", "y")])
    con.close()
    data = db.read_bytes()
    db.unlink()
    return data


def npy_bytes() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(10))
    return buf.getvalue()


def image_bytes(mode: str, fmt: str = "PNG", size=(12, 10), seed: int = 0) -> bytes:
    """An image in an unusual but valid mode, distinct per seed."""
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    if mode == "P":
        im = rgb.quantize(16)
    elif mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65535, (size[1], size[0]), dtype=np.uint16))
    else:
        im = rgb.convert(mode)
    buf = io.BytesIO()
    kw = {"transparency": 0} if (fmt == "GIF") else {}
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def wav(subtype: str, sr: int = 16000, channels: int = 1, seed: int = 0, seconds: float = 0.1, fmt: str = "WAV") -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    wave = 0.3 * np.sin(2 * np.pi * (300 + 40 * seed) * t) + 0.01 * rng.standard_normal(t.size)
    data = np.stack([wave, -wave], axis=1) if channels == 2 else wave
    buf = io.BytesIO()
    sf.write(buf, data.astype(np.float32), sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def png_with_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (CRC fixed): a decompression bomb to PIL."""
    import zlib

    data = bytearray(png_bytes(3, size=(4, 4)))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


FORMATS: dict[str, Callable[[], bytes]] = {
    "gzip": lambda: gzip.compress(table()),
    "bzip2": lambda: bz2.compress(table()),
    "xz": lambda: lzma.compress(table()),
    "zip": lambda: zip_bytes({"data.csv": table()}),
    "xlsx": lambda: zip_bytes({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"}),
    "docx": lambda: zip_bytes({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<document/>"}),
    "ods": lambda: zip_bytes({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet", "content.xml": b"<x/>"},
                             stored_first="mimetype"),
    "xls": lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504),
    "tar": lambda: tar_bytes({"data.csv": table()}),
    "7z": lambda: b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24),
    "pdf": lambda: b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
    "png": lambda: png_bytes(1),
    "jpeg": lambda: png_bytes(2, fmt="JPEG"),
    "gif": lambda: png_bytes(3, fmt="GIF"),
    "webp": lambda: png_bytes(4, fmt="WEBP"),
    "wav": lambda: wav_bytes(1),
    "flac": lambda: wav_bytes(2, fmt="FLAC"),
    "elf": lambda: b"\x7fELF\x02\x01\x01" + bytes(57),
    "pickle": lambda: pickle.dumps({"text": ["a", "b"], "label": [0, 1]}, protocol=4),
    "npy": npy_bytes,
    "html": lambda: b"<!DOCTYPE html>\n<html><body>Sign in to download this file</body></html>\n",
    "rtf": lambda: b"{\\rtf1\\ansi text,label\\par a,b}",
    "parquet": lambda: b"PAR1" + bytes(64) + b"PAR1",
    "mp4": lambda: b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(32),
}


# ---------------------------------------------------------------- the case table
@dataclass
class Case:
    id: str
    build: Callable[[Path], Path]  # tmp folder -> the path handed over
    fragments: tuple[str, ...] = ()  # all in the error message; a case without fragments must succeed
    error: type[LeptonError] = DataError
    action: str = "ingest"  # ingest | backbone (resolve_backbone) | build (resolve, then load the model)
    env: dict[str, str] = field(default_factory=dict)
    named: str | None = None  # what the message must name; default: the path's own name
    check: Callable[[object], None] | None = None  # success: look at the IngestResult


def file(name: str, data: Callable[[], bytes] | bytes | str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        raw = data() if callable(data) else data
        p.write_bytes(raw.encode() if isinstance(raw, str) else raw)
        return p
    return build


def tree(name: str, files: Callable[[], dict[str, bytes]], as_zip: bool = False) -> Callable[[Path], Path]:
    """A folder (or .zip) upload: `files()` maps relative paths to bytes."""
    def build(tmp: Path) -> Path:
        content = files()
        if as_zip:
            p = tmp / name
            p.write_bytes(zip_bytes(content))
            return p
        root = tmp / name
        for rel, data in content.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        return root
    return build


def sparse(name: str, size: int = GB10) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as f:
            f.truncate(size)  # sparse: no disk used, but a reader that loads it whole would need 10 GB
        return p
    return build


def plus_sparse(build: Callable[[Path], Path], rel: str) -> Callable[[Path], Path]:
    """A folder upload with one 10 GB sparse file at `rel` among the real ones."""
    def with_it(tmp: Path) -> Path:
        root = build(tmp)
        sparse(rel)(root)
        return root
    return with_it


def good_images(n: int = 4) -> dict[str, bytes]:
    return image_files({"cat": n, "dog": n})


def good_audio(n: int = 4) -> dict[str, bytes]:
    return {f"{c}/{i}.wav": wav_bytes(10 * j + i) for j, c in enumerate(("yes", "no")) for i in range(n)}


def with_files(base: Callable[[], dict[str, bytes]], extra: dict[str, Callable[[], bytes] | bytes]):
    return lambda: base() | {k: (v() if callable(v) else v) for k, v in extra.items()}


def text_mislabelled(fmt: str, ext: str, says: str) -> Case:
    return Case(f"text-really-{fmt}{ext}", file(f"data{ext}", FORMATS[fmt]), (f"`data{ext}` is really {says}",))


TEXT_BAD = [
    Case("text-quote-never-closed", file("q.csv", b"text,label\ngood one,pos\n\"bad one,neg\n" + table()[11:]),
         ("`q.csv` line 3: a quote opened there is never closed, so the 40 lines after it would become one text",)),
    Case("text-quote-never-closed-crlf", file("q.csv", lambda: b"text,label\r\n\"open,pos\r\n" + table(eol="\r\n")[12:]),
         ("`q.csv` line 2: a quote opened there is never closed",)),
    Case("text-quote-never-closed-cr-only", file("q.csv", lambda: b"text,label\r\"open,pos\r" + table(eol="\r")[11:]),
         ("`q.csv` line 2: a quote opened there is never closed",)),
    Case("text-quote-never-closed-tsv", file("q.tsv", lambda: b"text\tlabel\n\"open\tpos\n" + table(sep="\t")[11:]),
         ("`q.tsv` line 2: a quote opened there is never closed",)),
    Case("text-quote-in-header-never-closed", file("h.csv", lambda: b"\"text,label\n" + table()[11:]),
         ("`h.csv` line 1: a quote opened there is never closed",)),
    Case("text-quote-pairs-rows-later",
         file("p.csv", b"text,label\n\"oops,pos\nfine,neg\nalso fine,pos\n\"quoted\",neg\n" + table()[11:]),
         ("`p.csv` line 2: a quote opened there closes only on line 5, so lines 2-5 would run together",)),
    Case("text-duplicate-label-column", file("dup.csv", b"text,label,label\n" + b"a,x,y\nb,y,x\n" * 10),
         ("`dup.csv` has 2 columns named `label` (columns 2, 3)",)),
    Case("text-duplicate-text-column", file("dup.csv", b"text,text,label\n" + b"a,b,x\nc,d,y\n" * 10),
         ("`dup.csv` has 2 columns named `text` (columns 1, 2)",)),
    Case("text-triplicate-label-tsv", file("dup.tsv", b"label\ttext\tlabel\tlabel\n" + b"x\ta\ty\tz\n" * 10),
         ("`dup.tsv` has 3 columns named `label` (columns 1, 3, 4)",)),
    Case("text-jsonl-duplicate-keys", file("d.jsonl", b'{"text": "a", "label": "x", "label": "y"}\n' * 20),
         ("`d.jsonl`", "have the same key twice")),
    Case("text-jsonl-no-objects", file("d.jsonl", b"[1, 2]\n\"a string\"\n42\n"), ("`d.jsonl` has no JSON object lines",)),
    Case("text-whitespace-only", file("blank.csv", b"  \n\t\n \r\n"), ("`blank.csv` is empty",)),
    Case("text-bom-only", file("bom.csv", b"\xef\xbb\xbf"), ("`bom.csv` is empty",)),
    Case("text-cr-only-blank", file("cr.csv", b"\r\r\r\r"), ("`cr.csv` is empty",)),
    Case("text-not-utf8-cr-only", file("l1.csv", "text,label\rfine,pos\rcaf\xe9 au lait,neg\r".encode("latin-1")),
         ("`l1.csv` is not UTF-8: byte 0xe9 at line 3, column 4", "`é`")),
    Case("text-not-utf8-after-chunk", file("big.csv", lambda: b"text,label\n" + b"x" * (1024**2 + 5) + b",pos\n\xff\n"),
         ("`big.csv` is not UTF-8: byte 0xff at line 3, column 1 (byte offset 1048597)",)),
    Case("text-not-utf8-cut-character", file("cut.csv", lambda: b"text,label\n" + "é".encode() * 600_000 + b"\xc3,x\n"),
         ("`cut.csv` is not UTF-8: byte 0xc3 at line 2, column 1200001",)),
    Case("text-nul-in-row", file("nul.csv", b"text,label\nfine,pos\nbad\x00row,neg\n"),
         ("`nul.csv` contains NUL bytes (line 3)",)),
    Case("text-sparse-10gb-csv", sparse("huge.csv"), ("`huge.csv` is 10.0 GB, over the 1.0 GB limit for a table",
                                                    "LEPTON_MAX_TABLE_MB")),
    Case("text-sparse-10gb-jsonl", sparse("huge.jsonl"), ("`huge.jsonl` is 10.0 GB, over the 1.0 GB limit",)),
    Case("text-over-configured-limit", file("t.csv", lambda: table(40)), ("`t.csv` is ", "KB, over the 1.0 KB limit",),
         env={"LEPTON_MAX_TABLE_MB": str(1 / 1024)}),
    Case("text-limit-not-a-number", file("t.csv", table), ("LEPTON_MAX_TABLE_MB='lots' is not a positive number",),
         env={"LEPTON_MAX_TABLE_MB": "lots"}, named="LEPTON_MAX_TABLE_MB"),
    Case("text-limit-negative", file("t.csv", table), ("LEPTON_MAX_TABLE_MB='-5' is not a positive number",),
         env={"LEPTON_MAX_TABLE_MB": "-5"}, named="LEPTON_MAX_TABLE_MB"),
    Case("text-line-without-breaks", sparse("nul.csv", 3 * 1024**2), ("`nul.csv` contains NUL bytes (line 1)",)),
    Case("text-one-endless-line", file("long.csv", lambda: b"text,label\n" + b"y" * (65 * 1024**2)),
         ("`long.csv` line 2 is longer than 67,108,864 characters without a line break",)),
    text_mislabelled("gzip", ".csv", "a gzip-compressed file (.gz): decompress it first"),
    text_mislabelled("bzip2", ".csv", "a bzip2-compressed file"),
    text_mislabelled("xz", ".jsonl", "an xz-compressed file"),
    text_mislabelled("zip", ".csv", "a zip archive: rename it to .zip"),
    text_mislabelled("xlsx", ".csv", "an Excel workbook (.xlsx): open it and save it as “CSV UTF-8”"),
    text_mislabelled("docx", ".tsv", "a Word document (.docx)"),
    text_mislabelled("ods", ".csv", "an OpenDocument spreadsheet (.ods)"),
    text_mislabelled("xls", ".csv", "an old Office file (.xls/.doc)"),
    text_mislabelled("tar", ".csv", "a tar archive (.tar)"),
    text_mislabelled("7z", ".csv", "a 7-Zip archive (.7z)"),
    text_mislabelled("pdf", ".csv", "a PDF document"),
    text_mislabelled("png", ".csv", "a PNG image"),
    text_mislabelled("jpeg", ".tsv", "a JPEG image"),
    text_mislabelled("gif", ".csv", "a GIF image"),
    text_mislabelled("webp", ".jsonl", "a WebP image"),
    text_mislabelled("wav", ".csv", "a WAV audio file"),
    text_mislabelled("flac", ".csv", "a FLAC audio file"),
    text_mislabelled("elf", ".csv", "an ELF executable"),
    text_mislabelled("pickle", ".jsonl", "a Python pickle (never unpickled"),
    text_mislabelled("npy", ".csv", "a NumPy array file (.npy)"),
    text_mislabelled("html", ".csv", "an HTML web page"),
    text_mislabelled("rtf", ".csv", "an RTF document"),
    text_mislabelled("parquet", ".csv", "a Parquet file"),
    text_mislabelled("mp4", ".csv", "an MP4/QuickTime video"),
    Case("text-really-sqlite", lambda tmp: file("data.csv", sqlite_bytes(tmp))(tmp), ("`data.csv` is really an SQLite database",)),
    Case("text-single-file-really-zip", file("data.txt", FORMATS["zip"]), ("`data.txt` is really a zip archive",)),
    Case("text-single-file-no-ext-really-gzip", file("data", FORMATS["gzip"]), ("`data` is really a gzip-compressed file",)),
    Case("text-in-zip-really-gzip", tree("t.zip", lambda: {"data.csv": FORMATS["gzip"]()}, as_zip=True),
         ("`data.csv` is really a gzip-compressed file",)),
    Case("text-in-folder-over-limit", tree("tables", lambda: {"train.csv": table(30), "test.csv": table(5)}),
         ("`train.csv` is ", "KB, over the 1.0 KB limit for a table",), env={"LEPTON_MAX_TABLE_MB": str(1 / 1024)}),
]

IMAGE_BAD = [
    Case("image-really-pdf", tree("imgs", with_files(good_images, {"cat/a.png": FORMATS["pdf"], "dog/b.png": FORMATS["pdf"]})),
         ("`imgs`: 2 files are really PDF documents (`cat/a.png`, `dog/b.png`)",)),
    Case("image-really-wav", tree("imgs", with_files(good_images, {"cat/a.jpg": FORMATS["wav"], "dog/b.jpg": FORMATS["wav"]})),
         ("2 files are really WAV audio files", "<label>/<file>")),
    Case("image-really-zip", tree("imgs", with_files(good_images, {"cat/a.png": FORMATS["zip"], "dog/b.webp": FORMATS["zip"]})),
         ("2 files are really zip archives",)),
    Case("image-really-html", tree("imgs", with_files(good_images, {"cat/a.jpg": FORMATS["html"], "dog/b.jpg": FORMATS["html"]})),
         ("2 files are really HTML web pages",)),
    Case("image-really-elf", tree("imgs", with_files(good_images, {"cat/a.gif": FORMATS["elf"], "dog/b.bmp": FORMATS["elf"]})),
         ("2 files are really ELF executables", "it is a program")),
    Case("image-truncated-webp", tree("imgs", with_files(good_images, {"cat/a.webp": lambda: png_bytes(9, (64, 64), "WEBP")[:60],
                                                                       "dog/b.webp": lambda: png_bytes(8, (64, 64), "WEBP")[:60]})),
         ("2 files could not be decoded as images",)),
    Case("image-truncated-gif", tree("imgs", with_files(good_images, {"cat/a.gif": b"GIF89a\x10\x00\x10\x00",
                                                                      "dog/b.gif": b"GIF87a"})),
         ("2 files could not be decoded as images",)),
    Case("image-decompression-bomb", tree("imgs", with_files(good_images, {"cat/bomb.png": lambda: png_with_size(60000, 60000),
                                                                           "dog/bomb.png": lambda: png_with_size(50000, 80000)})),
         ("2 files are too large to decode safely (decompression bomb check)",)),
    Case("image-over-file-limit", tree("imgs", lambda: image_files({"cat": 3, "dog": 3}) | {
        "cat/big.png": png_bytes(50, (200, 200)), "dog/big.png": png_bytes(51, (200, 200))}),
         ("2 files are over the 10.2 KB limit for one file", "LEPTON_MAX_FILE_MB"), env={"LEPTON_MAX_FILE_MB": "0.01"}),
    Case("image-sparse-10gb", plus_sparse(tree("imgs", good_images), "cat/huge.png"),
         ("1 file is over the 512.0 MB limit for one file (`cat/huge.png`)",)),
    Case("image-nested-zip", tree("imgs.zip", with_files(good_images, {"cat/more.zip": FORMATS["zip"],
                                                                       "dog/more.zip": FORMATS["zip"]}), as_zip=True),
         ("2 files are not images",)),
    Case("image-files-at-top-only", tree("flat.zip", lambda: {f"{i}.png": png_bytes(i) for i in range(6)}, as_zip=True),
         ("6 files are not inside a class folder",)),
    Case("image-zip-really-pdf-inside", tree("imgs.zip", with_files(good_images, {"cat/x.png": FORMATS["pdf"],
                                                                                  "dog/y.png": FORMATS["pdf"]}), as_zip=True),
         ("`imgs.zip`: 2 files are really PDF documents",)),
]

AUDIO_BAD = [
    Case("audio-really-png", tree("aud", with_files(good_audio, {"yes/a.wav": FORMATS["png"], "no/b.wav": FORMATS["png"]})),
         ("`aud`: 2 files are really PNG images (`no/b.wav`, `yes/a.wav`)",)),
    Case("audio-really-pdf", tree("aud", with_files(good_audio, {"yes/a.ogg": FORMATS["pdf"], "no/b.flac": FORMATS["pdf"]})),
         ("2 files are really PDF documents",)),
    Case("audio-really-gzip", tree("aud", with_files(good_audio, {"yes/a.wav": FORMATS["gzip"], "no/b.wav": FORMATS["gzip"]})),
         ("2 files are really gzip-compressed files",)),
    Case("audio-text-named-flac", tree("aud", with_files(good_audio, {"yes/a.flac": b"just some words", "no/b.flac": b"more"})),
         ("2 files could not be decoded as audio files",)),
    Case("audio-ogg-garbage", tree("aud", with_files(good_audio, {"yes/a.ogg": b"OggS" + bytes(100), "no/b.ogg": b"OggS\x00\x02"})),
         ("2 files could not be decoded as audio files",)),
    Case("audio-wav-header-only", tree("aud", with_files(good_audio, {"yes/a.wav": lambda: wav("PCM_16", seconds=0),
                                                                      "no/b.wav": lambda: wav("PCM_16", seconds=0)})),
         ("2 files have no audio samples",)),
    Case("audio-wav-zero-channels", tree("aud", with_files(good_audio, {
        "yes/a.wav": lambda: wav_bytes(1)[:22] + b"\x00\x00" + wav_bytes(1)[24:],
        "no/b.wav": lambda: wav_bytes(2)[:22] + b"\x00\x00" + wav_bytes(2)[24:]})),
         ("2 files could not be decoded as audio files",)),
    Case("audio-over-file-limit", tree("aud", lambda: good_audio(3) | {"yes/long.wav": wav("PCM_16", seconds=2.0),
                                                                      "no/long.wav": wav("PCM_16", seconds=2.0, seed=5)}),
         ("2 files are over the 51.2 KB limit for one file",), env={"LEPTON_MAX_FILE_MB": "0.05"}),
    Case("audio-sparse-10gb", plus_sparse(tree("aud", good_audio), "yes/huge.wav"),
         ("1 file is over the 512.0 MB limit for one file (`yes/huge.wav`)",)),
]

ZIP_BAD = [
    Case("zip-slip-backslash", tree("evil.zip", with_files(good_images, {"..\\evil.png": lambda: png_bytes(5)}), as_zip=True),
         ("`evil.zip` is rejected: 1 entry points outside the archive", "`..\\evil.png`")),
    Case("zip-slip-drive-letter", tree("evil.zip", with_files(good_images, {"C:/Windows/evil.png": lambda: png_bytes(5)}),
                                       as_zip=True), ("`evil.zip` is rejected", "`C:/Windows/evil.png`")),
    Case("zip-slip-nested-dotdot", tree("evil.zip", with_files(good_images, {"cat/../../evil.png": lambda: png_bytes(5)}),
                                        as_zip=True), ("`evil.zip` is rejected", "`cat/../../evil.png`")),
    Case("zip-conflicting-entries", tree("c.zip", with_files(good_images, {"cat/x.png": lambda: png_bytes(7),
                                                                           "cat/x.png/y.png": lambda: png_bytes(8)}),
                                         as_zip=True), ("`c.zip` has conflicting entries at `cat/x.png/y.png`",)),
    Case("zip-really-gzip", file("data.zip", FORMATS["gzip"]), ("`data.zip` is really a gzip-compressed file",)),
    Case("zip-really-tar", file("data.zip", FORMATS["tar"]), ("`data.zip` is really a tar archive",)),
    Case("zip-really-pdf", file("data.zip", FORMATS["pdf"]), ("`data.zip` is really a PDF document",)),
    Case("zip-really-rar", file("data.zip", b"Rar!\x1a\x07\x01\x00" + bytes(32)), ("`data.zip` is really a RAR archive",)),
    Case("zip-empty-file", file("empty.zip", b""), ("`empty.zip` is not a valid zip archive",)),
    Case("zip-truncated", file("cut.zip", lambda: zip_bytes(good_images())[:300]), ("`cut.zip` is not a valid zip archive",)),
    Case("zip-unknown-compression", lambda tmp: file("odd.zip", patch_zip_method(zip_bytes(good_images()), 99))(tmp),
         ("`odd.zip`", "unsupported compression")),
    Case("zip-one-class", tree("one.zip", lambda: image_files({"cat": 5}), as_zip=True), ("`one.zip`: only one class (`cat`)",)),
    Case("zip-table-over-limit", tree("t.zip", lambda: {"data.csv": table(40)}, as_zip=True),
         ("`data.csv` is ", "KB, over the 1.0 KB limit",), env={"LEPTON_MAX_TABLE_MB": str(1 / 1024)}),
]


def patch_zip_method(data: bytes, method: int) -> bytes:
    """Set every entry's compression method (local and central headers) to `method`."""
    buf = bytearray(data)
    for sig, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = buf.find(sig)
        while at != -1:
            struct.pack_into("<H", buf, at + offset, method)
            at = buf.find(sig, at + 4)
    return bytes(buf)


def link(name: str, target: Callable[[Path], Path] | str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        p = tmp / name
        os.symlink(target(tmp) if callable(target) else target, p)
        return p
    return build


def socket_file(name: str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        p = tmp / name
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(p))  # the socket file stays after close, and a reader opening it would fail or block
        s.close()
        return p
    return build


def folder_with(name: str, files: Callable[[], dict[str, bytes]], special: dict[str, Callable[[Path], Path]]):
    def build(tmp: Path) -> Path:
        root = tree(name, files)(tmp)
        for rel, make in special.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            make(root / rel)
        return root
    return build


PATH_BAD = [
    Case("path-missing", lambda tmp: tmp / "nope.csv", ("`nope.csv` does not exist",)),
    Case("path-fifo-csv", lambda tmp: fifo(tmp / "pipe.csv"), ("`pipe.csv` is a FIFO (named pipe), not a regular file",)),
    Case("path-fifo-zip", lambda tmp: fifo(tmp / "pipe.zip"), ("`pipe.zip` is a FIFO (named pipe)",)),
    Case("path-dev-null", lambda tmp: Path("/dev/null"), ("`null` is a character device",)),
    Case("path-link-to-dev-zero", link("zero.csv", "/dev/zero"), ("`zero.csv` is a character device",)),
    Case("path-link-to-fifo", link("data.csv", lambda tmp: fifo(tmp / "real_pipe")), ("`data.csv` is a FIFO",)),
    Case("path-dangling-link", link("gone.csv", "/nonexistent/lepton/target.csv"), ("`gone.csv` does not exist",)),
    Case("path-socket", socket_file("s.csv"), ("`s.csv` is a socket",)),
    Case("path-fifo-in-image-folder", folder_with("imgs", good_images, {"cat/pipe.png": fifo}),
         ("`imgs` holds 1 special file (`cat/pipe.png: a FIFO (named pipe)`)", "remove them")),
    Case("path-fifo-as-split-table", folder_with("tables", lambda: {"test.csv": table(3)}, {"train.csv": fifo}),
         ("`tables` holds 1 special file (`train.csv: a FIFO (named pipe)`)",)),
    Case("path-device-link-in-folder", folder_with("aud", good_audio, {"yes/zero.wav": lambda p: os.symlink("/dev/zero", p) or p}),
         ("`aud` holds 1 special file (`yes/zero.wav: a character device`)",)),
    Case("path-socket-in-folder", folder_with("imgs", good_images, {"dog/s.png": lambda p: socket_file(p.name)(p.parent)}),
         ("`imgs` holds 1 special file (`dog/s.png: a socket`)",)),
]


# What predict is given (the CLI's file arguments, the Playground's uploads): one item, not a dataset.
ITEM_BAD = [
    Case("item-image-fifo", lambda tmp: fifo(tmp / "photo.png"), ("image `photo.png` is a FIFO (named pipe)",),
         action="image-item"),
    Case("item-audio-device", link("clip.wav", "/dev/zero"), ("audio `clip.wav` is a character device",),
         action="audio-item"),
    Case("item-image-sparse-10gb", sparse("photo.png"), ("`photo.png` is 10.0 GB, over the 512.0 MB limit for one "
                                                         "image file",), action="image-item"),
    Case("item-audio-missing", lambda tmp: tmp / "clip.wav", ("audio `clip.wav` does not exist",), action="audio-item"),
    Case("item-image-really-pdf", file("photo.jpg", FORMATS["pdf"]), ("`photo.jpg` could not be read as an image",),
         action="image-item"),
]


# ---------------------------------------------------------------- model folders
def model(build_folder: Callable[[Path], Path]) -> Callable[[Path], Path]:
    return lambda tmp: build_folder(tmp / "model")


def broken(edit: Callable[[Path], object]) -> Callable[[Path], Path]:
    """The tiny saved model with one thing broken by `edit(folder)`."""
    def build(tmp: Path) -> Path:
        folder = tiny_text_folder(tmp / "model")
        edit(folder)
        return folder
    return build


def write(rel: str, data: Callable[[], bytes] | bytes | str):
    def edit(folder: Path) -> None:
        raw = data() if callable(data) else data
        (folder / rel).write_bytes(raw.encode() if isinstance(raw, str) else raw)
    return edit


def remove(*names: str):
    return lambda folder: [(folder / n).unlink() for n in names]


def index(weight_map: dict[str, str] | None, drop_weights: bool = True):
    def edit(folder: Path) -> None:
        if drop_weights:
            (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
        body = {"metadata": {}} if weight_map is None else {"metadata": {}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(body))
    return edit


def swap_for_fifo(rel: str):
    def edit(folder: Path) -> None:
        (folder / rel).unlink()
        fifo(folder / rel)
    return edit


def swap_for_link(rel: str, target: str):
    def edit(folder: Path) -> None:
        (folder / rel).unlink()
        os.symlink(target, folder / rel)
    return edit


def truncate(rel: str, keep: int):
    def edit(folder: Path) -> None:
        data = (folder / rel).read_bytes()
        (folder / rel).write_bytes(data[:keep])
    return edit


def marker_of(tmp: Path) -> Path:
    return tmp / "PLANT_RAN"


M = ModelError
MODEL_BAD = [
    Case("model-empty-folder", lambda tmp: (tmp / "model").mkdir() or tmp / "model", ("has no config.json",), M, "backbone"),
    Case("model-weights-without-config", broken(remove("config.json")), ("has no config.json, so it is not a saved Hugging "
                                                                         "Face model",), M, "backbone"),
    Case("model-config-not-json", broken(write("config.json", "{model_type: bert")), ("`config.json` is not valid JSON",),
         M, "backbone"),
    Case("model-config-empty", broken(write("config.json", b"")), ("`config.json` is not valid JSON",), M, "backbone"),
    Case("model-config-array", broken(write("config.json", "[1, 2, 3]")), ("config.json is not a JSON object",), M, "backbone"),
    Case("model-config-latin1", broken(write("config.json", '{"model_type": "caf\xe9"}'.encode("latin-1"))),
         ("`config.json` is not UTF-8 text",), M, "backbone"),
    Case("model-config-really-gzip", broken(write("config.json", lambda: gzip.compress(b'{"model_type": "bert"}'))),
         ("`config.json` is not UTF-8 text",), M, "backbone"),
    Case("model-config-sparse-huge", broken(lambda f: sparse("config.json", 300 * 1024**2)(f)),
         ("`config.json` is 300 MB, too large for a model's JSON file",), M, "backbone"),
    Case("model-no-model-type", broken(lambda f: edit_config(f, model_type=None)), ("config.json has no model_type",),
         M, "backbone"),
    Case("model-model-type-not-a-string", broken(lambda f: edit_config(f, model_type=["bert"])),
         ("config.json has no model_type",), M, "backbone"),
    Case("model-unknown-model-type-typo", broken(lambda f: edit_config(f, model_type="bertt")),
         ("model_type 'bertt', which transformers' AutoModel does not know (did you mean bert", "--model-types"),
         M, "backbone"),
    Case("model-unknown-model-type", broken(lambda f: edit_config(f, model_type="my-secret-net")),
         ("model_type 'my-secret-net'", "architectures it has built in (e.g. bert, roberta"), M, "backbone"),
    Case("model-custom-code", lambda tmp: custom_code_folder(tmp / "model", marker_of(tmp)),
         ("asks to run its own Python code (configuration_evil.py, modeling_evil.py, tokenization_evil.py)",
          "AutoModel -> modeling_evil.EvilModel", "never runs code"), M, "backbone"),
    Case("model-custom-code-known-type", lambda tmp: custom_code_folder(tmp / "model", marker_of(tmp), model_type="bert"),
         ("asks to run its own Python code",), M, "backbone"),
    Case("model-custom-code-in-tokenizer", lambda tmp: custom_code_folder(tmp / "model", marker_of(tmp),
                                                                          where="tokenizer_config.json"),
         ("`auto_map` in `tokenizer_config.json` (AutoTokenizer -> tokenization_evil.EvilTokenizer)",), M, "backbone"),
    Case("model-custom-code-in-preprocessor", broken(write("preprocessor_config.json",
                                                           '{"auto_map": {"AutoImageProcessor": "proc.EvilProcessor"}}')),
         ("`auto_map` in `preprocessor_config.json` (AutoImageProcessor -> proc.EvilProcessor)",), M, "backbone"),
    Case("model-pickle-only-bin", lambda tmp: pickle_only_folder(tmp / "model", marker_of(tmp)),
         ("has only a pickle checkpoint (pytorch_model.bin)", "convert it to safetensors"), M, "backbone"),
    Case("model-pickle-only-ckpt", lambda tmp: pickle_only_folder(tmp / "model", marker_of(tmp), "model.ckpt"),
         ("has only a pickle checkpoint (model.ckpt)",), M, "backbone"),
    Case("model-pickle-only-pt", lambda tmp: pickle_only_folder(tmp / "model", marker_of(tmp), "weights.pt"),
         ("has only a pickle checkpoint (weights.pt)",), M, "backbone"),
    Case("model-pickle-sharded", broken(lambda f: (remove("model.safetensors")(f),
                                                   write("pytorch_model.bin.index.json", '{"weight_map": {}}')(f),
                                                   write("pytorch_model-00001-of-00001.bin",
                                                         planted_pickle(f.parent / "PLANT_RAN"))(f))),
         ("has only a pickle checkpoint (pytorch_model-00001-of-00001.bin, pytorch_model.bin.index.json)",), M, "backbone"),
    Case("model-no-weights", broken(remove("model.safetensors")), ("has no weights: it needs model.safetensors",), M,
         "backbone"),
    Case("model-adapter-only", broken(lambda f: (f / "model.safetensors").rename(f / "adapter_model.safetensors")),
         ("has no weights", "(it has adapter_model.safetensors, which AutoModel does not load as a model)"), M, "backbone"),
    Case("model-onnx-only", broken(lambda f: (remove("model.safetensors")(f), write("model.onnx", b"\x08\x07")(f))),
         ("has no weights", "model.onnx"), M, "backbone"),
    Case("model-weights-truncated", broken(truncate("model.safetensors", 4000)),
         ("`model.safetensors` is not a valid safetensors file", "corrupt or truncated"), M, "backbone"),
    Case("model-weights-garbage", broken(write("model.safetensors", b"these are not weights at all")),
         ("`model.safetensors` is not a valid safetensors file (Error while deserializing header",), M, "backbone"),
    Case("model-weights-empty", broken(write("model.safetensors", b"")), ("`model.safetensors` is not a valid safetensors",),
         M, "backbone"),
    Case("model-weights-planted-pickle", lambda tmp: broken(write("model.safetensors", planted_pickle(marker_of(tmp))))(tmp),
         ("`model.safetensors` is not a valid safetensors file",), M, "backbone"),
    Case("model-weights-header-lies", broken(write("model.safetensors", lambda: safetensors_header({"w": ("F32", [64, 64])},
                                                                                                   data_len=100))),
         ("`model.safetensors` is not a valid safetensors file",), M, "backbone"),
    Case("model-weights-header-huge", broken(write("model.safetensors", struct.pack("<Q", 2**40) + b"{}")),
         ("`model.safetensors` is not a valid safetensors file (Error while deserializing header: header too large)",),
         M, "backbone"),
    Case("model-weights-header-not-json", broken(write("model.safetensors", struct.pack("<Q", 6) + b"{oops}")),
         ("`model.safetensors` is not a valid safetensors file", "invalid JSON in header"), M, "backbone"),
    Case("model-weights-really-zip", broken(write("model.safetensors", FORMATS["zip"])),
         ("`model.safetensors` is not a valid safetensors file",), M, "backbone"),
    Case("model-index-missing-shard", broken(index({"a": "model-00001-of-00002.safetensors",
                                                    "b": "model-00002-of-00002.safetensors"})),
         ("is missing 1 of the 2 weight shards `model.safetensors.index.json` lists (model-00002-of-00002.safetensors)",),
         M, "backbone"),
    Case("model-index-shard-outside", broken(index({"a": "../../outside.safetensors"})),
         ("names shards that are not safetensors files in the folder (../../outside.safetensors)",), M, "backbone"),
    Case("model-index-shard-device", broken(index({"a": "/dev/zero"})), ("names shards that are not safetensors files",),
         M, "backbone"),
    Case("model-index-shard-pickle", broken(index({"a": "pytorch_model.bin"})), ("names shards that are not safetensors",),
         M, "backbone"),
    Case("model-index-no-weight-map", broken(index(None)), ("`model.safetensors.index.json` has no weight_map",), M, "backbone"),
    Case("model-index-not-json", broken(write("model.safetensors.index.json", "{\"weight_map\": ")),
         ("`model.safetensors.index.json` is not valid JSON",), M, "backbone"),
    Case("model-index-shard-truncated", broken(lambda f: (index({"a": "model-00001-of-00002.safetensors"})(f),
                                                          truncate("model-00001-of-00002.safetensors", 100)(f))),
         ("`model-00001-of-00002.safetensors` is not a valid safetensors file",), M, "backbone"),
    Case("model-tokenizer-config-broken", broken(write("tokenizer_config.json", "{\"do_lower_case\": tru")),
         ("`tokenizer_config.json` is not valid JSON",), M, "backbone"),
    Case("model-tokenizer-json-truncated", broken(truncate("tokenizer.json", 200)), ("`tokenizer.json` is not valid JSON",),
         M, "backbone"),
    Case("model-config-is-fifo", broken(swap_for_fifo("config.json")), ("`config.json` is a FIFO (named pipe), not a regular",),
         M, "backbone"),
    Case("model-weights-are-fifo", broken(swap_for_fifo("model.safetensors")), ("`model.safetensors` is a FIFO",), M, "backbone"),
    Case("model-weights-link-to-dev-zero", broken(swap_for_link("model.safetensors", "/dev/zero")),
         ("`model.safetensors` is a character device",), M, "backbone"),
    Case("model-path-is-a-file", lambda tmp: file("model.safetensors", lambda: safetensors_header({"w": ("F32", [2])}))(tmp),
         ("is a file, not a folder",), M, "backbone"),
    Case("model-path-is-a-fifo", lambda tmp: fifo(tmp / "model"), ("is a FIFO (named pipe), not a folder",), M, "backbone"),
    Case("model-path-dangling-link", link("model", "/nonexistent/lepton/model"), ("does not exist",), M, "backbone"),
    Case("model-path-missing", lambda tmp: tmp / "no" / "such" / "model", ("there is no such folder",), RegistryError,
         "backbone"),
    Case("model-weights-do-not-fit-config", broken(lambda f: edit_config(f, hidden_size=32, intermediate_size=32)),
         ("could not be loaded by transformers", "belong together"), M, "build"),
    Case("model-tokenizer-missing", broken(remove("tokenizer.json", "tokenizer_config.json")),
         ("has no tokenizer (none of tokenizer.json",), M, "backbone"),
    Case("model-image-no-preprocessor", lambda tmp: save_tiny_vit(tmp / "model", processor=False),
         ("has no preprocessor_config.json, so its image inputs cannot be prepared",), M, "backbone"),
]


# ---------------------------------------------------------------- inputs that must succeed
def loads(modality: str, n: int | None = None, **expect) -> Callable[[object], None]:
    """Check a stored dataset: its modality, size, and that its first example loads as the backbones expect."""
    def check(res) -> None:
        ds = res.dataset
        assert ds.modality == modality
        if n is not None:
            assert len(ds) == n, ds.sizes
        item = ds.load(ds.examples("train")[0].x)
        if modality == "image":
            assert isinstance(item, Image.Image) and item.mode == "RGB" and item.size == expect.get("size", item.size)
        elif modality == "audio":
            wave, sr = item
            assert wave.dtype == np.float32 and wave.ndim == 1 and wave.size > 0 and np.isfinite(wave).all()
            assert sr == expect.get("sr", sr)
            assert np.abs(wave).max() <= 1.0
        else:
            assert isinstance(item, str) and item and "\ufeff" not in item
        for key in ("classes",):
            if key in expect:
                assert ds.classes == expect[key]
    return check


def images_of(mode: str, fmt: str = "PNG", ext: str = "png", size=(12, 10)) -> Callable[[], dict[str, bytes]]:
    return lambda: {f"{c}/{i}.{ext}": image_bytes(mode, fmt, size, seed=10 * j + i) for j, c in enumerate(("a", "b"))
                    for i in range(3)}


def sounds_of(subtype: str, sr: int = 16000, channels: int = 1, fmt: str = "WAV", ext: str = "wav"):
    return lambda: {f"{c}/{i}.{ext}": wav(subtype, sr, channels, seed=10 * j + i, fmt=fmt)
                    for j, c in enumerate(("yes", "no")) for i in range(3)}


GOOD = [
    Case("ok-text-utf8-bom", file("bom.csv", lambda: table(bom=True)), check=loads("text", 40)),
    Case("ok-text-crlf", file("crlf.csv", lambda: table(eol="\r\n")), check=loads("text", 40)),
    Case("ok-text-cr-only", file("mac.csv", lambda: table(eol="\r")), check=loads("text", 40)),
    Case("ok-text-bom-crlf", file("both.csv", lambda: table(eol="\r\n", bom=True)), check=loads("text", 40)),
    Case("ok-text-cr-only-tsv", file("mac.tsv", lambda: table(eol="\r", sep="\t")), check=loads("text", 40)),
    Case("ok-text-cr-only-semicolon", file("eu.csv", lambda: table(eol="\r", sep=";")), check=loads("text", 40)),
    Case("ok-text-mixed-line-endings", file("mixed.csv", lambda: table(10, "\n") + table(10, "\r\n")[11:] + table(10, "\r")[11:]),
         check=loads("text", 60)),
    Case("ok-text-stray-quote-in-one-row", file("inch.csv", lambda: table() + b'a 5" screen,pos\n"b" c,neg\n'),
         check=loads("text", 42)),
    Case("ok-text-quoted-multiline", file("ml.csv", lambda: table() + b'"first line\nsecond line, with a comma",pos\n'),
         check=loads("text", 41)),
    Case("ok-text-quoted-multiline-cr", file("mlcr.csv", lambda: table(eol="\r") + b'"one\rtwo",pos\r'),
         check=loads("text", 41)),
    Case("ok-text-duplicate-unused-columns", file("notes.csv", lambda: b"notes,text,label,notes\n" + b"".join(
        f"n,{w} {i},{lab},m\n".encode() for i in range(10) for w, lab in (("good", "p"), ("bad", "q")))),
         check=loads("text", 20)),
    Case("ok-jsonl-crlf", file("d.jsonl", lambda: jsonl(eol="\r\n")), check=loads("text", 40)),
    Case("ok-jsonl-one-duplicate-key-skipped", file("d.jsonl", lambda: jsonl(25) + b'{"text": "x", "label": "a", "label": "b"}\n'),
         check=loads("text", 50)),
    Case("ok-text-unicode-name", file("données_été_日本.csv", table), check=loads("text", 40)),
    Case("ok-text-long-quoted-field", file("long.csv", lambda: table() + b'"' + b"word " * 400_000 + b'",pos\n'),
         check=loads("text", 41)),
    Case("ok-image-mode-P", tree("p", images_of("P")), check=loads("image", 6, size=(12, 10))),
    Case("ok-image-mode-LA", tree("la", images_of("LA")), check=loads("image", 6)),
    Case("ok-image-mode-CMYK-jpeg", tree("cmyk", images_of("CMYK", "JPEG", "jpg")), check=loads("image", 6)),
    Case("ok-image-mode-I16", tree("i16", images_of("I;16")), check=loads("image", 6)),
    Case("ok-image-mode-1-bit", tree("bits", images_of("1")), check=loads("image", 6)),
    Case("ok-image-mode-1-bit-bmp", tree("bmp", images_of("1", "BMP", "bmp")), check=loads("image", 6)),
    Case("ok-image-mode-L", tree("grey", images_of("L", "WEBP", "webp")), check=loads("image", 6)),
    Case("ok-image-rgba-webp", tree("rgba", images_of("RGBA", "WEBP", "webp")), check=loads("image", 6)),
    Case("ok-image-gif-transparency", tree("gif", images_of("P", "GIF", "gif")), check=loads("image", 6)),
    Case("ok-image-png-named-jpg", tree("named", lambda: {k.replace(".png", ".jpg"): v for k, v in images_of("RGB")().items()}),
         check=loads("image", 6)),
    Case("ok-image-unicode-names-zip", tree("фото.zip", lambda: {f"{c}/снимок_{i}.png": png_bytes(20 * j + i)
                                                                 for j, c in enumerate(("кот", "café")) for i in range(3)},
                                            as_zip=True), check=loads("image", 6, classes=["café", "кот"])),
    Case("ok-image-symlinked-file", lambda tmp: link_files(tree("linked", images_of("RGB"))(tmp)), check=loads("image", 7)),
    Case("ok-audio-wav-8bit", tree("u8", sounds_of("PCM_U8")), check=loads("audio", 6, sr=16000)),
    Case("ok-audio-wav-24bit", tree("s24", sounds_of("PCM_24")), check=loads("audio", 6)),
    Case("ok-audio-wav-32bit-int", tree("s32", sounds_of("PCM_32")), check=loads("audio", 6)),
    Case("ok-audio-wav-float32", tree("f32", sounds_of("FLOAT")), check=loads("audio", 6)),
    Case("ok-audio-wav-float64", tree("f64", sounds_of("DOUBLE")), check=loads("audio", 6)),
    Case("ok-audio-wav-stereo", tree("st", sounds_of("PCM_16", channels=2)), check=loads("audio", 6)),
    Case("ok-audio-wav-8khz", tree("8k", sounds_of("PCM_16", sr=8000)), check=loads("audio", 6, sr=8000)),
    Case("ok-audio-wav-ulaw", tree("ulaw", sounds_of("ULAW", sr=8000)), check=loads("audio", 6, sr=8000)),
    Case("ok-audio-flac-48k-stereo", tree("flac", sounds_of("PCM_16", 48000, 2, "FLAC", "flac")), check=loads("audio", 6, sr=48000)),
    Case("ok-audio-unicode-names", tree("sons", lambda: {f"{c}/écho_{i}.wav": wav("PCM_16", seed=10 * j + i)
                                                         for j, c in enumerate(("oui", "нет")) for i in range(3)}),
         check=loads("audio", 6)),
]


def link_files(root: Path) -> Path:
    """One class folder gets a symbolic link to a regular file elsewhere: a link to a file is fine."""
    elsewhere = root.parent / "outside.png"
    elsewhere.write_bytes(png_bytes(99, (12, 10)))
    os.symlink(elsewhere, root / "a" / "linked.png")
    return root


CASES = TEXT_BAD + IMAGE_BAD + AUDIO_BAD + ZIP_BAD + PATH_BAD + ITEM_BAD + MODEL_BAD + GOOD


def test_the_corpus_is_large_and_each_id_is_unique():
    bad = [c for c in CASES if c.fragments]
    assert len(bad) >= 100 and len({c.id for c in CASES}) == len(CASES)
    assert {c.action for c in bad} == {"ingest", "backbone", "build", "image-item", "audio-item"}
    assert len([c for c in CASES if not c.fragments]) >= 30


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_input(case: Case, tmp_path, monkeypatch):
    from lepton.backbones import resolve_backbone
    from lepton.data import ingest, load_item

    home = tmp_path / "home"
    monkeypatch.setenv("LEPTON_HOME", str(home))
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "in").mkdir()
    path = case.build(tmp_path / "in")
    act = {"ingest": lambda: ingest(path),
           "image-item": lambda: load_item("image", path),
           "audio-item": lambda: load_item("audio", path),
           "backbone": lambda: resolve_backbone(str(path)),
           "build": lambda: resolve_backbone(str(path)).build()}[case.action]
    t0 = time.perf_counter()
    with deadline(60, case.id):
        if not case.fragments:
            res = act()
            case.check(res)
            assert leftovers(home) == [f"datasets/{res.dataset.id}"]
            return
        with pytest.raises(LeptonError) as ei:
            act()
    seconds = time.perf_counter() - t0
    msg = str(ei.value)
    assert type(ei.value) is case.error or isinstance(ei.value, case.error), (type(ei.value), msg)
    assert "\n" not in msg and "Traceback" not in msg, msg
    named = case.named or (str(path) if case.action in ("backbone", "build") else path.name)
    assert named in msg, f"{named!r} not named in {msg!r}"
    for frag in case.fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    assert leftovers(home) == [], leftovers(home)
    assert not (tmp_path / "in" / "PLANT_RAN").exists(), "a planted pickle or module ran"
    assert seconds < 30, f"{case.id} took {seconds:.1f} s"


def test_duplicate_custom_column_needs_the_option_to_matter(tmp_path, monkeypatch):
    """`body` twice is an error only when `body` is the text column asked for; unused duplicates are ignored."""
    from lepton.data import ingest

    monkeypatch.setenv("LEPTON_HOME", str(tmp_path / "home"))
    p = tmp_path / "dup.csv"
    p.write_bytes(b"body,label,body\n" + b"".join(f"t{i},{'xy'[i % 2]},u{i}\n".encode() for i in range(20)))
    with pytest.raises(DataError, match="`dup.csv` has 2 columns named `body` \\(columns 1, 3\\)"):
        ingest(p, text_column="body")


@pytest.mark.parametrize("make", ["fifo", "fifo-in-folder", "sparse-10gb"])
def test_lepton_train_on_a_hostile_path_ends_cleanly(make, tmp_path, monkeypatch, capsys):
    """`lepton train --data X` end to end: exit 2 with one line, at once; no staging folder, no dataset,
    and no run left at `running` (a run created before the data is read must end `failed`, with the reason)."""
    from lepton.cli import main
    from lepton.jobs.store import get_store

    home = tmp_path / "home"
    monkeypatch.setenv("LEPTON_HOME", str(home))
    data = {"fifo": lambda: fifo(tmp_path / "pipe.csv"),
            "fifo-in-folder": lambda: folder_with("imgs", good_images, {"cat/pipe.png": fifo})(tmp_path),
            "sparse-10gb": lambda: sparse("huge.csv")(tmp_path)}[make]()
    with deadline(120, make):
        code = main(["train", "--data", str(data), "--backbone", "tiny-text" if make != "fifo-in-folder" else "tiny-image"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("lepton train:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert f"`{data.name}`" in lines[0]
    runs = get_store().list_runs()
    assert all(r["status"] == "failed" and r.get("error") and data.name in r["error"] for r in runs), runs
    assert [p for p in leftovers(home) if not p.startswith("runs/")] == []
