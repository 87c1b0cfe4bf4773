"""Untrusted model folders, hub snapshots and run folders never run code and fail with one line.

Every plant here writes a marker file if it ever runs: a pickle whose __reduce__ calls exec, and
Python modules named by an `auto_map`. The first tests prove the plants are live (the marker does
appear when they are loaded the unsafe way); every other test then asserts the marker never appears,
even with "y" piped to stdin for the prompt transformers shows when trust_remote_code is left unset.
The corpus in test_hostile_corpus.py holds every kind of broken folder; this file drives the
ways in: the CLI, the dashboard's Train page, the hub cache, Predictor.load, --from and resume.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hostile import (
    Plant,
    custom_code_folder,
    deadline,
    fifo,
    leftovers,
    pickle_only_folder,
    planted_pickle,
    tiny_text_folder,
)
from tiny_data import write_text_csv

from lepton.errors import LeptonError, ModelError, RunError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("LEPTON_HOME", str(h))
    monkeypatch.setenv("LEPTON_NO_WORKER", "1")
    return h


@pytest.fixture
def marker(tmp_path) -> Path:
    m = tmp_path / "PLANT_RAN"
    yield m
    assert not m.exists(), "a planted pickle or module ran"


def cli(*args: str, capsys) -> tuple[int, str]:
    """`lepton ARGS` in this process (fast: torch is imported once); returns (exit code, stderr)."""
    from lepton.cli import main

    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


def one_line(err: str, *fragments: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.lstrip().startswith("[")]  # progress bars aside
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


# ---------------------------------------------------------------- the plants are live
def test_the_plants_run_when_loaded_the_unsafe_way(tmp_path):
    """Controls: without these, a marker that never appears would prove nothing."""
    m1 = tmp_path / "by_pickle"
    pickle.loads(planted_pickle(m1))
    assert m1.read_text() == "pwned"

    from transformers import AutoConfig

    m2 = tmp_path / "by_code"
    folder = custom_code_folder(tmp_path / "evil", m2)
    AutoConfig.from_pretrained(folder, trust_remote_code=True)  # what Lepton must never do
    assert m2.read_text() == "pwned"


# ---------------------------------------------------------------- the CLI
@pytest.mark.parametrize("kind", ["custom-code", "custom-code-known-type", "custom-tokenizer", "pickle-only"])
def test_cli_train_refuses_with_yes_on_stdin(kind, tmp_path, home, marker):
    """A real `lepton train --backbone DIR` process with "y" on stdin: one line, exit 2, no run, no marker."""
    folder = {
        "custom-code": lambda: custom_code_folder(tmp_path / "model", marker),
        "custom-code-known-type": lambda: custom_code_folder(tmp_path / "model", marker, model_type="bert"),
        "custom-tokenizer": lambda: custom_code_folder(tmp_path / "model", marker, where="tokenizer_config.json"),
        "pickle-only": lambda: pickle_only_folder(tmp_path / "model", marker),
    }[kind]()
    data = write_text_csv(tmp_path / "reviews.csv")
    res = subprocess.run([sys.executable, "-m", "lepton", "train", "--backbone", str(folder), "--data", str(data)],
                         input="y\n" * 20, capture_output=True, text=True, timeout=240, cwd=str(REPO),
                         env={**os.environ, "LEPTON_HOME": str(home)})
    assert res.returncode == 2, res.stderr[-3000:]
    why = "has only a pickle checkpoint" if kind == "pickle-only" else "asks to run its own Python code"
    one_line(res.stderr, f"lepton train: model folder `{folder}`", why)
    assert res.stdout == ""
    assert leftovers(home) == []  # refused in preflight: no run row, no run folder, no staging


@pytest.mark.parametrize("kind, fragment", [
    ("no-config", "has no config.json"),
    ("not-json", "`config.json` is not valid JSON"),
    ("unknown-architecture", "model_type 'no-such-net', which transformers' AutoModel does not know"),
    ("no-weights", "has no weights"),
    ("corrupt-weights", "`model.safetensors` is not a valid safetensors file"),
    ("pickle-only", "has only a pickle checkpoint (pytorch_model.bin)"),
    ("custom-code", "asks to run its own Python code"),
    ("fifo-weights", "`model.safetensors` is a FIFO (named pipe)"),
])
def test_every_bad_folder_is_one_line_from_lepton_train(kind, fragment, tmp_path, home, marker, capsys):
    folder = tmp_path / "model"
    if kind == "custom-code":
        custom_code_folder(folder, marker)
    elif kind == "pickle-only":
        pickle_only_folder(folder, marker)
    else:
        tiny_text_folder(folder)
        cfg = folder / "config.json"
        {"no-config": lambda: cfg.unlink(),
         "not-json": lambda: cfg.write_text('{"model_type": "bert",'),
         "unknown-architecture": lambda: cfg.write_text(json.dumps({**json.loads(cfg.read_text()),
                                                                     "model_type": "no-such-net"})),
         "no-weights": lambda: (folder / "model.safetensors").unlink(),
         "corrupt-weights": lambda: (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{"),
         "fifo-weights": lambda: ((folder / "model.safetensors").unlink(), fifo(folder / "model.safetensors")),
         }[kind]()
    data = write_text_csv(tmp_path / "reviews.csv")
    with deadline(60, kind):
        code, err = cli("train", "--backbone", str(folder), "--data", str(data), capsys=capsys)
    assert code == 2
    one_line(err, f"lepton train: model folder `{folder}`", fragment)
    assert leftovers(home) == []


# ---------------------------------------------------------------- the dashboard
def test_train_page_shows_the_refusal_and_offers_no_start(tmp_path, home, marker, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from lepton.data import ingest

    monkeypatch.chdir(REPO)
    folder = custom_code_folder(tmp_path / "model", marker)
    ds = ingest(write_text_csv(tmp_path / "reviews.csv")).dataset
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=90)
    at.run()
    at.switch_page("pages/train.py")
    at.query_params.update(dataset=ds.id)
    at.run()
    at.selectbox(key="train_backbone_text").set_value("__custom__").run()
    at.text_input(key="train_custom_text").input(str(folder)).run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert any("asks to run its own Python code" in e and str(folder) in e for e in errors), errors
    with pytest.raises(KeyError):
        at.button(key="start")  # nothing to start until the backbone is valid


# ---------------------------------------------------------------- the hub cache
def cached_hub_model(cache: Path, repo_id: str, fill) -> Path:
    """A snapshot in a Hugging Face cache laid out as huggingface_hub writes it (refs/main -> snapshots/<sha>)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    sha = "0" * 40
    snap = repo / "snapshots" / sha
    fill(snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    return snap


def test_cached_hub_snapshot_is_checked_when_the_name_is_resolved(tmp_path, marker, monkeypatch):
    from huggingface_hub import constants

    from lepton.backbones import resolve_backbone

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached_hub_model(cache, "someone/evil", lambda snap: custom_code_folder(snap, marker))
    with pytest.raises(ModelError, match=r"^hub model `someone/evil` asks to run its own Python code"):
        resolve_backbone("someone/evil")
    cached_hub_model(cache, "someone/old", lambda snap: pickle_only_folder(snap, marker))
    with pytest.raises(ModelError, match=r"^hub model `someone/old` has only a pickle checkpoint"):
        resolve_backbone("someone/old")
    good = cached_hub_model(cache, "someone/fine", lambda snap: tiny_text_folder(snap))
    bb = resolve_backbone("someone/fine", "text").build()  # a good snapshot still loads, offline
    assert bb.name == "someone/fine" and bb.dim == 16 and good.is_dir()


def test_hub_repo_with_only_pickles_is_refused_before_any_download(monkeypatch):
    """fetch_hub on a reachable hub: a repository without safetensors is refused from its file list."""
    import huggingface_hub

    from lepton.backbones import hf

    def no_download(*a, **k):
        if k.get("local_files_only"):
            raise FileNotFoundError("not cached")
        raise AssertionError("nothing may be downloaded from a pickle-only repository")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hf, "_hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_download)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda repo: ["config.json", "pytorch_model.bin", "vocab.txt"])
    with pytest.raises(ModelError, match=r"hub model `someone/old` has no safetensors weights, only a pickle checkpoint "
                                         r"\(pytorch_model.bin\)"):
        hf.fetch_hub("someone/old")
    assert not any(p.endswith((".bin", ".py", ".pt", ".ckpt")) or p == "*" for p in hf.HUB_PATTERNS)


# ---------------------------------------------------------------- run folders
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One real finished tiny-text run; tests plant things in copies of its folder."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEPTON_HOME", str(root / "home"))
        from lepton.commands.core import train_foreground
        from lepton.config import RunConfig

        cfg = RunConfig(data=str(write_text_csv(root / "reviews.csv")), backbone="tiny-text", adapter="lora",
                        epochs=1, batch_size=8)
        result = train_foreground(cfg)
    return Path(result["run_dir"])


