"""Cross-domain transfer with few labels: does a warm start beat a cold start?

Source domain: assets/demo/topics.csv, 400 news-style sentences (sports, tech, food, weather).
Target domain: assets/demo/forum_topics.csv, 160 chatty forum posts with the same four labels,
phrased nothing like the source ("Got tickets for the final!!! took four hours in the online queue").

1. Train a source run on topics.csv (MiniLM-L6 + LoRA by default).
2. For each seed, cut the target into train (--shots per class), validation (4 per class) and test
   (the remaining 28 per class), then train with the same recipe twice:
   cold = the pretrained backbone and a new head; warm = `--from` the source run (its adapted
   backbone and, since the labels match, its head).
3. Forgetting: evaluate each warm run on the source run's test split (stored, as `lepton eval` does).
Also reported: the source run alone on the target test split (zero target labels), and the
logistic probe on the untuned backbone that every run reports as its pretrained baseline.

    .venv/bin/python benchmarks/transfer_experiment.py                  # 3 seeds, 8 labels per class
    .venv/bin/python benchmarks/transfer_experiment.py --shots 4 --seeds 0 1 2 3 4

Runs land in --home (default: a fresh temp LEPTON_HOME), so `streamlit run app.py` with that
LEPTON_HOME shows them on the Transfer and Compare pages. 2.5 to 10 minutes on 2 CPU cores (more labels,
more time; a busy machine doubles it). Results of the three label counts are in the README.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "assets" / "demo"
VAL_PER_CLASS = 4


def split_target(src: Path, out: Path, shots: int, seed: int) -> Path:
    """A folder of train.csv / validation.csv / test.csv: `shots` and 4 per class, the rest test."""
    with src.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    rng = random.Random(seed)
    parts: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for label in sorted(by_label):
        items = by_label[label][:]
        rng.shuffle(items)
        parts["train"] += items[:shots]
        parts["validation"] += items[shots:shots + VAL_PER_CLASS]
        parts["test"] += items[shots + VAL_PER_CLASS:]
    out.mkdir(parents=True, exist_ok=True)
    for name, items in parts.items():
        rng.shuffle(items)
        with (out / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["text", "label"])
            w.writeheader()
            w.writerows({"text": r["text"], "label": r["label"]} for r in items)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", help="LEPTON_HOME to use (default: a new temp folder)")
    ap.add_argument("--backbone", default="minilm-l6")
    ap.add_argument("--adapter", default="lora", choices=["lora", "full"])
    ap.add_argument("--shots", type=int, default=8, help="target training labels per class")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10, help="target epochs (cold and warm alike)")
    ap.add_argument("--lr", type=float, default=None, help="target learning rate (default: the adapter's)")
    ap.add_argument("--source-epochs", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "artifacts" / "transfer_experiment.json"))
    args = ap.parse_args(argv)

    home = Path(args.home or tempfile.mkdtemp(prefix="lepton-transfer-"))
    os.environ["LEPTON_HOME"] = str(home)
    sys.path.insert(0, str(REPO))
    from lepton.commands.core import train_foreground
    from lepton.config import RunConfig
    from lepton.transfer import evaluate_and_store, measure_forgetting

    def train(**kw) -> dict:
        res = train_foreground(RunConfig(backbone=args.backbone, adapter=args.adapter, batch_size=8, **kw))
        return {**res, "report": json.loads((Path(res["run_dir"]) / "report.json").read_text())}

    t0 = time.time()
    print(f"LEPTON_HOME={home}", file=sys.stderr)
    source = train(data=str(DEMO / "topics.csv"), epochs=args.source_epochs, name="source: news topics")
    print(f"source run {source['run_id']}: macro-F1 {source['report']['macro_f1']:.3f} on its own test split",
          file=sys.stderr)
    rows = []
    for seed in args.seeds:
        folder = split_target(DEMO / "forum_topics.csv", home / "experiment" / f"forum-{args.shots}shot-seed{seed}",
                              args.shots, seed)
        common = dict(data=str(folder), epochs=args.epochs, lr=args.lr, seed=seed)
        cold = train(**common, name=f"cold seed {seed}")
        warm = train(**common, from_run=source["run_id"], name=f"warm seed {seed}")
        zero = evaluate_and_store(source["run_id"], cold["report"]["test_dataset"])
        forget = measure_forgetting(warm["run_id"])
        row = {"seed": seed, "cold": cold["report"]["macro_f1"], "warm": warm["report"]["macro_f1"],
               "pretrained_probe": cold["report"]["pretrained_vs_finetuned"]["pretrained"]["macro_f1"],
               "source_only": zero["macro_f1"], "source_before": forget["before"], "source_after": forget["after"],
               "forgetting": forget["forgetting"], "cold_run": cold["run_id"], "warm_run": warm["run_id"],
               "warm_fixed": warm["report"]["pretrained_vs_finetuned"]["fixed"],
               "warm_broken": warm["report"]["pretrained_vs_finetuned"]["broken"],
               "test_examples": cold["report"]["n"]}
        rows.append(row)
        print(f"seed {seed}: cold {row['cold']:.3f}  warm {row['warm']:.3f}  probe {row['pretrained_probe']:.3f}  "
              f"source-only {row['source_only']:.3f}  forgetting {row['forgetting'] + 0.0:.3f}", file=sys.stderr)

    def agg(key: str) -> dict:
        vals = [r[key] for r in rows]
        return {"mean": statistics.fmean(vals), "std": statistics.pstdev(vals) if len(vals) > 1 else 0.0}

    summary = {k: agg(k) for k in ("cold", "warm", "pretrained_probe", "source_only", "source_after", "forgetting")}
    result = {"backbone": args.backbone, "adapter": args.adapter, "shots_per_class": args.shots,
              "target_epochs": args.epochs, "source_epochs": args.source_epochs, "seeds": args.seeds,
              "source_run": source["run_id"], "source_macro_f1": source["report"]["macro_f1"],
              "summary": summary, "rows": rows, "lepton_home": str(home), "seconds": round(time.time() - t0, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))

    s = summary
    print(f"\n{args.backbone} + {args.adapter}, {args.shots} target labels per class, {len(rows)} seeds "
          f"(test: {rows[0]['test_examples']} forum posts)")
    print(f"  {'cold start (pretrained backbone, new head)':<48}{s['cold']['mean']:.3f} ± {s['cold']['std']:.3f}")
    print(f"  {'warm start (--from the news-topics run)':<48}{s['warm']['mean']:.3f} ± {s['warm']['std']:.3f}")
    print(f"  {'logistic probe on the untuned backbone':<48}{s['pretrained_probe']['mean']:.3f} ± "
          f"{s['pretrained_probe']['std']:.3f}")
    print(f"  {'source run alone (0 target labels)':<48}{s['source_only']['mean']:.3f}")
    print(f"  forgetting on the source test split: {result['source_macro_f1']:.3f} -> "
          f"{s['source_after']['mean']:.3f} ({s['source_after']['mean'] - result['source_macro_f1']:+.3f} macro-F1)")
    print(f"  {result['seconds']:.0f} s; details in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
