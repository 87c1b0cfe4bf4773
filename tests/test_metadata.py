"""Images and audio described by metadata.csv / metadata.jsonl (lepton/data/metadata.py): every task reads its
labels from the rows, every bad row is named by its line, and a run trains on what was stored."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from lepton.config import RunConfig
from lepton.data import ingest
from lepton.errors import DataError
from lepton.train import run


def _images(root: Path, n: int = 30) -> list[dict]:
    """Grey squares whose label is their grey level; files under img/, listed with a split column."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        v = 20 + 7 * i
        Image.new("RGB", (32, 32), (v, v, v)).save(root / "img" / f"{i}.png")
        rows.append({"file_name": f"img/{i}.png", "label": str(v), "split": "test" if i % 6 == 5 else ""})
    return rows


def _write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns or list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_image_regression_from_metadata_trains_and_keeps_the_given_splits(home, tmp_path):
    root = tmp_path / "greys"
    _write_csv(root / "metadata.csv", _images(root))
    Image.new("RGB", (8, 8)).save(root / "img" / "stray.png")
    res = ingest(root, task="regression")
    ds = res.dataset
    assert ds.task == "regression" and ds.modality == "image"
    assert ds.sizes["test"] == 5 and ds.sizes["train"] + ds.sizes["val"] == 25
    assert any("`img/stray.png`" in w and "left out" in w for w in res.warnings)
    m = run(RunConfig(data=ds.id, backbone="tiny-image", adapter="linear-probe", epochs=2))["metrics"]
    assert m["task"] == "regression" and np.isfinite(m["r2"])


def test_audio_multi_label_from_metadata_jsonl_list_labels(home, tmp_path):
    root, sr = tmp_path / "tones", 16000
    t = np.arange(sr // 4) / sr
    tones = {"low": 220.0, "high": 1760.0}
    root.mkdir()
    with (root / "metadata.jsonl").open("w") as f:
        for i in range(24):
            labels = [["low"], ["high"], ["low", "high"]][i % 3]
            wave = sum(0.3 * np.sin(2 * np.pi * tones[x] * t) for x in labels)
            sf.write(root / f"{i}.wav", wave.astype(np.float32), sr)
            f.write(json.dumps({"file_name": f"{i}.wav", "label": labels}) + "\n")
    archive = tmp_path / "tones.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(root.iterdir()):
            z.write(p, f"tones/{p.name}")
    ds = ingest(archive).dataset  # a JSON list is multi-label without being told
    assert ds.task == "multi-label" and ds.modality == "audio" and ds.classes == ["high", "low"]
    assert sorted({e.label for s in ds.splits for e in ds.examples(s)}) == [(0,), (0, 1), (1,)]


@pytest.mark.parametrize("row, reason", [
    ({"file_name": "img/nope.png", "label": "1"}, "names a file that is not in the upload"),
    ({"file_name": "../outside.png", "label": "1"}, "outside the upload"),
    ({"file_name": "/etc/passwd", "label": "1"}, "outside the upload"),
    ({"file_name": "", "label": "1"}, "has no file_name"),
    ({"file_name": "notes.txt", "label": "1"}, "is not an image"),
    ({"file_name": "img/0.png", "label": ""}, "has no label"),
    ({"file_name": "img/1.png", "label": "1", "split": "holdout"}, "has an unknown split"),
])
def test_every_bad_row_is_named_by_its_line(row, reason, home, tmp_path):
    root = tmp_path / "bad"
    rows = _images(root, n=6)
    (root / "notes.txt").write_text("not an image")
    _write_csv(root / "metadata.csv", rows + [{"split": "", **row}], ["file_name", "label", "split"])
    with pytest.raises(DataError) as e:  # 1 bad row of 7 is over the 10 % that may be skipped
        ingest(root, task="regression")
    assert reason in str(e.value) and "`metadata.csv` line 8" in str(e.value)
    assert not (home / "datasets").exists() or not any((home / "datasets").iterdir())


@pytest.mark.parametrize("columns, message", [
    (["file_name", "label", "caption"], "unknown columns `caption`; the columns understood are `file_name`, `label`"),
    (["file_name", "split"], "no `label` column"),
])
def test_columns_are_checked(columns, message, home, tmp_path):
    root = tmp_path / "cols"
    rows = _images(root, n=6)
    _write_csv(root / "metadata.csv", [{c: r.get(c, "x") for c in columns} for r in rows], columns)
    with pytest.raises(DataError, match=message):
        ingest(root)


def test_two_metadata_files_are_refused(home, tmp_path):
    root = tmp_path / "two"
    rows = _images(root, n=6)
    _write_csv(root / "metadata.csv", rows)
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="2 metadata files"):
        ingest(root)
