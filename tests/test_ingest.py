"""lepton.data: ingest, validation messages, storage, dedupe, atomicity, load_item, demo data."""

from __future__ import annotations

import importlib
import json
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

try:
    from data_fixtures import (  # noqa: F401  (fixtures)
        DEMO,
        audio_files,
        image_files,
        lepton_home,
        make_text_csv,
        make_zip,
        png_bytes,
        wav_bytes,
        write_files,
    )
except ImportError:  # pragma: no cover - when tests/ is a package
    from tests.data_fixtures import (  # noqa: F401
        DEMO,
        audio_files,
        image_files,
        lepton_home,
        make_text_csv,
        make_zip,
        png_bytes,
        wav_bytes,
        write_files,
    )

from lepton.data import (
    MODALITIES,
    Modality,
    Dataset,
    Example,
    IngestResult,
    delete_dataset,
    ingest,
    list_datasets,
    load_dataset,
    load_item,
    stratified_split,
)
from lepton.data import audio as audio_mod
from lepton.data import zipsafe
from lepton.errors import DataError

MANIFEST_KEYS = {"id", "name", "modality", "classes", "counts", "sizes", "content_hash", "created", "source",
                 "warnings", "skipped", "bytes", "columns"}


def fails(source, *fragments, **kw) -> str:
    """Ingest must raise ONE DataError whose message holds every fragment; return the message."""
    with pytest.raises(DataError) as ei:
        ingest(source, **kw)
    msg = str(ei.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    assert "Traceback" not in msg
    return msg


def assert_clean(home: Path) -> None:
    """Nothing left behind after a failure."""
    assert os.environ["LEPTON_HOME"] == str(home)
    for sub in ("datasets", "tmp"):
        if (home / sub).exists():
            assert list((home / sub).iterdir()) == [], sub


# ====================================================================== text: good paths


def test_csv_default_columns(lepton_home, tmp_path):
    src = make_text_csv(tmp_path / "reviews.csv", per_class=10)
    res = ingest(src)
    assert isinstance(res, IngestResult) and not res.reused and res.warnings == []
    ds = res.dataset
    assert ds.modality == "text" and ds.classes == ["neg", "pos"] and ds.num_classes == 2
    assert ds.name == "reviews" and len(ds.id) == 12 and ds.root == lepton_home / "datasets" / ds.id
    m = ds.manifest
    assert MANIFEST_KEYS <= set(m)
    assert m["source"] == "reviews.csv" and m["columns"] == {"text": "text", "label": "label"}
    assert m["sizes"] == {"train": 16, "val": 2, "test": 2}
    assert m["counts"]["val"] == {"neg": 1, "pos": 1}
    assert ds.splits == ["train", "val", "test"]
    ex = ds.examples("train")[0]
    assert isinstance(ex, Example) and isinstance(ex.x, str) and ex.label in (0, 1) and ex.ref.startswith("line ")
    assert ds.load(ex.x) == ex.x
    lines = (ds.root / "items.jsonl").read_text().splitlines()
    assert len(lines) == 20 and set(json.loads(lines[0])) >= {"split", "label", "text"}
    assert not (ds.root / "files").exists()
    assert str(tmp_path) not in json.dumps(m)  # no machine paths in the manifest


def test_tsv_jsonl_and_numeric_labels(lepton_home, tmp_path):
    tsv = make_text_csv(tmp_path / "d.tsv", sep="\t")
    assert ingest(tsv).dataset.classes == ["neg", "pos"]
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(10)] + [{"text": "x", "label": 1.0}, {"text": "y", "label": 0}]
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    ds = ingest(p).dataset
    assert ds.classes == ["0", "1"] and sum(ds.sizes.values()) == 12


def test_custom_and_case_insensitive_columns(lepton_home, tmp_path):
    p = make_text_csv(tmp_path / "a.csv", text_column="sentence", label_column="category")
    ds = ingest(p, text_column="sentence", label_column="category").dataset
    assert ds.manifest["columns"] == {"text": "sentence", "label": "category"}
    q = make_text_csv(tmp_path / "b.csv", text_column="Text", label_column=" Label ")
    assert ingest(q).dataset.manifest["columns"] == {"text": "Text", "label": "Label"}


