"""Build the quality suite: six labelled datasets, two per modality, offline and reproducible.

    .venv/bin/python benchmarks/suite/build.py [--only NAME ...] [--out DIR] [--force]

Nothing here goes into git: the datasets are written under $LEPTON_SUITE_DIR (default
~/.cache/lepton/suite) from sources this machine has, with fixed seeds:

| name          | modality | what                                                               | classes |
|---------------|----------|--------------------------------------------------------------------|---------|
| stdlib-docs   | text     | first sentence of a Python standard-library docstring -> module family | 9   |
| library-docs  | text     | first sentence of a docstring in the venv's libraries -> which library | 8   |
| glyphs        | image    | a character rendered from the installed fonts, rotated/scaled/blurred/noisy | 24 |
| textures      | image    | grey patches cut from scikit-image's sample images -> which image   | 10      |
| commands      | audio    | espeak-ng command words, many voices/speeds/pitches, in noise      | 10      |
| languages     | audio    | spoken numbers in eight espeak-ng languages -> which language      | 8       |

Docstrings are read with `ast` from the source files: nothing is imported, so no module's code
runs. The audio needs `espeak-ng` and the glyphs need font packages (scripts/ensure_bench_deps.sh
installs both with apt); textures need scikit-image (requirements-bench.txt).

Each dataset is a layout `lepton ingest` takes: text as NAME.csv (text,label), images and audio as
NAME/<label>/<file>. Lepton splits them 80/10/10 (stratified, fixed seed) like any upload.
A `suite.json` beside them records sizes and what each was built from.
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BUILDERS: dict[str, tuple[str, Callable[[Path, int], dict]]] = {}
SUITE_VERSION = 1  # bump when a builder changes what it writes


def suite_dir() -> Path:
    return Path(os.environ.get("LEPTON_SUITE_DIR") or Path.home() / ".cache" / "lepton" / "suite").expanduser()


def dataset(name: str, modality: str):
    def deco(fn: Callable[[Path, int], dict]) -> Callable[[Path, int], dict]:
        BUILDERS[name] = (modality, fn)
        return fn

    return deco


def path_of(name: str, out: Path | None = None) -> Path:
    """Where dataset `name` lives (what `lepton ingest` / `--data` takes)."""
    out = out or suite_dir()
    return out / (f"{name}.csv" if BUILDERS[name][0] == "text" else name)


# ====================================================================== text: docstrings read with ast

_SENTENCE = re.compile(r"^(.{20,300}?[.!?])(?:\s|$)")


def first_sentence(doc: str | None) -> str | None:
    """The docstring's first sentence (first paragraph joined), if it reads like prose."""
    if not doc:
        return None
    para = " ".join(doc.strip().split("\n\n")[0].split())
    m = _SENTENCE.match(para)
    if not m:
        return None
    s = m.group(1)
    if len(s.split()) < 4 or s.startswith((">>>", "..", ":", "-", "*", "#", "=", "`")) or "::" in s:
        return None
    return s


