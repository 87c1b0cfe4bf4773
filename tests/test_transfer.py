"""Cross-domain transfer with tiny backbones: warm starts (backbone always, head when the labels
match), reloading a warm-started run, stored evaluations, the transfer matrix and forgetting."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_data import write_text_csv

from lepton.config import RunConfig


def write_labels_csv(path: Path, labels=("good", "bad"), n: int = 24) -> Path:
    words = {"good": ["great", "lovely", "superb"], "bad": ["awful", "poor", "dreadful"]}
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            lab = labels[i % 2]
            word = words["good" if i % 2 == 0 else "bad"][i // 2 % 3]
            w.writerow([f"the hotel was {word} and the service {word}", lab])
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One LEPTON_HOME with a source run per adapter (full, lora, linear-probe) on the same data."""
    root = tmp_path_factory.mktemp("transfer")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEPTON_HOME", str(root / "home"))
        from lepton.commands.core import train_foreground

        src_csv = write_text_csv(root / "source.csv", n=48, seed=0)
        tgt_csv = write_text_csv(root / "target.csv", n=40, seed=7)
        other_csv = write_labels_csv(root / "other.csv")
        sources = {}
        for adapter, epochs in (("full", 2), ("lora", 2), ("linear-probe", 5)):
            cfg = RunConfig(data=str(src_csv), backbone="tiny-text", adapter=adapter, epochs=epochs, batch_size=8,
                            name=f"source-{adapter}")
            sources[adapter] = train_foreground(cfg)["run_id"]
        yield {"root": root, "home": root / "home", "src": src_csv, "tgt": tgt_csv, "other": other_csv,
               "sources": sources, "mp": mp}


def _model_from(source: str, adapter: str, classes: list[str]):
    """What phase 3 of the loop builds for a warm start, without training."""
    from lepton.adapters import get_adapter
    from lepton.heads import classification_head
    from lepton.tasks import task_of
    from lepton.transfer import load_head, source_spec

    spec = source_spec(RunConfig(data="x", from_run=source), "text")
    backbone = spec.build()
    model = get_adapter(adapter).wrap(backbone, classification_head(backbone.dim, len(classes)))
    return spec, model, load_head(model, source, classes, task_of("single-label", classes))


TEXTS = ["the film was superb, really superb", "the meal was awful, really awful", "trip terrible"]


@pytest.mark.parametrize("src_adapter", ["full", "lora", "linear-probe"])
def test_warm_start_takes_adapted_backbone_and_head(world, src_adapter):
    from lepton.predict import Predictor

    source = world["sources"][src_adapter]
    src = Predictor.load(source)
    spec, model, head_loaded = _model_from(source, "full", src.classes)
    assert head_loaded
    assert spec.extra["identity"]["from_run"] == source and spec.extra["base_spec"].name == "tiny-text"
    for k, v in src.model.head.state_dict().items():
        assert torch.equal(model.head.state_dict()[k], v)
    # Same function as the source model: the adapted backbone (LoRA merged) and its head.
    model.eval()
    batch = model.backbone.preprocess(TEXTS)
    with torch.no_grad():
        np.testing.assert_allclose(model(batch).softmax(-1).numpy(),
                                   src.model(src.model.backbone.preprocess(TEXTS)).softmax(-1).numpy(), atol=1e-5)
    assert not any("lora_" in n for n, _ in model.named_parameters())  # LoRA was merged, not stacked
    if src_adapter == "linear-probe":  # only the head could transfer: the backbone is the pretrained one
        from lepton.backbones import build_backbone

        fresh = build_backbone("tiny-text")
        for k, v in fresh.state_dict().items():
            assert torch.equal(model.backbone.state_dict()[k], v)


def test_new_head_when_labels_differ(world):
    source = world["sources"]["full"]
    _, model, head_loaded = _model_from(source, "lora", ["good", "bad"])
    assert not head_loaded
    _, _, reordered = _model_from(source, "lora", ["pos", "neg"])  # same labels, other order: a new head too
    assert not reordered


def test_warm_started_runs_train_and_reload(world):
    from lepton.commands.core import train_foreground
    from lepton.predict import Predictor

    # lora on top of a full source, same labels: backbone and head transfer.
    same = train_foreground(RunConfig(data=str(world["tgt"]), adapter="lora", epochs=1, batch_size=8,
                                      from_run=world["sources"]["full"], name="warm-same"))
    # full on top of a lora source, other labels: a new head.
    other = train_foreground(RunConfig(data=str(world["other"]), adapter="full", epochs=1, batch_size=8,
                                       from_run=world["sources"]["lora"], name="warm-other"))
    for res, src in ((same, "full"), (other, "lora")):
        d = Path(res["run_dir"])
        meta = json.loads((d / "model" / "meta.json").read_text())
        assert meta["from_run"] == world["sources"][src] and meta["backbone"] == "tiny-text"
        assert (yaml_from := (d / "config.yaml").read_text()) and "from_run" in yaml_from
        # Predictor rebuilds it from its own folder and reproduces the run's test predictions.
        pred = Predictor.load(res["run_id"])
        rows = list(csv.DictReader((d / "predictions.csv").open()))[:5]
        out = pred.predict_batch([r["x"] for r in rows])
        for r, o in zip(rows, out):
            for c in pred.classes:
                assert o["probs"][c] == pytest.approx(float(r[f"prob_{c}"]), abs=2e-3)
    from lepton.jobs.store import get_store

    log = get_store().get_run(same["run_id"])["log_tail"]
    assert "adapted backbone and its head" in log
    assert "new head" in get_store().get_run(other["run_id"])["log_tail"]
    world["warm"] = same["run_id"]


