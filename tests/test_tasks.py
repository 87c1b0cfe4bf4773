"""Tasks (lepton/tasks): every task x every tiny backbone trains, saves, reloads and predicts what the run
reported; ingest reads each task's labels and names every bad row; the task units against scikit-learn."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lepton.backbones import list_backbones
from lepton.config import RunConfig
from lepton.data import ingest, load_dataset
from lepton.errors import ConfigError, DataError, IncompatibleError, LeptonError
from lepton.predict import Predictor
from lepton.tasks import TASKS, list_tasks, task_of
from lepton.train import run
from tiny_data import task_data_for, write_multilabel_jsonl, write_regression_csv

REPO = Path(__file__).resolve().parents[1]
MATRIX = [(t, s) for t in list_tasks() for s in list_backbones(tiny=True)]


@pytest.mark.parametrize("task, spec", MATRIX, ids=[f"{t}-{s.name}" for t, s in MATRIX])
def test_every_task_trains_saves_reloads_and_predicts(task, spec, home, tmp_path):
    data = task_data_for(task, spec.modality, tmp_path)
    cfg = RunConfig(data=str(data), task=task, backbone=spec.name, adapter="full", epochs=2, batch_size=8,
                    companion=False)
    result = run(cfg)
    kind = TASKS.get(task)
    m = result["metrics"]
    assert m["task"] == task and m["primary"] == kind.primary
    assert set(kind.headline) <= set(m) and all(np.isfinite(m[k]) for k in kind.headline)
    run_dir = Path(result["run_dir"])
    report = json.loads((run_dir / "report.json").read_text())
    assert report["task"] == task and report[kind.primary] == m[kind.primary]
    assert report["summary"]["best_val_score"] == m["best_val_score"]

    # The reloaded model answers as the run scored its test split (predictions.csv holds what it predicted).
    pred = Predictor.load(run_dir)
    assert pred.task.name == task
    ds = load_dataset(report["dataset"])
    exs = ds.examples(report["split"])
    outputs = pred.outputs([ds.load(e.x) for e in exs])
    assert outputs.shape == (len(exs), pred.task.width)
    with (run_dir / "predictions.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["ref"] for r in rows] == [e.ref for e in exs]
    mine = [pred.task.csv_row(e.label, o)[1] for e, o in zip(exs, outputs)]
    if task == "regression":  # bf16 in the run, fp32 here: the values agree to a small share of the spread
        spread = pred.task.state["std"]
        assert np.allclose([float(x) for x in mine], [float(r["pred"]) for r in rows], atol=0.05 * spread)
    else:
        assert np.mean([a == r["pred"] for a, r in zip(mine, rows)]) >= 0.9
    answer = pred.predict(exs[0].x if spec.modality == "text" else exs[0].x)
    assert set(answer) == set(pred.task.answer(outputs[0])) | {"latency_ms"}


@pytest.mark.parametrize("task", [t for t in list_tasks() if t != "single-label"])
def test_frozen_head_trains_on_cached_features_for_every_task(task, home, tmp_path):
    result = run(RunConfig(data=str(task_data_for(task, "text", tmp_path)), task=task, backbone="tiny-text",
                           adapter="linear-probe", epochs=3, batch_size=8))
    assert result["metrics"]["task"] == task and result["metrics"]["epochs_run"] == 3


def test_the_probe_learns_each_task_on_separable_features(home, tmp_path):
    """The linear probe (every run's bar) against the truth on features that determine the target."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 8)).astype(np.float32)
    w = rng.standard_normal((8, 3))
    tr, va = slice(0, 300), slice(300, 400)
    reg = task_of("regression", [])
    y_reg = list(x @ w[:, 0] * 3 + 10)
    reg.fit(y_reg[tr])
    assert reg.fit_probe(x[tr], y_reg[tr], x[va], y_reg[va]).val["r2"] > 0.99
    ml = task_of("multi-label", ["a", "b", "c"])
    hot = x @ w > 0
    y_ml = [tuple(np.flatnonzero(h)) for h in hot]
    probe = ml.fit_probe(x[tr], y_ml[tr], x[va], y_ml[va])
    assert probe.val["micro_f1"] > 0.9
    assert probe.outputs(x[:5]).shape == (5, 3) and ((probe.outputs(x) >= 0) & (probe.outputs(x) <= 1)).all()


def test_regression_targets_train_standardised_and_answer_in_original_units():
    task = task_of("regression", [])
    y = [100.0, 200.0, 300.0]
    task.fit(y)
    t = task.tensor(y)
    assert t.shape == (3, 1) and abs(float(t.mean())) < 1e-6 and abs(float(t.std(unbiased=False)) - 1) < 1e-5
    assert np.allclose(task.decode(t).numpy()[:, 0], y)
    assert task_of("regression", [], task.state).answer(np.array([250.0])) == {"value": 250.0}
    s = task.score(y, np.array([[100.0], [200.0], [330.0]]))
    from sklearn.metrics import mean_absolute_error, r2_score

    assert s["r2"] == pytest.approx(r2_score(y, [100, 200, 330])) and s["mae"] == pytest.approx(mean_absolute_error(y, [100, 200, 330]))


def test_multi_label_thresholds_are_tuned_per_label_on_validation_and_kept():
    task = task_of("multi-label", ["rare", "common"])
    y = [(0, 1)] * 5 + [(1,)] * 15  # "rare" scores 0.3 when present, 0.1 when not: 0.5 never fires
    out = np.array([[0.3, 0.9]] * 5 + [[0.1, 0.8]] * 15)
    assert task.score(y, out)["macro_f1"] == pytest.approx(0.5)
    task.tune(y, out)
    assert 0.1 < task.state["thresholds"][0] <= 0.3
    assert task.score(y, out)["macro_f1"] == pytest.approx(1.0)
    again = task_of("multi-label", ["rare", "common"], task.state)
    assert again.answer(np.array([0.3, 0.2]))["labels"] == ["rare"]
    from sklearn.metrics import f1_score

    rep = task.report(y, out, [str(i) for i in range(20)])
    hot = np.array([[int(0 in t), int(1 in t)] for t in y])
    assert rep["micro_f1"] == pytest.approx(f1_score(hot, out >= task.state["thresholds"], average="micro"))
    assert set(rep["threshold_curves"]) == {"thresholds", "rare", "common"} and rep["map"] == pytest.approx(1.0)


# ---------------------------------------------------------------- ingest
def test_json_list_labels_mean_multi_label_and_are_stored_as_sets(home, tmp_path):
    ds = ingest(write_multilabel_jsonl(tmp_path / "t.jsonl")).dataset
    assert ds.task == "multi-label" and ds.classes == sorted(["food", "music", "travel"])
    ex = ds.examples("train")[0]
    assert isinstance(ex.label, tuple) and all(isinstance(i, int) for i in ex.label)
    # The same labels as a;b in a CSV, told to be multi-label, are the same sets.
    path = tmp_path / "t.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for line in (tmp_path / "t.jsonl").read_text().splitlines():
            d = json.loads(line)
            w.writerow([d["text"], ";".join(reversed(d["label"]))])
    other = ingest(path, task="multi-label").dataset
    assert other.classes == ds.classes
    assert sorted(e.label for e in other.examples("train") + other.examples("val") + other.examples("test")) == \
        sorted(e.label for e in ds.examples("train") + ds.examples("val") + ds.examples("test"))


def test_numeric_labels_stay_single_label_unless_asked_and_the_task_makes_another_dataset(home, tmp_path):
    path = write_regression_csv(tmp_path / "prices.csv", n=200)
    with pytest.raises(DataError, match=r"have a single example .*store them with task regression \(--task regression\)"):
        ingest(path)  # every noisy number is its own class
    rounded = tmp_path / "rounded.csv"
    rounded.write_text("\n".join(line.rsplit(",", 1)[0] + f",{round(float(line.rsplit(',', 1)[1]))}" if i else line
                                 for i, line in enumerate(path.read_text().splitlines())) + "\n")
    res = ingest(rounded)
    assert res.dataset.task == "single-label"
    assert any("--task regression" in w for w in res.warnings)
    reg = ingest(path, task="regression").dataset
    assert reg.task == "regression" and reg.id != res.dataset.id and reg.classes == []
    assert isinstance(reg.examples("train")[0].label, float)
    assert ingest(path, task="regression").reused
    with pytest.raises(DataError, match="stored as single-label, not regression"):
        run(RunConfig(data=res.dataset.id, task="regression", backbone="tiny-text", epochs=1))
    assert RunConfig(data=reg.id).task == "auto" and run(RunConfig(data=reg.id, backbone="tiny-text", epochs=1,
                                                                   adapter="linear-probe"))["metrics"]["task"] == "regression"


@pytest.mark.parametrize("rows, task, message", [
    ([("a", "1.5"), ("b", "oops"), ("c", "2")] * 1, "regression", "1 row has a label that is not a number"),
    ([("a", "3"), ("b", "3"), ("c", "3.0")], "regression", "every label is 3.0: regression needs targets that vary"),
    ([("a", '["x", 1'), ("b", '["x"]')], "multi-label", "not a JSON list of names"),
    ([("a", '["x;y"]'), ("b", '["x"]')], "multi-label", "label name containing `;`"),
    ([("a", "x"), ("b", "x"), ("c", "x")], "multi-label", "multi-label needs at least 2 labels"),
    ([("a", "x;y"), ("b", "x")], "multi-label", "1 label is on a single row (`y`)"),
])
def test_bad_labels_for_a_task_are_named(rows, task, message, home, tmp_path):
    path = tmp_path / "bad.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    with pytest.raises(DataError) as e:
        ingest(path, task=task)
    assert message in str(e.value) and "bad.csv" in str(e.value)
    assert not list((home / "datasets").glob("*")) if (home / "datasets").exists() else True


def test_a_few_bad_rows_are_skipped_with_their_lines(home, tmp_path):
    path = write_regression_csv(tmp_path / "p.csv", n=60)
    lines = path.read_text().splitlines()
    lines[5] = "it costs a lot,many"
    path.write_text("\n".join(lines) + "\n")
    res = ingest(path, task="regression")
    assert len(res.dataset) == 59 and any("line 6" in w and "not a number" in w for w in res.warnings)


def test_unknown_task_and_loss_are_clear_errors(home, tmp_path):
    with pytest.raises(ConfigError, match="task='ranking' is not one of auto, multi-label, regression, single-label"):
        RunConfig.from_dict({"data": "x", "task": "ranking"})
    with pytest.raises(LeptonError, match="unknown task 'ranking'"):
        ingest(write_regression_csv(tmp_path / "p.csv"), task="ranking")
    with pytest.raises(ConfigError, match="loss='huber' does not fit the single-label task"):
        task_of("single-label", ["a", "b"], loss="huber")


# ---------------------------------------------------------------- the command line
def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lepton", *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=str(REPO))


def test_cli_trains_predicts_and_refuses_what_is_single_label_only(home, tmp_path):
    import os

    env = {**os.environ, "LEPTON_HOME": str(home)}
    data = write_regression_csv(tmp_path / "prices.csv", n=80)
    res = _cli(env, "train", "--data", str(data), "--task", "regression", "--backbone", "tiny-text", "--adapter", "lora",
               "--epochs", "2", "--loss", "huber", "--batch-size", "8")
    assert res.returncode == 0, res.stderr[-2000:]
    last = json.loads(res.stdout.strip().splitlines()[-1])
    assert {"r2", "rmse", "mae"} <= set(last["metrics"]) and "val r2" in res.stderr
    rid = last["run_id"]
    out = _cli(env, "predict", rid, "it costs four coins")
    assert out.returncode == 0 and set(json.loads(out.stdout)) == {"input", "value"}
    batch = tmp_path / "in.csv"
    batch.write_text("text\nit costs one coin\nit costs nine coins\n")
    out = _cli(env, "predict", rid, "--batch", str(batch), "--out", str(tmp_path / "preds.csv"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "preds.csv").read_text().splitlines()[0] == "input,value"
    for verb in (["export", rid, "--format", "safetensors"], ["serve", rid, "--port", "0"]):
        refused = _cli(env, *verb)
        assert refused.returncode == 2 and "is regression" in refused.stderr and "Traceback" not in refused.stderr
    # a study maximises the task's primary metric (R² here) and reports the best trial's test figures
    study = _cli(env, "tune", "--data", str(data), "--task", "regression", "--backbone", "tiny-text", "--strategy",
                 "random", "--budget-minutes", "0.6", "--max-trials", "1")
    assert study.returncode == 0, study.stderr[-2000:]
    out = json.loads(study.stdout.strip().splitlines()[-1])
    assert out["best"]["primary"] == "r2" and np.isfinite(out["best"]["val_score"])
    assert {"r2", "rmse", "mae"} <= set(out["test"]) and out["test"]["score"] == out["test"]["r2"]
    assert "val r2" in study.stderr


def test_every_task_has_a_dashboard_view():
    from lepton.ui.task_views import VIEWS

    assert set(VIEWS) == set(TASKS)


def test_a_warm_start_across_tasks_takes_a_new_head(home, tmp_path):
    src = run(RunConfig(data=str(write_multilabel_jsonl(tmp_path / "t.jsonl")), backbone="tiny-text", adapter="full",
                        epochs=1, batch_size=8))
    logs = []
    run(RunConfig(data=str(write_regression_csv(tmp_path / "p.csv")), task="regression", from_run=src["run_id"],
                  backbone="tiny-text", adapter="full", epochs=1, batch_size=8),
        lambda kind, **d: logs.append(d.get("message", "")))
    assert any("new head (the source is multi-label, this run regression)" in m for m in logs)


def test_export_refuses_with_one_line(home, tmp_path):
    from lepton.export import export

    rid = run(RunConfig(data=str(write_regression_csv(tmp_path / "p.csv")), task="regression", backbone="tiny-text",
                        adapter="linear-probe", epochs=1))["run_id"]
    with pytest.raises(IncompatibleError, match="export takes single-label data for now"):
        export(rid, "onnx")


def test_eval_scores_a_regression_run_on_another_file_of_its_task(home, tmp_path):
    from lepton.transfer import evaluate_and_store

    from lepton.jobs.store import get_store

    cfg = RunConfig(data=str(write_regression_csv(tmp_path / "p.csv")), task="regression", backbone="tiny-text",
                    adapter="linear-probe", epochs=2)
    rid = get_store().create_run(cfg, status="running")  # in the store, as `lepton train` puts it: the matrix reads it
    run(cfg, run_id=rid, run_dir=Path(get_store().get_run(rid)["run_dir"]))
    get_store().set_status(rid, "finished")
    rep = evaluate_and_store(rid, str(write_regression_csv(tmp_path / "q.csv", n=30, seed=1)))
    assert rep["task"] == "regression" and rep["n"] == 30 and {"r2", "rmse", "mae", "scatter"} <= set(rep)
    # the transfer matrix scores a regression dataset's column by R²: the run's own test split and the evaluation
    from lepton.transfer import transfer_matrix

    m = transfer_matrix([rid])
    assert {c["metric"] for c in m["datasets"]} == {"r2"} and len(m["datasets"]) == 2
    cells = m["cells"][rid]
    assert {c["source"] for c in cells.values()} == {"own test report", "evaluation"}
    assert cells[rep["dataset"]]["score"] == pytest.approx(rep["r2"]) and "macro_f1" not in cells[rep["dataset"]]
