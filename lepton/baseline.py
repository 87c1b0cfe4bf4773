"""What fine-tuning bought: the untuned pretrained backbone, measured on the same splits as the run.

The loop fits a logistic-regression probe on the pretrained backbone's frozen features before it
trains (lepton/train/probe.py). After the run has scored its test split, `extras(...)` adds to
its folder and report:
- the probe against the shipped model on the same test examples: overall metrics, per-class F1
  difference, examples fixed and broken;
- `embeddings.json`: a 2-D PCA map of the test features before (pretrained) and after fine-tuning, and
  `embeddings.safetensors`: those features (fp16, at most MAX_MAP_POINTS), from which the run page
  computes a t-SNE map when asked (`tsne_maps`);
- `predictions.csv`: one row per test example (ref, x, true, pred, confidence, the pretrained
  probe's prediction, one probability column per class), which the misclassified browser reads.

The pretrained features go through the frozen-feature cache under the key the linear-probe path
uses, so they are free after a linear-probe run (or any earlier run) on the same backbone and data.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from lepton.data import Dataset, Example
from lepton.evaluate import pretrained_vs_finetuned
from lepton.train.events import Emit
from lepton.train.features import batched_features, cached_features, frozen_key

MAX_MAP_POINTS = 2000  # embedding maps stay readable (and the JSON small) on big test sets
PREDICTIONS = "predictions.csv"
EMBEDDINGS = "embeddings.json"
EMBEDDING_FEATURES = "embeddings.safetensors"


def extras(run_dir: Path, train: tuple[Dataset, tuple[list[Example], list[int]]],
           test: tuple[Dataset, tuple[list[Example], list[int]]], probs_before: np.ndarray, probs: np.ndarray,
           before_test: torch.Tensor, after_test: torch.Tensor | None, seed: int, same: bool, emit: Emit) -> dict[str, Any]:
    """Write predictions.csv and embeddings.json; return report.json's additions.

    The loop has already computed everything: the probe's test probabilities (probs_before) on the
    pretrained features (before_test), the shipped model's probabilities (probs) and the head's
    inputs after fine-tuning (after_test; None or `same` when the head sat on the pretrained features).
    Best effort past predictions.csv: a failure here is logged and never fails a finished run."""
    ds, _ = train
    test_ds, (test_exs, test_y) = test
    classes = ds.classes
    out: dict[str, Any] = {"artifacts": {}}
    if not test_exs:
        return out
    refs = [e.ref for e in test_exs]
    try:
        section = pretrained_vs_finetuned(test_y, probs_before, probs, classes, refs)
        section["probe"] = "logistic regression (scikit-learn) on the pretrained backbone's frozen features"
        out["pretrained_vs_finetuned"] = section
        d = section["delta"]
        emit("log", level="info", message=f"pretrained probe test macro-F1 {section['pretrained']['macro_f1']:.3f} -> "
             f"shipped model {section['finetuned']['macro_f1']:.3f} ({d['macro_f1']:+.3f}); "
             f"{section['fixed']} fixed, {section['broken']} broken")
        after = before_test if same or after_test is None else after_test
        write_embeddings(run_dir / EMBEDDINGS, before_test.numpy(), after.numpy(), test_y, probs.argmax(1),
                         classes, refs, seed, same=same or after_test is None)
        out["artifacts"]["embeddings"] = EMBEDDINGS
    except Exception as e:  # noqa: BLE001 - the comparison is an extra; the trained model is already safe
        emit("log", level="warning", message=f"pretrained baseline skipped: {type(e).__name__}: {e}")
    write_predictions(run_dir / PREDICTIONS, test_ds, test_exs, test_y, probs, classes, probs_before.argmax(1))
    out["artifacts"]["predictions"] = PREDICTIONS
    return out


def pretrained_spec(spec: Any) -> Any:
    """The untouched pretrained backbone's spec (a warm start keeps it under extra["base_spec"])."""
    return spec.extra.get("base_spec") or spec


