"""Recordings for the policy's simulator: real runs, one per start recipe, with everything the policy would see.

`record(data, actions, minutes)` trains one real `lepton.train.run` per START_ACTIONS recipe on a
dataset under the time budget, steered by the fixed schedule through a recording controller, and
returns what lepton.strategy.env.Recording loads: per epoch the validation probabilities,
macro-F1, train loss, gradient norm and the clock. The probe comes first in every run, so each
recording also holds the probe's validation probabilities and its cost.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lepton.strategy.base import CONTROLLERS, Context, EpochReport
from lepton.strategy.fixed import Fixed
from lepton.strategy.policy import START_ACTIONS
from lepton.train.budget import BudgetError

_SEEN: list[dict[str, Any]] = []


@CONTROLLERS.register("recorder")
class Recorder(Fixed):
    name = "recorder"
    description = "The fixed schedule, noting everything it is shown (for the policy's recordings)"
    user_facing = False

    def start(self, context: Context, config: Any) -> None:
        super().start(context, config)
        _SEEN.append({"ctx": {k: getattr(context, k) for k in (
            "modality", "n_train", "n_val", "num_classes", "imbalance", "budget_s", "adapter", "depth",
            "max_depth", "lr", "probe_val_f1", "probe_seconds")} | {
            "forward_rate": context.extra["forward_rate"], "image_size": context.extra["image_size"]}, "epochs": []})

    def decide(self, report: EpochReport):
        _SEEN[-1]["epochs"].append({k: getattr(report, k) for k in (
            "epoch", "elapsed_s", "window_fraction", "lr_scale", "depth", "val_f1", "train_loss", "grad_norm",
            "epoch_seconds")} | {"val_probs": np.asarray(report.val_probs, np.float16)})
        return super().decide(report)


def recipe_config(action: dict[str, Any], data: str, minutes: float | None, seed: int, **fixed: Any):
    """The RunConfig of one start recipe (the probe alone: the linear-probe adapter)."""
    from lepton.config import RunConfig

    return RunConfig(**{"data": data, "adapter": action["adapter"], "lr": action.get("lr"), "max_minutes": minutes,
                        "seed": seed, "adapter_options": {"k": action["depth"]} if "depth" in action else {},
                        "controller": "recorder",
                        "image_size": action["res"] if isinstance(action.get("res"), int) else None, **fixed})


def record(data: str, modality: str, minutes: float | None, seed: int = 0, actions: list[int] | None = None,
           log: Callable[[str], None] = lambda m: None, **fixed: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(the recording's JSON document, its arrays) for one stored dataset id."""
    from lepton.data import load_dataset
    from lepton.train import run

    ds = load_dataset(data)
    actions = actions if actions is not None else [
        i for i, a in enumerate(START_ACTIONS) if a["modality"] == modality
        or (a["adapter"] == "linear-probe" and modality == "audio")]  # fine-tuning runs carry the probe with them
    runs, arrays = [], {}
    for i in actions:
        action = START_ACTIONS[i]
        _SEEN.clear()
        try:
            res = run(recipe_config(action, ds.id, minutes, seed, **fixed))
        except BudgetError as e:  # the recipe cannot train one epoch in this budget here: the simulator lacks it too
            log(f"{ds.name} {action}: not recorded: {e}")
            continue
        rec = _SEEN[-1]
        for e, ep in enumerate(rec["epochs"]):
            arrays[f"a{i}_e{e}"] = ep.pop("val_probs")
        runs.append({"action": i, "ctx": rec["ctx"], "epochs": rec["epochs"], "seconds": res["seconds"],
                     "test_macro_f1": res["metrics"]["macro_f1"], "kept": res["metrics"]["kept"]})
        log(f"{ds.name} {action}: {len(rec['epochs']) - 1} epochs, best val "
            f"{max(e['val_f1'] for e in rec['epochs']):.3f} (probe {rec['ctx']['probe_val_f1']:.3f}), "
            f"{res['seconds']:.0f} s")
    doc = {"dataset": ds.name, "modality": modality, "budget_s": minutes * 60 if minutes else None, "seed": seed,
           "actions": actions, "val_labels": [e.label for e in ds.examples("val")], "num_classes": ds.num_classes,
           "runs": runs}
    return doc, arrays


def save(doc: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(Path(path).with_suffix(".npz"), **arrays)
    Path(path).with_suffix(".json").write_text(json.dumps(doc, indent=1))
