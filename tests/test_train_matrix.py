"""The registry is the test matrix: every adapter x every tiny backbone trains, is killed after its first
epoch, resumes where it stopped, saves, loads and predicts what the run reported."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file

import torch

from lepton.adapters import get_adapter, list_adapters
from lepton.backbones import list_backbones
from lepton.config import RunConfig
from lepton.errors import IncompatibleError
from lepton.predict import Predictor
from lepton.train import run
from tiny_data import tiny_data_for

class Crash(Exception):
    """The worker dying mid-run."""


MATRIX = [(a, s) for a in list_adapters() for s in list_backbones(tiny=True)]


@pytest.mark.parametrize("adapter, spec", MATRIX, ids=[f"{a}-{s.name}" for a, s in MATRIX])
def test_train_save_load_predict(adapter, spec, home, tmp_path):
    data = tiny_data_for(spec.modality, tmp_path)
    cfg = RunConfig(data=str(data), backbone=spec.name, adapter=adapter, epochs=2, batch_size=8, log_every=1)
    if adapter not in spec.supports:
        with pytest.raises(IncompatibleError, match="adapters that can wrap it"):
            run(cfg)
        return
    run_dir = home / "runs" / "matrix"

    def killed_after_epoch_1(kind, **d):
        if kind == "checkpoint" and d["epoch"] == 1:
            raise Crash

    with pytest.raises(Crash):
        run(cfg, killed_after_epoch_1, run_id="matrix", run_dir=run_dir)
    ck = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    events = []
    result = run(cfg, lambda kind, **d: events.append((kind, d)), run_id="matrix", run_dir=run_dir, resume=True)

    assert result["status"] == "finished" and result["metrics"]["epochs_run"] == 2
    # The resumed run continues the same curve: the step counter, the validation history and the adapter's state.
    train_steps = [d["step"] for k, d in events if k == "metrics" and d["split"] == "train"]
    assert train_steps[0] == ck["state"]["step"] + 1
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["state"]["val_history"][:len(ck["state"]["val_history"])] == ck["state"]["val_history"]
    assert set(last["adapter"]) == set(ck["adapter"])
    kinds = {k for k, _ in events}
    assert {"metrics", "progress", "log", "checkpoint", "result"} <= kinds
    assert train_steps == sorted(train_steps)
    fractions = [d["fraction"] for k, d in events if k == "progress"]
    assert fractions[-1] == 1.0 and max(fractions[:-1]) < 1.0  # never 100 % before the end

    report = json.loads((run_dir / "report.json").read_text())
    assert len(report["confusion_matrix"]) == 2 and report["n"] > 0
    saved = load_file(run_dir / "model" / "model.safetensors")
    assert any(k.startswith("head.") for k in saved)
    if adapter == "lora":
        assert any("lora_" in k for k in saved)
    assert json.loads((run_dir / "model" / "meta.json").read_text())["adapter_options"] == \
        get_adapter(adapter).saved_options() or adapter == "partial"

    pred = Predictor.load(result["run_id"])
    from lepton.data import load_dataset

    ds = load_dataset(report["dataset"])
    ex = ds.examples("test")[0] if "test" in ds.splits else ds.examples("val")[0]
    out = pred.predict(ds.load(ex.x))
    assert out["label"] in ds.classes
    assert np.isclose(sum(out["probs"].values()), 1.0, atol=1e-4)
    # The reloaded model reproduces the run's own test predictions.
    probs = pred.predict_batch([ds.load(e.x) for e in ds.examples(report["split"])])
    acc = np.mean([p["label"] == ds.classes[e.label] for p, e in zip(probs, ds.examples(report["split"]))])
    assert abs(acc - report["accuracy"]) < 1e-6
