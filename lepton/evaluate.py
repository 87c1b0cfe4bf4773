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
    out["calibration"] = calibration(y_true, probs)
    return out


# ---------------------------------------------------------------- calibration
def calibration(y_true: Sequence[int], probs: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Reliability bins over the top-class confidence, and the expected calibration error.

    Bins are equal-width and closed on the right, (lo, hi], as sklearn's calibration_curve cuts
    them. ECE = sum over bins of (bin size / N) * |accuracy in bin - mean confidence in bin|:
    0 means "70 % sure" is right 70 % of the time; a large value means the scores need care."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    if y_true.size == 0:
        return {"ece": 0.0, "mce": 0.0, "n_bins": n_bins, "bins": []}
    conf = probs.max(1)
    correct = (probs.argmax(1) == y_true).astype(np.float64)
    ids = np.searchsorted(edges[1:-1], conf)
    count = np.bincount(ids, minlength=n_bins)
    conf_sum = np.bincount(ids, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(ids, weights=correct, minlength=n_bins)
    bins, ece, mce = [], 0.0, 0.0
    for b in range(n_bins):
        n = int(count[b])
        c = float(conf_sum[b] / n) if n else None
        a = float(acc_sum[b] / n) if n else None
        if n:
            gap = abs(a - c)
            ece += n / y_true.size * gap
            mce = max(mce, gap)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": n, "confidence": c, "accuracy": a})
    return {"ece": float(ece), "mce": float(mce), "n_bins": n_bins, "bins": bins}


# ---------------------------------------------------------------- pretrained vs fine-tuned
def fixed_broken(y_true: Sequence[int], pred_before: Sequence[int], pred_after: Sequence[int]) -> dict[str, int]:
    """How fine-tuning changed each example: fixed = wrong before and right after, broken = the reverse."""
    t, b, a = (np.asarray(v, dtype=np.int64) for v in (y_true, pred_before, pred_after))
    rb, ra = b == t, a == t
    return {"fixed": int((~rb & ra).sum()), "broken": int((rb & ~ra).sum()),
            "both_right": int((rb & ra).sum()), "both_wrong": int((~rb & ~ra).sum())}


def per_class_f1(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """(C,) F1 per class, sklearn's definition with zero_division=0."""
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    cm = np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def per_class_f1_diff(y_true: Sequence[int], pred_before: Sequence[int], pred_after: Sequence[int],
                      classes: Sequence[str]) -> dict[str, dict[str, float]]:
    """{class: {pretrained, finetuned, diff}}: diff > 0 where fine-tuning helped that class."""
    before = per_class_f1(y_true, pred_before, len(classes))
    after = per_class_f1(y_true, pred_after, len(classes))
    return {c: {"pretrained": float(before[i]), "finetuned": float(after[i]), "diff": float(after[i] - before[i])}
            for i, c in enumerate(classes)}


def pretrained_vs_finetuned(y_true: Sequence[int], probs_before: np.ndarray, probs_after: np.ndarray,
                            classes: Sequence[str], refs: Sequence[str] | None = None,
                            max_refs: int = 50) -> dict[str, Any]:
    """The side-by-side section of report.json: overall metrics, per-class F1 difference, fixed/broken."""
    y = np.asarray(y_true, dtype=np.int64)
    pb, pa = np.asarray(probs_before).argmax(1), np.asarray(probs_after).argmax(1)
    side = {}
    for name, probs, pred in (("pretrained", probs_before, pb), ("finetuned", probs_after, pa)):
        side[name] = {**metrics(y, pred, len(classes)), "ece": calibration(y, probs)["ece"]}
    out: dict[str, Any] = {**side, "delta": {k: side["finetuned"][k] - side["pretrained"][k] for k in side["finetuned"]},
                           "per_class_f1": per_class_f1_diff(y, pb, pa, classes), **fixed_broken(y, pb, pa)}
    if refs is not None:
        out["fixed_refs"] = [refs[i] for i in np.flatnonzero((pb != y) & (pa == y))[:max_refs]]
        out["broken_refs"] = [refs[i] for i in np.flatnonzero((pb == y) & (pa != y))[:max_refs]]
    return out


def held_out_split(splits: Sequence[str]) -> str | None:
    """The split a run's own report uses on a dataset: test, else validation; None = everything."""
    return "test" if "test" in splits else ("val" if "val" in splits and "train" in splits else None)


def evaluate_run(run: str, data: str, batch_size: int = 64, split: str | None = "auto",
                 predictor: Any = None) -> dict[str, Any]:
    """Report of a finished run on another dataset (same modality and task, known labels).

    split="auto" evaluates the dataset's held-out split (test, else validation) when it has one,
    so a column of the transfer matrix compares runs on the same examples; a file given by path is
    stored as all-test, so all of it counts. split=None or "all" evaluates every example."""
    from pathlib import Path

    from lepton.data import ingest, load_dataset
    from lepton.data.base import split_alias
    from lepton.errors import DataError
    from lepton.predict import Predictor

    pred = predictor or Predictor.load(run)
    task = pred.task
    ds = (ingest(Path(data), split="test", task=task.name).dataset if Path(data).expanduser().exists()
          else load_dataset(data))
    if ds.modality != pred.modality:
        raise DataError(f"'{ds.name}' is {ds.modality} data but run '{pred.run_dir.name}' classifies {pred.modality}")
    if ds.task != task.name:
        raise DataError(f"'{ds.name}' is stored as {ds.task} data but run '{pred.run_dir.name}' is {task.name}: "
                        "give the file itself (it is read as the run's task)")
    unknown = sorted(set(ds.classes) - set(pred.classes))
    if unknown:
        raise DataError(f"'{ds.name}' has labels the run never learned: {', '.join(unknown)}; "
                        f"the run knows {', '.join(pred.classes)}")
    if split == "auto":
        split = held_out_split(ds.splits)
    if split in (None, "all"):
        splits, split = ds.splits, "all"
    else:
        s = split_alias(split)
        if s not in ds.splits:
            raise DataError(f"'{ds.name}' has no {split} split; it has {', '.join(ds.splits)} (or use all)")
        splits, split = [s], s
    exs = [e for s in splits for e in ds.examples(s)]
    outputs = np.concatenate([pred.outputs([ds.load(e.x) for e in exs[i:i + batch_size]])
                              for i in range(0, len(exs), batch_size)] or [np.zeros((0, task.width))])
    y = task.remap([e.label for e in exs], ds.classes)
    out = task.report(y, outputs, [e.ref for e in exs])
    out["task"], out["primary"] = task.name, task.primary
    out.update(run_id=pred.run_dir.name, dataset=ds.id, dataset_name=ds.name, split=split)
    return out
