"""RunConfig: every choice a run makes, as a typed dataclass with one line of help per field.

The Train page builds its form from these fields, the CLI builds its flags from them, and the
run folder keeps them as config.yaml so `lepton train --config config.yaml` reproduces a run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from lepton.errors import ConfigError


def opt(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field with its one-line help (and optional UI hints: min, max, choices, group, search)."""
    if isinstance(default, dict):  # a mapping field: every config gets its own
        return field(default_factory=lambda: dict(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


class StrictConfig:
    """Strict parsing (unknown keys and wrong types are errors, naming the field) and a YAML round trip,
    for any dataclass of opt(...) fields: RunConfig, StudyConfig."""

    @classmethod
    def fields_help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> Any:
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping of field: value, got {type(raw).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}; valid fields: {', '.join(known)}")
        hints = typing.get_type_hints(cls)
        values = {k: _coerce(k, v, hints[k], source) for k, v in raw.items()}
        cfg = cls(**values)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "config") -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            if v is None or isinstance(v, bool):
                continue
            if lo is not None and v < lo or hi is not None and v > hi:
                raise ConfigError(f"{source}: {f.name}={v} is out of range [{lo}, {hi if hi is not None else '∞'}]")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, source: str = "config") -> Any:
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: not valid YAML ({e.__class__.__name__}: {str(e).splitlines()[0]})") from None
        return cls.from_dict(raw, source)

    @classmethod
    def load(cls, path: str | Path) -> Any:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        return cls.from_yaml(p.read_text(encoding="utf-8"), source=str(p))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")

    def cli_args(self) -> list[str]:
        """The command-line flags that reproduce this config (non-default fields only)."""
        out: list[str] = []
        defaults = type(self)()
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v == getattr(defaults, f.name) and f.name != "data":
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(v, bool):
                out.append(flag if v else "--no-" + f.name.replace("_", "-"))
            elif isinstance(v, dict):
                for key, value in v.items():
                    out += [f.metadata.get("flags", (flag,))[0], f"{key}={value}"]
            elif v is not None:
                out += [flag, str(v)]
        return out


