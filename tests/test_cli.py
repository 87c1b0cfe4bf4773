"""The CLI contract, through real subprocesses."""

import json
import os
import subprocess
import sys

import pytest


def lepton(*args, home, check=True, timeout=300):
    env = {**os.environ, "LEPTON_HOME": str(home)}
    p = subprocess.run([sys.executable, "-m", "lepton", *map(str, args)], capture_output=True, text=True,
                       env=env, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"lepton {args} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def last_json(stdout: str):
    return json.loads(stdout.strip().splitlines()[-1])


def test_train_predict_eval_and_reproduce(home, text_csv, tmp_path):
    p = lepton("train", "--data", text_csv, "--backbone", "tiny-text", "--adapter", "full", "--epochs", "2",
               "--batch-size", "8", "--name", "cli-run", home=home)
    result = last_json(p.stdout)
    assert set(result) >= {"run_id", "run_dir", "status", "metrics", "seconds"}
    assert result["status"] == "finished"
    assert {"accuracy", "macro_f1"} <= set(result["metrics"])
    assert "%" in p.stderr and "ETA" in p.stderr  # human progress on stderr

    pred = lepton("predict", result["run_id"][:15], "the meal was superb, really superb", "awful awful", home=home)
    lines = [json.loads(line) for line in pred.stdout.strip().splitlines()]
    assert [line["input"] for line in lines] == ["the meal was superb, really superb", "awful awful"]
    assert all(set(line["probs"]) == {"neg", "pos"} for line in lines)

    rep = last_json(lepton("eval", result["run_dir"], "--data", text_csv, home=home).stdout)
    assert rep["n"] == 48 and 0 <= rep["macro_f1"] <= 1

    # The saved config.yaml reproduces the run exactly.
    again = last_json(lepton("train", "--config", f"{result['run_dir']}/config.yaml", home=home).stdout)
    assert again["metrics"]["accuracy"] == result["metrics"]["accuracy"]

    runs = last_json(lepton("runs", "--json", home=home).stdout)
    assert {r["id"] for r in runs} >= {result["run_id"], again["run_id"]}
    assert all(r["status"] == "finished" for r in runs)


def test_image_run_and_file_prediction(home, image_dir):
    result = last_json(lepton("train", "--data", image_dir, "--backbone", "tiny-image", "--adapter", "linear-probe",
                              "--epochs", "3", home=home).stdout)
    img = next((image_dir / "red").glob("*.png"))
    out = json.loads(lepton("predict", result["run_id"], img, home=home).stdout.strip())
    assert out["label"] in {"red", "blue"}


def test_listing_commands(home):
    bbs = last_json(lepton("backbones", "--json", home=home).stdout)
    names = {b["name"] for b in bbs}
    assert {"minilm-l6", "efficientnet-lite0", "tiny-text", "tiny-image", "tiny-audio"} <= names
    assert {b["modality"] for b in bbs} == {"text", "image", "audio"}
    text_only = last_json(lepton("backbones", "--modality", "text", "--json", home=home).stdout)
    assert {b["modality"] for b in text_only} == {"text"}
    ads = last_json(lepton("adapters", "--json", home=home).stdout)
    from lepton.adapters import list_adapters

    assert [a["name"] for a in ads] == list_adapters()
    houlsby = next(a for a in ads if a["name"] == "houlsby")
    assert houlsby["options"] == [{"name": "bottleneck", "default": 64, "min": 1, "max": 4096,
                                   "help": "Width of each adapter's bottleneck (down-projection size)"}]
    assert not houlsby["frozen"] and "minilm-l6" in houlsby["backbones"] and "speech-embedding" not in houlsby["backbones"]
    assert "efficientnet-lite0" not in next(a for a in ads if a["name"] == "prefix")["backbones"]
    assert "minilm-l6" in lepton("backbones", home=home).stdout


@pytest.mark.parametrize("args, needle", [
    (["train", "--data", "/nonexistent/data.csv"], "no dataset"),
    (["train", "--data", "{csv}", "--backbone", "nope"], "valid names"),
    (["train", "--data", "{csv}", "--epochs", "zero"], "epochs='zero' should be int"),
    (["train", "--data", "{csv}", "--batch-size", "0"], "out of range"),
    (["train", "--data", "{csv}", "--config", "/nonexistent.yaml"], "config file not found"),
    (["train", "--data", "{csv}", "--adapter", "houlsby", "--adapter-option", "width=3"], "valid fields: bottleneck"),
    (["train", "--data", "{csv}", "--adapter", "prefix", "--backbone", "efficientnet-lite0"], "adapters that can wrap it"),
    (["predict", "no-such-run", "hello"], "no run 'no-such-run'"),
])
def test_bad_input_is_one_readable_line(home, text_csv, args, needle):
    p = lepton(*[a.replace("{csv}", str(text_csv)) for a in args], home=home, check=False)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert needle.lower() in p.stderr.lower(), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