@pytest.fixture
def run_copy(finished_run, tmp_path, home) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(finished_run, dest)
    return dest


def test_a_clean_copy_of_the_run_loads(run_copy):
    from lepton.predict import Predictor

    out = Predictor.load(run_copy).predict("the film was great, really great")
    assert set(out["probs"]) == {"neg", "pos"}


@pytest.mark.parametrize("plant, fragment", [
    ("pickle-weights", "`model/model.safetensors` is not a valid safetensors file (it is really a Python pickle"),
    ("fifo-weights", "`model/model.safetensors` is a FIFO (named pipe), not a regular file"),
    ("no-weights", "has no saved model yet"),
    ("meta-not-json", "`model/meta.json` is damaged"),
    ("meta-fifo", "`model/meta.json` is a FIFO (named pipe)"),
    ("meta-missing-fields", "`model/meta.json` lacks classes, dim"),
])
def test_predictor_load_reads_only_safetensors_and_json(plant, fragment, run_copy, marker, capsys):
    from lepton.predict import Predictor

    weights, meta = run_copy / "model" / "model.safetensors", run_copy / "model" / "meta.json"
    {"pickle-weights": lambda: weights.write_bytes(planted_pickle(marker)),
     "fifo-weights": lambda: (weights.unlink(), fifo(weights)),
     "no-weights": lambda: weights.unlink(),
     "meta-not-json": lambda: meta.write_bytes(planted_pickle(marker)),
     "meta-fifo": lambda: (meta.unlink(), fifo(meta)),
     "meta-missing-fields": lambda: meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items()
                                                                if k not in ("classes", "dim")})),
     }[plant]()
    with deadline(60, plant):
        with pytest.raises(RunError) as ei:
            Predictor.load(run_copy)
        assert fragment in str(ei.value) and "\n" not in str(ei.value)
        code, err = cli("predict", str(run_copy), "some text", capsys=capsys)
    assert code == 2
    one_line(err, "lepton predict: run 'run'", fragment)


