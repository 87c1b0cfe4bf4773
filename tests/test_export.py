"""Export: every format on a real tiny run of every modality, its parity check, int8, the model card, merging."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from lepton.errors import ExportError
from lepton.export import EXPORTERS, export
from lepton.export import card as model_card
from lepton.export.base import Exporter

MODALITIES = ["text", "image", "audio"]


def _leftovers(folder):
    return [p.name for p in folder.parent.iterdir() if ".staging-" in p.name or ".old-" in p.name]


@pytest.mark.parametrize("fmt", list(EXPORTERS))
@pytest.mark.parametrize("modality", MODALITIES)
def test_every_format_exports_every_modality_with_parity(deploy_runs, in_deploy_home, tmp_path, modality, fmt):
    out = tmp_path / f"{modality}-{fmt}"
    result = export(deploy_runs[modality], fmt, out)
    assert set(result) >= {"run_id", "format", "path", "files", "size_mb", "parity"}
    assert result["format"] == fmt and result["path"] == str(out)
    assert result["parity"]["n"] > 0 and result["parity"]["max_abs_diff"] <= 1e-4
    assert result["parity"]["top1_agreement"] >= 0.995
    assert EXPORTERS.get(fmt).suffix in result["files"]
    for name in result["files"]:
        assert (out / name).is_file(), name
    assert result["size_mb"] > 0 and not _leftovers(out)
    meta = json.loads((out / "meta.json").read_text())
    doc = model_card.parse((out / "README.md").read_text())
    assert doc["pipeline_tag"] == f"{modality}-classification" and doc["base_model"] == meta["backbone"]
    assert doc["library_name"] == EXPORTERS.get(fmt).library
    scores = {m["type"]: m["value"] for m in doc["model-index"][0]["results"][0]["metrics"]}
    report = json.loads((deploy_runs[modality] / "report.json").read_text())
    assert scores["f1"] == round(report["macro_f1"], 4) and scores["accuracy"] == round(report["accuracy"], 4)
    body = (out / "README.md").read_text()
    for section in ("## Intended use", "## Limits", "## How to load it"):
        assert section in body


def test_the_safetensors_folder_is_a_model_predictor_loads(deploy_runs, in_deploy_home, tmp_path):
    from lepton.predict import Predictor

    out = tmp_path / "st"
    export(deploy_runs["text"], "safetensors", out)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["adapter"] == "full" and meta["merged_from"]["adapter"] == "lora"  # LoRA folded into the weights
    texts = ["the film was great, really great", "an awful meal, really awful", "the hotel"]
    run, folder = Predictor.load(deploy_runs["text"]), Predictor.load(out)
    for a, b in zip(run.predict_batch(texts), folder.predict_batch(texts)):
        assert a["label"] == b["label"]
        assert max(abs(a["probs"][c] - b["probs"][c]) for c in a["probs"]) < 1e-5


def test_onnx_int8_is_rescored_and_reported(deploy_runs, in_deploy_home, tmp_path):
    out = tmp_path / "q"
    result = export(deploy_runs["text"], "onnx", out, int8=True)
    q = result["int8"]
    assert set(q) >= {"size_mb", "test_macro_f1", "fp32_test_macro_f1"}
    assert (out / "model.int8.onnx").is_file() and q["size_mb"] < (out / "model.onnx").stat().st_size / 1e6
    assert q["fp32_test_macro_f1"] - q["test_macro_f1"] <= 0.01
    assert "model.int8.onnx" in (out / "README.md").read_text()


def test_int8_is_refused_where_it_does_not_pay(deploy_runs, in_deploy_home, tmp_path):
    from lepton.backbones import resolve_backbone
    from lepton.export import _check_int8
    from lepton.predict import Predictor

    with pytest.raises(ExportError, match="use --format onnx --int8"):
        export(deploy_runs["text"], "pt2", tmp_path / "x", int8=True)
    pred = Predictor.load(deploy_runs["image"])
    with pytest.raises(ExportError, match="convolutional model.*measured 3x slower"):
        _check_int8("onnx", resolve_backbone("efficientnet-lite0", "image"), pred)
    assert not (tmp_path / "x").exists()


def test_a_failed_parity_check_writes_nothing(deploy_runs, in_deploy_home, tmp_path, monkeypatch):
    onnx = EXPORTERS.get("onnx")
    real = onnx.runner

    def drifting(self, folder, net):  # an artefact whose probabilities are off by 1e-3
        run = real(self, folder, net)
        return lambda inputs: np.clip(run(inputs) + 1e-3, 0, 1)

    monkeypatch.setattr(onnx, "runner", drifting)
    out = tmp_path / "bad"
    with pytest.raises(ExportError, match=r"does not predict what the run does .*max \|Δp\| 1\.00e-03"):
        export(deploy_runs["text"], "onnx", out)
    assert not out.exists() and not _leftovers(out)


def test_a_previous_export_is_replaced_whole(deploy_runs, in_deploy_home, tmp_path):
    out = tmp_path / "again"
    export(deploy_runs["image"], "pt2", out)
    (out / "stale.txt").write_text("from before")
    export(deploy_runs["image"], "pt2", out)
    assert not (out / "stale.txt").exists() and (out / "model.pt2").is_file() and not _leftovers(out)


def test_unknown_format_and_unfinished_runs_get_clear_errors(deploy_runs, in_deploy_home, tmp_path):
    from lepton.errors import LeptonError

    with pytest.raises(LeptonError, match="unknown export format 'tflite'; valid names: onnx, pt2, safetensors"):
        export(deploy_runs["text"], "tflite")
    exported = tmp_path / "st"
    export(deploy_runs["text"], "safetensors", exported)
    with pytest.raises(ExportError, match="is an exported folder already"):
        export(exported, "onnx")


def _adapters_for(name):
    from lepton.adapters import ADAPTERS
    from lepton.backbones import resolve_backbone

    spec = resolve_backbone(name, "text")
    return [a for a, cls in ADAPTERS.items() if cls.applies(spec)]


@pytest.mark.parametrize("adapter", _adapters_for("tiny-text"))
def test_merging_keeps_every_adapters_predictions(adapter):
    """Each adapter with its trainable tensors moved off their (often identity) init, then merged as export does."""
    from lepton.backbones import resolve_backbone
    from lepton.model import build_backbone, wrap
    from lepton.transfer import merge_lora

    spec = resolve_backbone("tiny-text", "text")
    _, model = wrap(build_backbone(spec, 64, None), spec, adapter, {}, 3)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    model.eval()
    batch = model.backbone.preprocess(["the film was great", "an awful trip, really awful", "the"])
    with torch.no_grad():
        before = model(batch).softmax(-1)
        merge_lora(model.backbone)
        after = model(batch).softmax(-1)
    assert (before - after).abs().max().item() < 1e-4


def test_cli_export_prints_the_contract_as_its_last_line(deploy_runs, deploy_home, tmp_path):
    out = tmp_path / "cli"
    env = {**__import__("os").environ, "LEPTON_HOME": str(deploy_home)}
    proc = subprocess.run([sys.executable, "-m", "lepton", "export", str(deploy_runs["audio"]), "--format", "onnx",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["format"] == "onnx" and result["parity"]["n"] > 0 and (out / "model.onnx").is_file()
    bad = subprocess.run([sys.executable, "-m", "lepton", "export", str(deploy_runs["audio"]), "--format", "pt2", "--int8"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--int8 quantises the ONNX graph: use --format onnx --int8" in bad.stderr


def test_exporters_are_registered_with_their_contract():
    assert list(EXPORTERS) == ["onnx", "pt2", "safetensors"]
    for name, cls in EXPORTERS.items():
        assert issubclass(cls, Exporter) and cls.name == name and cls.suffix and cls.description and cls.library


@pytest.mark.integration
def test_the_onnx_speech_encoder_exports_as_its_graphs_plus_the_head(in_deploy_home, tmp_path):
    """Real weights: the wheel's two ONNX graphs ship beside model.onnx (the head), and the folder serves."""
    from tiny_data import write_audio_folder

    from lepton.commands.core import train_foreground
    from lepton.config import RunConfig
    from lepton.export.runtime import OnnxPredictor
    from lepton.predict import Predictor

    data = write_audio_folder(tmp_path / "tones")
    run = train_foreground(RunConfig(data=str(data), backbone="speech-embedding", adapter="linear-probe", epochs=3))
    out = tmp_path / "speech"
    result = export(run["run_dir"], "onnx", out)
    assert {"melspectrogram.onnx", "embedding_model.onnx", "model.onnx", "preprocessor.json"} <= set(result["files"])
    assert json.loads((out / "meta.json").read_text())["export"]["inputs"] == ["features"]
    wav = sorted(data.rglob("*.wav"))[:4]
    want = Predictor.load(run["run_dir"]).predict_batch(wav)
    got = OnnxPredictor.load(out).predict_batch(wav)
    assert max(abs(g["probs"][c] - w["probs"][c]) for g, w in zip(got, want) for c in w["probs"]) < 1e-4
    with pytest.raises(ExportError, match="only the linear head"):
        export(run["run_dir"], "onnx", tmp_path / "q", int8=True)
