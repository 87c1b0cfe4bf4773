"""The auto strategy: fill every choice the user left empty, from the data in front of it and the budget.

Two moments, because the second needs what the first makes possible:
- `inputs` (before any model runs): the time budget and the image resolution;
- `training` (after the probe has measured the backbone's speed and the untuned score): the
  adapter, learning rate, head start (LP-FT) and augmentation, and which controller steers.

Every choice comes with one line saying why; the run logs them, the report keeps them and the
Train page shows them. What the user set is kept as set and says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np


RESOLUTIONS = (96, 128, 160, 224)
# Per modality, the fine-tuning recipe auto uses when the budget holds enough epochs for it (adapter, lr).
# Chosen on the suite's development datasets only (stdlib-docs, glyphs; 3-minute recordings, benchmarks/README.md):
# stdlib-docs test macro-F1 full@1e-4 0.832, partial@1e-4 0.825, lora@1e-3 0.813; glyphs validation
# full@1e-3 0.843, full@3e-4 0.815, lora@1e-3 0.589. The held-out datasets judge the choice.
# audio: the text value (no trainable offline audio backbone to measure it on).
# The second recipe is for budgets too short for MIN_EPOCHS of the first: the top blocks train at about 70 % of
# full fine-tuning's cost (stdlib-docs partial@1e-4 0.825). Added after the 3-minute comparison, where auto shipped
# library-docs' probe after 12 s of a 180 s budget (2.8 epochs of full fit): the budget must be used.
# multimodal: every branch frozen and a fusion head on their cached features (lepton/fusion), which trains in
# seconds; `--adapter branches --adapter-option image=lora` fine-tunes a branch.
RECIPES = {"text": (("full", 1e-4), ("partial", 1e-4)), "image": (("full", 1e-3), ("partial", 1e-3)),
           "audio": (("full", 1e-4), ("partial", 1e-4)), "multimodal": (("linear-probe", 3e-3),)}
# Forward+backward cost of one training example in forward passes, per adapter (LoRA skips most weight grads).
TRAIN_COST = {"full": 3.0, "partial": 2.2, "lora": 2.4}
MIN_EPOCHS = 3.0  # fewer fitting epochs than this and fine-tuning rarely beats the probe it starts from


def default_minutes(n_train: int, modality: str) -> float:
    """The budget when the user gives none: grows with the data, 1 to 10 minutes.

    About 1 minute per 500 training examples plus one, on the measured 2-core speeds: enough for
    several fine-tuning epochs of the offline defaults; a GPU simply finishes sooner."""
    del modality  # same rule for all three: the per-example cost is measured, not assumed
    return float(min(10.0, max(1.0, round(1 + n_train / 500, 1))))


@dataclass
class Choices:
    config: Any  # the RunConfig with the choices filled in
    reasons: list[str] = field(default_factory=list)
    start_action: int | None = None  # the START_ACTIONS index, when the policy chose the recipe


def is_auto(config: Any) -> bool:
    """`lepton train` given no adapter, epochs or learning rate: the strategy decides them."""
    return config.adapter is None and config.epochs is None and config.lr is None


def inputs(config: Any, modality: str, n_train: int, native_side: int | None) -> Choices:
    """Budget and resolution, before anything is built."""
    out = Choices(config)
    changes: dict[str, Any] = {}
    if config.max_minutes is None and is_auto(config):
        changes["max_minutes"] = default_minutes(n_train, modality)
        out.reasons.append(f"budget {changes['max_minutes']:g} min: none given; 1 minute per 500 training examples "
                           f"plus 1 ({n_train} here), at most 10")
    if config.image_size is None and native_side:  # images, alone or as a multimodal branch
        size = next((r for r in RESOLUTIONS if r >= native_side * 1.5), RESOLUTIONS[-1])
        changes["image_size"] = size
        out.reasons.append(f"resolution {size}px: the images are about {native_side}px; upscaling past 1.5x adds "
                           "compute and no detail" if size < RESOLUTIONS[-1] else
                           f"resolution {size}px: the images are about {native_side}px, large enough for the full input")
    out.config = dataclasses.replace(config, **changes)
    return out


# Where auto's start recipe comes from: "rules" (RECIPES above) or "policy" (the learned one). The winner of
# benchmarks/strategy.py on held-out datasets at 3 minutes, decided in advance (benchmarks/README.md).
AUTO_START = "rules"


def training(config: Any, ctx: dict[str, Any], trainable: bool, window_s: float | None) -> Choices:
    """Adapter, lr, head start, augmentation and controller, once the probe has measured speed and score.

    ctx: what the policy's start features need (lepton.strategy.policy.start_features) plus image_size."""
    from lepton.adapters import ADAPTERS

    out = Choices(config)
    changes: dict[str, Any] = {}
    auto = is_auto(config)
    modality, probe_f1 = ctx["modality"], ctx["probe_val_f1"]
    policy = config.controller == "policy" or (config.controller is None and auto and AUTO_START == "policy")
    adapter = config.adapter
    if adapter is None and policy:
        from lepton.strategy.policy import START_ACTIONS, choose_start

        a = choose_start(ctx, trainable)
        out.start_action = START_ACTIONS.index(a)
        adapter = a["adapter"]
        if config.lr is None and "lr" in a:
            changes["lr"] = a["lr"]
        if "depth" in a:
            changes["adapter_options"] = {"k": a["depth"]}
        if isinstance(a.get("res"), int) and config.image_size != a["res"]:
            changes["image_size"] = a["res"]
        out.reasons.append(f"recipe from the learned policy: {adapter}" + (f" at lr {a['lr']:g}" if "lr" in a else "")
                           + (f", top {a['depth']} blocks" if "depth" in a else "")
                           + (f", {a['res']}px" if isinstance(a.get("res"), int) else "")
                           + f" (probe {probe_f1:.3f} on validation, {ctx['n_train']} examples, "
                           f"{ctx['budget_s'] or 0:.0f} s budget)")
        changes["controller"] = "policy"
    elif adapter is None:
        if ADAPTERS.get(RECIPES[modality][0][0]).frozen:
            adapter = RECIPES[modality][0][0]
            out.reasons.append(f"adapter {adapter}: {modality} data trains a head on the frozen backbone's cached "
                               "features, which fits any budget")
        elif not trainable:
            adapter = "linear-probe"
            out.reasons.append("adapter linear-probe: this backbone is a frozen feature extractor (it cannot train)")
        else:
            fits = {a: epochs_that_fit(window_s, ctx["forward_rate"], ctx["n_train"], ctx["n_val"], a)
                    for a, _ in RECIPES[modality]}
            pick = next(((a, lr) for a, lr in RECIPES[modality] if fits[a] is None or fits[a] >= MIN_EPOCHS), None)
            if pick is None:
                adapter = "linear-probe"
                out.reasons.append("adapter linear-probe: the budget holds about " + " or ".join(
                    f"{f:.1f} epochs of {a}" for a, f in fits.items()) + f" fine-tuning here, fewer than {MIN_EPOCHS:g}")
            else:
                adapter, lr = pick
                first = RECIPES[modality][0][0]
                held = f"about {fits[adapter]:.0f} epochs fit the budget" if fits[adapter] is not None else "no time budget"
                if adapter != first:
                    held += f" ({first} fine-tuning would fit only {fits[first]:.1f})"
                out.reasons.append(f"adapter {adapter}: {held}; the probe scores {probe_f1:.3f} on validation, "
                                   "so fine-tuning starts from it and must beat it")
                if config.lr is None:
                    changes["lr"] = lr
                    out.reasons.append(f"learning rate {lr:g}: the {modality} recipe for {adapter} "
                                       "(chosen on the suite's development sets)")
    changes["adapter"] = adapter
    frozen = ADAPTERS.get(adapter).frozen
    if config.head_init == "auto":
        # A fused head starts from the probe even over frozen branches: the fusion path then adds to the probe's
        # linear model instead of competing with it from scratch (benchmarks/fusion.py).
        changes["head_init"] = "probe" if not frozen or modality == "multimodal" else "random"
        if not frozen and auto:
            out.reasons.append("head starts from the logistic probe (LP-FT): the backbone's first steps then "
                               "refine features instead of fighting a random head")
    changes.setdefault("controller", config.controller or "fixed")
    if auto and config.augment == "auto" and not frozen and modality in ("image", "audio"):
        out.reasons.append(f"augmentation on: {modality} fine-tuning on a few thousand examples overfits without it")
    out.config = dataclasses.replace(config, **changes)
    return out


def epochs_that_fit(window_s: float | None, forward_rate: float | None, n_train: int, n_val: int,
                    adapter: str) -> float | None:
    """How many fine-tuning epochs (with their validation) the training window holds at the measured speed."""
    if window_s is None or not forward_rate:
        return None
    epoch_s = (n_train * TRAIN_COST.get(adapter, 3.0) + n_val) / forward_rate
    return max(window_s, 0.0) / max(epoch_s, 1e-9)


def native_side(ds: Any, exs: list, k: int = 64) -> int | None:
    """Median shorter side of up to k training images (headers only; a multimodal dataset's image branch), or None
    for data without images."""
    if "image" not in ds.modalities or not exs:
        return None
    from PIL import Image

    paths = [e.x.get("image") if isinstance(e.x, dict) else e.x for e in exs]  # stored file paths (None: missing)
    paths = [p for p in paths if p is not None]
    sides = []
    for p in paths[:: max(1, len(paths) // k)][:k]:
        try:
            with Image.open(p) as im:
                sides.append(min(im.size))
        except (OSError, ValueError):
            continue
    return int(np.median(sides)) if sides else None
