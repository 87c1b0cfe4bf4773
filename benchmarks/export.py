"""Per-item latency and size of the torch model, ONNX fp32 and ONNX int8: the text default (MiniLM + LoRA) and the
image default (EfficientNet-Lite0).

Real finished runs on the demo data (benchmarks/_common.py), exported with `lepton.export.export`; then the sides
classify the same test items one at a time, alternating A, B, C, A, B, C for --reps rounds; the medians of per-item
milliseconds are compared. The int8 macro-F1 is the export's own re-score on the run's test split. The image side
has no int8: Lepton refuses it for convolutional models (onnxruntime's dynamic int8 was 3x slower there,
ENVIRONMENT.md), so it compares torch with ONNX fp32 only.

    .venv/bin/python benchmarks/export.py [--reps 3]

Last lines: onnx_vs_torch_latency (ONNX fp32 ms ÷ torch ms, text), int8_size_ratio (int8 MB ÷ fp32 MB),
int8_f1_delta (int8 − fp32 test macro-F1), int8_vs_torch_latency, image_onnx_vs_torch_latency.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import home, load_line, minilm_lora_run, table

SHAPES = Path(__file__).resolve().parent.parent / "assets" / "demo" / "shapes.zip"


def per_item_ms(sides: dict, items: list, reps: int) -> dict[str, list[float]]:
    for p in sides.values():  # warm-up: first-call allocations and kernel choice
        p.predict_batch(items[:2])
    ms: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(reps):
        for name, p in sides.items():
            t0 = time.perf_counter()
            for x in items:
                p.predict_batch([x])
            ms[name].append((time.perf_counter() - t0) * 1000 / len(items))
    return ms


def report(title: str, ms: dict[str, list[float]], size: dict[str, float]) -> dict[str, float]:
    med = {k: statistics.median(v) for k, v in ms.items()}
    print(f"\n{title}")
    print(table([[k, f"{med[k]:.2f}", f"{min(ms[k]):.2f}", f"{max(ms[k]):.2f}", f"{size[k]:.1f}"] for k in ms],
                ["side", "ms/item (median)", "min", "max", "MB on disk"]))
    return med


def run_mb(run_id: str) -> float:
    from lepton.predict import resolve_run_dir

    return sum(f.stat().st_size for f in (resolve_run_dir(run_id) / "model").glob("*.safetensors")) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    home("export")
    print(load_line("start"))
    import torch

    from lepton.config import RunConfig
    from lepton.export import export, test_items
    from lepton.export.runtime import OnnxPredictor
    from lepton.predict import Predictor, resolve_run_dir
    from lepton.train import run

    torch.set_num_threads(2)
    run_id = minilm_lora_run(Path(tempfile.mkdtemp()))
    result = export(run_id, "onnx", int8=True)
    folder = Path(result["path"])
    sides = {"torch": Predictor.load(run_id), "onnx fp32": OnnxPredictor.load(folder, threads=2),
             "onnx int8": OnnxPredictor.load(folder, int8=True, threads=2)}
    items, _, _ = test_items(resolve_run_dir(run_id), sides["torch"], 40)
    q = result["int8"]
    med = report(f"text: MiniLM-L6 + LoRA, {len(items)} test texts one at a time",
                 per_item_ms(sides, items, args.reps),
                 {"torch": run_mb(run_id), "onnx fp32": q["fp32_size_mb"], "onnx int8": q["size_mb"]})
    print("torch MB: the run's trained tensors only (the pretrained MiniLM comes from its wheel); ONNX holds all")
    print(f"int8 test macro-F1 {q['test_macro_f1']:.3f} vs fp32 {q['fp32_test_macro_f1']:.3f} on {q['n']} examples; "
          f"parity of fp32: {result['parity']}")

    image_id = run(RunConfig(data=str(SHAPES), backbone="efficientnet-lite0", adapter="full", epochs=1,
                             batch_size=16, seed=0, keep_probe=False))["run_id"]
    image = export(image_id, "onnx")
    image_sides = {"torch": Predictor.load(image_id), "onnx fp32": OnnxPredictor.load(Path(image["path"]), threads=2)}
    image_items, _, _ = test_items(resolve_run_dir(image_id), image_sides["torch"], 40)
    image_med = report(f"image: EfficientNet-Lite0 + full, {len(image_items)} test images one at a time",
                       per_item_ms(image_sides, image_items, args.reps),
                       {"torch": run_mb(image_id), "onnx fp32": image["size_mb"]})
    print(f"parity of fp32: {image['parity']}")
    print(load_line("end"))
    print(f"onnx_vs_torch_latency: {med['onnx fp32'] / med['torch']:.3f}")
    print(f"int8_vs_torch_latency: {med['onnx int8'] / med['torch']:.3f}")
    print(f"int8_size_ratio: {q['size_mb'] / q['fp32_size_mb']:.3f}")
    print(f"int8_f1_delta: {q['test_macro_f1'] - q['fp32_test_macro_f1']:+.4f}")
    print(f"image_onnx_vs_torch_latency: {image_med['onnx fp32'] / image_med['torch']:.3f}")


if __name__ == "__main__":
    main()