def test_frozen_warm_start_caches_features_under_its_source(world):
    from lepton.commands.core import train_foreground

    cache = world["home"] / "cache" / "features"
    before = set(cache.glob("*.safetensors"))
    res = train_foreground(RunConfig(data=str(world["src"]), adapter="linear-probe", epochs=2, batch_size=8,
                                     from_run=world["sources"]["full"]))
    new = set(cache.glob("*.safetensors")) - before
    # The plain linear-probe source already cached tiny-text features of this data: a warm start
    # must not reuse them (its backbone is the full run's), so train/val/test are new entries.
    assert len(new) == 3
    meta = json.loads((Path(res["run_dir"]) / "model" / "meta.json").read_text())
    assert meta["adapter"] == "linear-probe" and meta["from_run"] == world["sources"]["full"]


def test_preflight_refuses_bad_sources(world):
    from lepton.errors import IncompatibleError, RunError
    from lepton.train import preflight

    with pytest.raises(RunError, match="no run"):
        preflight(RunConfig(data=str(world["tgt"]), from_run="nope-nope"))
    preflight(RunConfig(data=str(world["tgt"]), from_run="source-lora"))  # a run's name works too
    with pytest.raises(IncompatibleError, match="adapted backbone 'tiny-text'"):
        preflight(RunConfig(data=str(world["tgt"]), backbone="minilm-l6", from_run=world["sources"]["full"]))


def test_cli_train_from_flag_and_eval_is_stored(world, capsys):
    from lepton.cli import main
    from lepton.jobs.store import get_store

    assert main(["train", "--data", str(world["tgt"]), "--from", world["sources"]["lora"], "--epochs", "1",
                 "--batch-size", "8", "--name", "cli-warm"]) == 0
    rid = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    assert get_store().get_run(rid)["config"]["from_run"] == world["sources"]["lora"]
    assert main(["eval", rid, "--data", str(world["other"])]) == 2  # labels the run never learned: refused
    assert main(["eval", rid, "--data", str(world["src"])]) == 0
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rep["split"] == "test" and rep["n"] == 48  # a file given by path is all test
    stored = get_store().evaluations(run_id=rid)
    assert len(stored) == 1 and stored[0]["dataset_id"] == rep["dataset"]
    assert stored[0]["metrics"]["macro_f1"] == pytest.approx(rep["macro_f1"])


def test_forgetting_and_matrix_end_to_end(world):
    from lepton.transfer import measure_forgetting, transfer_matrix

    warm = world.get("warm") or pytest.skip("needs test_warm_started_runs_train_and_reload")
    f = measure_forgetting(warm)
    assert f["source_run"] == world["sources"]["full"] and f["split"] == "test"
    assert f["before"] is not None and f["after"] is not None
    assert f["forgetting"] == pytest.approx(f["before"] - f["after"])
    m = transfer_matrix()
    src_ds = f["source_dataset"]
    assert m["cells"][warm][src_ds]["source"] == "evaluation"
    assert m["cells"][world["sources"]["full"]][src_ds]["source"] == "own test report"
    assert len(m["datasets"]) >= 3


# ---------------------------------------------------------------- the matrix, by hand
def _runs():
    return [
        {"id": "a", "name": "src", "dataset": "D1", "dataset_name": "news", "split": "test", "macro_f1": 0.9},
        {"id": "b", "name": "warm", "dataset": "D2", "dataset_name": "forum", "split": "test", "macro_f1": 0.8,
         "from_run": "a"},
        {"id": "c", "name": "cold", "dataset": "D2", "dataset_name": "forum", "split": "test", "macro_f1": 0.6},
    ]


def _ev(run, ds, f1, split="test"):
    return {"run_id": run, "dataset_id": ds, "split": split, "metrics": {"macro_f1": f1}}


def test_build_matrix_cells_and_forgetting():
    from lepton.transfer import build_matrix

    m = build_matrix(_runs(), [_ev("a", "D2", 0.5), _ev("b", "D1", 0.7), _ev("b", "D1", 0.75), _ev("x", "D1", 0.1)])
    assert [d["id"] for d in m["datasets"]] == ["D1", "D2"]
    assert m["cells"]["a"] == {
        "D1": {"score": 0.9, "metric": "macro_f1", "macro_f1": 0.9, "source": "own test report", "split": "test"},
        "D2": {"score": 0.5, "metric": "macro_f1", "macro_f1": 0.5, "source": "evaluation", "split": "test"}}
    assert m["cells"]["b"]["D1"]["macro_f1"] == 0.75  # the newest evaluation wins
    assert "D1" not in m["cells"]["c"]
    assert set(m["forgetting"]) == {"b"}
    assert m["forgetting"]["b"]["forgetting"] == pytest.approx(0.9 - 0.75)


