"""The command line: the same verbs as the dashboard, calling the same functions.

Machine-readable results go to stdout (JSON), human progress goes to stderr, and bad input
exits non-zero with one readable line (a traceback only with --debug).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from typing import Any, Callable

from lepton.config import RunConfig
from lepton.errors import LeptonError

# verb -> (help, add_arguments(parser), handler(args) -> exit code). Modules add their verbs here.
Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None):
    def deco(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = (help, add_arguments, fn)
        return fn

    return deco


def add_config_flags(p: argparse.ArgumentParser, cls: type = RunConfig) -> None:
    """One flag per field of a config dataclass (`--batch-size`), plus --config FILE.yaml."""
    p.add_argument("--config", help="YAML config file (flags given explicitly override it)")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        aliases = tuple(f.metadata.get("flags", ()))  # short spellings, e.g. --from for --from-run
        helptext = f.metadata.get("help", "")
        if hints[f.name] is bool:
            p.add_argument(flag, *aliases, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        elif typing.get_origin(hints[f.name]) is dict:  # repeatable key=value: --adapter-option r=16
            p.add_argument(*aliases, flag, dest=f.name, action="append", default=None, metavar="KEY=VALUE", help=helptext)
        else:
            choices = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is typing.Literal else None
            p.add_argument(flag, *aliases, dest=f.name, default=None, choices=choices, help=helptext)


def config_from_args(args: argparse.Namespace, cls: type = RunConfig) -> Any:
    raw: dict[str, Any] = cls.load(args.config).to_dict() if getattr(args, "config", None) else {}
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name, None)
        if v is not None:
            raw[f.name] = v
    cfg = cls.from_dict(raw, source="command line")
    if not cfg.data:
        raise LeptonError("--data is required (a dataset id, or a .csv/.tsv/.jsonl file, folder or .zip)")
    return cfg


def print_json(obj: Any) -> None:
    print(json.dumps(obj, default=str), flush=True)


def build_parser() -> argparse.ArgumentParser:
    import lepton.commands  # noqa: F401  (registers the verbs)

    parser = argparse.ArgumentParser(prog="lepton", description="Lepton: transfer learning for text, images and audio")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="verb", required=True)
    for name, (help, add_arguments, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        add_arguments(p)
        p.set_defaults(handler=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    import os

    from lepton.openmp import polite_openmp

    polite_openmp(os.environ)  # before torch loads: `lepton train` in the foreground shares the cores as jobs do
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except LeptonError as e:
        if args.debug:
            raise
        print(f"lepton {args.verb}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lepton {args.verb}: interrupted", file=sys.stderr)
        return 130
