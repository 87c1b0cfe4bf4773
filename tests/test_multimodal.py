"""Multimodal data and fusion (lepton/data/multimodal.py, lepton/fusion, lepton/backbones/multimodal.py,
lepton/adapters/branches.py): every fusion module x every task trains over tiny branches, reloads and answers what
the run reported, scores each modality alone, and predicts rows that lack a modality; ingest names every bad row."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lepton.config import RunConfig
from lepton.data import ingest, load_dataset
from lepton.errors import ConfigError, DataError, IncompatibleError
from lepton.fusion import FUSIONS, FusedHead, only
from lepton.predict import Predictor
from lepton.tasks import TASKS, list_tasks
from lepton.train import run
from tiny_data import write_multimodal

REPO = Path(__file__).resolve().parents[1]
TINY = "text=tiny-text,image=tiny-image,audio=tiny-audio"
MATRIX = [(f, t) for f in FUSIONS for t in list_tasks()]


def _rows(root: Path) -> list[dict]:
    with (root / "metadata.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _rewrite(root: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    with (root / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns or list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.mark.parametrize("fusion, task", MATRIX, ids=[f"{f}-{t}" for f, t in MATRIX])
def test_every_fusion_and_task_trains_reloads_and_scores_each_modality(fusion, task, home, tmp_path):
    data = write_multimodal(tmp_path / "mm", task)
    # fp32: the reloaded model (fp32) must score exactly what the run reported (bf16 on this CPU differs by 1e-3)
    result = run(RunConfig(data=str(data), task=task, backbone=TINY, fusion=fusion, epochs=3, batch_size=8,
                           keep_probe=False, precision="fp32"))
    kind = TASKS.get(task)
    m = result["metrics"]
    assert m["task"] == task and m["fusion"] == fusion and m["adapter"] == "linear-probe"
    assert m["backbone"] == "multimodal[audio=tiny-audio,image=tiny-image,text=tiny-text]"
    assert set(m["modalities"]) == {"text", "image", "audio"}
    assert all(np.isfinite(v[kind.primary]) for v in m["modalities"].values())
    run_dir = Path(result["run_dir"])
    report = json.loads((run_dir / "report.json").read_text())
    assert report["modalities"]["image"][kind.primary] == m["modalities"]["image"][kind.primary]

    # The reloaded model answers as the run scored its test split, rows with a missing modality included.
    pred = Predictor.load(run_dir)
    assert pred.modality == "multimodal" and pred.modalities == ["text", "image", "audio"]
    ds = load_dataset(report["dataset"])
    exs = ds.examples(report["split"])
    assert any(v is None for e in exs for v in e.x.values())
    outputs = pred.outputs([ds.load(e.x) for e in exs])
    assert outputs.shape == (len(exs), pred.task.width)
    assert np.isclose(pred.task.score([e.label for e in exs], outputs)[kind.primary], m[kind.primary], atol=1e-5)


def test_frozen_branches_use_the_feature_cache_and_match_live_features(home, tmp_path):
    data = write_multimodal(tmp_path / "mm", n=24)
    first = run(RunConfig(data=str(data), backbone=TINY, epochs=2, batch_size=8))
    logs: list[str] = []
    again = run(RunConfig(data=str(data), backbone=TINY, epochs=2, batch_size=8, fusion="gated"),
                lambda kind, **e: logs.append(e.get("message", "")))
    assert sum("(cache hit)" in line for line in logs) == 3  # train, val and test features: nothing recomputed
    assert first["metrics"]["adapter"] == again["metrics"]["adapter"] == "linear-probe"
    # live features of the reloaded backbone equal what the cache fed the head (zeros where a modality is missing)
    pred = Predictor.load(first["run_dir"])
    ds = load_dataset(json.loads((Path(first["run_dir"]) / "report.json").read_text())["dataset"])
    exs = ds.examples("train")[:6]
    with torch.no_grad():
        feats = pred.model.backbone.forward_features(**pred.model.backbone.preprocess([ds.load(e.x) for e in exs]))
    layout = pred.model.backbone.layout
    assert feats.shape == (6, sum(d for _, d in layout) + len(layout))
    present = feats[:, -len(layout):]
    for i, e in enumerate(exs):
        assert present[i].tolist() == [float(e.x[m] is not None) for m, _ in layout]


def test_fused_head_missing_embeddings_modality_dropout_and_only():
    layout = [("text", 4), ("image", 3)]
    torch.manual_seed(0)
    head = FusedHead(layout, "concat", 2)
    x = torch.randn(64, 4 + 3 + 2)
    x[:, -2:] = 1.0
    x[:8, -2] = 0.0  # text missing in 8 rows
    x[:8, :4] = 0.0
    head.eval()
    toks = head.tokens(x)
    assert toks.shape == (64, 2, 128)
    assert torch.allclose(toks[:8, 0], head.missing[0].expand(8, -1))  # missing rows take the learned embedding
    alone = only(x, layout, "image")
    assert (alone[:, :4] == 0).all() and (alone[:, -2] == 0).all() and (alone[:, -1] == 1).all()
    assert torch.equal(alone[:, 4:7], x[:, 4:7])
    # dropout in training hides some present modalities, features and presence alike, but never all of a row's
    torch.manual_seed(1)
    hidden = 0
    for _ in range(20):
        d = head.drop_modalities(x)
        present = d[:, -2:]
        assert (present.sum(1) >= 1).all()
        assert (d[:, :4][present[:, 0] == 0] == 0).all() and (d[:, 4:7][present[:, 1] == 0] == 0).all()
        hidden += int(((x[:, -2:] == 1) & (present == 0)).sum())
    assert hidden > 0


def test_a_fused_head_started_from_the_probe_is_the_probe_and_a_shipped_probe_loads_into_it():
    from lepton.heads import build_head

    layout = [("image", 6), ("audio", 5)]
    x = torch.randn(16, 13)
    x[:, -2:] = 1.0
    probe = build_head("probe", 13, 3).load_probe(np.random.rand(13), np.random.rand(13) + 0.5,
                                                   np.random.randn(3, 13), np.random.randn(3))
    for fusion in FUSIONS:
        head = FusedHead(layout, fusion, 3, from_probe=True)
        head.load_state_dict(probe.state_dict(), strict=False)  # what Predictor does with a shipped probe
        head.eval()
        assert torch.allclose(head(x), probe(x), atol=1e-6)
        # the probe's part stays as fitted: it is no parameter, so no optimiser moves it, and the state keeps it
        assert not any(n.startswith("linear.") for n, _ in head.named_parameters())
        assert torch.equal(head.state_dict()["linear.weight"], probe.state_dict()["linear.weight"])


@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_every_fusion_module_learns_and_is_deterministic_in_eval(fusion):
    """A few hundred steps on features where either branch alone gives the class: the fused head learns it."""
    layout = [("image", 6), ("audio", 5)]
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (256,), generator=g)
    a = torch.randn(256, 6, generator=g) + 2.0 * y[:, None]
    b = torch.randn(256, 5, generator=g) - 2.0 * y[:, None]
    x = torch.cat([a, b, torch.ones(256, 2)], 1)
    torch.manual_seed(0)
    head = FusedHead(layout, fusion, 2)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(x), y).backward()
        opt.step()
    head.eval()
    assert (head(x).argmax(1) == y).float().mean() > 0.9
    assert torch.equal(head(x), head(x))


def test_branches_adapter_trains_exactly_the_chosen_branch(home, tmp_path):
    from lepton.backbones import resolve_backbone
    from lepton.model import build_backbone, wrap

    data = write_multimodal(tmp_path / "mm", n=24)
    spec = resolve_backbone(TINY, "multimodal")
    assert set(spec.supports) == {"linear-probe", "branches"}
    adapter, model = wrap(build_backbone(spec, 64, None), spec, "branches", {"image": "full", "text": "lora"}, 2)
    assert not adapter.frozen
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("backbone.branches.image.") for n in trainable)
    assert {n for n in trainable if n.startswith("backbone.branches.text.")} and all(
        "lora_" in n for n in trainable if n.startswith("backbone.branches.text."))
    assert not any(n.startswith("backbone.branches.audio.") for n in trainable)
    assert any(n.startswith("head.") for n in trainable)
    result = run(RunConfig(data=str(data), backbone=TINY, adapter="branches", adapter_options={"image": "full"},
                           epochs=2, batch_size=8, keep_probe=False, precision="fp32"))
    m = result["metrics"]
    assert m["adapter"] == "branches" and m["kept"] == "fine-tuned" and m["steps"] > 0
    pred = Predictor.load(result["run_dir"])
    report = json.loads((Path(result["run_dir"]) / "report.json").read_text())
    ds = load_dataset(report["dataset"])
    exs = ds.examples("test")
    probs = pred.outputs([ds.load(e.x) for e in exs])
    assert np.isclose(pred.task.score([e.label for e in exs], probs)["macro_f1"], m["macro_f1"])


def test_a_branch_adapter_takes_its_own_options_named_after_its_branch(home, tmp_path):
    from lepton.adapters import ADAPTERS
    from lepton.backbones import resolve_backbone
    from lepton.model import build_backbone, wrap

    raw = {"text": "lora", "text.r": "4", "image": "full"}  # as --adapter-option text.r=4 gives it
    cfg = RunConfig.from_dict({"data": "x", "backbone": TINY, "adapter": "branches", "adapter_options": raw})
    assert cfg.adapter_options == {"text": "lora", "text.r": 4, "image": "full"}  # typed in the config too
    spec = resolve_backbone(TINY, "multimodal")
    adapter, model = wrap(build_backbone(spec, 64, None), spec, "branches", cfg.adapter_options, 2)
    lora, _ = adapter.parts["text"]
    assert lora.options.r == 4
    ranks = {p.shape[0] for n, p in model.named_parameters() if n.startswith("backbone.branches.text.") and "lora_A" in n}
    assert ranks == {4}
    # meta.json keeps the typed option, and reading it back gives the same branch options.
    saved = adapter.saved_options()
    assert saved["text.r"] == 4 and ADAPTERS.get("branches").parse(saved).branch_options == {"text": {"r": 4}}
    with pytest.raises(ConfigError, match=r"text\.\* \(options of the text branch's 'lora'\).*unknown field\(s\) rr"):
        RunConfig.from_dict({"data": "x", "adapter": "branches", "adapter_options": {"text": "lora", "text.rr": "4"}})
    with pytest.raises(ConfigError, match="'video' is not a branch; branch options are named text.OPTION"):
        RunConfig.from_dict({"data": "x", "adapter": "branches", "adapter_options": {"video.r": "4"}})


def test_branches_adapter_options_are_strict_and_checked_against_each_branch(home, tmp_path):
    from lepton.backbones import resolve_backbone
    from lepton.model import build_backbone, wrap

    with pytest.raises(ConfigError, match="image='lorra' is not an adapter a branch can take; use one of"):
        RunConfig.from_dict({"data": "x", "adapter": "branches", "adapter_options": {"image": "lorra"}})
    with pytest.raises(ConfigError, match="video"):
        RunConfig.from_dict({"data": "x", "adapter": "branches", "adapter_options": {"video": "lora"}})
    spec = resolve_backbone("image=tiny-image,audio=speech-embedding", "multimodal")
    with pytest.raises(IncompatibleError, match="speech-embedding.*'lora'.*linear-probe"):
        wrap(build_backbone(spec, 64, None), spec, "branches", {"audio": "lora"}, 2)
    with pytest.raises(IncompatibleError, match="does not support the 'full' adapter; adapters that can wrap it: "
                       "branches, linear-probe"):
        from lepton.model import check_supported

        check_supported(spec, "full")


def test_ingest_names_every_bad_row(home, tmp_path):
    root = write_multimodal(tmp_path / "mm", n=30, missing=0.0)
    rows = _rows(root)
    rows[0]["image_file_name"] = "images/nope.png"  # a file that is not there
    rows[1]["audio_file_name"] = rows[1]["image_file_name"]  # an image in the audio column
    rows[2].update(text="", image_file_name="", audio_file_name="")  # every modality missing
    rows[3]["image_file_name"] = "../outside.png"  # unsafe
    rows[4]["label"] = ""  # no label
    rows[5]["text"] = "fine"
    _rewrite(root, rows + [{**rows[6], "split": "nowhere"}], list(rows[0]) + ["split"])
    with pytest.raises(DataError) as e:
        ingest(root)
    msg = str(e.value)
    for part in ("names a file that is not in the upload, in `image_file_name` (`metadata.csv` line 2)",
                 "is not an audio file, in `audio_file_name` (`metadata.csv` line 3)",
                 "has every modality missing (`metadata.csv` line 4)",
                 "outside the upload (absolute, `..` or a drive), in `image_file_name` (`metadata.csv` line 5)",
                 "has no label (`metadata.csv` line 6)",
                 "has an unknown split (`metadata.csv` line 32)"):
        assert part in msg, (part, msg)


def test_ingest_refuses_unknown_columns_naming_the_understood_ones(home, tmp_path):
    root = write_multimodal(tmp_path / "mm", n=12)
    rows = _rows(root)
    _rewrite(root, [{**r, "caption": "x"} for r in rows])
    with pytest.raises(DataError, match="unknown columns `caption`; the columns understood are `text`, "
                       "`image_file_name`, `audio_file_name`, `label`, `split`"):
        ingest(root)
    _rewrite(root, rows)
    with pytest.raises(DataError, match="leave it as auto"):
        ingest(root, modality="image")


def test_a_zip_with_a_wrapper_folder_ingests_with_the_modalities_and_missing_counts(home, tmp_path):
    root = write_multimodal(tmp_path / "mm", modalities=("text", "image"), n=30, missing=0.3)
    archive = tmp_path / "mm.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                z.write(p, "wrapped/" + p.relative_to(root).as_posix())
    res = ingest(archive)
    ds = res.dataset
    assert ds.modality == "multimodal" and ds.modalities == ["text", "image"]
    assert any("rows lack a modality" in w for w in res.warnings)
    assert not any("not named" in w for w in res.warnings)
    stored = [e.x for s in ds.splits for e in ds.examples(s)]
    assert len(stored) == 30 and all(set(x) == {"text", "image"} for x in stored)
    assert all(x["image"] is None or x["image"].is_file() for x in stored)
    assert ingest(archive).reused  # the same content is the same dataset


def test_cli_predicts_one_row_a_batch_and_refuses_what_the_run_does_not_take(home, tmp_path):
    import os

    data = write_multimodal(tmp_path / "mm", modalities=("text", "image"), n=24)
    env = {**os.environ, "LEPTON_HOME": str(home)}

    def lepton(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lepton", *args], capture_output=True, text=True, timeout=240,
                              env=env, cwd=str(REPO))

    res = lepton("train", "--data", str(data), "--backbone", "text=tiny-text,image=tiny-image", "--epochs", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(out["metrics"]["modalities"]) == {"text", "image"}
    run_id = out["run_id"]
    image = next((data / "images").glob("*.png"))
    res = lepton("predict", run_id, "--text", "the film was great", "--image", str(image))
    assert res.returncode == 0, res.stderr
    answer = json.loads(res.stdout)
    assert answer["label"] in ("pos", "neg") and set(answer["without"]) == {"text", "image"}
    res = lepton("predict", run_id, "--text", "awful")
    assert res.returncode == 0 and "without" not in json.loads(res.stdout)
    res = lepton("predict", run_id, "--batch", str(data / "metadata.csv"), "--out", str(tmp_path / "p.csv"))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["rows"] == 24
    for args, message in (
            (("predict", run_id, str(image)), "is multimodal (text, image): give one row with --text/--image/--audio"),
            (("predict", run_id, "--audio", str(image)), "takes text, image, not audio"),
            (("predict", run_id, "--image", str(tmp_path / "none.png")), "`none.png` does not exist"),
            (("export", run_id, "--format", "onnx"), "is multimodal: export takes one modality for now"),
            (("serve", run_id, "--port", "0"), "is multimodal: lepton serve takes one modality for now"),
            (("tune", "--data", str(data), "--budget-minutes", "1"), "is multimodal: a study takes one modality")):
        res = lepton(*args)
        assert res.returncode != 0 and message in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    assert not list((home / "runs").glob("*/model/model.onnx"))


def test_a_warm_start_from_a_multimodal_run_trains_a_branch_and_predicts(home, tmp_path):
    data = write_multimodal(tmp_path / "mm", modalities=("text", "image"), n=24)
    source = run(RunConfig(data=str(data), backbone="text=tiny-text,image=tiny-image", epochs=2, batch_size=8))
    result = run(RunConfig(data=str(data), from_run=source["run_id"], adapter="branches",
                           adapter_options={"image": "full"}, epochs=2, batch_size=8))
    assert result["metrics"]["backbone"] == source["metrics"]["backbone"]
    pred = Predictor.load(result["run_dir"])
    image = next((data / "images").glob("*.png"))
    assert pred.predict(pred.row({"image": str(image)}))["label"] in ("pos", "neg")


@pytest.mark.integration
def test_the_offline_defaults_make_every_branch_of_a_real_multimodal_run(home, tmp_path):
    """No --backbone: MiniLM, EfficientNet-Lite0 and the speech encoder, real weights, frozen; the fused head learns."""
    data = write_multimodal(tmp_path / "mm", n=80)  # 8 test rows: one miss must not fail it
    m = run(RunConfig(data=str(data), epochs=20, batch_size=8))["metrics"]
    assert m["backbone"] == "multimodal[audio=speech-embedding,image=efficientnet-lite0,text=minilm-l6]"
    assert m["adapter"] == "linear-probe" and m["macro_f1"] >= 0.7
    assert set(m["modalities"]) == {"text", "image", "audio"}


def test_labels_of_mixed_kinds_are_named_unless_the_task_is_chosen(home, tmp_path):
    root = write_multimodal(tmp_path / "mm", n=30, missing=0.0)
    rows = _rows(root)
    for i in range(0, 30, 3):
        rows[i]["label"] = '["pos", "neg"]'
    _rewrite(root, rows)
    with pytest.raises(DataError, match=r"10 rows have labels of the other kind \(JSON lists among plain labels.*"
                       r"`metadata.csv` lines 2, 5, 8"):
        ingest(root)
    assert ingest(root, task="multi-label").dataset.task == "multi-label"
