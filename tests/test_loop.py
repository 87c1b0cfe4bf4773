"""Behaviour of the training run beyond the matrix: budget, early stop, resume, cache, test sets."""

import json

import pytest
import torch

from lepton.config import RunConfig
from lepton.errors import DataError, IncompatibleError, RegistryError
from lepton.train import run
from lepton.train.budget import BudgetError
from tiny_data import write_text_csv


def _collect():
    events = []
    return events, lambda kind, **d: events.append((kind, d))


def test_linear_probe_learns_and_caches_features(home, text_csv):
    cfg = RunConfig(data=str(text_csv), backbone="tiny-text", adapter="linear-probe", epochs=30, lr=1e-2)
    ev1, emit1 = _collect()
    first = run(cfg, emit1)
    assert any("computed" in d["message"] for k, d in ev1 if k == "log")
    ev2, emit2 = _collect()
    second = run(RunConfig(**{**cfg.to_dict(), "lr": 3e-3}), emit2)
    assert sum("cache hit" in d["message"] for k, d in ev2 if k == "log") == 3
    assert first["metrics"]["accuracy"] >= 0.75  # the tiny data is separable by one word
    assert second["metrics"]["steps"] == first["metrics"]["steps"]
    assert list((home / "cache" / "features").glob("*.safetensors"))


def test_cache_key_changes_with_preprocessing(home, text_csv):
    cfg = RunConfig(data=str(text_csv), backbone="tiny-text", adapter="linear-probe", epochs=1)
    run(cfg)
    ev, emit = _collect()
    run(RunConfig(**{**cfg.to_dict(), "max_length": 16}), emit)
    assert not any("cache hit" in d["message"] for k, d in ev if k == "log")


def test_time_budget_stops_cleanly_and_keeps_a_model(home, text_csv):
    cfg = RunConfig(data=str(text_csv), backbone="tiny-text", adapter="full", epochs=500, batch_size=4,
                    max_minutes=0.3)
    result = run(cfg)
    assert result["metrics"]["stopped"] == "time budget"
    assert 1 <= result["metrics"]["epochs_run"] < 500
    assert (home / "runs" / result["run_id"] / "model" / "model.safetensors").exists()


def test_budget_too_small_for_one_epoch_says_what_works(home, text_csv):
    cfg = RunConfig(data=str(text_csv), backbone="tiny-text", adapter="full", epochs=5, batch_size=4, max_minutes=0.01)
    with pytest.raises(BudgetError, match=r"too small for one epoch of full.*smallest budget that works is about [0-9.]+ minutes"):
        run(cfg)


def test_early_stopping(home, text_csv):
    cfg = RunConfig(data=str(text_csv), backbone="tiny-text", adapter="linear-probe", epochs=200, lr=0.05,
                    early_stopping=2)
    result = run(cfg)
    assert result["metrics"]["stopped"].startswith("early stopping")
    assert result["metrics"]["epochs_run"] < 200


def test_resume_continues_the_step_counter(home, text_csv):
    cfg = RunConfig(data=str(text_csv), backbone="tiny-text", adapter="full", epochs=2, batch_size=8)
    first = run(cfg)
    run_dir = home / "runs" / first["run_id"]
    ck = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ck["state"]["epoch"] == 2
    # Pretend the run was killed after its first epoch: rewind the checkpoint, then resume with more epochs.
    ck["state"].update(epoch=1, batch=0, step=ck["state"]["step"] // 2)
    torch.save(ck, run_dir / "checkpoints" / "last.pt")
    ev, emit = _collect()
    again = run(RunConfig(**{**cfg.to_dict(), "epochs": 3}), emit, run_id=first["run_id"], run_dir=run_dir, resume=True)
    steps = [d["step"] for k, d in ev if k == "metrics" and d["split"] == "train"]
    assert min(steps) > ck["state"]["step"]
    assert again["metrics"]["epochs_run"] == 3


def test_separate_test_data_with_fewer_labels(home, tmp_path, text_csv):
    test_csv = tmp_path / "only_pos.csv"
    test_csv.write_text('text,label\n"the film was great, really great",pos\n"the trip was superb, really superb",pos\n')
    result = run(RunConfig(data=str(text_csv), test_data=str(test_csv), backbone="tiny-text", adapter="linear-probe",
                           epochs=20, lr=1e-2))
    report = json.loads((home / "runs" / result["run_id"] / "report.json").read_text())
    assert report["n"] == 2 and report["per_class"]["pos"]["support"] == 2


def test_test_data_with_unknown_labels_is_rejected(home, tmp_path, text_csv):
    test_csv = tmp_path / "other.csv"
    test_csv.write_text("text,label\nhello there,greeting\nbye now,farewell\n")
    with pytest.raises(DataError, match="labels the training data lacks: farewell, greeting"):
        run(RunConfig(data=str(text_csv), test_data=str(test_csv), backbone="tiny-text", adapter="linear-probe"))


def test_wrong_modality_backbone(home, text_csv):
    with pytest.raises(IncompatibleError, match="backbone 'tiny-image' is for image, but the data is text"):
        run(RunConfig(data=str(text_csv), backbone="tiny-image"))


def test_unknown_adapter_lists_valid_names(home, text_csv):
    with pytest.raises(RegistryError, match="valid names: adalora, bitfit, .*houlsby, .*lora, lp-ft"):
        run(RunConfig(data=str(text_csv), backbone="tiny-text", adapter="qlora"))


def test_same_seed_same_result(home, tmp_path):
    data = write_text_csv(tmp_path / "d.csv", n=32)
    cfg = RunConfig(data=str(data), backbone="tiny-text", adapter="full", epochs=1, batch_size=8, precision="fp32")
    a, b = run(cfg), run(cfg)
    assert a["metrics"]["accuracy"] == b["metrics"]["accuracy"]
    wa = json.loads((home / "runs" / a["run_id"] / "report.json").read_text())["confusion_matrix"]
    wb = json.loads((home / "runs" / b["run_id"] / "report.json").read_text())["confusion_matrix"]
    assert wa == wb


def test_run_ids_do_not_repeat_after_a_run_seeds_random():
    """Every run seeds `random`; ids drawn from it repeated within a second (two runs shared one folder)."""
    import random

    from lepton.paths import new_run_id

    random.seed(0)
    first = new_run_id()
    random.seed(0)
    assert new_run_id() != first
