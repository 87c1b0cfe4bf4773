"""Train the strategy policy by REINFORCE across the suite's tasks, and write lepton/strategy/policy.safetensors.

    .venv/bin/python benchmarks/train_policy.py [--curves DIR] [--hold-out NAME] [--episodes N] [--seed S] [--out FILE]

Input: the recordings of benchmarks/record_curves.py (real runs on the suite). The environment
(lepton.strategy.env.FineTuneEnv) replays them; each episode is one training run on a task made
from one dataset (a random subset of its classes, a budget of 1, 2 or 3 minutes). The policy
(lepton.strategy.policy.PolicyNet) samples its decisions; REINFORCE with a baseline (the mean
return of the batch's episodes on the same dataset) and an entropy bonus updates it.

--hold-out NAME leaves that dataset out (the leave-one-dataset-out policies benchmarks/strategy.py
scores); without it every recorded dataset trains the policy that ships. The file's metadata
records the seed, datasets, episodes, cost and the final mean return.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def episode(env, net, rng_seed: int, greedy: bool = False, options: dict | None = None):
    """One episode: (log-probs, entropies, return, info)."""
    obs, info = env.reset(seed=rng_seed, options=options)
    logps, ents, total = [], [], 0.0
    done = False
    while not done:
        x = torch.from_numpy(obs)
        start = info["phase"] == "start"
        logits = (net.start(x[: net.start[0].in_features]) if start else net.epoch(x))
        n = logits.shape[0]
        logits = net.masked(logits, env.action_masks()[:n])
        dist = torch.distributions.Categorical(logits=logits)
        a = int(logits.argmax()) if greedy else int(dist.sample())
        logps.append(dist.log_prob(torch.tensor(a)))
        ents.append(dist.entropy())
        obs, r, done, _, info = env.step(a)
        total += r
    return logps, ents, total, info


def train(recordings, episodes: int, seed: int, cost: float, batch: int = 32, lr: float = 3e-3,
          entropy: float = 0.02, jitter: float = 0.3, log=print):
    from lepton.strategy.env import FineTuneEnv
    from lepton.strategy.policy import PolicyNet

    torch.manual_seed(seed)
    env = FineTuneEnv(recordings, cost=cost, jitter=jitter)
    net = PolicyNet()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    history = []
    for it in range(episodes // batch):
        eps = [episode(env, net, int(rng.integers(2**31))) for _ in range(batch)]
        returns = np.array([e[2] for e in eps])
        names = [e[3]["dataset"] for e in eps]
        # Baseline per dataset within the batch: datasets differ in how much fine-tuning can gain at all.
        base = {n: returns[[m == n for m in names]].mean() for n in set(names)}
        loss = torch.zeros(())
        for (logps, ents, ret, info), n in zip(eps, names):
            adv = ret - base[n]
            loss = loss - adv * torch.stack(logps).sum() - entropy * torch.stack(ents).mean()
        opt.zero_grad()
        (loss / batch).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        history.append(float(returns.mean()))
        if it % 50 == 0:
            log(f"update {it}: mean return {np.mean(history[-50:]):+.4f}")
    return net, float(np.mean(history[-50:])) if history else 0.0


def evaluate(net, recordings, cost: float, seeds: int = 200) -> dict[str, float]:
    """Mean greedy return per dataset over random tasks (the held-out dataset's is the honest one)."""
    from lepton.strategy.env import FineTuneEnv

    env = FineTuneEnv(recordings, cost=cost)
    out = {}
    with torch.no_grad():
        for rec in recordings:
            out[rec.name] = float(np.mean([episode(env, net, s, greedy=True, options={"recording": rec})[2]
                                           for s in range(seeds)]))
    return out


def fixed_returns(recordings, cost: float, seeds: int = 200) -> dict[str, dict[str, float]]:
    """Per dataset, the mean return of every start recipe run to the end ("continue" always), for reference:
    what a fixed rule would get in the same simulator (the best of them is an oracle, chosen after the fact)."""
    from lepton.strategy.env import FineTuneEnv
    from lepton.strategy.policy import EPOCH_ACTIONS, START_ACTIONS

    env = FineTuneEnv(recordings, cost=cost)
    out: dict[str, dict[str, float]] = {}
    for rec in recordings:
        out[rec.name] = {}
        for a in [i for i in range(len(START_ACTIONS)) if i in rec.runs or START_ACTIONS[i]["adapter"] == "linear-probe"]:
            if START_ACTIONS[a]["modality"] not in ("any", rec.modality):
                continue
            total = []
            for s in range(seeds):
                env.reset(seed=s, options={"recording": rec})
                _, r, done, _, _ = env.step(a)
                ret = r
                while not done:
                    _, r, done, _, _ = env.step(EPOCH_ACTIONS.index("continue"))
                    ret += r
                total.append(ret)
            label = START_ACTIONS[a]
            out[rec.name][f"{label['adapter']}@{label.get('lr', '')}{'/' + str(label['res']) if 'res' in label else ''}"] = float(np.mean(total))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--curves", type=Path)
    ap.add_argument("--hold-out", action="append", default=[])
    ap.add_argument("--episodes", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cost", type=float, default=0.02, help="reward cost of a whole budget's worth of seconds")
    ap.add_argument("--jitter", type=float, default=0.3, help="log-normal spread of the meta-features while training")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from safetensors.torch import save_file
    from suite.build import suite_dir

    from lepton.strategy.env import load_recordings
    from lepton.strategy.policy import WEIGHTS

    folder = args.curves or suite_dir() / "curves"
    recs = load_recordings(folder)
    if not recs:
        raise SystemExit(f"no recordings in {folder}: run benchmarks/record_curves.py first")
    train_recs = [r for r in recs if r.name not in args.hold_out]
    t0 = time.time()
    net, final = train(train_recs, args.episodes, args.seed, args.cost, jitter=args.jitter,
                       log=lambda m: print(m, file=sys.stderr))
    scores = evaluate(net, recs, args.cost)
    fixed = fixed_returns(recs, args.cost)
    meta = {"seed": args.seed, "episodes": args.episodes, "cost": args.cost, "jitter": args.jitter,
            "trained_on": [r.name for r in train_recs],
            "held_out": args.hold_out, "final_mean_return": final, "greedy_return": scores, "fixed_returns": fixed,
            "params": sum(p.numel() for p in net.parameters()), "seconds": round(time.time() - t0, 1)}
    out = args.out or WEIGHTS
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out), metadata={"lepton": json.dumps(meta)})
    print(json.dumps(meta))
    for name, v in scores.items():
        best = max(fixed[name].items(), key=lambda kv: kv[1])
        print(f"greedy_return_{name.replace('-', '_')}: {v:.4f}  (best fixed recipe {best[0]}: {best[1]:.4f}, "
              f"probe alone: {fixed[name].get('linear-probe@', 0.0):.4f})")


if __name__ == "__main__":
    main()
