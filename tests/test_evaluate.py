import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from lepton.evaluate import metrics, report


@pytest.mark.parametrize("seed, n, c", [(0, 50, 2), (1, 200, 5), (2, 7, 4), (3, 30, 3)])
def test_fast_metrics_match_sklearn(seed, n, c):
    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, c, n), rng.integers(0, c, n)
    p[: n // 3] = y[: n // 3]  # some agreement so F1 is not trivially tiny
    got = metrics(y, p, c)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert got["macro_f1"] == pytest.approx(f1_score(y, p, labels=list(range(c)), average="macro", zero_division=0))


def test_class_never_predicted_nor_present_counts_as_zero_f1():
    # sklearn with labels=range(3): class 2 has no support and no predictions -> F1 0 (zero_division=0).
    y, p = np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1])
    assert metrics(y, p, 3)["macro_f1"] == pytest.approx(f1_score(y, p, labels=[0, 1, 2], average="macro", zero_division=0))


def test_report_matches_sklearn_and_orders_mistakes():
    classes = ["cat", "dog", "owl"]
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[.9, .05, .05], [.2, .7, .1], [.1, .8, .1], [.6, .3, .1], [.1, .1, .8], [.05, .05, .9]])
    rep = report(y, probs, classes, refs=[f"r{i}" for i in range(6)])
    pred = probs.argmax(1)
    pr, rc, f1, sup = precision_recall_fscore_support(y, pred, labels=[0, 1, 2], zero_division=0)
    for i, c in enumerate(classes):
        assert rep["per_class"][c] == pytest.approx({"precision": pr[i], "recall": rc[i], "f1": f1[i], "support": sup[i]})
    assert rep["confusion_matrix"] == confusion_matrix(y, pred).tolist()
    assert [m["ref"] for m in rep["misclassified"]] == ["r1", "r3"]  # 0.7 confident beats 0.6
    assert rep["misclassified"][0] == {"ref": "r1", "true": "cat", "pred": "dog", "confidence": 0.7}
