"""Record real learning curves on the suite, for the policy's simulator (lepton/strategy/env.py).

    .venv/bin/python benchmarks/record_curves.py [--only NAME ...] [--minutes 3] [--out DIR] [--force]

For every suite dataset, one real run per start recipe the policy can pick for its modality
(lepton.strategy.policy.START_ACTIONS), under the time budget (lepton.strategy.record). Writes
DIR/<dataset>.json and .npz; DIR defaults to $LEPTON_SUITE_DIR/curves. A dataset already recorded
with the same recipes and budget is skipped. Timings are this machine's: record on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("GOMP_SPINCOUNT", "1000")  # before torch loads: what Lepton's job processes run with
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("LEPTON_HOME", tempfile.mkdtemp(prefix="lepton-curves-"))
    from suite.build import BUILDERS, build, path_of, suite_dir

    from lepton.data import ingest
    from lepton.strategy import record

    out = args.out or suite_dir() / "curves"
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in BUILDERS if not args.only or n in args.only]
    build(names)
    for name in names:
        target = out / f"{name}.json"
        if target.exists() and not args.force and json.loads(target.read_text()).get("budget_s") == args.minutes * 60:
            print(f"{name}: already recorded ({target})", file=sys.stderr)
            continue
        ds = ingest(path_of(name), seed=args.seed).dataset
        doc, arrays = record.record(ds.id, BUILDERS[name][0], args.minutes, args.seed,
                                    log=lambda m: print(m, file=sys.stderr, flush=True))
        doc["dataset"] = name
        record.save(doc, arrays, target)
        print(f"{name}: {len(doc['runs'])} recordings -> {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
