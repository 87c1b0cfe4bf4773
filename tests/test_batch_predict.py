"""lepton predict --batch: files, folders, zips and tables in; one CSV row per input; bad rows skipped, not fatal."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile

import pytest


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_jsonl_of_texts_with_a_bad_row(deploy_runs, deploy_home, tmp_path):
    src = tmp_path / "texts.jsonl"
    src.write_text('{"text": "the film was great, really great"}\n{"text": 5}\n{"text": "an awful meal, really awful"}\n')
    out = tmp_path / "preds.csv"
    env = {**__import__("os").environ, "LEPTON_HOME": str(deploy_home)}
    proc = subprocess.run([sys.executable, "-m", "lepton", "predict", str(deploy_runs["text"]), "--batch", str(src),
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 2 and summary["skipped"] == 1 and "row 2" in summary["skipped_inputs"][0]["error"]
    assert "skipped row 2" in proc.stderr and "100%" in proc.stderr  # the report and the progress bar
    rows = _rows(out)
    assert [r["input"] for r in rows] == ["the film was great, really great", "an awful meal, really awful"]
    assert list(rows[0]) == ["input", "label", "score", "neg", "pos"]
    for r in rows:
        assert abs(float(r["neg"]) + float(r["pos"]) - 1) < 1e-4 and float(r["score"]) == float(r[r["label"]])
    assert not list(tmp_path.glob(".preds.csv.*"))


@pytest.mark.parametrize("shape", ["folder", "zip", "metadata"])
def test_image_files_from_a_folder_a_zip_or_a_metadata_file(deploy_runs, in_deploy_home, tmp_path, shape):
    from PIL import Image

    from lepton.batch import predict_batch
    from lepton.predict import Predictor

    pred = Predictor.load(deploy_runs["image"])
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    for i, colour in enumerate([(220, 30, 30), (30, 30, 220)]):
        Image.new("RGB", (32, 32), colour).save(root / "sub" / f"{i}.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    src = root
    if shape == "zip":
        src = tmp_path / "imgs.zip"
        with zipfile.ZipFile(src, "w") as z:
            for p in sorted(root.rglob("*.png")):
                z.write(p, p.relative_to(root).as_posix())
    elif shape == "metadata":
        src = root / "list.csv"
        src.write_text("file\nsub/0.png\nsub/1.png\nbroken.png\nmissing.png\n")
    result = predict_batch(pred, src, tmp_path / "out.csv", progress=False)
    rows = _rows(tmp_path / "out.csv")
    assert result["rows"] == 2 == len(rows) and result["skipped"] == (2 if shape == "metadata" else 1)
    assert {r["input"] for r in rows} == {"sub/0.png", "sub/1.png"}
    assert rows[0]["label"] == pred.predict(root / "sub" / "0.png")["label"]


@pytest.mark.parametrize("content,words", [
    ('text\nfine\n"never closed\nmore\n', "probably never closed"),
    ("title,body\na,b\n", "name the texts' column `text`"),
    ("", "has columns (none)"),
])
def test_a_table_that_cannot_be_read_names_the_file_and_writes_nothing(deploy_runs, in_deploy_home, tmp_path, content, words):
    from lepton.batch import predict_batch
    from lepton.errors import DataError
    from lepton.predict import Predictor

    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text(content)
    with pytest.raises(DataError, match="in.csv") as e:
        predict_batch(Predictor.load(deploy_runs["text"]), src, out, progress=False)
    assert words in str(e.value) and not out.exists() and list(tmp_path.iterdir()) == [src]