@dataclass
class RunConfig(StrictConfig):
    data: str = opt("", "Dataset id, or a file/folder/.zip to ingest", group="data")
    test_data: str | None = opt(None, "Optional separate test set (id or path); all of it is the test split", group="data")
    modality: Literal["auto", "text", "image", "audio", "multimodal"] = opt(
        "auto", "Data modality; auto detects it from the files (multimodal: a metadata file with two or more media "
        "columns)", group="data")
    text_column: str = opt("text", "Text column name (CSV/TSV/JSONL)", group="data")
    label_column: str = opt("label", "Label column name (CSV/TSV/JSONL)", group="data")
    task: str = opt("auto", "What a label is: single-label, multi-label (a JSON list or a;b) or regression (a number); "
                    "auto = multi-label for JSON-list labels, else single-label", group="data")

    backbone: str | None = opt(None, "Backbone name, Hugging Face model id or local folder; empty = modality default; "
                               "multimodal data: one per modality, e.g. image=efficientnet-lite0,text=all-minilm-l6-v2",
                               group="model")
    fusion: str = opt("concat", "Multimodal data: how the branches are fused: concat (projected, concatenated, MLP), "
                      "gated (gated multimodal unit) or attention (a transformer over one token per modality)",
                      group="model")
    adapter: str | None = opt(None, "Adapter: linear-probe, full, lora, …; empty = the backbone's recommended one", group="model")
    adapter_options: dict[str, Any] = opt({}, "The adapter's own options, key=value (`lepton adapters` lists them; "
                                          "e.g. r=16 for lora, bottleneck=32 for houlsby)", group="model",
                                          flags=("--adapter-option",))
    max_length: int = opt(128, "Text: longest token sequence kept (longer texts are truncated)", min=8, max=4096, group="model")
    image_size: int | None = opt(None, "Images: input resolution in pixels (96, 128, 160, 224…); empty = auto from the data",
                                 min=32, max=1024, group="model")
    from_run: str | None = opt(None, "Warm start from a finished run's adapted backbone (and its head when the labels match)",
                               group="model", flags=("--from",))

    epochs: int | None = opt(None, "Passes over the training split; empty = the adapter's default", min=1, max=1000, group="training")
    batch_size: int = opt(32, "Examples per optimisation step", min=1, max=4096, group="training")
    lr: float | None = opt(None, "Peak learning rate; empty = the adapter's default", min=0.0, max=10.0, group="training")
    weight_decay: float = opt(0.01, "AdamW weight decay", min=0.0, max=1.0, group="training")
    warmup_ratio: float = opt(0.1, "Fraction of steps spent warming the learning rate up linearly", min=0.0, max=0.5, group="training")
    loss: Literal["auto", "mse", "huber"] = opt("auto", "Training loss: auto = the task's (cross-entropy, binary cross-entropy, MSE); regression "
                    "also takes huber", group="training")
    grad_clip: float = opt(1.0, "Clip the gradient norm to this (0 = off)", min=0.0, max=100.0, group="training")
    early_stopping: int = opt(0, "Stop after this many epochs without the validation score (the task's primary metric) "
                              "improving (0 = off)", min=0, max=100, group="training")
    max_minutes: float | None = opt(None, "Time budget: the schedule is laid over it and everything the run does fits in it; "
                                    "empty = from the dataset size when epochs are empty", min=0.0, group="training")
    augment: Literal["auto", "on", "off"] = opt("auto", "Augment training inputs (images: crop, flip where labels allow, "
                                               "colour; audio: gain, shift, masking); auto = where measured to help",
                                               group="training")
    bn_update: bool = opt(False, "BatchNorm re-estimates its statistics from each training batch (off: the pretrained "
                          "statistics stay, measured far better at small batches)", group="training")
    head_init: Literal["auto", "probe", "random"] = opt("auto", "Start the head from the logistic probe (LP-FT) or at "
                                                        "random; auto = probe when the backbone trains", group="training")
    companion: bool = opt(True, "Text: blend a TF-IDF logistic regression with the model where that scores higher on "
                          "validation (words a sentence encoder blurs)", group="training")
    keep_probe: bool = opt(True, "Ship the untuned backbone's logistic probe instead when it scores higher on validation",
                           group="training")
    controller: str | None = opt(None, "Epoch-boundary decisions: fixed (the planned schedule) or policy (the learned "
                                 "RL policy); empty = auto", group="training")
    seed: int = opt(0, "Random seed for splits, init and shuffling", group="training")

    device: Literal["auto", "cpu", "cuda", "mps"] = opt("auto", "auto picks cuda, then mps, then cpu", group="system")
    precision: Literal["auto", "bf16", "fp32"] = opt("auto", "auto uses bf16 autocast where the device supports it", group="system")
    compile: bool = opt(False, "torch.compile the model (pays off on GPUs for long runs)", group="system")
    devices: str = opt("1", "Processes that train this run together with DistributedDataParallel, one per GPU (gloo "
                        "on CPU): a number, or auto = every visible GPU; the batch size stays the global batch; "
                        "frozen adapters train in one", group="system")
    num_cpus: float = opt(1.0, "CPUs a Ray worker reserves for this run on its cluster (a local worker ignores it)",
                          min=0.0, max=1024.0, group="system")
    num_gpus: float | None = opt(None, "GPUs a Ray worker reserves for this run; empty = one per --devices process "
                                       "where the cluster has a GPU and device is not cpu", min=0.0, max=64.0, group="system")
    log_every: int = opt(10, "Log training loss every N steps (fewer host syncs)", min=1, max=10000, group="system")
    name: str | None = opt(None, "A name for the run shown in the dashboard", group="system")

    # Fields of older config.yaml files and where they live now (adapter -> option).
    LEGACY = {"lora_r": ("lora", "r"), "lora_alpha": ("lora", "alpha"), "lora_dropout": ("lora", "dropout"),
              "partial_blocks": ("partial", "k")}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> "RunConfig":
        if isinstance(raw, dict) and any(k in raw for k in cls.LEGACY):
            raw = dict(raw)
            options = dict(raw.get("adapter_options") or {})
            for key, (adapter, option) in cls.LEGACY.items():
                if key in raw:
                    value = raw.pop(key)
                    if raw.get("adapter") == adapter:
                        options.setdefault(option, value)
            raw["adapter_options"] = options
        return super().from_dict(raw, source)

    def validate(self, source: str = "config") -> None:
        super().validate(source)
        device_count(self.devices, source)
        from lepton.tasks import TASKS

        if self.task != "auto" and self.task not in TASKS:
            raise ConfigError(f"{source}: task={self.task!r} is not one of auto, {', '.join(TASKS)}")
        from lepton.fusion import FUSIONS

        if self.fusion not in FUSIONS:
            raise ConfigError(f"{source}: fusion={self.fusion!r} is not one of {', '.join(FUSIONS)}")
        if self.adapter_options:
            if not self.adapter:
                raise ConfigError(f"{source}: adapter_options ({', '.join(self.adapter_options)}) need an adapter; "
                                  "name one with --adapter")
            from lepton.adapters import ADAPTERS

            if self.adapter in ADAPTERS:  # an unknown name is reported where the adapter is looked up
                typed = ADAPTERS.get(self.adapter).parse(self.adapter_options).to_dict()
                # Kept typed ("4" from the command line becomes 4), so config.yaml and the store say what the run used.
                self.adapter_options = {k: typed.get(k, v) for k, v in self.adapter_options.items()}