def test_a_run_whose_backbone_folder_asks_for_code_is_refused(run_copy, tmp_path, marker):
    from lepton.predict import Predictor

    meta = run_copy / "model" / "meta.json"
    evil = custom_code_folder(tmp_path / "evil-model", marker)
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "backbone": str(evil)}))
    with pytest.raises(ModelError, match="asks to run its own Python code"):
        Predictor.load(run_copy)


def test_warm_start_from_a_planted_run_is_refused_before_a_run_exists(run_copy, tmp_path, home, marker, capsys):
    (run_copy / "model" / "model.safetensors").write_bytes(planted_pickle(marker))
    data = write_text_csv(tmp_path / "more.csv", seed=3)
    code, err = cli("train", "--from", str(run_copy), "--data", str(data), capsys=capsys)
    assert code == 2
    one_line(err, "lepton train: run 'run': `model/model.safetensors` is not a valid safetensors file")
    assert leftovers(home) == []


def test_resume_never_unpickles_a_planted_checkpoint(run_copy, marker):
    """checkpoints/last.pt is torch.save's zip-of-pickles; the loop loads it with weights_only=True, which
    refuses anything but tensors and plain containers. The planted one must fail without running."""
    from lepton.config import RunConfig
    from lepton.train import run

    import torch

    (run_copy / "checkpoints").mkdir(exist_ok=True)
    torch.save({"model": {}, "evil": Plant(marker)}, run_copy / "checkpoints" / "last.pt")
    assert not marker.exists()
    config = RunConfig.load(run_copy / "config.yaml")
    with pytest.raises(Exception) as ei:
        run(config, run_id="run", run_dir=run_copy, resume=True)
    assert "weights_only" in str(ei.value) or isinstance(ei.value, LeptonError), ei.value

