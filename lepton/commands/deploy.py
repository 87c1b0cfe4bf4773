"""Deployment verbs: export a finished run, and serve one over HTTP."""

from __future__ import annotations

import argparse
import sys

from lepton.cli import command, print_json


def _export_args(p: argparse.ArgumentParser) -> None:
    from lepton.export import EXPORTERS

    p.add_argument("run", help="run id, id prefix or run folder")
    p.add_argument("--format", required=True, choices=list(EXPORTERS), help="what to write (see `lepton export --help`)")
    p.add_argument("--int8", action="store_true", help="also write a dynamic-int8 ONNX copy, re-scored on the test split")
    p.add_argument("--out", help="folder to write (default: RUN/exports/FORMAT); a previous export there is replaced")


@command("export", "Export a finished run (onnx, safetensors, pt2) with a parity check and a model card; "
                   "the last stdout line is JSON", _export_args)
def cmd_export(args: argparse.Namespace) -> int:
    from lepton.export import export

    print_json(export(args.run, args.format, args.out, args.int8,
                      progress=lambda m: print(f"lepton export: {m}", file=sys.stderr, flush=True)))
    return 0


def _serve_args(p: argparse.ArgumentParser) -> None:
    from lepton.serve import DEFAULT_MAX_BYTES

    p.add_argument("run", help="run id, id prefix, run folder, or an export folder (with --onnx: an ONNX export)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on every request but /health")
    p.add_argument("--max-batch", type=int, default=32, help="most inputs per model call (concurrent requests are grouped)")
    p.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="largest request body accepted (bytes)")
    p.add_argument("--onnx", action="store_true", help="RUN is a folder from `lepton export --format onnx`: serve it with onnxruntime")
    p.add_argument("--int8", action="store_true", help="with --onnx: serve its model.int8.onnx")


@command("serve", "Serve a finished run over HTTP: /predict, /health, Open Inference Protocol V2, /metrics, /docs",
         _serve_args)
def cmd_serve(args: argparse.Namespace) -> int:
    from lepton.errors import ConfigError
    from lepton.serve import serve

    if args.max_batch < 1 or args.max_bytes < 1:
        raise ConfigError("--max-batch and --max-bytes must be at least 1")
    if args.int8 and not args.onnx:
        raise ConfigError("--int8 serves an ONNX export's int8 graph: add --onnx and give the export folder")
    serve(args.run, args.host, args.port, args.token, args.max_batch, args.max_bytes, args.onnx, args.int8)
    return 0
