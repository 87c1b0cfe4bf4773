"""Evaluation reports with scikit-learn: accuracy, macro-F1, per-class P/R/F1, confusion matrix."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def metrics(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 (sklearn's definitions, zero_division=0) from one bincount.

    The loop calls this every epoch; sklearn's input validation costs ~30 ms a call, more than a
    whole epoch of head training on cached features. tests/test_evaluate.py pins it to sklearn."""
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if t.size == 0:
        return {"accuracy": 0.0, "macro_f1": 0.0}
    cm = np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)  # 2tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"accuracy": float(tp.sum() / t.size), "macro_f1": float(f1.mean())}


def report(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str],
           refs: Sequence[str] | None = None, max_errors: int = 200) -> dict[str, Any]:
    """Full report for one split. probs is (N, C) class probabilities."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # 1.5 s import: only at report time

    y_true = np.asarray(y_true)
    y_pred = probs.argmax(1)
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    out: dict[str, Any] = metrics(y_true, y_pred, len(classes))
    out["n"] = int(len(y_true))
    out["classes"] = list(classes)
    out["per_class"] = {
        c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, c in enumerate(classes)
    }
    out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()  # rows = true
    wrong = np.flatnonzero(y_pred != y_true)
    # Most confident mistakes first: those are the ones worth a look (label noise, real confusions).
    wrong = wrong[np.argsort(-probs[wrong, y_pred[wrong]])][:max_errors]
    out["misclassified"] = [
        {"ref": refs[i] if refs is not None else str(i), "true": classes[y_true[i]],
         "pred": classes[y_pred[i]], "confidence": float(probs[i, y_pred[i]])}
        for i in wrong
    ]
    return out


def evaluate_run(run: str, data: str, batch_size: int = 64) -> dict[str, Any]:
    """Report of a finished run on every example of another dataset (same modality, known labels)."""
    from pathlib import Path

    from lepton.data import ingest, load_dataset
    from lepton.errors import DataError
    from lepton.predict import Predictor

    pred = Predictor.load(run)
    ds = ingest(Path(data), split="test").dataset if Path(data).expanduser().exists() else load_dataset(data)
    if ds.modality != pred.modality:
        raise DataError(f"'{ds.name}' is {ds.modality} data but run '{pred.run_dir.name}' classifies {pred.modality}")
    unknown = sorted(set(ds.classes) - set(pred.classes))
    if unknown:
        raise DataError(f"'{ds.name}' has labels the run never learned: {', '.join(unknown)}; "
                        f"the run knows {', '.join(pred.classes)}")
    exs = [e for split in ds.splits for e in ds.examples(split)]
    probs = np.concatenate([
        np.array([[o["probs"][c] for c in pred.classes] for o in
                  pred.predict_batch([ds.load(e.x) for e in exs[i:i + batch_size]])])
        for i in range(0, len(exs), batch_size)])
    y = [pred.classes.index(ds.classes[e.label]) for e in exs]
    out = report(y, probs, pred.classes, refs=[e.ref for e in exs])
    out.update(run_id=pred.run_dir.name, dataset=ds.id, dataset_name=ds.name)
    return out