def test_semicolon_csv_and_bom_and_quoted_newlines(lepton_home, tmp_path):
    body = "\ufefftext;label\n" + "".join(f'"line one {i}\nline two; still";{"a" if i % 2 else "b"}\n' for i in range(10))
    p = tmp_path / "excel.csv"
    p.write_text(body, encoding="utf-8")
    ds = ingest(p).dataset
    assert ds.classes == ["a", "b"]
    texts = [e.x for s in ds.splits for e in ds.examples(s)]
    assert any("\nline two; still" in t for t in texts)


def test_text_split_files_in_zip_with_wrapper(lepton_home, tmp_path):
    def table(n, off=0):
        return "text,label\n" + "".join(f"sentence {i + off},{'a' if i % 2 else 'b'}\n" for i in range(n))

    z = make_zip(tmp_path / "corpus.zip", {
        "corpus/train.csv": table(10), "corpus/validation.csv": table(4, 100), "corpus/test.csv": table(4, 200),
        "__MACOSX/corpus/._train.csv": "junk", "corpus/.DS_Store": "junk", "corpus/README.md": "# about",
    })
    res = ingest(z)
    assert res.dataset.manifest["sizes"] == {"train": 10, "val": 4, "test": 4}
    assert res.dataset.manifest["layout"] == "given"
    assert res.dataset.examples("test")[0].ref.startswith("corpus/test.csv line")


def test_text_split_files_without_validation_carves_val(lepton_home, tmp_path):
    d = tmp_path / "corpus"
    write_files(d, {"train.csv": "text,label\n" + "".join(f"s{i},{i % 2}\n" for i in range(20)),
                    "test.csv": "text,label\na,0\nb,1\n"})
    res = ingest(d)
    sizes = res.dataset.manifest["sizes"]
    assert sizes["test"] == 2 and sizes["val"] == 2 and sizes["train"] == 18
    assert any("validation" in w for w in res.warnings)


# ====================================================================== images and audio: good paths


def test_image_folder_and_formats(lepton_home, tmp_path):
    files = image_files({"cat": 5}) | image_files({"dog": 5}, fmt="JPEG")
    files |= {"bird/a.gif": png_bytes(90, fmt="GIF"), "bird/b.bmp": png_bytes(91, fmt="BMP"),
              "bird/c.webp": png_bytes(92, fmt="WEBP"), "bird/d.png": png_bytes(93, mode="RGBA"),
              "bird/e.jpeg": png_bytes(94, fmt="JPEG")}
    d = write_files(tmp_path / "pets", files)
    (d / "cat" / ".hidden.png").write_bytes(b"junk")
    (d / "Thumbs.db").write_bytes(b"junk")
    res = ingest(d)
    ds = res.dataset
    assert ds.modality == "image" and ds.classes == ["bird", "cat", "dog"] and res.warnings == []
    assert sum(ds.sizes.values()) == 15
    ex = ds.examples("train")[0]
    assert isinstance(ex.x, Path) and ex.x.is_absolute() and ex.x.is_relative_to(ds.root / "files")
    assert ex.ref.count("/") == 1
    img = ds.load(ex.x)
    assert img.mode == "RGB"
    item = json.loads((ds.root / "items.jsonl").read_text().splitlines()[0])
    assert item["file"].startswith(f"files/{item['split']}/{item['label']}/")
    assert ds.manifest["columns"] is None and ds.manifest["bytes"] > 0
    assert (d / "cat" / "0.png").exists()  # the user's folder is copied, never moved


def test_image_zip_with_wrapper_and_junk(lepton_home, tmp_path):
    files = image_files({"cat": 5, "dog": 5}, prefix="photos/")
    files |= {"__MACOSX/photos/cat/._0.png": b"x", "photos/.DS_Store": b"x", "photos/cat/Thumbs.db": b"x"}
    res = ingest(make_zip(tmp_path / "photos.zip", files))
    assert res.dataset.classes == ["cat", "dog"] and res.warnings == []
    assert res.dataset.name == "photos" and res.dataset.manifest["source"] == "photos.zip"
    assert res.dataset.examples("train")[0].ref.startswith("photos/")