def docstrings(path: Path) -> list[str]:
    """First sentences of the module's, its public classes' and public functions' docstrings."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError, RecursionError):
        return []
    out = [first_sentence(ast.get_docstring(tree))]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            out.append(first_sentence(ast.get_docstring(node)))
    return [s for s in out if s]


def py_files(root: Path) -> list[Path]:
    skip = re.compile(r"(^|/)(tests?|testing|_vendor|vendored|idle_test|benchmarks?)(/|$)")
    return sorted(p for p in root.rglob("*.py") if not skip.search(p.relative_to(root).as_posix()))


def balanced_rows(by_label: dict[str, list[str]], per_class: int, seed: int) -> list[tuple[str, str]]:
    """Deduplicated (text, label) rows, at most per_class a label; a text seen under two labels is dropped."""
    seen: dict[str, set[str]] = defaultdict(set)
    for label, texts in by_label.items():
        for t in texts:
            seen[t].add(label)
    rng = np.random.default_rng(seed)
    rows = []
    for label in sorted(by_label):
        texts = sorted({t for t in by_label[label] if len(seen[t]) == 1})
        pick = rng.permutation(len(texts))[:per_class]
        rows += [(texts[i], label) for i in sorted(pick)]
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)


STDLIB_FAMILIES = {
    "files": ["os.py", "pathlib.py", "shutil.py", "glob.py", "fnmatch.py", "tempfile.py", "_pyio.py", "fileinput.py",
              "filecmp.py", "stat.py", "genericpath.py", "posixpath.py", "ntpath.py"],
    "text": ["string.py", "re", "textwrap.py", "difflib.py", "codecs.py", "gettext.py", "locale.py", "shlex.py",
             "stringprep.py"],
    "numbers": ["_pydecimal.py", "fractions.py", "random.py", "statistics.py", "numbers.py", "colorsys.py"],
    "dates": ["datetime.py", "calendar.py", "zoneinfo", "_strptime.py"],
    "networking": ["socket.py", "ssl.py", "http", "urllib", "email", "smtplib.py", "ftplib.py", "imaplib.py",
                   "poplib.py", "xmlrpc", "socketserver.py", "ipaddress.py", "mailbox.py", "wsgiref"],
    "concurrency": ["threading.py", "multiprocessing", "concurrent", "asyncio", "queue.py", "subprocess.py",
                    "sched.py", "selectors.py"],
    "formats": ["json", "csv.py", "pickle.py", "pickletools.py", "xml", "html", "configparser.py", "tomllib",
                "plistlib.py", "base64.py", "quopri.py", "mimetypes.py"],
    "archives": ["zipfile.py", "tarfile.py", "gzip.py", "bz2.py", "lzma.py", "zipimport.py", "_compression.py"],
    "introspection": ["inspect.py", "dis.py", "pdb.py", "traceback.py", "bdb.py", "trace.py", "tracemalloc.py",
                      "profile.py", "cProfile.py", "pstats.py", "timeit.py", "ast.py", "tokenize.py", "symtable.py",
                      "pydoc.py", "code.py", "codeop.py"],
}


@dataset("stdlib-docs", "text")
def build_stdlib_docs(out: Path, seed: int) -> dict:
    lib = Path(sysconfig.get_paths()["stdlib"])
    by_label: dict[str, list[str]] = {}
    for label, names in STDLIB_FAMILIES.items():
        files = []
        for n in names:
            p = lib / n
            files += [p] if p.is_file() else py_files(p) if p.is_dir() else []
        by_label[label] = [s for f in files for s in docstrings(f)]
    rows = balanced_rows(by_label, per_class=320, seed=seed)
    write_csv(path_of("stdlib-docs", out), rows)
    return {"source": f"Python {sys.version.split()[0]} standard library ({lib.name}), ast-parsed",
            "classes": dict(sorted(Counter(lbl for _, lbl in rows).items()))}


LIBRARIES = ["numpy", "pandas", "torch", "sklearn", "scipy", "sympy", "networkx", "transformers"]


@dataset("library-docs", "text")
def build_library_docs(out: Path, seed: int) -> dict:
    import importlib.util

    by_label: dict[str, list[str]] = {}
    versions = {}
    for lib in LIBRARIES:
        spec = importlib.util.find_spec(lib)  # finds the folder without importing the package
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"library-docs: {lib} is not installed in this venv (make setup installs it)")
        root = Path(list(spec.submodule_search_locations)[0])
        texts = [s for f in py_files(root) for s in docstrings(f)]
        # The library's own name gives the answer away in a phrase like "numpy array"; keep the task about style.
        name = re.compile(rf"\b({lib}|np|pd|sk|nx|sp)\b\.?", re.IGNORECASE)
        by_label[lib] = [" ".join(name.sub("", t).split()) for t in texts]
        versions[lib] = _dist_version(lib)
    rows = balanced_rows(by_label, per_class=300, seed=seed)
    write_csv(path_of("library-docs", out), rows)
    return {"source": "docstrings of the venv's libraries, ast-parsed, library names removed", "versions": versions,
            "classes": dict(sorted(Counter(lbl for _, lbl in rows).items()))}


def _dist_version(module: str) -> str:
    from importlib import metadata

    dist = {"sklearn": "scikit-learn"}.get(module, module)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


# ====================================================================== images

GLYPHS = list("0123456789ABCDEGHKNOPRST")
SYMBOL_FONTS = re.compile(r"(Math|Music|Symbol|Emoji|D050000L|Dingbat)", re.IGNORECASE)


def latin_fonts() -> list[Path]:
    """Font files under /usr/share/fonts that draw every glyph (not their 'missing glyph' box)."""
    from PIL import ImageFont

    found = []
    for p in sorted(Path("/usr/share/fonts").rglob("*")):
        if p.suffix.lower() not in (".ttf", ".otf") or SYMBOL_FONTS.search(p.name):
            continue
        try:
            font = ImageFont.truetype(str(p), 32)
            missing = bytes(font.getmask("\ue000"))
            if all(bytes(font.getmask(c)) != missing and font.getbbox(c)[2] > 0 for c in GLYPHS):
                found.append(p)
        except OSError:
            continue
    return found


def draw_glyph(ch: str, rng: np.random.Generator, fonts: list[Path], size: int = 64):
    """One letter as an RGB PIL image: a random font and size, jittered, rotated, blurred, with clutter strokes, noise
    and a colour cast (the glyphs recipe; benchmarks/fusion.py draws its letters with it too)."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    font = ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), int(rng.integers(26, 46)) * 2)
    big = size * 2  # drawn at 2x, then reduced: smooth edges
    bg, fg = rng.integers(0, 256), rng.integers(0, 256)
    while abs(int(fg) - int(bg)) < 90:
        fg = rng.integers(0, 256)
    canvas = Image.new("L", (big, big), int(bg))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(0, 3)):  # clutter strokes, so position and darkness alone do not decide
        pts = [tuple(rng.integers(0, big, 2).tolist()) for _ in range(2)]
        draw.line(pts, fill=int(rng.integers(0, 256)), width=int(rng.integers(1, 5)))
    left, top, right, bottom = draw.textbbox((0, 0), ch, font=font)
    x = (big - (right - left)) / 2 - left + rng.normal(0, big * 0.08)
    y = (big - (bottom - top)) / 2 - top + rng.normal(0, big * 0.08)
    draw.text((x, y), ch, fill=int(fg), font=font)
    im = canvas.rotate(float(rng.uniform(-30, 30)), resample=Image.BICUBIC, fillcolor=int(bg))
    im = im.resize((size, size), Image.LANCZOS).filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.3))))
    a = np.asarray(im, np.float32) + rng.normal(0, rng.uniform(2, 28), (size, size))
    tint = rng.uniform(0.6, 1.0, 3)  # a random colour cast, so the images are RGB like users' photos
    return Image.fromarray(np.clip(a[..., None] * tint, 0, 255).astype(np.uint8))


