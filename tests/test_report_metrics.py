"""Report metrics against scikit-learn and hand-computed values: calibration (ECE, reliability bins),
pretrained vs fine-tuned (fixed/broken, per-class F1 difference), and the run's report files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from safetensors.numpy import load_file
from sklearn.metrics import f1_score

from lepton.baseline import tsne_2d, tsne_maps
from lepton.evaluate import calibration, fixed_broken, per_class_f1, per_class_f1_diff, pretrained_vs_finetuned, report


def test_ece_hand_computed():
    # Two bins used: (0.5, 0.6] holds 0.6, 0.6 (one right) and (0.9, 1.0] holds 0.95 (right), 0.95 (wrong).
    probs = np.array([[0.6, 0.4], [0.4, 0.6], [0.95, 0.05], [0.05, 0.95]])
    y = np.array([0, 0, 0, 0])
    cal = calibration(y, probs, n_bins=10)
    # bin 5: conf 0.6, acc 0.5 -> gap 0.1; bin 9: conf 0.95, acc 0.5 -> gap 0.45; each holds half.
    assert cal["ece"] == pytest.approx(0.5 * 0.1 + 0.5 * 0.45)
    assert cal["mce"] == pytest.approx(0.45)
    counts = [b["count"] for b in cal["bins"]]
    assert counts == [0, 0, 0, 0, 0, 2, 0, 0, 0, 2]
    assert cal["bins"][5]["accuracy"] == pytest.approx(0.5) and cal["bins"][5]["confidence"] == pytest.approx(0.6)
    assert cal["bins"][0]["accuracy"] is None


def test_perfect_and_empty_calibration():
    probs = np.eye(3)[[0, 1, 2, 1]]
    assert calibration([0, 1, 2, 1], probs)["ece"] == pytest.approx(0.0)
    assert calibration([], np.zeros((0, 3)))["ece"] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reliability_bins_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(300, 4)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, 4, 300)
    cal = calibration(y, probs, n_bins=10)
    correct = (probs.argmax(1) == y).astype(int)
    prob_true, prob_pred = calibration_curve(correct, probs.max(1), n_bins=10, strategy="uniform")
    used = [b for b in cal["bins"] if b["count"]]
    np.testing.assert_allclose([b["accuracy"] for b in used], prob_true)
    np.testing.assert_allclose([b["confidence"] for b in used], prob_pred)
    weights = np.array([b["count"] for b in used]) / 300
    assert cal["ece"] == pytest.approx(float(np.sum(weights * np.abs(prob_true - prob_pred))))


def test_fixed_and_broken():
    y = [0, 0, 1, 1, 2, 2]
    before = [0, 1, 1, 0, 0, 2]  # right: 0, 2, 5
    after = [0, 0, 0, 1, 2, 1]   # right: 0, 1, 3, 4
    assert fixed_broken(y, before, after) == {"fixed": 3, "broken": 2, "both_right": 1, "both_wrong": 0}


def test_per_class_f1_matches_sklearn():
    rng = np.random.default_rng(3)
    y, a, b = rng.integers(0, 4, 200), rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    np.testing.assert_allclose(per_class_f1(y, a, 4), f1_score(y, a, labels=range(4), average=None, zero_division=0))
    diff = per_class_f1_diff(y, a, b, ["w", "x", "y", "z"])
    ref_a = f1_score(y, a, labels=range(4), average=None, zero_division=0)
    ref_b = f1_score(y, b, labels=range(4), average=None, zero_division=0)
    for i, c in enumerate("wxyz"):
        assert diff[c]["pretrained"] == pytest.approx(ref_a[i])
        assert diff[c]["finetuned"] == pytest.approx(ref_b[i])
        assert diff[c]["diff"] == pytest.approx(ref_b[i] - ref_a[i])


def test_per_class_f1_of_absent_class_is_zero():
    assert per_class_f1([0, 0], [0, 0], 2).tolist() == [1.0, 0.0]


def test_pretrained_vs_finetuned_section():
    y = [0, 1, 1, 0]
    before = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])  # preds 0 0 1 1: right, wrong, right, wrong
    after = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.8, 0.2]])   # preds 0 1 0 0: right, right, wrong, right
    sec = pretrained_vs_finetuned(y, before, after, ["a", "b"], refs=["r0", "r1", "r2", "r3"])
    assert sec["pretrained"]["accuracy"] == 0.5 and sec["finetuned"]["accuracy"] == 0.75
    assert sec["delta"]["accuracy"] == pytest.approx(0.25)
    assert sec["finetuned"]["macro_f1"] == pytest.approx(f1_score(y, [0, 1, 0, 0], average="macro"))
    assert (sec["fixed"], sec["broken"]) == (2, 1)
    assert sec["fixed_refs"] == ["r1", "r3"] and sec["broken_refs"] == ["r2"]
    assert sec["pretrained"]["ece"] == pytest.approx(calibration(y, before)["ece"])


def test_report_has_calibration():
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    rep = report([0, 1, 1], probs, ["a", "b"])
    assert rep["calibration"]["ece"] == pytest.approx(calibration([0, 1, 1], probs)["ece"])
    json.dumps(rep)  # report.json must stay serialisable


# ---------------------------------------------------------------- the run folder
def test_run_writes_baseline_embeddings_and_predictions(home, text_csv):
    from lepton.config import RunConfig
    from lepton.train import run

    res = run(RunConfig(data=str(text_csv), backbone="tiny-text", adapter="full", epochs=2, batch_size=8))
    d = home / "runs" / res["run_id"]
    rep = json.loads((d / "report.json").read_text())
    sec = rep["pretrained_vs_finetuned"]
    assert set(sec) >= {"pretrained", "finetuned", "per_class_f1", "fixed", "broken", "delta"}
    assert set(sec["per_class_f1"]) == set(rep["classes"])
    assert sec["finetuned"]["macro_f1"] == pytest.approx(rep["macro_f1"])
    assert sec["fixed"] + sec["broken"] + sec["both_right"] + sec["both_wrong"] == rep["n"]
    assert 0 <= rep["calibration"]["ece"] <= 1
    emb = json.loads((d / "embeddings.json").read_text())
    assert len(emb["before"]["xy"]) == len(emb["after"]["xy"]) == len(emb["labels"]) == rep["n"]
    assert emb["before"]["xy"] != emb["after"]["xy"]  # full fine-tuning moved the features
    feats = load_file(str(d / "embeddings.safetensors"))  # what the run page's t-SNE map is computed from
    assert feats["before"].shape == feats["after"].shape == (rep["n"], 32)  # tiny-text's 32-d features
    maps = tsne_maps(d)
    assert maps["before"].shape == maps["after"].shape == (rep["n"], 2)
    assert not np.array_equal(maps["before"], maps["after"])
    with (d / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == rep["n"]
    assert set(rows[0]) >= {"ref", "x", "true", "pred", "confidence", "pretrained_pred", "prob_neg", "prob_pos"}
    wrong = sum(r["true"] != r["pred"] for r in rows)
    assert wrong == len(rep["misclassified"])
    assert sum(r["pretrained_pred"] != r["true"] and r["pred"] == r["true"] for r in rows) == sec["fixed"]


def test_frozen_run_baseline_reuses_the_feature_cache(home, image_dir):
    """A linear-probe run caches its features; the baseline then finds them under the same key."""
    from lepton.config import RunConfig
    from lepton.train import run

    res = run(RunConfig(data=str(image_dir), backbone="tiny-image", adapter="linear-probe", epochs=3))
    cache = sorted((home / "cache" / "features").glob("*.safetensors"))
    assert len(cache) == 3  # train, val, test: the baseline added no entries of its own
    d = home / "runs" / res["run_id"]
    emb = json.loads((d / "embeddings.json").read_text())
    assert emb["frozen"] and emb["before"] == emb["after"]
    assert set(load_file(str(d / "embeddings.safetensors"))) == {"before"}  # one set of features, stored once
    maps = tsne_maps(d)
    assert maps["after"] is maps["before"]
    rows = list(csv.DictReader((d / "predictions.csv").open()))
    assert rows[0]["x"].startswith("files/") or "/" in rows[0]["x"]  # a path inside the dataset folder
    assert "pretrained_vs_finetuned" in json.loads((d / "report.json").read_text())


def test_tsne_keeps_separated_clusters_apart():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (30, 16)), rng.normal(8, 1, (30, 16))])
    y = np.repeat([0, 1], 30)
    xy = tsne_2d(x)
    assert xy.shape == (60, 2)
    dist = ((xy[:, None] - xy[None]) ** 2).sum(-1) + np.eye(60) * 1e9
    assert (y[dist.argmin(1)] == y).all()  # every point's nearest neighbour in the map is of its own cluster
    assert tsne_2d(x[:3]).shape == (3, 2)  # too few points for t-SNE: a flat map, not an error
