"""Tracking: every run's TensorBoard files (read back with TensorBoard's own reader), `lepton tensorboard`, and
`lepton export-tracking` into real MLflow stores (a file store and a SQLite database)."""

from __future__ import annotations

import json

import pytest
import torch

from job_fixtures import run_lepton
from lepton.config import RunConfig
from lepton.jobs.store import get_store
from lepton.tracking import SINKS, Sink
from lepton.tracking.tensorboard import FOLDER, RESUME_FILE
from lepton.train import run
from tiny_data import write_text_csv

EventAccumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator").EventAccumulator


def _events(path) -> EventAccumulator:
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _collect():
    events = []
    return events, lambda kind, **d: events.append((kind, d))


@pytest.fixture(scope="module")
def tracked_home(tmp_path_factory):
    """One LEPTON_HOME for the tests that only read a finished run (training it once saves ~8 s a test)."""
    home = tmp_path_factory.mktemp("tracked") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEPTON_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def finished(tracked_home, tmp_path_factory):
    """One tiny run through the store's emitter, as `lepton train` records it."""
    text_csv = write_text_csv(tmp_path_factory.mktemp("data") / "reviews.csv")
    cfg = RunConfig(data=str(text_csv), backbone="tiny-text", adapter="full", epochs=2, batch_size=8, log_every=1)
    store = get_store()
    rid = store.create_run(cfg, status="running")
    emit = store.emitter(rid)
    result = run(cfg, emit, run_id=rid, run_dir=tracked_home / "runs" / rid)
    emit.flush()
    store.set_status(rid, "finished", result=result)
    return store.get_run(rid)


def test_every_metric_reaches_tensorboard_with_hparams_and_confusion_matrix(finished):
    tb = _events(f"{finished['run_dir']}/{FOLDER}")
    rows = get_store().metrics(finished["id"])
    for split, name in {(r["split"], r["name"]) for r in rows}:
        want = [(r["step"], pytest.approx(r["value"], rel=1e-6)) for r in rows if (r["split"], r["name"]) == (split, name)]
        assert [(e.step, e.value) for e in tb.Scalars(f"{split}/{name}")] == want, (split, name)
    image = tb.Images("test/confusion_matrix")[0]
    assert image.width == image.height == 2 * 24  # two classes, one cell each way
    hp = _events(f"{finished['run_dir']}/{FOLDER}/hparams")
    assert hp.Scalars("final/macro_f1")[0].value == pytest.approx(finished["result"]["metrics"]["macro_f1"])


