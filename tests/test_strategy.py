"""The strategy seams on tiny data: controllers, auto's plan, the recordings and the policy's environment,
each study strategy, a budget-respect figure, and a study that survives its worker being killed."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from job_fixtures import REPO, job_home, run_lepton, spawn_worker, wait_for, write_job_csv  # noqa: F401
from lepton.config import RunConfig, StudyConfig
from lepton.strategy import CONTROLLERS, Controller, Decision, auto
from lepton.strategy.base import EpochReport
from lepton.strategy.policy import EPOCH_ACTIONS, START_ACTIONS, PolicyNet, epoch_features, start_features
from lepton.train import run
from tiny_data import write_text_csv

TINY = {"backbone": "tiny-text", "batch_size": 8}


class Scripted(Controller):
    """A controller that says what the test wants, and keeps what it was shown."""

    name = "scripted"

    def __init__(self, decisions: dict[int, Decision]):
        self.decisions, self.seen = decisions, []

    def decide(self, report: EpochReport) -> Decision:
        self.seen.append(report)
        return self.decisions.get(report.epoch, Decision())


# ---------------------------------------------------------------- the controller seam
def test_the_loop_asks_the_controller_after_the_probe_and_every_epoch_and_heeds_it(home, text_csv):
    from lepton.train.budget import lr_factor

    ctl = Scripted({2: Decision(lr_scale=0.5), 3: Decision(stop=True, why="scripted stop")})
    events = []
    res = run(RunConfig(data=str(text_csv), adapter="full", epochs=10, lr=1e-3, log_every=1, **TINY),
              lambda k, **d: events.append((k, d)), controller=ctl)
    assert [r.epoch for r in ctl.seen] == [0, 1, 2, 3]  # the probe ("epoch 0"), then each finished epoch
    assert ctl.seen[0].val_history == [res["metrics"]["probe_val_macro_f1"]]
    assert ctl.seen[3].lr_scale == 0.5 and ctl.seen[2].lr_scale == 1.0
    assert res["metrics"]["stopped"] == "scripted stop" and res["metrics"]["epochs_run"] == 3
    # The optimiser ran at the planned warm-up/cosine rate, halved from epoch 3 on.
    steps = [(d["step"], d["epoch"], d["values"]["lr"]) for k, d in events if k == "metrics" and d["split"] == "train"]
    per_epoch = res["metrics"]["steps"] // 3
    total = per_epoch * 10
    for step, epoch, lr in steps:
        scale = 0.5 if step > 2 * per_epoch else 1.0
        assert lr == pytest.approx(1e-3 * scale * lr_factor(step / total, 0.1), rel=1e-6), (step, epoch)
    assert all(r.val_probs is not None and r.val_probs.shape[1] == 2 for r in ctl.seen)


def test_stop_at_the_probe_ships_the_probe(home, text_csv):
    res = run(RunConfig(data=str(text_csv), adapter="lora", epochs=5, **TINY),
              controller=Scripted({0: Decision(stop=True, why="the probe is enough")}))
    assert res["metrics"]["kept"] == "probe" and res["metrics"]["steps"] == 0
    meta = json.loads((Path(res["run_dir"]) / "model" / "meta.json").read_text())
    assert meta["adapter"] == "linear-probe" and meta["head"] == "probe"
    from lepton.predict import Predictor

    assert Predictor.load(res["run_id"]).predict("this was great, truly great")["label"] in ("pos", "neg")


def test_unfreeze_grows_a_partial_adapter_mid_run(home, text_csv):
    ctl = Scripted({1: Decision(unfreeze=1)})
    res = run(RunConfig(data=str(text_csv), adapter="partial", adapter_options={"k": 1}, epochs=3, **TINY), controller=ctl)
    assert [r.depth for r in ctl.seen] == [1, 1, 2, 2]
    assert res["metrics"]["trainable_params"] > 0


@pytest.mark.parametrize("name", [n for n in CONTROLLERS if n != "recorder"])
def test_every_registered_controller_runs_a_tiny_run(home, text_csv, name):
    res = run(RunConfig(data=str(text_csv), adapter="lora", epochs=3, controller=name, **TINY))
    assert res["status"] == "finished" and 1 <= res["metrics"]["epochs_run"] <= 3


# ---------------------------------------------------------------- auto
def test_auto_fills_what_is_empty_and_says_why(home, text_csv):
    res = run(RunConfig(data=str(text_csv), max_minutes=0.25, **TINY))
    plan = json.loads((Path(res["run_dir"]) / "plan.json").read_text())
    assert plan["config"]["adapter"] and plan["config"]["controller"] and plan["reasons"]
    assert all(isinstance(line, str) and line for line in plan["reasons"])
    assert res["metrics"]["budget_seconds"] == 15


def test_auto_picks_a_budget_from_the_size_when_none_is_given():
    cfg = auto.inputs(RunConfig(data="x"), "text", 1000, None)
    assert cfg.config.max_minutes == 3.0 and "budget 3 min" in cfg.reasons[0]
    given = auto.inputs(RunConfig(data="x", adapter="lora", epochs=2), "text", 1000, None)
    assert given.config.max_minutes is None  # not auto: epochs decide, as the user asked


def test_auto_picks_the_probe_when_the_budget_holds_too_few_epochs():
    ctx = {"modality": "text", "n_train": 5000, "n_val": 500, "probe_val_f1": 0.8, "forward_rate": 100.0}
    short = auto.training(RunConfig(data="x"), ctx, trainable=True, window_s=60.0)
    assert short.config.adapter == "linear-probe" and "epochs" in short.reasons[0]
    long = auto.training(RunConfig(data="x"), ctx, trainable=True, window_s=3600.0)
    assert long.config.adapter == auto.RECIPES["text"][0][0] and long.config.head_init == "probe"
    # 2.6 epochs of full fit, 3.5 of partial: the cheaper fine-tuning uses the budget instead of the probe.
    middle = auto.training(RunConfig(data="x"), ctx, trainable=True, window_s=400.0)
    assert middle.config.adapter == "partial" and "full fine-tuning would fit only 2.6" in middle.reasons[0]
    frozen = auto.training(RunConfig(data="x"), {**ctx, "modality": "audio"}, trainable=False, window_s=3600.0)
    assert frozen.config.adapter == "linear-probe"


# ---------------------------------------------------------------- budget respect (a recorded figure, not a timed assert)
def test_budget_respect_is_recorded(home, tmp_path):
    data = write_text_csv(tmp_path / "more.csv", n=120)
    t0 = time.time()
    res = run(RunConfig(data=str(data), adapter="full", max_minutes=0.25, **TINY))
    wall = time.time() - t0
    figure = {"budget_s": 15.0, "wall_s": round(wall, 2), "over_s": round(wall - 15.0, 2),
              "stopped": res["metrics"]["stopped"], "epochs": res["metrics"]["epochs_run"]}
    out = REPO / "artifacts" / "budget_respect.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figure))
    print("budget respect:", figure)
    assert res["metrics"]["budget_seconds"] == 15.0 and res["metrics"]["epochs_run"] >= 1


# ---------------------------------------------------------------- recordings, the environment and the policy
@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """Real tiny runs, one per text recipe with its neighbours, recorded as record_curves.py would."""
    from lepton.data import ingest
    from lepton.strategy import record

    home = tmp_path_factory.mktemp("rec-home")
    old = os.environ.get("LEPTON_HOME")
    os.environ["LEPTON_HOME"] = str(home)
    try:
        ds = ingest(write_text_csv(home / "rec.csv", n=60)).dataset
        actions = [i for i, a in enumerate(START_ACTIONS) if a["modality"] == "text"][:3]  # lora at three rates
        doc, arrays = record.record(ds.id, "text", None, actions=actions, epochs=3, **TINY)
        record.save(doc, arrays, home / "curves" / "rec.json")
    finally:
        if old is None:
            os.environ.pop("LEPTON_HOME")
        else:
            os.environ["LEPTON_HOME"] = old
    return home / "curves"


def test_recordings_hold_every_epoch_and_the_probe(recording):
    from lepton.strategy.env import load_recordings

    (rec,) = load_recordings(recording)
    assert set(rec.runs) == {1, 2, 3}
    for r in rec.runs.values():
        assert [e["epoch"] for e in r["epochs"]] == [0, 1, 2, 3]
        assert r["probs"][0].shape == (len(rec.val_labels), rec.num_classes)
    assert rec.scores(1, (0, 1))[0] == pytest.approx(rec.probe_run["ctx"]["probe_val_f1"])


def test_environment_episodes_follow_gymnasium_and_reward_adds_up(recording):
    from lepton.strategy.env import FineTuneEnv, load_recordings

    env = FineTuneEnv(load_recordings(recording), budgets=(600.0,), cost=0.1)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["phase"] == "start"
    image_recipe = next(i for i, a in enumerate(START_ACTIONS) if a["modality"] == "image")
    mask = env.action_masks()
    assert mask[0] and mask[1] and not mask[image_recipe]
    total, done, probe = 0.0, False, info["best"]
    obs, r, done, _, info = env.step(2)  # lora at 1e-3
    total += r
    while not done:
        assert env.action_masks()[EPOCH_ACTIONS.index("continue")]
        obs, r, done, _, info = env.step(EPOCH_ACTIONS.index("continue"))
        total += r
    # Return = gain over the probe minus cost x the share of the budget used (after the probe).
    used = info["seconds"] - env.rec.probe_run["ctx"]["probe_seconds"] + env._overhead(env.rec.runs[2])
    assert total == pytest.approx(info["best"] - probe - 0.1 * used / 600.0, abs=1e-6)
    env.reset(seed=1)
    with pytest.raises(ValueError, match="not legal"):
        env.step(image_recipe)  # an image recipe on a text task


def test_lr_actions_move_between_recorded_rates(recording):
    from lepton.strategy.env import FineTuneEnv, load_recordings

    env = FineTuneEnv(load_recordings(recording), budgets=(600.0,))
    env.reset(seed=0, options={"classes": (0, 1)})
    env.step(2)  # lora 1e-3: 3e-4 below and 3e-3 above are recorded
    m = env.action_masks()
    assert m[EPOCH_ACTIONS.index("lr_down")] and m[EPOCH_ACTIONS.index("lr_up")]
    assert not m[EPOCH_ACTIONS.index("unfreeze")]
    env.step(EPOCH_ACTIONS.index("lr_up"))
    assert env.action == 3 and env.lr_scale == pytest.approx(3.0)


def test_reinforce_trains_a_policy_that_saves_loads_and_decides(recording, tmp_path, monkeypatch):
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    from safetensors.torch import save_file
    from train_policy import train

    from lepton.strategy import policy
    from lepton.strategy.env import load_recordings

    net, final = train(load_recordings(recording), episodes=320, seed=0, cost=0.02, log=lambda m: None)
    assert sum(p.numel() for p in net.parameters()) < 20_000 and np.isfinite(final)
    path = tmp_path / "policy.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata={"lepton": "{}"})
    policy._load.cache_clear()
    ctx = {"modality": "text", "n_train": 48, "n_val": 6, "num_classes": 2, "imbalance": 1.0, "budget_s": 60.0,
           "probe_val_f1": 0.7, "probe_seconds": 5.0, "forward_rate": 500.0}
    choice = policy.choose_start(ctx, trainable=True, path=str(path))
    assert choice in START_ACTIONS and choice["modality"] in ("any", "text")
    x = epoch_features(ctx, {"epoch": 1, "elapsed_s": 10.0, "lr_scale": 1.0, "adapter": "lora", "depth": None,
                             "max_depth": 2, "val_history": [0.7, 0.8], "train_loss_history": [0.5], "grad_norm": 1.0,
                             "epoch_seconds": 3.0})
    assert x.shape == (PolicyNet().epoch[0].in_features,) and x[:3].tolist() == start_features(ctx)[:3].tolist()
    policy._load.cache_clear()


# ---------------------------------------------------------------- studies
@pytest.mark.parametrize("strategy", ["random", "tpe", "rl"])
def test_each_strategy_runs_a_study_from_the_cli(job_home, tmp_path, strategy):
    data = write_text_csv(tmp_path / "study.csv", n=48)
    res = run_lepton("tune", "--data", str(data), "--backbone", "tiny-text", "--strategy", strategy,
                     "--budget-minutes", "0.6", "--max-trials", "2", timeout=300)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(out) == {"study_id", "strategy", "trials", "seconds", "best", "test"}
    assert out["strategy"] == strategy and 1 <= out["trials"] <= 2
    assert {"run_id", "config", "val_macro_f1"} <= set(out["best"]) and {"accuracy", "macro_f1"} <= set(out["test"])
    assert out["seconds"] <= 0.6 * 60 + 20
    listed = json.loads(run_lepton("studies", "--json").stdout)
    assert listed[0]["id"] == out["study_id"] and listed[0]["trials"] == out["trials"]
    runs = json.loads(run_lepton("runs", "--json").stdout)
    assert out["best"]["run_id"] in {r["id"] for r in runs}  # trials are ordinary runs


def test_a_study_on_a_class_with_one_example_fails_at_once_like_train(job_home, tmp_path):
    bad = tmp_path / "one.csv"
    bad.write_text("text,label\n" + "".join(f"good thing {i},pos\n" for i in range(6)) + "bad thing,neg\n")
    tune = run_lepton("tune", "--data", str(bad), "--strategy", "tpe", "--budget-minutes", "1", check=False)
    train = run_lepton("train", "--data", str(bad), check=False)
    assert tune.returncode == 2 and train.returncode == 2
    assert tune.stderr.split(": ", 1)[1] == train.stderr.split(": ", 1)[1]
    assert json.loads(run_lepton("studies", "--json").stdout) == []


def test_a_budget_too_small_for_one_trial_says_what_works(job_home, tmp_path):
    data = write_text_csv(tmp_path / "s.csv", n=30)
    res = run_lepton("tune", "--data", str(data), "--strategy", "random", "--budget-minutes", "0.2", check=False)
    assert res.returncode == 2 and "smallest budget that works" in res.stderr


def test_a_trial_the_budget_refuses_ships_the_probe_it_already_fitted(job_home, tmp_path):
    """One epoch of full fine-tuning does not fit 0.6 s: the trial is retried as a linear probe on the features its
    refused attempt cached, so the study gets a model instead of a failed trial."""
    from lepton.jobs.store import Store
    from lepton.strategy.study import _train

    data = write_text_csv(tmp_path / "s.csv", n=48)
    store = Store(job_home / "lepton.db")
    cfg = RunConfig(data=str(data), backbone="tiny-text", adapter="full", epochs=5, batch_size=4, max_minutes=0.01)
    run_id = store.create_run(cfg, status="running")
    logs = []
    result = _train(run, cfg, store, run_id, None, lambda kind, **d: logs.append(d.get("message", "")))
    row = store.get_run(run_id)
    assert row["status"] == "finished" and row["config"]["adapter"] == "linear-probe"
    assert result["metrics"]["adapter"] == "linear-probe" and (Path(row["run_dir"]) / "model" / "meta.json").exists()
    assert any("too small for one epoch of full" in m and "ships the probe" in m for m in logs)
    assert any("cache hit" in m for m in logs)  # the retry reused the refused attempt's features


def test_a_study_survives_its_worker_being_killed(job_home, tmp_path, spawn_worker):
    from lepton.jobs.store import Store

    data = write_job_csv(tmp_path / "long.csv", n=400)
    out = run_lepton("tune", "--submit", "--data", str(data), "--backbone", "tiny-text", "--strategy", "random",
                     "--budget-minutes", "1", "--max-trials", "3")
    study_id = json.loads(out.stdout.strip().splitlines()[-1])["study_id"]
    store = Store(job_home / "lepton.db")
    worker = spawn_worker()
    first = wait_for(lambda: next((t for t in store.study_trials(study_id) if t["status"] == "running"), None),
                     timeout=120, what="the first trial to start")
    wait_for(lambda: (store.get_run(first["id"]) or {}).get("progress", 0) > 0.05, timeout=120, what="training")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    # A new worker reaps the dead one's study and trial, then resumes the study with the trial it had.
    spawn_worker()
    wait_for(lambda: (store.get_study(study_id) or {}).get("status") == "finished", timeout=300, every=0.5,
             what="the resumed study to finish")
    trials = store.study_trials(study_id)
    assert trials[0]["id"] == first["id"] and trials[0]["attempt"] >= 1
    assert all(t["status"] in ("finished", "failed", "interrupted") for t in trials)
    assert len({t["trial"] for t in trials}) == len(trials) <= 3  # no trial twice
    assert (store.get_study(study_id)["result"] or {}).get("best")


def test_the_rl_study_goes_on_to_registry_adapters_the_policy_never_ranked():
    """After the policy's own recipes, the rl study proposes the registry's other adapters that fit the backbone."""
    from lepton.adapters import ADAPTERS
    from lepton.backbones import resolve_backbone
    from lepton.config import StudyConfig
    from lepton.strategy.policy import START_ACTIONS
    from lepton.strategy.study import STUDIES

    supports = list(resolve_backbone("tiny-text").supports)
    study = STUDIES.get("rl")(StudyConfig(data="x"), "text", supports)
    ctx = {"modality": "text", "n_train": 200, "n_val": 40, "num_classes": 4, "imbalance": 1.0, "budget_s": 180.0,
           "probe_val_f1": 0.6, "probe_seconds": 5.0, "forward_rate": 200.0}
    own = [i for i, a in enumerate(START_ACTIONS) if a["modality"] == "text"]
    # what told() reads from the trials' plan.json: every text recipe of the policy already used
    study.plans = [{"start_action": i, "ctx": ctx, "config": {"adapter": START_ACTIONS[i]["adapter"]}} for i in own]
    seen = []
    for n in range(len(own), len(own) + 30):
        p = study.propose(n, 600.0)
        if p is None:
            break
        seen.append(p.overrides["adapter"])
        study.plans.append({"config": {"adapter": p.overrides["adapter"]}})
        lo, hi = ADAPTERS.get(p.overrides["adapter"]).lr_range
        assert lo <= p.overrides["lr"] <= hi and p.overrides["controller"] == "fixed"
    trained = {START_ACTIONS[i]["adapter"] for i in own}
    assert set(seen) == {a for a in supports if not ADAPTERS.get(a).frozen} - trained
    assert "houlsby" in seen and "bitfit" in seen  # adapters the shipped policy was never trained on


def test_the_quality_suite_registers_two_builders_per_modality(monkeypatch):
    """benchmarks/suite/build.py: each dataset's builder is registered with its name and modality and takes (out,
    seed), as `make suite` calls it (a helper once took the decorator by mistake and the build failed)."""
    import inspect
    import sys
    from collections import Counter

    monkeypatch.syspath_prepend(str(REPO / "benchmarks" / "suite"))
    sys.modules.pop("build", None)
    import build

    assert Counter(modality for modality, _ in build.BUILDERS.values()) == {"text": 2, "image": 2, "audio": 2}
    for name, (_, fn) in build.BUILDERS.items():
        assert fn.__name__ == "build_" + name.replace("-", "_")
        assert list(inspect.signature(fn).parameters)[:2] == ["out", "seed"]
    sys.modules.pop("build", None)
