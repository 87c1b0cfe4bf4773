"""What fine-tuning bought: the untuned pretrained backbone, measured on the same splits as the run.

The loop fits a logistic-regression probe on the pretrained backbone's frozen features before it
trains (its task's fit_probe, lepton/tasks). After the run has scored its test split, `extras(...)` adds to
its folder and report:
- the probe against the shipped model on the same test examples: the task's metrics (single-label
  adds the per-class F1 difference and the examples fixed and broken);
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
from lepton.train.events import Emit
from lepton.train.features import batched_features, cached_features, frozen_key

MAX_MAP_POINTS = 2000  # embedding maps stay readable (and the JSON small) on big test sets
PREDICTIONS = "predictions.csv"
EMBEDDINGS = "embeddings.json"
EMBEDDING_FEATURES = "embeddings.safetensors"


def extras(run_dir: Path, task: Any, train: tuple[Dataset, tuple[list[Example], list[Any]]],
           test: tuple[Dataset, tuple[list[Example], list[Any]]], probs_before: np.ndarray, probs: np.ndarray,
           before_test: torch.Tensor, after_test: torch.Tensor | None, seed: int, same: bool, emit: Emit) -> dict[str, Any]:
    """Write predictions.csv and embeddings.json; return report.json's additions.

    The loop has already computed everything: the probe's test outputs (probs_before) on the pretrained
    features (before_test), the shipped model's outputs (probs) and the head's inputs after fine-tuning
    (after_test; None or `same` when the head sat on the pretrained features). The embedding maps are
    coloured by class, so a task without one class per example (multi-label, regression) has none.
    Best effort past predictions.csv: a failure here is logged and never fails a finished run."""
    ds, _ = train
    test_ds, (test_exs, test_y) = test
    classes = ds.classes
    out: dict[str, Any] = {"artifacts": {}}
    if not test_exs:
        return out
    refs = [e.ref for e in test_exs]
    try:
        section = task.side_by_side(test_y, probs_before, probs, refs)
        section["probe"] = "a linear model (scikit-learn) on the pretrained backbone's frozen features"
        out["pretrained_vs_finetuned"] = section
        k = task.primary
        changed = f"; {section['fixed']} fixed, {section['broken']} broken" if "fixed" in section else ""
        emit("log", level="info", message=f"pretrained probe test {k} {section['pretrained'][k]:.3f} -> "
             f"shipped model {section['finetuned'][k]:.3f} ({section['delta'][k]:+.3f}){changed}")
        colours = task.colours(test_y)
        if colours is not None:
            after = before_test if same or after_test is None else after_test
            write_embeddings(run_dir / EMBEDDINGS, before_test.numpy(), after.numpy(), colours, probs.argmax(1),
                             classes, refs, seed, same=same or after_test is None)
            out["artifacts"]["embeddings"] = EMBEDDINGS
    except Exception as e:  # noqa: BLE001 - the comparison is an extra; the trained model is already safe
        emit("log", level="warning", message=f"pretrained baseline skipped: {type(e).__name__}: {e}")
    write_predictions(run_dir / PREDICTIONS, task, test_ds, test_exs, test_y, probs, probs_before)
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


def write_predictions(path: Path, task: Any, ds: Dataset, exs: list[Example], y: list[Any], probs: np.ndarray,
                      probs_before: np.ndarray | None = None) -> None:
    """predictions.csv: enough to browse mistakes without the model (x is the text, or the stored file's path
    relative to the dataset folder; a multimodal row: JSON of each modality's, null where missing): the task's columns (true, pred, …), the pretrained probe's prediction,
    and one probability column per class where the outputs are class probabilities."""
    root = Path(ds.root)
    per_class = task.class_names if probs.shape[1:] == (len(task.class_names),) and task.class_names else []
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["ref", "x", *task.csv_columns(), "pretrained_pred", *[f"prob_{c}" for c in per_class]])
        for i, e in enumerate(exs):
            x = _shown(e.x, root)
            before = task.csv_row(y[i], probs_before[i])[1] if probs_before is not None else ""
            w.writerow([e.ref, x, *task.csv_row(y[i], probs[i]), before,
                        *[f"{p:.6f}" for p in (probs[i] if per_class else ())]])


def _shown(x: Any, root: Path) -> str:
    if isinstance(x, dict):
        return json.dumps({m: None if v is None else v if isinstance(v, str) else _relative(Path(v), root)
                           for m, v in x.items()}, ensure_ascii=False)
    return x if isinstance(x, str) else _relative(Path(x), root)


def _relative(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)