@dataset("glyphs", "image")
def build_glyphs(out: Path, seed: int, per_class: int = 70, size: int = 64) -> dict:
    fonts = latin_fonts()
    if len(fonts) < 10:
        raise SystemExit(f"glyphs: only {len(fonts)} usable fonts under /usr/share/fonts; "
                         "run scripts/ensure_bench_deps.sh (installs fonts-dejavu, fonts-liberation, fonts-noto-core, …)")
    rng = np.random.default_rng(seed)
    root = _fresh(path_of("glyphs", out))
    for ch in GLYPHS:
        d = root / f"char_{ch}"  # "char_" keeps case-insensitive filesystems from merging labels
        d.mkdir()
        for i in range(per_class):
            draw_glyph(ch, rng, fonts, size).save(d / f"{i:03d}.png", optimize=False)
    return {"source": f"{len(fonts)} fonts under /usr/share/fonts", "fonts": [f.name for f in fonts],
            "classes": {f"char_{c}": per_class for c in GLYPHS}}


TEXTURES = ["brick", "grass", "gravel", "coins", "moon", "page", "text", "hubble_deep_field", "retina", "immunohistochemistry"]


@dataset("textures", "image")
def build_textures(out: Path, seed: int, per_class: int = 150, size: int = 64) -> dict:
    from PIL import Image

    try:
        from skimage import data as skdata
    except ImportError:
        raise SystemExit("textures: scikit-image is not installed (pip install -r requirements-bench.txt)") from None
    rng = np.random.default_rng(seed)
    root = _fresh(path_of("textures", out))
    for name in TEXTURES:
        src = np.asarray(getattr(skdata, name)())
        gray = src if src.ndim == 2 else (src[..., :3] @ np.array([0.299, 0.587, 0.114]))
        gray = gray.astype(np.float32)
        gray = (gray - gray.min()) / max(float(np.ptp(gray)), 1e-6) * 255
        d = root / name
        d.mkdir()
        h, w = gray.shape
        made = tries = 0
        while made < per_class:
            tries += 1
            if tries > per_class * 200:
                raise SystemExit(f"textures: {name} has too few textured regions")
            crop = int(rng.integers(size // 2, min(h, w, size * 2)))  # scale jitter: 0.5x to 2x
            y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
            patch = gray[y:y + crop, x:x + crop]
            if patch.std() < 12:  # flat sky or black background says nothing about the source
                continue
            im = Image.fromarray(patch.astype(np.uint8)).rotate(float(rng.choice([0, 90, 180, 270])))
            im = im.resize((size, size), Image.BILINEAR)
            a = np.asarray(im, np.float32)
            a = (a - a.mean()) * rng.uniform(0.6, 1.4) + a.mean() + rng.uniform(-40, 40)  # contrast, brightness
            a = a + rng.normal(0, rng.uniform(0, 15), a.shape)
            if rng.random() < 0.5:
                a = a[:, ::-1]
            Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert("RGB").save(d / f"{made:03d}.png")
            made += 1
    import skimage

    return {"source": f"scikit-image {skimage.__version__} sample images (grey, 64x64 patches)",
            "classes": {n: per_class for n in TEXTURES}}


# ====================================================================== audio: espeak-ng

SR = 16000
EN_VOICES = ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc"]
VARIANTS = [f"m{i}" for i in range(1, 8)] + [f"f{i}" for i in range(1, 5)] + [
    "klatt", "klatt2", "Andy", "Annie", "Michael", "steph", "john", "linda", "paul", "croak", "Alicia", "Gene", "Hugo"]
COMMANDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
LANGUAGES = {"en": "en-us", "de": "de", "fr": "fr-fr", "es": "es", "it": "it", "pt": "pt", "nl": "nl", "pl": "pl"}


def _espeak(text: str, voice: str, speed: int, pitch: int, tmp: Path) -> np.ndarray:
    import soundfile as sf
    import torch
    import torchaudio

    wav = tmp / "clip.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text],
                   check=True, capture_output=True, timeout=30)
    data, sr = sf.read(wav, dtype="float32")
    w = torchaudio.functional.resample(torch.from_numpy(data), sr, SR).numpy()
    loud = np.flatnonzero(np.abs(w) > 0.02 * (np.abs(w).max() + 1e-9))
    return w[loud[0]:loud[-1] + 1] if loud.size else w


def _noisy(wave: np.ndarray, rng: np.random.Generator, snr_db: tuple[float, float], total_s: float | None) -> np.ndarray:
    """Random gain, lead-in and tail, and coloured noise at a random SNR (what a cheap microphone in a room hears)."""
    wave = wave / (np.abs(wave).max() + 1e-9) * rng.uniform(0.2, 0.9)
    lead = int(rng.uniform(0.0, 0.4) * SR)
    n = max(len(wave) + lead + int(0.05 * SR), int(total_s * SR) if total_s else 0)
    out = np.zeros(n, np.float32)
    out[lead:lead + len(wave)] = wave
    white = rng.normal(0, 1, n + 1)
    tilt = rng.uniform(0, 0.97)  # 0 = white hiss, near 1 = low rumble
    noise = (white[1:] + tilt * white[:-1]).astype(np.float32)
    p_sig = float(np.mean(wave ** 2)) + 1e-12
    snr = rng.uniform(*snr_db)
    noise *= np.sqrt(p_sig / (10 ** (snr / 10)) / (float(np.mean(noise ** 2)) + 1e-12))
    return np.clip(out + noise, -1, 1)


def _write_flac(path: Path, wave: np.ndarray) -> None:
    import soundfile as sf

    sf.write(path, wave.astype(np.float32), SR, format="FLAC", subtype="PCM_16")


def _need_espeak(name: str) -> None:
    if shutil.which("espeak-ng") is None:
        raise SystemExit(f"{name}: espeak-ng is not installed; run scripts/ensure_bench_deps.sh")


def _speak_all(root: Path, labels: list[str], per_class: int, rng: np.random.Generator, say, speeds: tuple[int, int],
               snr: tuple[float, float], total_s: float | None) -> None:
    """per_class clips per label: say(label, rng) -> (text, espeak voice), spoken at a random speed and pitch, in noise."""
    with tempfile.TemporaryDirectory() as tmpd:
        for label in labels:
            d = root / label
            d.mkdir()
            for i in range(per_class):
                text, voice = say(label, rng)
                wave = _espeak(text, voice, int(rng.integers(*speeds)), int(rng.integers(10, 90)), Path(tmpd))
                _write_flac(d / f"{i:03d}.flac", _noisy(wave, rng, snr, total_s=total_s))


def _variant(rng: np.random.Generator) -> str:
    return VARIANTS[rng.integers(len(VARIANTS))]


@dataset("commands", "audio")
def build_commands(out: Path, seed: int, per_class: int = 150) -> dict:
    _need_espeak("commands")
    say = lambda word, rng: (word, f"{EN_VOICES[rng.integers(len(EN_VOICES))]}+{_variant(rng)}")  # noqa: E731
    _speak_all(_fresh(path_of("commands", out)), COMMANDS, per_class, np.random.default_rng(seed), say, (110, 230),
               (-3.0, 15.0), 1.0)
    return {"source": f"espeak-ng {_espeak_version()}, {len(EN_VOICES)} English accents x {len(VARIANTS)} voices, "
                      "SNR -3..15 dB", "classes": {w: per_class for w in COMMANDS}}


@dataset("languages", "audio")
def build_languages(out: Path, seed: int, per_class: int = 150) -> dict:
    _need_espeak("languages")

    def say(label: str, rng: np.random.Generator) -> tuple[str, str]:
        # A number read aloud is natural speech in every language, with no text to write by hand.
        return str(int(rng.integers(0, 10 ** int(rng.integers(2, 5))))), f"{LANGUAGES[label]}+{_variant(rng)}"

    _speak_all(_fresh(path_of("languages", out)), list(LANGUAGES), per_class, np.random.default_rng(seed), say,
               (120, 220), (0.0, 20.0), None)
    return {"source": f"espeak-ng {_espeak_version()}: numbers 0-9999 read in {len(LANGUAGES)} languages, "
                      f"{len(VARIANTS)} voices, SNR 0..20 dB", "classes": {k: per_class for k in LANGUAGES}}


def _espeak_version() -> str:
    try:
        return subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.split()[3]
    except (OSError, IndexError):
        return "?"


# ====================================================================== main

def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def build(names: list[str] | None = None, out: Path | None = None, force: bool = False, seed: int = 0) -> dict:
    """Build the named datasets (all by default) unless already built at this SUITE_VERSION; returns suite.json."""
    out = out or suite_dir()
    out.mkdir(parents=True, exist_ok=True)
    index_file = out / "suite.json"
    index = json.loads(index_file.read_text()) if index_file.exists() else {}
    for name in names or list(BUILDERS):
        modality, fn = BUILDERS[name]
        done = index.get(name, {})
        if not force and done.get("version") == SUITE_VERSION and done.get("seed") == seed and path_of(name, out).exists():
            continue
        print(f"building {name} ({modality})…", file=sys.stderr, flush=True)
        info = fn(out, seed)
        index[name] = {"modality": modality, "version": SUITE_VERSION, "seed": seed, "path": str(path_of(name, out)),
                       "n": sum(info["classes"].values()), **info}
        index_file.write_text(json.dumps(index, indent=2))
    return index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", choices=list(BUILDERS))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="rebuild even if already built")
    a = ap.parse_args()
    index = build(a.only, a.out, a.force, a.seed)
    for name in a.only or list(BUILDERS):
        e = index[name]
        print(f"{name}: {e['n']} examples, {len(e['classes'])} classes -> {e['path']}")


if __name__ == "__main__":
    main()