def test_image_split_folders(lepton_home, tmp_path):
    files = (image_files({"cat": 4, "dog": 4}, prefix="train/") | image_files({"cat": 2, "dog": 2}, prefix="val/")
             | image_files({"cat": 2, "dog": 2}, prefix="test/"))
    # distinct content per split so nothing collides
    files = {k: png_bytes(i + 500) for i, k in enumerate(files)}
    ds = ingest(write_files(tmp_path / "split", files)).dataset
    assert ds.manifest["sizes"] == {"train": 8, "val": 4, "test": 4}
    assert {e.ref.split("/")[0] for e in ds.examples("val")} == {"val"}


def test_forced_test_split_allows_one_class_and_collisions(lepton_home, tmp_path):
    files = {"train/cat/1.png": png_bytes(1), "test/cat/1.png": png_bytes(2)}
    ds = ingest(write_files(tmp_path / "t", files), split="test").dataset
    assert ds.splits == ["test"] and ds.sizes["test"] == 2 and ds.classes == ["cat"]
    stored = sorted(e.x.name for e in ds.examples("test"))
    assert stored == ["1-2.png", "1.png"]


def test_audio_folder_wav_flac_ogg_stereo(lepton_home, tmp_path):
    files = audio_files({"yes": 4}) | audio_files({"no": 4}, fmt="FLAC") | audio_files({"up": 3}, fmt="OGG")
    files["yes/stereo.wav"] = wav_bytes(40, channels=2)
    res = ingest(write_files(tmp_path / "words", files))
    ds = res.dataset
    assert ds.modality == "audio" and ds.classes == ["no", "up", "yes"]
    wave, sr = ds.load(next(e.x for s in ds.splits for e in ds.examples(s) if e.x.name == "stereo.wav"))
    assert wave.ndim == 1 and wave.dtype == np.float32 and sr == 8000


def test_mp3_unsupported_message(lepton_home, tmp_path, monkeypatch):
    monkeypatch.setattr(audio_mod.sf, "available_formats", lambda: {"WAV": "", "FLAC": ""})
    files = {f"{c}/{i}.mp3": b"ID3fake" for c in ("a", "b") for i in range(3)}
    fails(write_files(tmp_path / "mp3s", files), "mp3, which is not supported by this libsndfile", "convert them to wav or flac")
    with pytest.raises(DataError, match="mp3 is not supported"):
        load_item("audio", tmp_path / "mp3s" / "a" / "0.mp3")


# ====================================================================== dedupe, ids, listing


def test_dedupe_same_content_same_id(lepton_home, tmp_path):
    d = write_files(tmp_path / "pets", image_files({"cat": 5, "dog": 5}))
    first = ingest(d)
    again = ingest(d, name="another name")
    assert again.reused and again.dataset.id == first.dataset.id and again.dataset.name == "pets"
    # the same files as a zip (wrapper folder and all) are the same content
    z = make_zip(tmp_path / "pets.zip", image_files({"cat": 5, "dog": 5}, prefix="pets/"))
    assert ingest(z).reused
    assert len(list((lepton_home / "datasets").iterdir())) == 1
    # other split options are another dataset
    other = ingest(d, seed=1)
    assert not other.reused and other.dataset.id != first.dataset.id
    assert list((lepton_home / "tmp").iterdir()) == []


def test_load_list_delete(lepton_home, tmp_path):
    a = ingest(make_text_csv(tmp_path / "a.csv")).dataset
    b = ingest(make_text_csv(tmp_path / "b.csv", per_class=5)).dataset
    assert load_dataset(a.id).id == a.id and load_dataset(a.id[:6]).id == a.id
    assert isinstance(load_dataset(b.id), Dataset)
    assert load_dataset(str(tmp_path / "a.csv")).id == a.id  # a path: ingested, reused
    assert [m["id"] for m in list_datasets()][:2] in ([b.id, a.id], [a.id, b.id])
    assert {m["id"] for m in list_datasets()} == {a.id, b.id}
    with pytest.raises(DataError, match="no dataset or file"):
        load_dataset("nope-not-here")
    delete_dataset(a.id)
    assert not (lepton_home / "datasets" / a.id).exists()
    assert [m["id"] for m in list_datasets()] == [b.id]
    with pytest.raises(DataError, match="no dataset"):
        delete_dataset(a.id)
    with pytest.raises(DataError, match="unknown split"):
        b.examples("holdout")
    assert len(b.examples("validation")) == b.sizes["val"]


