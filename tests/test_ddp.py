"""--devices N: DistributedDataParallel on the CPU (gloo), real processes, against one process.

The backbone is a tiny BERT saved as a local folder with dropout off: dropout draws different masks when a
batch is split across ranks, and the claim under test is exact (the same data, seed and global batch give
the same losses and weights as one process, to float rounding, stated below as TOLERANCE).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch
from safetensors.torch import load_file

from job_fixtures import REPO, run_lepton, subprocess_env, wait_for, write_job_csv
from lepton.config import RunConfig
from lepton.errors import ConfigError
from lepton.strategy.base import Controller, Decision
from lepton.train import run

TOLERANCE = 1e-5  # measured: per-step train losses differ by at most 9e-8 between 1 and 2 processes (float sums)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from transformers import BertModel

    from lepton.backbones import resolve_backbone
    from lepton.model import build_backbone

    home = tmp_path_factory.mktemp("ddp-home")
    old = os.environ.get("LEPTON_HOME")
    os.environ["LEPTON_HOME"] = str(home)
    tiny = build_backbone(resolve_backbone("tiny-text", "text"), 128, None)
    cfg = tiny.model.config
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
    torch.manual_seed(0)
    folder = home / "bert-no-dropout"
    BertModel(cfg, add_pooling_layer=False).save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    data = write_job_csv(home / "tiny.csv", n=60)
    yield home, folder, data
    if old is None:
        os.environ.pop("LEPTON_HOME", None)
    else:
        os.environ["LEPTON_HOME"] = old


def config(setup, **kw) -> RunConfig:
    _, folder, data = setup
    # batch 7: the ranks' shards differ in size (4 and 3), which the loss share must weigh. fp32: bf16 autocast (on
    # where the CPU has AVX512-BF16) rounds a split batch differently, 1.5e-3 apart after 21 steps (measured).
    fields = dict(data=str(data), backbone=str(folder), adapter="full", epochs=3, batch_size=7, lr=1e-3,
                  companion=False, keep_probe=False, log_every=1, precision="fp32")
    return RunConfig(**{**fields, **kw})


def train(setup, devices: str, controller: Controller | None = None, **kw):
    losses: dict[tuple[str, int], float] = {}

    def emit(kind, **data):
        if kind == "metrics" and data["split"] in ("train", "val"):
            losses[data["split"], data["step"]] = data["values"]["loss"]

    res = run(config(setup, devices=devices), emit, controller=controller, **kw)
    return res, losses


class StopAfterFirstEpoch(Controller):
    name = "stop-after-1"

    def decide(self, report):
        return Decision(stop=report.epoch >= 1, why="test: stop after epoch 1")


@pytest.fixture(scope="module")
def single(setup):
    return train(setup, "1")


def weights(res) -> dict[str, torch.Tensor]:
    return load_file(f"{res['run_dir']}/model/model.safetensors")


def assert_same(a, b):
    (res_a, losses_a), (res_b, losses_b) = a, b
    assert losses_a.keys() == losses_b.keys() and len(losses_a) > 20
    worst = max(abs(losses_a[k] - losses_b[k]) for k in losses_a)
    assert worst < TOLERANCE, worst
    wa, wb = weights(res_a), weights(res_b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=TOLERANCE), k


def test_two_gloo_processes_train_exactly_like_one(setup, single):
    home = setup[0]
    two = train(setup, "2")
    assert_same(single, two)
    assert two[0]["metrics"]["steps"] == single[0]["metrics"]["steps"] == 3 * 7  # 48 train rows: 7 global batches
    assert not list((home / "tmp").glob("ddp-*")), "the other rank's scratch folder is left behind"


def test_resume_on_another_device_count_continues_the_same_run(setup, single):
    """Two processes train one epoch (checkpoint by rank 0), then one process resumes it to the end."""
    first, _ = train(setup, "2", controller=StopAfterFirstEpoch())
    assert first["metrics"]["epochs_run"] == 1
    resumed = train(setup, "1", run_id=first["run_id"], run_dir=first["run_dir"], resume=True)
    assert resumed[0]["metrics"]["epochs_run"] == 3
    later = {k: v for k, v in single[1].items() if k[1] > 7}  # the steps after the first epoch
    worst = max(abs(later[k] - resumed[1][k]) for k in later)
    assert worst < TOLERANCE, worst
    for k, w in weights(single[0]).items():
        assert torch.allclose(w, weights(resumed[0])[k], atol=TOLERANCE), k


def test_bad_devices_are_one_clear_line(setup):
    _, _, data = setup
    bad = run_lepton("train", "--data", str(data), "--devices", "0", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "devices='0' should be a number of processes from 1 to 64, or auto (every visible GPU)" in bad.stderr
    for value in ("two", "-1", "65"):
        with pytest.raises(ConfigError, match="devices="):
            RunConfig.from_dict({"data": "x", "devices": value})


def test_a_frozen_adapter_trains_in_one_process(setup):
    logs = []
    res = run(config(setup, devices="2", adapter="linear-probe", epochs=None),
              lambda kind, **d: logs.append(d.get("message", "")))
    assert res["status"] == "finished"
    assert any("trains a head on cached features, which one process does fastest" in m for m in logs)


def test_cli_lora_on_two_processes_and_killing_rank_0_takes_the_other_with_it(setup, tmp_path):
    """`lepton train --devices 2` as a user types it, LoRA: it trains steps on both ranks; then rank 0 is killed."""
    _, folder, data = setup
    err = tmp_path / "stderr.txt"
    with err.open("w") as f:
        p = subprocess.Popen([sys.executable, "-m", "lepton", "train", "--data", str(data), "--backbone", str(folder),
                              "--adapter", "lora", "--epochs", "1000", "--devices", "2", "--no-companion"],
                             stdout=subprocess.DEVNULL, stderr=f, env=subprocess_env(), cwd=str(REPO))
    try:
        wait_for(lambda: "step 4" in err.read_text(), timeout=120, what="4 training steps on two processes")
        assert "devices=2: started 1 more training process (gloo)" in err.read_text()
        helpers = [c for c in psutil.Process(p.pid).children() if "lepton.train.parallel" in " ".join(c.cmdline())]
        assert len(helpers) == 1
        p.send_signal(signal.SIGKILL)
        p.wait()
        gone, alive = psutil.wait_procs(helpers, timeout=15)
        assert not alive, "a rank outlived rank 0"
        assert not list((setup[0] / "tmp").glob("ddp-*")), "the killed run's scratch folder is left behind"
    finally:
        if p.poll() is None:
            p.kill()