MAX_DEVICES = 64


def device_count(value: str, source: str = "config") -> int | None:
    """--devices: 'auto' -> None (every visible GPU), else the count; a clear error for anything else."""
    if value == "auto":
        return None
    if value.isdigit() and 1 <= int(value) <= MAX_DEVICES:
        return int(value)
    raise ConfigError(f"{source}: devices={value!r} should be a number of processes from 1 to {MAX_DEVICES}, "
                      "or auto (every visible GPU)")


def _coerce(name: str, value: Any, hint: Any, source: str) -> Any:
    """Check one value against its type hint; accept ints for floats and strings from forms."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, value, inner[0], source)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {name}={value!r} is not one of {', '.join(map(str, args))}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif origin is dict:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) and "=" in v for v in value):
            value = dict(v.split("=", 1) for v in value)
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {k.strip(): v.strip() if isinstance(v, str) else v for k, v in value.items()}
        raise ConfigError(f"{source}: {name}={value!r} should be key=value pairs")
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"{source}: {name}={value!r} should be {getattr(hint, '__name__', hint)}")


@dataclass
class StudyConfig(StrictConfig):
    """A study: trials (each an ordinary run) proposed by a strategy inside one time budget."""

    data: str = opt("", "Dataset id, or a file/folder/.zip to ingest", group="data")
    test_data: str | None = opt(None, "Optional separate test set (id or path)", group="data")
    task: str = opt("auto", "What a label is (as for train): single-label, multi-label or regression; auto reads "
                    "JSON-list labels as multi-label", group="data")
    strategy: Literal["rl", "tpe", "random"] = opt("rl", "Who proposes trials: the learned policy (rl), Optuna's TPE "
                                                   "with median pruning (tpe), or random search (random)", group="study")
    budget_minutes: float = opt(3.0, "Wall-clock budget for the whole study, every trial included", min=0.1, max=1440.0,
                                group="study")
    max_trials: int | None = opt(None, "Stop after this many trials; empty = as many as the budget holds", min=1, max=500,
                                 group="study")
    backbone: str | None = opt(None, "Backbone every trial uses; empty = the modality's default", group="study")
    seed: int = opt(0, "Seed for the strategy and every trial", group="study")
    name: str | None = opt(None, "A name for the study shown in the dashboard", group="study")
