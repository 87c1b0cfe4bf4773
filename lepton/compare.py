"""Compare runs: overlaid curves, the config fields that differ, final metrics with the best marked,
per-class F1 side by side. Plain data in and out; the Compare page and `lepton compare` both call it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable

DEFAULT_METRIC = "val/macro_f1"
X_AXES = ("epoch", "step", "time")
# The final-metrics table: (column, where it comes from, higher is better?)
TABLE = [
    ("accuracy", "report", True),
    ("macro_f1", "report", True),
    ("ece", "calibration", False),
    ("pretrained_macro_f1", "baseline", True),
    ("best_val_macro_f1", "summary", True),
    ("epochs_run", "summary", None),
    ("train_seconds", "summary", False),
    ("trainable_params", "summary", None),
]


def load_runs(refs: Iterable[str]) -> list[dict[str, Any]]:
    """Store rows for run ids / id prefixes / names, each with its report.json (None before it finishes)."""
    from lepton.jobs.store import get_store

    store = get_store()
    out, seen = [], set()
    for ref in refs:
        ref = str(ref).strip()
        if not ref:
            continue
        run = store.find_run(ref)
        if run["id"] in seen:
            continue
        seen.add(run["id"])
        run["report"] = _read_json(Path(run["run_dir"]) / "report.json")
        out.append(run)
    return out


def label(run: dict[str, Any]) -> str:
    return run.get("name") or (run.get("config") or {}).get("name") or run["id"]


def labels(runs: list[dict[str, Any]]) -> dict[str, str]:
    """Run id -> a unique display name (the name, with the id added where names collide)."""
    names = [label(r) for r in runs]
    return {r["id"]: (n if names.count(n) == 1 else f"{n} ({r['id']})") for r, n in zip(runs, names)}


# ---------------------------------------------------------------- curves
def metric_names(rows_by_run: dict[str, list[dict]]) -> list[str]:
    """'split/name' of every metric any of the runs logged, validation first."""
    names = {f"{r['split']}/{r['name']}" for rows in rows_by_run.values() for r in rows if r.get("split")}
    order = {"val": 0, "train": 1, "test": 2, "system": 3}
    return sorted(names, key=lambda n: (order.get(n.split("/")[0], 9), n))


def curve(rows: list[dict], metric: str, x: str = "epoch", t0: float | None = None) -> tuple[list[float], list[float]]:
    """(xs, ys) of one metric from store rows; x = epoch, step, or time (seconds since t0)."""
    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, not {x!r}")
    split, _, name = metric.partition("/")
    pts = [r for r in rows if r.get("split") == split and r.get("name") == name and r.get("value") is not None]
    if x == "time":
        start = t0 if t0 is not None else min((r["time"] for r in rows if r.get("time") is not None), default=0.0)
        xs = [float(r["time"]) - start for r in pts]
    else:
        xs = [float(r[x]) if r.get(x) is not None else None for r in pts]
    keep = [(a, float(r["value"])) for a, r in zip(xs, pts) if a is not None]
    return [a for a, _ in keep], [b for _, b in keep]


def curves(runs: list[dict[str, Any]], metric: str = DEFAULT_METRIC, x: str = "epoch",
           rows_by_run: dict[str, list[dict]] | None = None) -> dict[str, tuple[list[float], list[float]]]:
    """{run id: (xs, ys)} for one metric, aligned by epoch, step or wall time since each run started."""
    if rows_by_run is None:
        rows_by_run = metric_rows(runs)
    return {r["id"]: curve(rows_by_run.get(r["id"], []), metric, x, r.get("started")) for r in runs}


def metric_rows(runs: list[dict[str, Any]]) -> dict[str, list[dict]]:
    from lepton.jobs.store import get_store

    store = get_store()
    return {r["id"]: store.metrics(r["id"]) for r in runs}


# ---------------------------------------------------------------- config diff
def config_diff(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{field: {run id: value}} for the RunConfig fields whose values differ between the runs."""
    from lepton.config import RunConfig

    fields = [f.name for f in dataclasses.fields(RunConfig)]
    defaults = RunConfig().to_dict()
    cfgs = {r["id"]: {**defaults, **(r.get("config") or {})} for r in runs}
    extra = sorted({k for c in cfgs.values() for k in c} - set(fields))  # fields of older/newer versions
    out = {}
    for f in fields + extra:
        values = {rid: c.get(f) for rid, c in cfgs.items()}
        if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
            out[f] = values
    return out