def test_build_matrix_rules():
    from lepton.transfer import build_matrix

    # An evaluation never replaces a run's own test report, and "all" never replaces a held-out split.
    m = build_matrix(_runs(), [_ev("a", "D1", 0.1), _ev("c", "D1", 0.4), _ev("c", "D1", 0.99, split="all")])
    assert m["cells"]["a"]["D1"]["macro_f1"] == 0.9
    assert m["cells"]["c"]["D1"]["macro_f1"] == 0.4
    # Forgetting needs the source's split: an all-examples score (which may include its training data) is no use.
    m = build_matrix(_runs(), [_ev("b", "D1", 0.99, split="all")])
    assert m["forgetting"]["b"] == {"source_run": "a", "source_dataset": "D1", "split": "test", "metric": "macro_f1",
                                    "before": 0.9, "after": None, "forgetting": None}


def test_runs_on_one_test_file_with_two_seeds_share_one_named_column(world):
    """The issue-12 setup in small: a separate test file, runs with seeds 0 and 1 (one warm-started). The test
    file is one dataset whatever the seed, named by its own file; the figure keeps one column per dataset."""
    from lepton.commands.core import train_foreground
    from lepton.transfer import transfer_matrix
    from lepton.ui.transfer import matrix_figure

    test_csv = write_text_csv(world["root"] / "reviews_test.csv", n=20, seed=11)
    ids = [train_foreground(RunConfig(data=str(world["tgt"]), test_data=str(test_csv), backbone="tiny-text",
                                      adapter="linear-probe", epochs=2, batch_size=8, seed=seed, name=f"seed {seed}",
                                      from_run=from_run))["run_id"]
           for seed, from_run in ((0, None), (1, None), (1, world["sources"]["lora"]))]
    m = transfer_matrix(ids)
    own = {m["cells"][r][d]["source"] for r in ids for d in m["cells"][r]}
    test_cols = [d for d in m["datasets"] if any(d["id"] in m["cells"][r] for r in ids)]
    assert len(test_cols) == 1 and test_cols[0]["name"] == "reviews_test" and own == {"own test report"}
    fig = matrix_figure(m)
    heat = fig.data[0]
    assert len(heat.x) == len(m["datasets"]) and list(fig.layout.xaxis.ticktext) == [d["name"] for d in m["datasets"]]
    for row, r in zip(heat.z, m["runs"]):  # every cell with a value holds its run's own number, none shifted
        assert [v for v in row if v is not None] == [m["cells"][r["id"]][d["id"]]["macro_f1"]
                                                     for d in m["datasets"] if d["id"] in m["cells"][r["id"]]]


def test_datasets_that_share_a_name_get_distinct_labels():
    from lepton.transfer import build_matrix
    from lepton.ui.transfer import matrix_figure

    runs = [{"id": "a", "name": "same", "dataset": "D1aaaaaaaa", "dataset_name": "target", "macro_f1": 0.9},
            {"id": "b", "name": "same", "dataset": "D2bbbbbbbb", "dataset_name": "target", "macro_f1": 0.5}]
    m = build_matrix(runs, [])
    assert [d["name"] for d in m["datasets"]] == ["target (D1aaaaaa)", "target (D2bbbbbb)"]
    heat = matrix_figure(m).data[0]
    assert list(heat.x) == [0, 1] and list(heat.y) == [0, 1]  # positions: plotly cannot merge two rows named "same"
    assert [list(row) for row in heat.z] == [[0.9, None], [None, 0.5]]


# ---------------------------------------------------------------- the store
def test_store_evaluations_and_migration_from_v1(tmp_path):
    from lepton.jobs.store import SCHEMA_VERSION, Store

    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT, status TEXT NOT NULL, config TEXT NOT NULL,"
                      " dataset TEXT, run_dir TEXT NOT NULL, created REAL NOT NULL);"
                      "INSERT INTO runs VALUES ('r1', 'old', 'finished', '{}', 'd', '/x', 1.0);"
                      "PRAGMA user_version=1;")
    con.close()
    st = Store(db)
    assert st.pragma("user_version") == SCHEMA_VERSION  # every later version migrates a v1 file
    assert st._read("SELECT name FROM runs WHERE id='r1'")[0][0] == "old"  # existing rows survive
    i = st.add_evaluation("r1", "d9", {"macro_f1": 0.5, "accuracy": 0.6}, split="test")
    st.add_evaluation("r1", "d8", {"macro_f1": 0.1})
    assert [e["dataset_id"] for e in st.evaluations("r1")] == ["d9", "d8"]
    assert st.evaluations(dataset_id="d9")[0]["id"] == i
    assert st.evaluations("r1")[0]["metrics"] == {"macro_f1": 0.5, "accuracy": 0.6}
    st.close()