def test_list_newest_first(lepton_home, tmp_path):
    a = ingest(make_text_csv(tmp_path / "a.csv")).dataset
    b = ingest(make_text_csv(tmp_path / "b.csv", per_class=6)).dataset
    for ds, t in ((a, "2020-01-01T00:00:00+00:00"), (b, "2024-01-01T00:00:00+00:00")):
        m = ds.manifest | {"created": t}
        (ds.root / "manifest.json").write_text(json.dumps(m))
    assert [m["id"] for m in list_datasets()] == [b.id, a.id]


def test_label_cleanup_and_data_warnings(lepton_home, tmp_path):
    nfd, nfc = "cafe\u0301", "caf\u00e9"
    p = tmp_path / "w.csv"
    rows = [f"text {i},{nfd if i % 2 else nfc + ' '}" for i in range(8)] + ["same,Tea", "same,tea", "dup,Tea", "dup,Tea"]
    rows += [f"more {i},Tea" for i in range(6)] + [f"more {i},tea" for i in range(6, 12)]
    p.write_text("text,label\n" + "\n".join(rows) + "\n")
    res = ingest(p)
    assert res.dataset.classes == ["Tea", nfc, "tea"]
    w = " | ".join(res.warnings)
    assert "classes `Tea`, `tea` differ only in upper/lower case" in w
    assert "1 example has identical content under different labels (`line 10 / line 11`)" in w


def test_duplicates_across_splits_warn(lepton_home, tmp_path):
    same = png_bytes(7)
    files = image_files({"cat": 3, "dog": 3}, prefix="train/") | {"test/cat/copy.png": same, "train/cat/orig.png": same}
    files |= {"test/dog/x.png": png_bytes(555)}
    res = ingest(write_files(tmp_path / "leaky", files))
    assert any("repeated in more than one split" in w and "copy.png" in w for w in res.warnings)


# ====================================================================== splitting


def test_stratified_split_deterministic_and_small_classes():
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 3 + ["d"] * 1
    s1 = stratified_split(labels, 0.1, 0.1, seed=0)
    assert s1 == stratified_split(labels, 0.1, 0.1, seed=0)
    assert s1 != stratified_split(labels, 0.1, 0.1, seed=1)
    assert s1.count("test") == 8 and s1.count("val") == 8
    for c in "abcd":  # every class keeps at least one training example
        assert any(s == "train" for s, l in zip(s1, labels) if l == c)
    assert sum(1 for s, l in zip(s1, labels) if l == "a" and s == "test") == 5
    assert stratified_split(["a", "b"], 0.1, 0.1, 0) == ["train", "train"]
    assert set(stratified_split(["a"] * 10 + ["b"] * 10, 0.0, 0.0, 0)) == {"train"}


def test_tiny_dataset_warns_about_empty_splits(lepton_home, tmp_path):
    p = tmp_path / "tiny.csv"
    p.write_text("text,label\na,x\nb,x\nc,y\nd,y\n")
    res = ingest(p)
    assert res.dataset.splits == ["train"]
    assert any("validation split is empty" in w for w in res.warnings)
    assert any("fewer than 5 examples" in w for w in res.warnings)


# ====================================================================== bad inputs: files