def test_a_resumed_run_overwrites_what_it_replays(home, text_csv):
    cfg = RunConfig(data=str(text_csv), backbone="tiny-text", adapter="full", epochs=2, batch_size=8, log_every=1)
    first = run(cfg)
    run_dir = home / "runs" / first["run_id"]
    # As if the first attempt died after epoch 1: the checkpoint and the sink's mark both say that step.
    ck = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    ck["state"].update(epoch=1, batch=0, step=ck["state"]["step"] // 2)
    torch.save(ck, run_dir / "checkpoints" / "last.pt")
    (run_dir / FOLDER / RESUME_FILE).write_text(str(ck["state"]["step"]))
    run(cfg, run_id=first["run_id"], run_dir=run_dir, resume=True)
    steps = [e.step for e in _events(run_dir / FOLDER).Scalars("train/loss")]
    assert steps == sorted(set(steps)) and steps[-1] == first["metrics"]["steps"]  # once each, to the end


def test_a_failing_sink_is_dropped_and_training_goes_on(home, text_csv, monkeypatch):
    class Broken(Sink):
        def __call__(self, kind, **data):
            if kind == "metrics":
                raise OSError("disk full")

    monkeypatch.setitem(SINKS._items, "broken", Broken)
    events, emit = _collect()
    result = run(RunConfig(data=str(text_csv), backbone="tiny-text", adapter="full", epochs=1, batch_size=8), emit)
    assert result["status"] == "finished"
    warnings = [d["message"] for k, d in events if k == "log" and d["level"] == "warning"]
    assert warnings == ["broken tracking stopped: OSError: disk full"]


def test_tensorboard_command_names_the_runs_folders(finished):
    out = run_lepton("tensorboard", finished["id"]).stdout.strip()
    assert out == f"tensorboard --logdir_spec {finished['id']}:{finished['run_dir']}/{FOLDER}"
    assert run_lepton("tensorboard").stdout.strip().endswith("/runs")
    bad = run_lepton("tensorboard", "no-such-run", check=False)
    assert bad.returncode == 2 and "no run 'no-such-run'" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("store_kind", ["file", "sqlite"])
def test_export_tracking_to_mlflow(finished, tmp_path, monkeypatch, store_kind):
    mlflow = pytest.importorskip("mlflow")
    uri = (tmp_path / "mlruns").as_uri() if store_kind == "file" else f"sqlite:///{tmp_path / 'mlflow.db'}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = run_lepton("export-tracking", finished["id"], "--mlflow", uri, "--experiment", "exp", cwd=elsewhere)
    sent = json.loads(res.stdout.splitlines()[-1])[0]
    assert not list(elsewhere.iterdir())  # nothing lands in the folder the command ran in (MLflow's ./mlruns)

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # reading the file store back, as a user would
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    got = client.get_run(sent["mlflow_run_id"])
    assert got.info.status == "FINISHED" and got.data.tags["lepton.run_id"] == finished["id"]
    assert got.data.params["adapter"] == "full" and got.data.params["epochs"] == "2"
    loss = [(m.step, m.value) for m in client.get_metric_history(got.info.run_id, "train/loss")]
    want = [(r["step"], r["value"]) for r in get_store().metrics(finished["id"], split="train", name="loss")]
    assert len(loss) > 2 and [s for s, _ in sorted(loss)] == [s for s, _ in sorted(want)]
    assert [v for _, v in sorted(loss)] == pytest.approx([v for _, v in sorted(want)])
    assert got.data.metrics["final/macro_f1"] == pytest.approx(finished["result"]["metrics"]["macro_f1"])
    assert {"report.json", "config.yaml", "model"} <= {a.path for a in client.list_artifacts(got.info.run_id)}
    assert "model/model.safetensors" in {a.path for a in client.list_artifacts(got.info.run_id, "model")}

    if store_kind == "sqlite":
        return  # skipping and replacing are the same code whatever the store: checked once, on the file store
    again = json.loads(run_lepton("export-tracking", finished["id"], "--mlflow", uri, "--experiment", "exp")
                       .stdout.splitlines()[-1])[0]
    assert again == {"run_id": finished["id"], "mlflow_run_id": sent["mlflow_run_id"], "skipped": True}
    replaced = json.loads(run_lepton("export-tracking", finished["id"], "--mlflow", uri, "--experiment", "exp",
                                     "--replace").stdout.splitlines()[-1])[0]
    assert replaced["mlflow_run_id"] != sent["mlflow_run_id"]


def test_export_tracking_refuses_what_it_cannot_send(finished, tmp_path):
    pytest.importorskip("mlflow")
    queued = get_store().create_run(RunConfig(data="some-dataset"))
    res = run_lepton("export-tracking", finished["id"], queued, "--mlflow", (tmp_path / "ml").as_uri(), check=False)
    get_store().delete_run(queued)
    assert res.returncode == 2 and f"run {queued} is queued: export it once it has ended" in res.stderr
    assert not (tmp_path / "ml").exists()  # checked before anything was sent
    res = run_lepton("export-tracking", finished["id"], "--mlflow", "http://127.0.0.1:9", check=False)
    assert res.returncode == 2 and "the export to MLflow at http://127.0.0.1:9 failed" in res.stderr
    assert "Traceback" not in res.stderr
