"""The adapter registry is the test matrix: every adapter x every tiny backbone it supports, at module level
(identity at init, exactly the promised parameters train, one step moves the output), plus options parsing,
the clear error on a backbone an adapter cannot wrap, and the real EfficientNet's convolutional variants."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from lepton.adapters import ADAPTERS, get_adapter, list_adapters
from lepton.backbones import BACKBONES, list_backbones
from lepton.config import RunConfig
from lepton.errors import ConfigError, IncompatibleError
from lepton.heads import classification_head

TINY = list_backbones(tiny=True)
MATRIX = [(a, s) for a in list_adapters() for s in TINY if a in s.supports]
UNSUPPORTED = [(a, s) for a in list_adapters() for s in list_backbones() if a not in s.supports]

# What each method trains, by parameter name inside the backbone (the head always trains). A new adapter
# fails here until it says which of the backbone's parameters it trains.
TRAINS = {
    "linear-probe": r"$^", "full": r".", "partial": r".", "lp-ft": r".",
    "lora": r"lora_", "dora": r"lora_", "adalora": r"lora_", "loha": r"hada_", "lokr": r"lokr_", "oft": r"oft_",
    "ia3": r"ia3_", "houlsby": r"\.houlsby\.", "prompt": r"^prompt\.", "prefix": r"^prompt\.",
    "bitfit": r"(\.bias$|norm.*\.weight$|LayerNorm\.weight$)",
}


def _batch(spec, bb):
    from PIL import Image
    import numpy as np

    if spec.modality == "text":
        return bb.preprocess(["a good film", "the worst service i had", "very nice"])
    if spec.modality == "image":
        rng = np.random.default_rng(0)
        return bb.preprocess([Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(3)])
    rng = np.random.default_rng(0)
    return bb.preprocess([(rng.standard_normal(8000).astype("float32") * 0.1, 16000) for _ in range(3)])


def _wrapped(adapter, spec, options=None):
    torch.manual_seed(0)
    bb = spec.build()
    bb.configure(image_size=64)
    batch = _batch(spec, bb)
    with torch.no_grad():
        before = bb.eval().forward_features(**batch)
    ad = get_adapter(adapter, options)
    model = ad.wrap(bb, classification_head(bb.dim, 3)).eval()
    return ad, model, batch, before


@pytest.mark.parametrize("adapter, spec", MATRIX, ids=[f"{a}-{s.name}" for a, s in MATRIX])
def test_adapter_contract(adapter, spec):
    ad, model, batch, before = _wrapped(adapter, spec)
    cls = ADAPTERS.get(adapter)
    # 1. At initialisation the features are the pretrained backbone's, where the method promises it.
    with torch.no_grad():
        after = model.features(batch)
    if cls.identity_at_init:
        assert torch.allclose(after, before, atol=1e-5), f"{adapter} changed the untrained output"
    # 2. Gradients reach exactly the parameters the method trains, and those are the ones it promises.
    model.train()
    loss = torch.nn.functional.cross_entropy(model(batch), torch.tensor([0, 1, 2])) + ad.extra_loss(model)
    loss.backward()
    named = dict(model.backbone.named_parameters())
    trained = {n for n, p in named.items() if p.requires_grad}
    grads = {n for n, p in named.items() if p.grad is not None}
    # wav2vec2's mask embedding is used only by its own SpecAugment, which the tiny model has off
    assert grads <= trained and {n for n in trained - grads if not n.endswith("masked_spec_embed")} == set()
    assert all(p.grad is not None for p in model.head.parameters())
    assert trained == {n for n in named if re.search(TRAINS[adapter], n)} or adapter == "partial"
    if cls.frozen:
        assert not trained
    elif adapter == "partial":
        assert 0 < len(trained) < len(named)
    else:
        assert trained
    # 3. One optimiser step changes the output (the hooks run as in the loop).
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    optim.step()
    ad.after_step(model, 0, 0.5)
    model.eval()
    with torch.no_grad():
        if cls.frozen:  # only the head moved
            assert torch.allclose(model.features(batch), before, atol=1e-6)
        else:
            assert not torch.allclose(model.features(batch), before, atol=1e-6), f"{adapter}: one step changed nothing"


@pytest.mark.parametrize("adapter, spec", UNSUPPORTED, ids=[f"{a}-{s.name}" for a, s in UNSUPPORTED])
def test_an_adapter_that_cannot_wrap_a_backbone_names_those_that_can(adapter, spec):
    from lepton.model import check_supported

    with pytest.raises(IncompatibleError, match="adapters that can wrap it: .*linear-probe"):
        check_supported(spec, adapter)


@pytest.mark.parametrize("adapter", list_adapters())
def test_options_are_parsed_strictly(adapter):
    cls = ADAPTERS.get(adapter)
    with pytest.raises(ConfigError, match=f"adapter_options for '{adapter}': unknown field.*nope"):
        cls.parse({"nope": 1})
    info = cls.describe()
    assert info["description"] and info["when"] and isinstance(info["frozen"], bool)
    assert all(o["help"] for o in info["options"])
    for o in info["options"]:
        if "max" in o:
            with pytest.raises(ConfigError, match=f"{o['name']}=.* out of range"):
                cls.parse({o["name"]: o["max"] * 2 + 1})


def test_run_config_options_from_flags_and_old_files():
    cfg = RunConfig.from_dict({"data": "d", "adapter": "houlsby", "adapter_options": ["bottleneck=32"]})
    assert cfg.adapter_options == {"bottleneck": 32}  # typed by the adapter, so config.yaml says 32, not '32'
    assert "bottleneck: 32\n" in cfg.to_yaml()
    assert get_adapter("houlsby", cfg.adapter_options).options.bottleneck == 32
    assert cfg.cli_args()[-2:] == ["--adapter-option", "bottleneck=32"]
    with pytest.raises(ConfigError, match="need an adapter"):
        RunConfig.from_dict({"data": "d", "adapter_options": {"r": 4}})
    with pytest.raises(ConfigError, match="valid fields: r, alpha, dropout"):
        RunConfig.from_dict({"data": "d", "adapter": "lora", "adapter_options": {"rank": 4}})
    # config.yaml files written before adapter_options existed still load, their LoRA/partial fields moved over
    old = RunConfig.from_dict({"data": "d", "adapter": "lora", "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.1,
                               "partial_blocks": 2})
    assert old.adapter_options == {"r": 4, "alpha": 8, "dropout": 0.1}
    assert RunConfig.from_dict({"data": "d", "adapter": "partial", "lora_r": 8, "partial_blocks": 3}).adapter_options == {"k": 3}


REAL = [("efficientnet-lite0", a) for a in ("houlsby", "ia3", "bitfit", "lora", "oft")] + \
       [("minilm-l6", a) for a in ("houlsby", "ia3", "adalora", "prefix", "prompt")]


@pytest.mark.integration
@pytest.mark.parametrize("backbone, adapter", REAL, ids=[f"{a}-{b}" for b, a in REAL])
def test_adapters_on_the_real_pretrained_backbones(backbone, adapter):
    spec = BACKBONES.get(backbone)
    ad, model, batch, before = _wrapped(adapter, spec)
    with torch.no_grad():
        after = model.features(batch)
    if ADAPTERS.get(adapter).identity_at_init:
        assert torch.allclose(after, before, atol=1e-4)
    else:  # extra positions to attend to: the features move from the start, and stay finite
        assert torch.isfinite(after).all() and not torch.allclose(after, before, atol=1e-4)
    names = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    total = sum(p.numel() for p in model.backbone.parameters())
    assert 0 < sum(p.numel() for p in model.backbone.parameters() if p.requires_grad) < 0.2 * total
    if adapter == "bitfit":  # its convolutions have no bias: the BatchNorm biases train
        assert names and all(n.endswith(".bias") and "_bn" in n for n in names)
    if adapter == "houlsby" and spec.arch == "cnn":  # a 1x1-conv bottleneck after every MBConv block
        assert len({n.split(".houlsby")[0] for n in names}) == len(spec.build().net._blocks)
    if adapter == "houlsby" and spec.arch == "transformer":  # after attention and after the feed-forward, per layer
        assert len({n.split(".houlsby")[0] for n in names}) == 2 * len(model.backbone.blocks())


def test_adapalora_keeps_its_rank_state_for_resume():
    spec = BACKBONES.get("tiny-text")
    ad, model, batch, _ = _wrapped("adalora", spec, {"init_r": 6, "target_r": 2})
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for step in range(30):
        loss = model(batch).pow(2).mean() + ad.extra_loss(model)
        optim.zero_grad()
        loss.backward()
        optim.step()
        ad.after_step(model, step, step / 30)
    state = ad.extra_state()
    assert state["rank_pattern"] and state["final"]
    kept = sum(sum(v) for v in state["rank_pattern"].values())
    assert 0 < kept < 6 * len(state["rank_pattern"])  # the budget moved: some ranks were pruned
    again, *_ = _wrapped("adalora", spec, {"init_r": 6, "target_r": 2})
    again.load_extra_state(copy.deepcopy(state))
    assert again.extra_state()["rank_pattern"] == state["rank_pattern"] and again.final


@pytest.mark.parametrize("adapter", ["houlsby", "prompt"])
def test_a_warm_start_keeps_training_the_source_runs_own_modules(adapter):
    """A backbone adapted by a run (--from) already carries its bottlenecks or prompt: the same adapter on top
    trains those on, instead of stacking a second set (or silently replacing the trained one)."""
    spec = BACKBONES.get("tiny-text")
    ad, model, batch, _ = _wrapped(adapter, spec)
    with torch.no_grad():
        for p in model.backbone.parameters():
            if p.requires_grad:
                p.add_(0.05)  # "trained"
        first = model.features(batch)
    count = sum(1 for _ in model.backbone.modules())
    again = get_adapter(adapter).wrap(model.backbone, classification_head(model.backbone.dim, 3)).eval()
    assert sum(1 for _ in again.backbone.modules()) == count
    with torch.no_grad():
        assert torch.allclose(again.features(batch), first)
    assert any(p.requires_grad for p in again.backbone.parameters())
    if adapter == "prompt":
        with pytest.raises(IncompatibleError, match="already carries a SoftPrompt"):
            get_adapter("prefix").wrap(model.backbone, classification_head(model.backbone.dim, 3))
