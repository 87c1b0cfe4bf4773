"""The honest comparison: default, random, tpe, rl and auto on the suite, at equal budgets, on held-out data.

    .venv/bin/python benchmarks/strategy.py [--budgets 1 3 10] [--seeds 0 1 2] [--only NAME ...]
                                            [--strategies default random tpe rl auto] [--json FILE]

- default: the first wave's fixed recipe (the backbone's recommended adapter, its default epochs and
  learning rate), with `--max-minutes` = the budget;
- random / tpe: `lepton tune --strategy random|tpe --budget-minutes B` (trials of ~36 s, median pruning);
- rl: `lepton tune --strategy rl`, with the policy trained **without** the dataset it is scored on
  (leave-one-dataset-out: benchmarks/train_policy.py --hold-out NAME, from the same recordings);
- auto: `lepton train --max-minutes B` with nothing else given (the shipped default).
A recipe that refuses the budget (too small for one epoch: `lepton train` says so and trains nothing) scores 0, as a
study that finishes no trial does: the user gets no model.
Each is scored on the test split of the model it chose on validation; the classical baseline of
benchmarks/quality.py sits beside every row. Prints a table per budget, each strategy's mean rank,
the best-so-far validation curve against time (as points), and `name: value` lines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("GOMP_SPINCOUNT", "1000")  # before torch loads: what Lepton's job processes run with
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
STRATEGIES = ["default", "random", "tpe", "rl", "auto"]


def loo_policy(name: str, curves: Path, out: Path) -> Path:
    """The policy trained on every recorded dataset but `name` (made once, then reused)."""
    path = out / f"policy-without-{name}.safetensors"
    if not path.exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_policy.py"), "--curves", str(curves),
                        "--hold-out", name, "--out", str(path)], check=True, stdout=subprocess.DEVNULL)
    return path


def best_so_far(trials: list[dict], t0: float) -> list[tuple[float, float]]:
    pts, best = [], -1.0
    for t in sorted(trials, key=lambda t: t.get("finished") or 0):
        v = ((t.get("result") or {}).get("metrics") or {}).get("best_val_macro_f1")
        if v is not None and t.get("finished"):
            best = max(best, v)
            pts.append((round(t["finished"] - t0, 1), round(best, 4)))
    return pts


def one(strategy: str, ds_id: str, minutes: float, seed: int) -> dict:
    """Run one strategy once; its test macro-F1 (chosen on validation), seconds and best-so-far curve."""
    from lepton.config import StudyConfig
    from lepton.jobs.store import get_store
    from quality import recipe_config

    from lepton.strategy.study import run_study
    from lepton.train import run
    from lepton.train.budget import BudgetError

    t0 = time.time()
    if strategy in ("default", "auto"):
        try:
            res = run(recipe_config("fixed" if strategy == "default" else "auto", ds_id, minutes, seed))
        except BudgetError as e:  # the recipe cannot train one epoch in this budget: the user gets no model
            print(f"  {strategy}: refused: {e}", file=sys.stderr, flush=True)
            return {"test_macro_f1": 0.0, "val_macro_f1": None, "seconds": time.time() - t0, "trials": 0,
                    "curve": [], "chosen": "refused (budget too small for one epoch)"}
        m = res["metrics"]
        return {"test_macro_f1": m["macro_f1"], "val_macro_f1": m["best_val_macro_f1"], "seconds": time.time() - t0,
                "trials": 1, "curve": [(round(time.time() - t0, 1), m["best_val_macro_f1"])],
                "chosen": f"{m['adapter']} ({m['kept']})"}
    out = run_study(StudyConfig(data=ds_id, strategy=strategy, budget_minutes=minutes, seed=seed))
    trials = get_store().study_trials(out["study_id"])
    return {"test_macro_f1": out["test"]["macro_f1"] if out["test"] else 0.0,
            "val_macro_f1": out["best"]["val_macro_f1"] if out["best"] else None, "seconds": time.time() - t0,
            "trials": out["trials"], "curve": best_so_far(trials, t0),
            "chosen": (out["best"] or {}).get("config", {}).get("adapter") or "policy"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budgets", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--strategies", nargs="+", default=STRATEGIES, choices=STRATEGIES)
    ap.add_argument("--curves", type=Path, help="the recordings the rl policies learn from")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("LEPTON_HOME", tempfile.mkdtemp(prefix="lepton-strategy-"))
    from quality import baseline
    from suite.build import BUILDERS, build, path_of, suite_dir

    from lepton.data import ingest
    from lepton.strategy.auto import AUTO_START

    names = [n for n in BUILDERS if not args.only or n in args.only]
    build(names)
    curves = args.curves or suite_dir() / "curves"
    rows = []
    for name in names:
        modality = BUILDERS[name][0]
        for seed in args.seeds:
            ds = ingest(path_of(name), seed=seed).dataset
            base = baseline(modality, ds)["macro_f1"]
            for minutes in args.budgets:
                # rl (and auto, where its recipe comes from the policy) never see a policy that saw this dataset;
                # without them no policy is needed, nor the recordings it learns from.
                if "rl" in args.strategies or ("auto" in args.strategies and AUTO_START == "policy"):
                    os.environ["LEPTON_POLICY"] = str(loo_policy(name, curves, suite_dir()))
                for strategy in args.strategies:
                    r = one(strategy, ds.id, minutes, seed)
                    rows.append({"dataset": name, "seed": seed, "budget_min": minutes, "strategy": strategy,
                                 "baseline_macro_f1": base, **r})
                    print(f"{name} seed {seed} {minutes:g} min {strategy}: test {r['test_macro_f1']:.3f} "
                          f"(val {r['val_macro_f1']}, {r['trials']} trials, {r['seconds']:.0f} s, {r['chosen']}) | "
                          f"baseline {base:.3f}", file=sys.stderr, flush=True)
                    if args.json:
                        args.json.write_text(json.dumps(rows, indent=1))
    report(rows, args.strategies)


def report(rows: list[dict], strategies: list[str]) -> None:
    names = list(dict.fromkeys(r["dataset"] for r in rows))
    for minutes in sorted({r["budget_min"] for r in rows}):
        at = [r for r in rows if r["budget_min"] == minutes]
        print(f"\n### {minutes:g} minutes (test macro-F1 of the validation-chosen model, mean ± std over seeds)\n")
        print("| dataset | baseline | " + " | ".join(strategies) + " |")
        print("|---|---|" + "---|" * len(strategies))
        ranks = {s: [] for s in strategies}
        for n in names:
            cells = []
            for seed in sorted({r["seed"] for r in at if r["dataset"] == n}):
                scores = {r["strategy"]: r["test_macro_f1"] for r in at if r["dataset"] == n and r["seed"] == seed}
                order = sorted(scores, key=lambda s: -scores[s])
                for s in scores:  # ties share the better rank
                    ranks[s].append(1 + sum(scores[o] > scores[s] for o in order))
            for s in strategies:
                xs = [r["test_macro_f1"] for r in at if r["dataset"] == n and r["strategy"] == s]
                cells.append(f"{np.mean(xs):.3f} ± {np.std(xs):.3f}" if xs else "–")
            base = [r["baseline_macro_f1"] for r in at if r["dataset"] == n]
            print(f"| {n} | {np.mean(base):.3f} | " + " | ".join(cells) + " |")
        print("| **mean rank** | | " + " | ".join(f"{np.mean(ranks[s]):.2f}" if ranks[s] else "–" for s in strategies) + " |")
        first = min(x["seed"] for x in at)
        print(f"\nbest-so-far validation macro-F1 against seconds (seed {first}):")
        for n in names:
            for s in strategies:
                r = next((r for r in at if r["dataset"] == n and r["strategy"] == s and r["seed"] == first), None)
                if r:
                    print(f"  {n} {s}: {r['curve']}")
    print()
    for minutes in sorted({r["budget_min"] for r in rows}):
        at = [r for r in rows if r["budget_min"] == minutes]
        tag = f"{minutes:g}min"

        def mean_of(s: str) -> dict[str, float]:
            return {n: np.mean([r["test_macro_f1"] for r in at if r["dataset"] == n and r["strategy"] == s])
                    for n in names if any(r["dataset"] == n and r["strategy"] == s for r in at)}

        means = {s: mean_of(s) for s in strategies}
        for a, b in (("rl", "tpe"), ("rl", "default"), ("rl", "auto"), ("auto", "default"), ("tpe", "random")):
            common = [n for n in names if n in means.get(a, {}) and n in means.get(b, {})]
            if common:
                print(f"{a}_vs_{b}_test_f1_{tag}: {np.mean([means[a][n] - means[b][n] for n in common]):+.4f}")
        if means.get("auto"):
            base = {n: np.mean([r["baseline_macro_f1"] for r in at if r["dataset"] == n]) for n in means["auto"]}
            ratio = np.mean([(1 - means["auto"][n]) / max(1 - base[n], 1e-9) for n in means["auto"]])
            print(f"auto_vs_baseline_error_ratio_{tag}: {ratio:.4f}")


if __name__ == "__main__":
    main()
