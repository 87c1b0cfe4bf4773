"""Core verbs: train, predict, eval, ingest, datasets, backbones, adapters."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lepton.cli import add_config_flags, command, config_from_args, print_json
from lepton.errors import DataError, LeptonError


class StderrProgress:
    """Human progress on stderr: a redrawn bar on a terminal, a line per phase or 10 % otherwise."""

    def __init__(self, stream=None):
        stream = stream or sys.stderr  # looked up per call: a default bound at import time may be closed by now
        self.stream, self.tty = stream, stream.isatty()
        self.last_phase, self.last_decile = "", -1

    def __call__(self, kind: str, **d: Any) -> None:
        if kind == "log":
            self._line(f"{d.get('level', 'info')}: {d['message']}")
        elif kind == "progress":
            frac, eta = d["fraction"], d.get("eta_s")
            bar = "#" * int(frac * 30)
            eta_s = f" ETA {int(eta) // 60}:{int(eta) % 60:02d}" if eta is not None else ""
            text = f"[{bar:<30}] {frac * 100:5.1f}%{eta_s} {d.get('message', '')}"
            if self.tty:
                self.stream.write("\r" + text[:120].ljust(120))
                self.stream.flush()
            elif d["phase"] != self.last_phase or int(frac * 10) != self.last_decile:
                self._line(text)
            self.last_phase, self.last_decile = d["phase"], int(frac * 10)
        elif kind == "metrics" and d["split"] == "val":
            v = d["values"]
            self._line(f"epoch {d['epoch']:g}: val " + ", ".join(f"{k} {x:.3f}" for k, x in v.items() if k != "loss"))

    def _line(self, text: str) -> None:
        self.stream.write(("\r" if self.tty else "") + text + "\n")
        self.stream.flush()


def own_data(config, owner: str) -> None:
    """Files given by path are stored (deduplicated) and owned by whoever trains on them, like an upload."""
    from lepton.data import ingest
    from lepton.jobs.store import get_store

    for ref, split in ((config.data, None), (config.test_data, "test")):
        if ref and Path(ref).expanduser().exists():
            ds = ingest(ref, modality=config.modality, text_column=config.text_column,
                        label_column=config.label_column, seed=config.seed, split=split, task=config.task).dataset
            get_store().add_dataset_owner(ds.id, owner, ds.name)


def train_foreground(config, emit_extra=None, owner: str | None = None) -> dict[str, Any]:
    """Run in this process through the same store path a worker uses, so the dashboard sees it live.

    The run row records this pid, so if this process dies the next worker or dashboard marks it interrupted."""
    from lepton.jobs.status import Status
    from lepton.jobs.store import get_store
    from lepton.train import preflight, run
    from lepton.train.events import tee

    preflight(config)
    store = get_store()
    if owner:
        own_data(config, owner)
    run_id = store.create_run(config, status=Status.running, owner=owner)
    emitter = store.emitter(run_id)
    emit = tee(emitter, emit_extra) if emit_extra else emitter
    try:
        result = run(config, emit, run_id=run_id, run_dir=Path(store.get_run(run_id)["run_dir"]))
    except KeyboardInterrupt:
        store.set_status(run_id, Status.interrupted, message=f"interrupted from the keyboard; `lepton resume {run_id}` continues it")
        raise
    except LeptonError as e:
        store.set_status(run_id, Status.failed, error=str(e))
        raise
    except Exception as e:
        store.set_status(run_id, Status.failed, error=f"{type(e).__name__}: {e}")
        raise
    store.set_status(run_id, Status.finished, result=result)
    return result


@command("train", "Fine-tune in the foreground; the last stdout line is a JSON result", add_config_flags)
def cmd_train(args: argparse.Namespace) -> int:
    from lepton.auth import cli_user

    config = config_from_args(args)
    result = train_foreground(config, StderrProgress(), owner=cli_user().id)
    print_json(result)
    return 0


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id, id prefix, run folder or safetensors export folder")
    p.add_argument("inputs", nargs="*", help="files (image/audio/text) or literal text")
    p.add_argument("--batch", metavar="PATH", help="a CSV/TSV/JSONL, .txt, folder or .zip of inputs: one CSV row each")
    p.add_argument("--out", default="preds.csv", help="with --batch: the CSV to write (default preds.csv)")
    for m in ("text", "image", "audio"):
        p.add_argument(f"--{m}", metavar="TEXT" if m == "text" else "FILE",
                       help=f"one row's {m} (multimodal runs: give the modalities you have, leave out the rest)")


@command("predict", "Predict inputs with a finished run; one JSON line per input, or a CSV with --batch", _predict_args)
def cmd_predict(args: argparse.Namespace) -> int:
    from lepton.predict import Predictor

    given = {m: getattr(args, m) for m in ("text", "image", "audio") if getattr(args, m) is not None}
    if sum(map(bool, (args.inputs, args.batch, given))) != 1:
        raise DataError("give inputs, --batch PATH, or one row's --text/--image/--audio (one of the three)")
    pred = Predictor.load(args.run)
    if given:
        x = pred.row(given)
        out = pred.predict(x)
        out.pop("latency_ms")
        without = pred.without(x)
        print_json({"input": given, **out, **({"without": without} if without else {})})
        return 0
    if pred.modality == "multimodal" and not args.batch:
        raise DataError(f"run '{pred.run_dir.name}' is multimodal ({', '.join(pred.modalities)}): give one row with "
                        "--text/--image/--audio, or --batch with a metadata table")
    if args.batch:
        from lepton.batch import predict_batch

        print_json(predict_batch(pred, args.batch, args.out))
        return 0
    for inp in args.inputs:
        p = Path(inp)
        if p.is_file():
            x: Any = p.read_text(encoding="utf-8") if pred.modality == "text" else p
        elif pred.modality == "text":
            x = inp
        else:
            raise DataError(f"{inp}: no such file; this run expects {pred.modality} files")
        out = pred.predict(x)
        out.pop("latency_ms")
        print_json({"input": inp, **out})
    return 0


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run id, id prefix or run folder")
    p.add_argument("--data", required=True, help="dataset id, file, folder or .zip (a file or folder is all test)")
    p.add_argument("--split", default="auto",
                   help="split to score: auto (the held-out test split, else validation, else all), test, val, train or all")


@command("eval", "Evaluate a finished run on another dataset and store it; prints a JSON report", _eval_args)
def cmd_eval(args: argparse.Namespace) -> int:
    from lepton.transfer import evaluate_and_store

    print_json(evaluate_and_store(args.run, args.data, split=args.split))
    return 0


def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help=".csv/.tsv/.jsonl file, folder or .zip of <label>/<file>")
    p.add_argument("--modality", default="auto", choices=["auto", "text", "image", "audio"])
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--task", default="auto", help="what a label is: single-label, multi-label (a JSON list or a;b) or "
                   "regression (a number); auto = multi-label for JSON-list labels, else single-label")
    p.add_argument("--name")


@command("ingest", "Validate and store a dataset; prints its manifest as JSON", _ingest_args)
def cmd_ingest(args: argparse.Namespace) -> int:
    from lepton.auth import cli_user
    from lepton.data import ingest
    from lepton.jobs.store import get_store

    res = ingest(args.path, modality=args.modality, text_column=args.text_column,
                 label_column=args.label_column, task=args.task, name=args.name)
    get_store().add_dataset_owner(res.dataset.id, cli_user().id, args.name or res.dataset.manifest.get("name"))
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print_json({**res.dataset.manifest, "reused": res.reused})
    return 0


def _list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


@command("datasets", "List stored datasets", _list_args)
def cmd_datasets(args: argparse.Namespace) -> int:
    from lepton.data import list_datasets

    rows = list_datasets()
    if args.json:
        print_json(rows)
        return 0
    print(f"{'id':<14}{'name':<24}{'modality':<10}{'classes':>8}{'train':>7}{'val':>6}{'test':>6}")
    for m in rows:
        s = m.get("sizes", {})
        print(f"{m['id']:<14}{m['name'][:23]:<24}{m['modality']:<10}{len(m['classes']):>8}"
              f"{s.get('train', 0):>7}{s.get('val', 0):>6}{s.get('test', 0):>6}")
    return 0


def _backbones_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--modality", choices=["text", "image", "audio"])
    p.add_argument("--json", action="store_true")
    p.add_argument("--model-types", action="store_true",
                   help="list the model_type values a local model folder or hub id may have (transformers' AutoModel)")


@command("backbones", "List registered backbones", _backbones_args)
def cmd_backbones(args: argparse.Namespace) -> int:
    from lepton.backbones import list_backbones

    if args.model_types:
        from lepton.backbones.model_folder import supported_model_types

        if args.json:
            print_json(supported_model_types())
        else:
            print("\n".join(supported_model_types()))
        return 0

    specs = list_backbones(modality=args.modality)
    if args.json:
        print_json([{"name": s.name, "modality": s.modality, "dim": s.dim, "params": s.params, "default": s.default,
                     "tiny": s.tiny, "recommended_adapter": s.recommended_adapter, "supports": list(s.supports),
                     "description": s.description} for s in specs])
        return 0
    print(f"{'name':<22}{'modality':<10}{'dim':>6}{'params':>10}  {'adapters':<32}description")
    for s in specs:
        flag = " (default)" if s.default else ""
        print(f"{s.name:<22}{s.modality:<10}{s.dim:>6}{s.params / 1e6:>9.1f}M  {','.join(s.supports):<32}"
              f"{s.description}{flag}")
    return 0


@command("adapters", "List registered adapters: what each trains, its options and the backbones it wraps", _list_args)
def cmd_adapters(args: argparse.Namespace) -> int:
    from lepton.adapters import ADAPTERS

    rows = [cls.describe() for _, cls in ADAPTERS.items()]
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        print(f"{r['name']:<14}{'frozen' if r['frozen'] else 'trains':<8}lr {r['default_lr']:<8g}{r['description']}")
        print(f"{'':<22}when: {r['when']}")
        for o in r["options"]:
            print(f"{'':<22}--adapter-option {o['name']}={o['default']}  {o['help']}")
    return 0
