"""lepton.compare on hand-made rows, and on real tiny runs through `lepton compare`."""

from __future__ import annotations

import json

import pytest

from lepton import compare as cmp


def _rows():
    return [
        {"split": "train", "name": "loss", "step": 1, "epoch": 0.5, "value": 1.0, "time": 100.0},
        {"split": "val", "name": "macro_f1", "step": 2, "epoch": 1.0, "value": 0.5, "time": 101.0},
        {"split": "train", "name": "loss", "step": 3, "epoch": 1.5, "value": 0.6, "time": 102.0},
        {"split": "val", "name": "macro_f1", "step": 4, "epoch": 2.0, "value": 0.7, "time": 104.0},
        {"split": "val", "name": "macro_f1", "step": 5, "epoch": 3.0, "value": None, "time": 105.0},
    ]


def test_curve_aligns_by_epoch_step_and_time():
    rows = _rows()
    assert cmp.curve(rows, "val/macro_f1", "epoch") == ([1.0, 2.0], [0.5, 0.7])
    assert cmp.curve(rows, "val/macro_f1", "step") == ([2.0, 4.0], [0.5, 0.7])
    assert cmp.curve(rows, "val/macro_f1", "time", t0=99.0) == ([2.0, 5.0], [0.5, 0.7])
    assert cmp.curve(rows, "val/macro_f1", "time") == ([1.0, 4.0], [0.5, 0.7])  # t0 = first row's time
    assert cmp.curve(rows, "train/loss", "step") == ([1.0, 3.0], [1.0, 0.6])
    assert cmp.curve(rows, "test/accuracy") == ([], [])
    with pytest.raises(ValueError):
        cmp.curve(rows, "val/macro_f1", "hours")


def test_metric_names_validation_first():
    names = cmp.metric_names({"a": _rows(), "b": [{"split": "system", "name": "rss_mb"}]})
    assert names == ["val/macro_f1", "train/loss", "system/rss_mb"]


def _run(rid, f1, data="d1", classes=("x", "y"), **cfg):
    return {"id": rid, "name": rid, "status": "finished", "config": {"data": data, **cfg},
            "report": {"macro_f1": f1, "accuracy": f1, "test_dataset": data, "classes": list(classes),
                       "calibration": {"ece": 0.1},
                       "per_class": {c: {"f1": None if f1 is None else f1 - i / 10} for i, c in enumerate(classes)},
                       "summary": {"train_seconds": 1.0}}}


def test_config_diff_shows_only_differing_fields():
    runs = [_run("a", 0.5, lr=0.001, adapter="lora"), _run("b", 0.6, lr=0.01, adapter="lora"),
            _run("c", 0.7, adapter="lora")]
    diff = cmp.config_diff(runs)
    assert set(diff) == {"lr"}
    assert diff["lr"] == {"a": 0.001, "b": 0.01, "c": None}


def test_final_table_marks_the_best_per_test_dataset():
    runs = [_run("a", 0.5), _run("b", 0.8), _run("c", 0.4, data="d2"), _run("d", None)]
    table = cmp.final_table(runs)
    assert [r["best"] for r in table] == [False, True, True, False]
    assert table[0]["ece"] == 0.1 and table[0]["train_seconds"] == 1.0
    text = cmp.format_table(table)
    assert text.splitlines()[2].startswith("*") and "best score (macro-F1" in text
    assert [r["score"] for r in table] == [0.5, 0.8, 0.4, None] and table[0]["primary"] == "macro_f1"


def test_per_class_f1_side_by_side_over_the_union_of_classes():
    pc = cmp.per_class_f1([_run("a", 0.9, classes=("x", "y")), _run("b", 0.8, classes=("y", "z"))])
    assert list(pc) == ["x", "y", "z"]
    assert pc["x"] == {"a": 0.9, "b": None}
    assert pc["y"] == {"a": pytest.approx(0.8), "b": pytest.approx(0.8)}


def test_labels_are_unique():
    runs = [{"id": "1", "name": "same"}, {"id": "2", "name": "same"}, {"id": "3", "name": None}]
    assert cmp.labels(runs) == {"1": "same (1)", "2": "same (2)", "3": "3"}


def test_compare_real_runs_and_cli(home, text_csv, capsys):
    from lepton.cli import main
    from lepton.commands.core import train_foreground
    from lepton.config import RunConfig

    a = train_foreground(RunConfig(data=str(text_csv), backbone="tiny-text", adapter="full", epochs=2, batch_size=8,
                                   name="full-run"))["run_id"]
    b = train_foreground(RunConfig(data=str(text_csv), backbone="tiny-text", adapter="linear-probe", epochs=4,
                                   batch_size=8, name="probe-run"))["run_id"]
    data = cmp.compare([a, "probe-run"], "val/macro_f1", "epoch")  # by id and by name
    assert [r["id"] for r in data["runs"]] == [a, b]
    assert {"adapter", "epochs", "name"} <= set(data["config_diff"]) and "data" not in data["config_diff"]
    assert len(data["curves"][a]["x"]) == 2 and len(data["curves"][b]["x"]) == 4
    assert sum(r["best"] for r in data["table"]) == 1
    assert "val/macro_f1" in data["metrics"] and "train/loss" in data["metrics"]
    assert set(data["per_class_f1"]) == {"neg", "pos"}
    t = cmp.compare([a, b], "train/loss", "time")["curves"][a]
    assert t["x"] and all(x >= 0 for x in t["x"])

    assert main(["compare", a, b]) == 0
    out = capsys.readouterr().out
    assert "full-run" in out and "probe-run" in out and "config differences" in out and "per-class F1" in out
    assert main(["compare", a, b, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["table"][0]["run"] == a
    assert main(["compare", a, "no-such-run"]) == 2