# ---------------------------------------------------------------- final metrics
def final_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run: dataset, model and final metrics; `best` marks the highest test score (the task's primary
    metric) among runs evaluated on the same dataset (comparing scores across datasets means little)."""
    rows = []
    names = labels(runs)
    for r in runs:
        rep = r.get("report") or {}
        summary = rep.get("summary") or {}
        cfg = r.get("config") or {}
        base = (rep.get("pretrained_vs_finetuned") or {}).get("pretrained") or {}
        row = {"run": r["id"], "name": names[r["id"]], "status": r["status"],
               "dataset": rep.get("dataset_name") or cfg.get("data"), "test_dataset": rep.get("test_dataset"),
               "backbone": rep.get("backbone") or cfg.get("backbone"), "adapter": rep.get("adapter") or cfg.get("adapter"),
               "from_run": cfg.get("from_run")}
        for col, where, _ in TABLE:
            if where == "report":
                v = rep.get(col)
            elif where == "calibration":
                v = (rep.get("calibration") or {}).get("ece")
            elif where == "baseline":
                v = base.get("macro_f1")
            else:
                v = summary.get(col)
            row[col] = v
        # The task's primary metric (macro-F1, micro-F1 or R²): what `best` ranks, whatever the task.
        row["task"] = rep.get("task") or "single-label"
        row["primary"] = rep.get("primary") or "macro_f1"
        row["score"] = rep.get(row["primary"])
        row["best_val_score"] = summary.get("best_val_score", summary.get("best_val_macro_f1"))
        row["best"] = False
        rows.append(row)
    groups: dict[Any, list[dict]] = {}
    for row in rows:
        if row["score"] is not None:
            groups.setdefault(row["test_dataset"] or row["dataset"], []).append(row)
    for group in groups.values():
        max(group, key=lambda x: x["score"])["best"] = True
    return rows


def per_class_f1(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """{class: {run id: F1}} over the union of classes (None where a run has no such class)."""
    classes: list[str] = []
    for r in runs:
        for c in (r.get("report") or {}).get("classes") or []:
            if c not in classes:
                classes.append(c)
    return {c: {r["id"]: ((r.get("report") or {}).get("per_class") or {}).get(c, {}).get("f1") for r in runs}
            for c in classes}


def compare(refs: Iterable[str], metric: str = DEFAULT_METRIC, x: str = "epoch") -> dict[str, Any]:
    """Everything the Compare page shows, as JSON-ready data."""
    runs = load_runs(refs)
    rows = metric_rows(runs)
    return {"runs": [{"id": r["id"], "name": labels(runs)[r["id"]], "status": r["status"]} for r in runs],
            "metric": metric, "x": x, "metrics": metric_names(rows),
            "curves": {rid: {"x": xs, "y": ys} for rid, (xs, ys) in curves(runs, metric, x, rows).items()},
            "config_diff": config_diff(runs), "table": final_table(runs), "per_class_f1": per_class_f1(runs)}


def format_table(table: list[dict[str, Any]]) -> str:
    """The final-metrics table as aligned text, the best run(s) starred."""
    cols = [("", 1), ("run", 22), ("dataset", 20), ("backbone", 14), ("adapter", 12), ("score", 7), ("accuracy", 9),
            ("macro_f1", 9), ("ece", 7), ("pretrained_macro_f1", 11), ("train_seconds", 9)]
    heads = {"pretrained_macro_f1": "pretrained", "train_seconds": "train_s", "macro_f1": "macro-F1", "ece": "ECE"}
    lines = ["  ".join(f"{heads.get(c, c):<{w}}" for c, w in cols)]
    for row in table:
        cells = []
        for c, w in cols:
            if c == "":
                v = "*" if row["best"] else " "
            elif c == "run":
                v = row["name"]
            else:
                v = row.get(c)
            if isinstance(v, float):
                v = f"{v:.1f}" if c == "train_seconds" else f"{v:.3f}"
            cells.append(f"{'' if v is None else str(v)[:w]:<{w}}")
        lines.append("  ".join(cells).rstrip())
    lines.append("* best score (macro-F1; micro-F1 for multi-label, R² for regression) among runs on the same test dataset")
    return "\n".join(lines)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
