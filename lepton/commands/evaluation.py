"""Evaluation verbs: compare runs, and the cross-domain transfer matrix."""

from __future__ import annotations

import argparse

from lepton.cli import command, print_json


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="two or more run ids, id prefixes or names")
    p.add_argument("--metric", default="val/macro_f1", help="curve metric for --json, as split/name (val/macro_f1)")
    p.add_argument("--x", default="epoch", choices=["epoch", "step", "time"], help="curve x axis for --json")
    p.add_argument("--json", action="store_true", help="machine-readable output: table, config diff, curves")


@command("compare", "Compare runs: final metrics (best marked), config differences, per-class F1", _compare_args)
def cmd_compare(args: argparse.Namespace) -> int:
    from lepton.compare import compare, format_table

    data = compare(args.runs, args.metric, args.x)
    if args.json:
        print_json(data)
        return 0
    names = {r["id"]: r["name"] for r in data["runs"]}
    print(format_table(data["table"]))
    if data["config_diff"]:
        print("\nconfig differences:")
        for field, values in data["config_diff"].items():
            print(f"  {field:<16}" + "  ".join(f"{names[rid]}={v}" for rid, v in values.items()))
    if data["per_class_f1"]:
        print("\nper-class F1:")
        print(f"  {'class':<16}" + "".join(f"{names[r['id']][:14]:>16}" for r in data["runs"]))
        for c, vals in data["per_class_f1"].items():
            print(f"  {c[:15]:<16}" + "".join(f"{'–' if v is None else f'{v:.3f}':>16}" for v in vals.values()))
    return 0


def _transfer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", help="runs to show (default: every finished run)")
    p.add_argument("--forgetting", action="store_true",
                   help="first evaluate each warm-started run on its source run's dataset (stored, like `lepton eval`)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


@command("transfer", "Transfer matrix: macro-F1 of runs (rows) on datasets (columns), and forgetting", _transfer_args)
def cmd_transfer(args: argparse.Namespace) -> int:
    from lepton.transfer import measure_forgetting, transfer_matrix

    m = transfer_matrix(args.runs or None)
    if args.forgetting:
        for rid in list(m["forgetting"]):
            measure_forgetting(rid)
        m = transfer_matrix(args.runs or None)
    if args.json:
        print_json(m)
        return 0
    cols = m["datasets"]
    names = {r["id"]: r["name"] or r["id"] for r in m["runs"]}
    w = min(24, max([10, *(len(c["name"]) + 2 for c in cols)]))
    first = min(32, max([10, *(len(n) + 2 for n in names.values())]))
    print(f"{'run':<{first}}" + "".join(f"{c['name'][:w - 1]:>{w}}" for c in cols))
    for r in m["runs"]:
        cells = m["cells"][r["id"]]
        line = f"{names[r['id']][:first - 1]:<{first}}"
        for c in cols:
            cell = cells.get(c["id"])
            mark = "*" if cell and cell["source"] == "own test report" else " "
            line += f"{'– ' if cell is None else format(cell['score'], '.3f') + mark:>{w}}"
        print(line)
    print("* the run's own test split; other cells are stored evaluations (`lepton eval RUN --data DATASET`); each "
          "column's metric: " + ", ".join(f"{c['name']} {c['metric']}" for c in cols))
    for rid, f in m["forgetting"].items():
        if f["forgetting"] is None:
            print(f"forgetting of {names[rid]}: not measured yet (`lepton transfer --forgetting {rid}`)")
        else:
            ds = next((c["name"] for c in cols if c["id"] == f["source_dataset"]), f["source_dataset"])
            print(f"forgetting of {names[rid]} on its source data ({ds}, {f['split']}): "
                  f"{f['before']:.3f} -> {f['after']:.3f} ({f['after'] - f['before']:+.3f} macro-F1)")
    return 0
