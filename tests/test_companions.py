"""The text companion (TF-IDF + logistic regression): fitted, blended only where validation says so,
saved without pickle, and applied by Predictor exactly as the run's own report scored it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from lepton.companions import COMPANIONS, best_weight, blend, load
from lepton.config import RunConfig
from lepton.train import run


def _words_csv(path: Path, n: int = 180) -> Path:
    """Labels carried by rare exact words (what a bag of words sees at once), padded with shared filler."""
    rng = np.random.default_rng(0)
    cues = {"files": ["chmod", "symlink", "inode"], "maths": ["cosine", "modulo", "matrix"],
            "dates": ["weekday", "timezone", "leapyear"], "net": ["socket", "packet", "router"],
            "text": ["regex", "unicode", "glyph"], "jobs": ["thread", "mutex", "queue"]}
    filler = ("return the value of the object given in the call when it is set by a user or an "
              "application with options").split()
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            label = list(cues)[i % len(cues)]
            words = list(rng.choice(filler, 14)) + [cues[label][i // len(cues) % 3]]
            rng.shuffle(words)
            w.writerow([" ".join(words), label])
    return path


def test_blend_is_a_product_of_experts_and_weight_zero_is_the_model():
    p = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    q = np.array([[0.1, 0.9], [0.5, 0.5], [0.9, 0.1]])
    assert np.allclose(blend(p, q, 0.0), p)
    b = blend(p, q, 0.5)
    assert np.allclose(b.sum(1), 1) and b[0, 1] > p[0, 1]
    w, f1 = best_weight(np.array([1, 1, 0]), p, q, 2)  # the model gets the first one wrong; the blend fixes it
    assert w == 0.5 and f1 == 1.0
    assert best_weight(np.array([0, 1, 0]), p, q, 2)[0] == 0.0  # the model alone is already right: no blend


def test_lexical_companion_round_trips_without_pickle(tmp_path):
    texts = ["chmod the file", "cosine of x", "chmod again", "cosine again", "symlink here", "modulo there"]
    y = np.array([0, 1, 0, 1, 0, 1])
    comp = COMPANIONS.get("text")(texts, y, texts[:2], y[:2], 2)
    comp.save(tmp_path, 0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["companion.json", "companion.safetensors"]
    again, weight = load(tmp_path)
    assert weight == 0.5 and np.allclose(again.probs(texts), comp.probs(texts))
    assert (again.probs(["chmod symlink"]).argmax(1) == 0).all()


def test_a_text_run_ships_its_companion_and_predictor_scores_as_the_report_did(home, tmp_path):
    data = _words_csv(tmp_path / "cues.csv")
    # fp32: on a CPU with native bf16 the run scores under autocast, whose rounding depends on how the batch is
    # padded; the Predictor (fp32, like every export) would then differ by ~1e-3, which is not what this checks.
    res = run(RunConfig(data=str(data), backbone="tiny-text", adapter="linear-probe", epochs=5, batch_size=8,
                        precision="fp32"))
    run_dir = Path(res["run_dir"])
    rep = json.loads((run_dir / "report.json").read_text())
    meta = json.loads((run_dir / "model" / "meta.json").read_text())
    comp = rep["kept"]["companion"]
    assert comp and comp["kind"] == "lexical" and comp["weight"] > 0  # exact rare words: the bag of words helps
    assert meta["companion"] == {"kind": "lexical", "weight": comp["weight"]}
    from lepton.predict import Predictor

    pred = Predictor.load(res["run_id"])
    import pandas as pd

    rows = pd.read_csv(run_dir / "predictions.csv")
    classes = pred.classes
    got = pred.predict_batch(rows["x"].tolist())
    want = rows[[f"prob_{c}" for c in classes]].to_numpy()
    assert np.allclose([[g["probs"][c] for c in classes] for g in got], want, atol=1e-4)


def test_companion_off_ships_the_model_alone(home, tmp_path):
    data = _words_csv(tmp_path / "cues.csv")
    res = run(RunConfig(data=str(data), backbone="tiny-text", adapter="linear-probe", epochs=5, batch_size=8,
                        companion=False))
    assert not (Path(res["run_dir"]) / "model" / "companion.json").exists()
    assert json.loads((Path(res["run_dir"]) / "model" / "meta.json").read_text())["companion"] is None


def test_a_damaged_companion_is_one_line(home, tmp_path):
    from lepton.errors import RunError
    from lepton.predict import Predictor

    res = run(RunConfig(data=str(_words_csv(tmp_path / "cues.csv")), backbone="tiny-text", adapter="linear-probe",
                        epochs=3, batch_size=8))
    (Path(res["run_dir"]) / "model" / "companion.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(RunError, match="companion model .* is damaged"):
        Predictor.load(res["run_id"])