@torch.no_grad()
def frozen_features(spec: Any, backbone: Callable[[], torch.nn.Module], ds: Dataset, exs: list[Example], split: str,
                    config: Any, device: torch.device, bf16: bool,
                    on_batch: Callable[[int], None] | None = None) -> tuple[torch.Tensor, bool]:
    """(N, dim) features of a frozen backbone for one split through the shared cache, and whether they were
    cached; backbone() builds the backbone on a miss."""
    if not exs:
        return torch.zeros(0, spec.dim or 0), True
    key = frozen_key(spec, ds.manifest["content_hash"], split, config, device, bf16)

    def compute() -> torch.Tensor:
        bb = backbone()
        return batched_features(lambda batch: bb.forward_features(**batch), bb, ds, exs, max(config.batch_size, 32),
                                device, bf16, on_batch=on_batch)

    return cached_features(key, compute)


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """(N, 2) projection and the share of variance each axis explains."""
    from sklearn.decomposition import PCA

    if len(x) < 2 or x.shape[1] < 2:
        return np.zeros((len(x), 2)), [0.0, 0.0]
    k = min(2, len(x), x.shape[1])
    pca = PCA(n_components=k, random_state=0)
    xy = pca.fit_transform(x - x.mean(0))
    if k < 2:
        xy = np.pad(xy, ((0, 0), (0, 2 - k)))
    ratio = list(map(float, pca.explained_variance_ratio_)) + [0.0] * (2 - k)
    return xy, ratio


def write_embeddings(path: Path, before: np.ndarray, after: np.ndarray, y: list[int] | np.ndarray,
                     pred: np.ndarray, classes: list[str], refs: list[str], seed: int = 0, same: bool = False) -> dict:
    """embeddings.json: the test set's 2-D maps before and after fine-tuning, coloured by label in the UI."""
    n = len(y)
    keep = np.arange(n)
    if n > MAX_MAP_POINTS:
        keep = np.sort(np.random.default_rng(seed).choice(n, MAX_MAP_POINTS, replace=False))
    b_xy, b_var = pca_2d(before[keep])
    a_xy, a_var = (b_xy, b_var) if same else pca_2d(after[keep])
    # fp16 halves the file, and a 2-D map needs no more; "after" is left out when it equals "before".
    feats = {"before": before[keep]} if same else {"before": before[keep], "after": after[keep]}
    save_file({k: v.astype(np.float16) for k, v in feats.items()}, str(path.with_name(EMBEDDING_FEATURES)))
    doc = {"method": "pca", "classes": list(classes), "n_total": int(n),
           "labels": [int(y[i]) for i in keep], "pred": [int(pred[i]) for i in keep], "refs": [refs[i] for i in keep],
           "before": {"xy": np.round(b_xy, 4).tolist(), "explained": b_var},
           "after": {"xy": np.round(a_xy, 4).tolist(), "explained": a_var},
           "frozen": bool(same)}
    path.write_text(json.dumps(doc))
    return doc


def tsne_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 2) t-SNE of x (scikit-learn; perplexity shrinks for small sets, which t-SNE requires)."""
    from sklearn.manifold import TSNE

    if len(x) < 4:
        return np.zeros((len(x), 2))
    return TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca", random_state=seed).fit_transform(
        x.astype(np.float32))


def tsne_maps(run_dir: Path, seed: int = 0) -> dict[str, np.ndarray] | None:
    """{"before", "after"}: t-SNE maps of the stored test features (None for a run without them)."""
    path = Path(run_dir) / EMBEDDING_FEATURES
    if not path.exists():
        return None
    feats = load_file(str(path))
    before = tsne_2d(feats["before"], seed)
    return {"before": before, "after": tsne_2d(feats["after"], seed) if "after" in feats else before}


def write_predictions(path: Path, ds: Dataset, exs: list[Example], y: list[int], probs: np.ndarray,
                      classes: list[str], pretrained_pred: np.ndarray | None = None) -> None:
    """predictions.csv: enough to browse mistakes without the model (x is the text, or the stored
    file's path relative to the dataset folder)."""
    root = Path(ds.root)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["ref", "x", "true", "pred", "confidence", "pretrained_pred", *[f"prob_{c}" for c in classes]])
        pred = probs.argmax(1)
        for i, e in enumerate(exs):
            x = e.x if isinstance(e.x, str) else _relative(Path(e.x), root)
            w.writerow([e.ref, x, classes[y[i]], classes[pred[i]], f"{probs[i, pred[i]]:.6f}",
                        classes[pretrained_pred[i]] if pretrained_pred is not None else "",
                        *[f"{p:.6f}" for p in probs[i]]])


def _relative(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)
