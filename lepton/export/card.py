"""The model card: README.md with Hugging Face YAML metadata, what the model is for, its limits, how to load it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PIPELINE = {"text": "text-classification", "image": "image-classification", "audio": "audio-classification"}


def metadata(meta: dict[str, Any], report: dict[str, Any], library: str) -> dict[str, Any]:
    summary = report.get("summary") or {}
    dataset = {"name": report.get("dataset_name") or report.get("dataset") or "", "type": report.get("dataset") or ""}
    results = [{"type": "accuracy", "value": round(float(report.get("accuracy", 0.0)), 4)},
               {"type": "f1", "name": "macro-F1", "value": round(float(report.get("macro_f1", 0.0)), 4)}]
    return {"pipeline_tag": PIPELINE[meta["modality"]], "base_model": meta["backbone"], "library_name": library,
            "tags": ["lepton", meta["modality"], (meta.get("merged_from") or {}).get("adapter", meta["adapter"])],
            "metrics": ["accuracy", "f1"],
            "model-index": [{"name": meta.get("run_id", ""), "results": [{
                "task": {"type": PIPELINE[meta["modality"]]}, "dataset": dataset,
                "metrics": results, "split": report.get("split") or summary.get("eval_split") or "test"}]}]}


def _load_snippets(meta: dict[str, Any], fmt: str) -> str:
    if fmt == "onnx":
        if meta["export"]["features_only"]:
            feed = ("# model.onnx is the head: run melspectrogram.onnx and embedding_model.onnx as preprocessor.json says,\n"
                    "# mean the window embeddings, then\nprobs = sess.run(None, {\"features\": features})[0]")
        elif meta["modality"] == "text":
            feed = ("from tokenizers import Tokenizer\ntok = Tokenizer.from_file(\"tokenizer.json\")  # pads to the longest text\n"
                    "enc = tok.encode_batch([\"some text\"])\n"
                    "feed = {\"input_ids\": np.array([e.ids for e in enc], dtype=np.int64),\n"
                    "        \"attention_mask\": np.array([e.attention_mask for e in enc], dtype=np.int64)}\n"
                    "if \"token_type_ids\" in names: feed[\"token_type_ids\"] = np.array([e.type_ids for e in enc], dtype=np.int64)\n"
                    "probs = sess.run(None, {k: v for k, v in feed.items() if k in names})[0]")
        else:
            feed = ("# the inputs as preprocessor_config.json / preprocessor.json describe, e.g. pixel_values (N, 3, H, W)\n"
                    "probs = sess.run(None, {names[0]: batch})[0]")
        return ("```python\nimport numpy as np, onnxruntime as ort\n"
                "sess = ort.InferenceSession(\"model.onnx\", providers=[\"CPUExecutionProvider\"])\n"
                "names = [i.name for i in sess.get_inputs()]\n" + feed + "\n```\n")
    if fmt == "pt2":
        return ("```python\nimport torch\nprogram = torch.export.load(\"model.pt2\")\n"
                f"probs = program.module()(*tensors)  # tensors in this order: {', '.join(meta['export']['inputs'])}\n```\n")
    return ""


def render(meta: dict[str, Any], report: dict[str, Any], result: dict[str, Any], library: str) -> str:
    fmt = result["format"]
    summary = report.get("summary") or {}
    classes = meta["classes"]
    size = report.get("n") or sum((report.get("per_class") or {}).get(c, {}).get("support", 0) for c in classes)
    adapter = (meta.get("merged_from") or {}).get("adapter", meta["adapter"])
    p = result["parity"]
    lines = [
        "---", yaml.safe_dump(metadata(meta, report, library), sort_keys=False).rstrip(), "---", "",
        f"# {meta.get('run_id', 'Lepton model')}: {meta['modality']} classifier ({len(classes)} classes)", "",
        f"Fine-tuned with Lepton from `{meta['backbone']}` with the `{adapter}` adapter"
        + (f" (merged into the weights: {meta['export']['merged_layers']} layers)" if meta.get("merged_from") else "") + ".",
        "",
        "## Data and results",
        f"- Dataset: **{report.get('dataset_name') or report.get('dataset')}**; scored on its {report.get('split') or 'test'} "
        f"split ({size} examples).",
        f"- Accuracy {float(report.get('accuracy', 0)):.3f}, macro-F1 {float(report.get('macro_f1', 0)):.3f}"
        + (f"; the untuned backbone's probe scored macro-F1 {summary['probe_val_macro_f1']:.3f} on validation"
           if isinstance(summary.get("probe_val_macro_f1"), (int, float)) else "") + ".",
        f"- Classes: {', '.join(classes)}.",
        f"- This export agrees with the run's torch model on {p['n']} test examples: top-1 agreement "
        f"{p['top1_agreement']:.1%}, max probability difference {p['max_abs_diff']:.1e}.",
    ]
    if "int8" in result:
        q = result["int8"]
        lines.append(f"- `model.int8.onnx` (dynamic int8, {q['size_mb']} MB): macro-F1 {q['test_macro_f1']:.3f} "
                     f"against fp32 {q['fp32_test_macro_f1']:.3f} on the whole test split.")
    lines += [
        "", "## Intended use",
        f"Sorting {meta['modality']} inputs into the classes above, for inputs like the training data. "
        "It gives one label per input with a probability for every class.", "",
        "## Limits",
        "- It knows only these classes: every input gets one of them, however unlike the training data it is.",
        f"- The figures above come from {size} held-out examples of one dataset; expect lower scores on data "
        "collected differently.",
        "- Probabilities are the network's; check them on your own data before using them as confidences.",
    ]
    if meta.get("companion"):
        lines.append(f"- The run blends a classical {meta['companion']['kind']} companion (weight "
                     f"{meta['companion']['weight']}) with the network. Lepton's loaders of this folder apply it; "
                     "the bare graph below gives the network's probabilities alone.")
    lines += ["", "## How to load it",
              "With Lepton, which also applies the preprocessing:", "",
              "```python\nfrom lepton.predict import Predictor\n"
              + (f"p = Predictor.load(\"{Path(result['path']).name}\")  # this folder\n" if fmt == "safetensors" else
                 f"p = Predictor.load(\"{meta.get('run_id', 'RUN')}\")  # the run this came from\n")
              + "print(p.predict(\"...\"))  # a text, or a path to an image / audio file\n```", "",
              f"Serve it over HTTP: `lepton serve {'--onnx ' + result['path'] if fmt == 'onnx' else meta.get('run_id', 'RUN')}`.", ""]
    snippet = _load_snippets(meta, fmt)
    if snippet:
        lines += [f"Without Lepton ({library}):", "", snippet]
    return "\n".join(lines)


def write(folder: Path, meta: dict[str, Any], report: dict[str, Any], result: dict[str, Any], exporter: Any) -> str:
    (folder / "README.md").write_text(render(meta, report, result, exporter.library), encoding="utf-8")
    return "README.md"


def parse(text: str) -> dict[str, Any]:
    """The YAML front matter of a card (what the Hub reads)."""
    if not text.startswith("---\n"):
        return {}
    return yaml.safe_load(text[4:text.index("\n---", 4)]) or {}