def test_corrupt_and_truncated_images(lepton_home, tmp_path):
    good = image_files({"cat": 3, "dog": 3})
    full = png_bytes(77, size=(32, 32), fmt="JPEG")
    bad = {"cat/broken.png": b"\x89PNG\r\n\x1a\n garbage", "dog/cut.jpg": full[: len(full) // 2]}
    msg = fails(write_files(tmp_path / "imgs", good | bad), "`imgs`:", "2 files could not be decoded as images",
                "`cat/broken.png`", "`dog/cut.jpg`", "re-export")
    assert str(tmp_path) not in msg
    assert_clean(lepton_home)


def test_corrupt_audio_and_zero_byte(lepton_home, tmp_path):
    whole = wav_bytes(9, seconds=0.2)
    files = audio_files({"yes": 3, "no": 3}) | {"yes/bad.wav": b"RIFF\x00\x00nonsense", "no/empty.flac": b"",
                                                 "no/cut.wav": whole[: len(whole) // 2], "yes/cut.flac": wav_bytes(8, fmt="FLAC")[:300]}
    fails(write_files(tmp_path / "aud", files), "3 files could not be decoded as audio files", "`yes/bad.wav`",
          "`no/cut.wav`", "`yes/cut.flac`",
          "1 file is empty (`no/empty.flac`): 0 bytes")


def test_unknown_extension(lepton_home, tmp_path):
    files = image_files({"cat": 3, "dog": 3}) | {"cat/notes.txt": "hi", "dog/x.docx": b"PK"}
    fails(write_files(tmp_path / "i", files), "2 files are not images", "`cat/notes.txt`", "`dog/x.docx`",
          "accepted: .bmp, .gif, .jpeg, .jpg, .png, .webp")


def test_few_bad_files_are_skipped_with_warning(lepton_home, tmp_path):
    files = image_files({"cat": 10, "dog": 10}) | {"cat/oops.png": b"not an image"}
    res = ingest(write_files(tmp_path / "i", files))
    assert sum(res.dataset.sizes.values()) == 20
    assert res.warnings == ["skipped 1 file that could not be decoded as an image: `cat/oops.png`"]
    assert res.dataset.manifest["skipped"] == [{"file": "cat/oops.png", "reason": "could not be decoded as an image"}]
    assert res.dataset.manifest["warnings"] == res.warnings


def test_one_clear_error_lists_everything(lepton_home, tmp_path):
    files = image_files({"cat": 3, "dog": 3}) | image_files({"bird": 1}) | {
        "cat/a.txt": "x", "dog/b.txt": "x", "cat/c.txt": "x"}
    files = {k: (png_bytes(i + 300) if k.startswith("bird") else v) for i, (k, v) in enumerate(files.items())}
    msg = fails(write_files(tmp_path / "photos", files),
                "`photos`: 3 files are not images (`cat/a.txt`, `cat/c.txt`, `dog/b.txt`)",
                "1 class has a single example (`bird`): add more or merge it.")
    assert msg.count("`photos`") == 1


def test_only_one_class(lepton_home, tmp_path):
    fails(write_files(tmp_path / "x", image_files({"cat": 5})), "only one class (`cat`)", "at least 2 classes", "add a folder for each class")
    p = tmp_path / "one.csv"
    p.write_text("text,label\n" + "a,z\n" * 5)
    fails(p, "only one class (`z`)", "check the label column")


def test_singleton_classes(lepton_home, tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("text,label\n" + "".join(f"t{i},big\n" for i in range(10)) + "u,rare\nv,odd\n")
    fails(p, "2 classes have a single example (`odd`, `rare`): add more or merge them")


def test_nested_and_loose_files(lepton_home, tmp_path):
    files = {f"{c}/{sub}/{i}.png": png_bytes(i + 10 * j) for j, (c, sub) in enumerate([("cat", "indoor"), ("dog", "park")]) for i in range(3)}
    fails(write_files(tmp_path / "deep", files | {"x.png": png_bytes(99)}),
          "files are nested deeper than `<label>/<file>`", "`cat/indoor/0.png`", "1 file is not inside a class folder (`x.png`)")


def test_mixed_split_and_class_folders(lepton_home, tmp_path):
    files = image_files({"cat": 3}, prefix="train/") | image_files({"dog": 3})
    fails(write_files(tmp_path / "m", files), "mixes split folders (`train/`) with other top folders (`dog/`)")


def test_class_missing_from_train(lepton_home, tmp_path):
    files = image_files({"cat": 3, "dog": 3}, prefix="train/")
    files |= {"test/fox/1.png": png_bytes(201), "test/fox/2.png": png_bytes(202)}
    fails(write_files(tmp_path / "s", files), "1 class is missing from the train split (`fox`)")


def test_empty_folder_and_junk_only_zip(lepton_home, tmp_path):
    (tmp_path / "empty").mkdir()
    fails(tmp_path / "empty", "`empty` is empty")
    z = make_zip(tmp_path / "junk.zip", {"__MACOSX/._a": b"x", ".DS_Store": b"x", "sub/Thumbs.db": b"x"})
    fails(z, "`junk.zip` is empty")
    assert_clean(lepton_home)


def test_not_a_zip_and_unsupported_files(lepton_home, tmp_path):
    (tmp_path / "fake.zip").write_text("hello")
    fails(tmp_path / "fake.zip", "`fake.zip` is not a valid zip archive", "create a .zip")
    (tmp_path / "sheet.xlsx").write_bytes(b"PK\x03\x04")
    fails(tmp_path / "sheet.xlsx", "`sheet.xlsx` is not a supported file", "CSV UTF-8")
    (tmp_path / "pic.png").write_bytes(png_bytes(1))
    fails(tmp_path / "pic.png", "a single image is not a dataset", "<label>/<file>")
    fails(tmp_path / "missing.csv", "`missing.csv` does not exist")
    write_files(tmp_path / "odd", {"a/1.xyz": "x", "b/2.xyz": "y"})
    fails(tmp_path / "odd", "has no supported files (found .xyz (2))")


def test_bad_options(lepton_home, tmp_path):
    p = make_text_csv(tmp_path / "a.csv")
    fails(p, "unknown modality 'video'", modality="video")
    fails(p, "unknown split 'holdout'", split="holdout")
    fails(p, "val_fraction + test_fraction must be below 1", val_fraction=0.5, test_fraction=0.5)
    fails(p, "`a.csv`: it is not an image (.csv)", modality="image")


# ====================================================================== bad inputs: text


def test_missing_columns_names_found_columns(lepton_home, tmp_path):
    p = make_text_csv(tmp_path / "d.csv", text_column="sentence", label_column="category")
    fails(p, "`d.csv` has no `text` or `label` column (columns found: `sentence`, `category`;", "text column")
    q = make_text_csv(tmp_path / "e.csv", label_column="category")
    fails(q, "`e.csv` has no `label` column (columns found: `text`, `category`)", "label column")
    j = tmp_path / "f.jsonl"
    j.write_text('{"body": "x", "label": 1}\n')
    fails(j, "`f.jsonl` has no `text` column (columns found: `body`, `label`)")


def test_empty_text_and_missing_label(lepton_home, tmp_path):
    p = tmp_path / "rows.csv"
    p.write_text("text,label\ngood one,a\n ,b\ngood two,\nthree,b\nfour,a\n")
    fails(p, "1 row has an empty text (`rows.csv` line 3)", "1 row has no label (`rows.csv` line 4)",
          "fill them in or remove those rows")


def test_few_bad_rows_are_skipped(lepton_home, tmp_path):
    p = tmp_path / "rows.csv"
    p.write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(30)) + "oops,\n")
    res = ingest(p)
    assert res.warnings == ["skipped 1 row that has no label: `rows.csv` line 32"]
    assert sum(res.dataset.sizes.values()) == 30


def test_not_utf8(lepton_home, tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("text,label\nfine,a\ncaf\xe9 au lait,b\n".encode("latin-1"))
    fails(p, "`latin.csv` is not UTF-8", "byte 0xe9 at line 3, column 4", "`é`", "re-save the file as UTF-8")
    q = tmp_path / "wide.csv"
    q.write_bytes("text,label\na,b\n".encode("utf-16"))
    fails(q, "`wide.csv` is saved as UTF-16", "re-save it as UTF-8")
    r = tmp_path / "nul.csv"
    r.write_bytes(b"text,label\na\x00,b\n")
    fails(r, "contains NUL bytes")


def test_bad_jsonl_lines_and_header_only(lepton_home, tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a", "label": "x"}\nnot json\n[1, 2]\n{"text": "b", "label": "y"}\n')
    fails(p, "2 rows are not valid JSON objects (`d.jsonl` lines 2, 3)")
    h = tmp_path / "h.csv"
    h.write_text("text,label\n")
    fails(h, "no examples found")
    e = tmp_path / "e.csv"
    e.write_text("")
    fails(e, "`e.csv` is empty")


def test_several_unnamed_tables(lepton_home, tmp_path):
    d = tmp_path / "many"
    make_text_csv((d.mkdir() or d) / "a.csv")
    make_text_csv(d / "b.csv")
    fails(d, "several tables (`a.csv`, `b.csv`)", "train.csv")


# ====================================================================== zip safety


def test_zip_slip_rejected(lepton_home, tmp_path):
    files = image_files({"cat": 3, "dog": 3})
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for k, v in files.items():
            zf.writestr(k, v)
        zf.writestr("../escape.png", png_bytes(5))
        zf.writestr("/etc/abs.png", png_bytes(6))
    fails(z, "`evil.zip` is rejected: 2 entries point outside the archive", "`../escape.png`", "`/etc/abs.png`")
    assert not (tmp_path / "escape.png").exists()
    assert_clean(lepton_home)


def test_zip_bomb_limits(lepton_home, tmp_path, monkeypatch):
    z = make_zip(tmp_path / "bomb.zip", {"a/big.png": b"\0" * 3_000_000, "b/big.png": b"\0" * 10})
    assert z.stat().st_size < 50_000
    monkeypatch.setattr(zipsafe, "MAX_TOTAL_BYTES", 1_000_000)
    fails(z, "would expand to 2.9 MB (the limit is 976.6 KB)", "zip bomb")
    monkeypatch.setattr(zipsafe, "MAX_TOTAL_BYTES", 2 * 1024**3)
    monkeypatch.setattr(zipsafe, "MAX_FILES", 5)
    many = make_zip(tmp_path / "many.zip", image_files({"a": 3, "b": 3}))
    fails(many, "holds 6 files (the limit is 5)")
    assert_clean(lepton_home)


def test_zip_header_that_lies_is_caught(lepton_home, tmp_path):
    """A central directory that under-states sizes must not get past the extraction guard."""
    z = make_zip(tmp_path / "liar.zip", {"a/1.png": b"A" * 100_000, "b/1.png": b"B" * 100_000})
    data = bytearray(z.read_bytes())
    cd = data.find(b"PK\x01\x02")
    while cd != -1:  # uncompressed size sits at offset 24 of each central directory header
        struct.pack_into("<I", data, cd + 24, 10)
        cd = data.find(b"PK\x01\x02", cd + 4)
    z.write_bytes(bytes(data))
    fails(z, "`liar.zip`")
    assert_clean(lepton_home)


def test_password_protected_zip(lepton_home, tmp_path):
    z = tmp_path / "locked.zip"
    make_zip(z, image_files({"a": 2, "b": 2}))
    data = bytearray(z.read_bytes())
    cd = data.find(b"PK\x01\x02")
    while cd != -1:  # general purpose flag bit 0 (encrypted) sits at offset 8 of each central header
        data[cd + 8] |= 0x1
        cd = data.find(b"PK\x01\x02", cd + 4)
    z.write_bytes(bytes(data))
    fails(z, "`locked.zip` is password-protected")


# ====================================================================== atomicity


def test_failure_while_writing_leaves_nothing(lepton_home, tmp_path, monkeypatch):
    d = write_files(tmp_path / "pets", image_files({"cat": 4, "dog": 4}))
    ing = importlib.import_module("lepton.data.ingest")  # `lepton.data.ingest` is also the function

    calls = {"n": 0}
    real = ing.shutil.copyfile

    def flaky(src, dst, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(28, "No space left on device")
        return real(src, dst, *a, **k)

    with monkeypatch.context() as m:  # not monkeypatch.undo(): that would also undo LEPTON_HOME
        m.setattr(ing.shutil, "copyfile", flaky)
        msg = fails(d, "`pets`: could not read or write data (No space left on device)")
    assert str(tmp_path) not in msg
    assert_clean(lepton_home)


def test_failure_at_rename_leaves_nothing(lepton_home, tmp_path, monkeypatch):
    z = make_zip(tmp_path / "pets.zip", image_files({"cat": 4, "dog": 4}))
    ing = importlib.import_module("lepton.data.ingest")  # `lepton.data.ingest` is also the function

    def boom(*a, **k):
        raise OSError(13, "Permission denied")

    with monkeypatch.context() as m:
        m.setattr(ing.os, "rename", boom)
        fails(z, "Permission denied")
    assert_clean(lepton_home)
    res = ingest(z)  # and a retry works
    assert not res.reused and res.dataset.root.parent == lepton_home / "datasets"


# ====================================================================== load_item


def test_load_item_image_inputs(tmp_path):
    from PIL import Image

    p = tmp_path / "x.png"
    p.write_bytes(png_bytes(3, size=(5, 4), mode="RGBA"))
    for x in (p, str(p), p.read_bytes(), Image.open(p), Image.new("L", (5, 4)),
              np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5), np.uint8), np.zeros((4, 5, 4), np.uint8),
              np.zeros((3, 4, 5), np.float32)):
        im = load_item("image", x)
        assert im.mode == "RGB" and im.size == (5, 4), type(x)
    with pytest.raises(DataError, match="`bad.png` could not be read as an image"):
        (tmp_path / "bad.png").write_bytes(b"nope")
        load_item("image", tmp_path / "bad.png")
    with pytest.raises(DataError):
        load_item("image", 42)


def test_load_item_audio_inputs_and_resample(tmp_path):
    p = tmp_path / "x.flac"
    p.write_bytes(wav_bytes(1, sr=8000, seconds=0.1, fmt="FLAC", channels=2))
    for x in (p, str(p), p.read_bytes()):
        wave, sr = load_item("audio", x)
        assert wave.shape == (800,) and wave.dtype == np.float32 and sr == 8000
    stereo_fc = np.ones((800, 2), np.float32) * [0.2, 0.4]
    w, sr = load_item("audio", (stereo_fc, 8000))
    assert w.shape == (800,) and np.allclose(w, 0.3) and sr == 8000
    w, _ = load_item("audio", (stereo_fc.T.copy(), 8000))  # channels-first (torch layout)
    assert w.shape == (800,)
    w, _ = load_item("audio", (np.full(10, 16384, np.int16), 8000))
    assert np.allclose(w, 0.5)
    from lepton.data.audio import resample

    up = resample(np.sin(np.arange(8000) / 10).astype(np.float32), 8000, 16000)
    assert up.shape == (16000,) and up.dtype == np.float32
    assert resample(up, 16000, 16000) is not None
    with pytest.raises(DataError, match="could not be read as audio"):
        load_item("audio", b"garbage")


def test_load_item_text_and_registry():
    assert load_item("text", "hello") == "hello" and load_item("text", "héllo".encode()) == "héllo"
    assert set(MODALITIES) == {"text", "image", "audio", "multimodal"}
    for name, mod in MODALITIES.items():
        # a modality recognises files by extension, or claims whole uploads (multimodal metadata)
        assert (mod.extensions or mod.claims.__func__ is not Modality.claims.__func__) and callable(mod.load) and mod.name == name
    with pytest.raises(Exception, match="valid names"):
        load_item("video", "x")


def test_progress_callback(lepton_home, tmp_path):
    seen = []
    ingest(write_files(tmp_path / "i", image_files({"cat": 3, "dog": 3})), progress=lambda f, m: seen.append(f))
    assert seen and seen[-1] == 1.0


# ====================================================================== demo datasets


@pytest.mark.parametrize(
    "name, modality, classes, total",
    [
        ("topics.csv", "text", ["food", "sports", "tech", "weather"], 400),
        ("shapes.zip", "image", ["circle", "square", "star", "triangle"], 240),
        ("spoken_words.zip", "audio", ["down", "go", "left", "no", "right", "stop", "up", "yes"], 200),
    ],
)
def test_demo_datasets_ingest_cleanly(lepton_home, name, modality, classes, total):
    res = ingest(DEMO / name)
    ds = res.dataset
    assert res.warnings == [] and ds.manifest["skipped"] == []
    assert ds.modality == modality and ds.classes == classes and len(ds) == total
    assert ds.splits == ["train", "val", "test"]
    assert ds.sizes["test"] == total // 10 and all(ds.counts["test"][c] > 0 for c in classes)
    item = ds.load(ds.examples("val")[0].x)
    if modality == "image":
        assert item.size == (64, 64) and item.mode == "RGB"
    elif modality == "audio":
        assert item[1] == 16000 and 0.2 < item[0].size / 16000 < 1.5


def test_demo_assets_are_small():
    total = sum(p.stat().st_size for p in DEMO.iterdir())
    assert total < 3.2 * 1024 * 1024
