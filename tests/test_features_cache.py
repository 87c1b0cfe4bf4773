"""The frozen-feature cache: one entry per (backbone identity, dataset content, split, preprocessing),
reused only when all of them match, and always a whole file, even with two processes filling it at once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lepton.config import RunConfig
from lepton.train import run
from lepton.train.device import bf16_supported
from lepton.train.features import cache_key, cache_path, cached_features

ROOT = Path(__file__).resolve().parent.parent


def _feature_logs(cfg: RunConfig) -> dict[str, str]:
    """split -> "cache hit" | "computed", from the run's own log lines."""
    out = {}

    def emit(kind, **d):
        msg = d.get("message", "")
        if kind == "log" and " features: " in msg:
            out[msg.split(" features:")[0]] = "cache hit" if "cache hit" in msg else "computed"

    run(cfg, emit)
    return out


HIT = {"train": "cache hit", "val": "cache hit", "test": "cache hit"}
MISS = {"train": "computed", "val": "computed", "test": "computed"}


def test_key_depends_on_every_input_and_nothing_else():
    base = dict(backbone_id={"name": "b", "v": 1}, content_hash="abc", split="train",
                preprocessing={"max_length": 128, "bf16": True, "device": "cpu"})
    key = cache_key(**base)
    assert key == cache_key(**{**base, "backbone_id": {"v": 1, "name": "b"}})  # dict order does not matter
    variants = [
        {"backbone_id": {"name": "other", "v": 1}},
        {"backbone_id": {"name": "b", "v": 2}},  # a backbone bumps "v" when its preprocessing or pooling changes
        {"content_hash": "abd"},
        {"split": "val"},
        {"preprocessing": {"max_length": 64, "bf16": True, "device": "cpu"}},
        {"preprocessing": {"max_length": 128, "bf16": False, "device": "cpu"}},
        {"preprocessing": {"max_length": 128, "bf16": True, "device": "cuda"}},
    ]
    keys = {cache_key(**{**base, **v}) for v in variants}
    assert key not in keys and len(keys) == len(variants)


def test_same_backbone_data_and_preprocessing_hit(home, text_csv):
    cfg = RunConfig(data=str(text_csv), backbone="tiny-text", adapter="linear-probe", epochs=2)
    assert _feature_logs(cfg) == MISS
    # Head-only choices (lr, epochs, batch size, seed of the head) reuse the features.
    assert _feature_logs(RunConfig(**{**cfg.to_dict(), "lr": 0.05, "epochs": 3, "batch_size": 4})) == HIT


def test_changed_dataset_content_misses(home, tmp_path, text_csv):
    cfg = RunConfig(data=str(text_csv), backbone="tiny-text", adapter="linear-probe", epochs=1)
    _feature_logs(cfg)
    lines = text_csv.read_text().splitlines()
    edited = tmp_path / "edited.csv"
    edited.write_text("\n".join(lines[:1] + [lines[1].replace("the ", "a ", 1)] + lines[2:]) + "\n")
    assert _feature_logs(RunConfig(**{**cfg.to_dict(), "data": str(edited)})) == MISS
    # A different split seed assigns other examples to each split: other content, other entries.
    assert _feature_logs(RunConfig(**{**cfg.to_dict(), "seed": 1})) == MISS


def test_changed_preprocessing_misses(home, text_csv):
    cfg = RunConfig(data=str(text_csv), backbone="tiny-text", adapter="linear-probe", epochs=1)
    _feature_logs(cfg)
    assert _feature_logs(RunConfig(**{**cfg.to_dict(), "max_length": 8})) == MISS
    if bf16_supported(torch.device("cpu")):  # auto means bf16 here, so fp32 is another preprocessing
        assert _feature_logs(RunConfig(**{**cfg.to_dict(), "precision": "fp32"})) == MISS


def test_changed_backbone_identity_misses(home, tmp_path, text_csv):
    """A local model folder is keyed by its files: re-saving it (new weights) must not reuse old features."""
    from lepton.backbones import build_backbone

    folder = tmp_path / "my-bert"
    bb = build_backbone("tiny-text")
    bb.model.save_pretrained(folder)
    bb.tokenizer.save_pretrained(folder)
    cfg = RunConfig(data=str(text_csv), backbone=str(folder), adapter="linear-probe", epochs=1)
    assert _feature_logs(cfg) == MISS
    assert _feature_logs(cfg) == HIT
    with torch.no_grad():
        bb.model.embeddings.word_embeddings.weight.mul_(2.0)
    time.sleep(0.01)  # a distinct mtime even on coarse clocks
    bb.model.save_pretrained(folder)
    assert _feature_logs(cfg) == MISS
    # Another backbone on the same data never sees these entries either.
    assert _feature_logs(RunConfig(**{**cfg.to_dict(), "backbone": "tiny-text"})) == MISS


def test_hit_returns_what_was_computed_and_a_torn_file_is_recomputed(home):
    key = cache_key({"name": "unit"}, "h", "train", {})
    feats = torch.randn(5, 3)
    got, hit = cached_features(key, lambda: feats)
    assert not hit and torch.equal(got, feats)
    again, hit = cached_features(key, lambda: pytest.fail("a hit must not recompute"))
    assert hit and torch.equal(again, feats)

    path = cache_path(key)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a file cut short (a crash mid-copy)
    fixed, hit = cached_features(key, lambda: feats + 1)
    assert not hit and torch.equal(fixed, feats + 1)
    assert torch.equal(load_file(path)["features"], feats + 1)


FILLER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch
    from lepton.train.features import cached_features
    key, go, who = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    def compute():
        time.sleep(0.3)  # both processes are past the "is it cached?" check before either writes
        return torch.arange(2_000_000, dtype=torch.float32).reshape(1000, 2000) * 0.5
    Path(str(go) + f".ready{who}").touch()
    while not go.exists():
        time.sleep(0.005)
    feats, hit = cached_features(key, compute)
    print(f"{hit} {float(feats.sum()):.1f}", flush=True)
""")


def test_two_processes_filling_one_entry_leave_one_whole_file(home, tmp_path):
    key = cache_key({"name": "race"}, "h", "train", {})
    go = tmp_path / "go"
    env = dict(os.environ, LEPTON_HOME=str(home), PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    procs = [subprocess.Popen([sys.executable, "-c", FILLER, key, str(go), str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    deadline = time.time() + 120
    while not all(Path(f"{go}.ready{i}").exists() for i in range(2)):
        assert time.time() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    go.touch()  # release both at once
    path = cache_path(key)
    while any(p.poll() is None for p in procs):
        if path.exists():  # a reader never sees a half-written entry
            assert load_file(path)["features"].shape == (1000, 2000)
        time.sleep(0.005)
    outs = [p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    expected = float((torch.arange(2_000_000, dtype=torch.float32) * 0.5).sum())
    for out, _ in outs:
        _hit, total = out.split()
        assert abs(float(total) - expected) < 1e-3 * abs(expected)
    assert torch.equal(load_file(path)["features"], torch.arange(2_000_000, dtype=torch.float32).reshape(1000, 2000) * 0.5)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # one entry, no temp files left behind
