"""Train page: dataset → backbone → adapter → hyperparameters (built from RunConfig's fields) → submit."""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import types
import typing
from typing import Any, Callable, Literal

import streamlit as st

from lepton.companions import COMPANIONS
from lepton.config import RunConfig
from lepton.ui import access, common
from lepton.ui import data as data_ui

CUSTOM = "__custom__"
# Fields the page sets through its own widgets (dataset, backbone and adapter pickers, run name).
EXPLICIT = {"data", "test_data", "modality", "text_column", "label_column", "task", "backbone", "adapter", "name",
            "adapter_options", "fusion"}  # task: the picked dataset's, stored with it; fusion: beside the branches
# Fields that mean something only for some data: (the dataset's modality, the modalities its rows have) -> shown.
ONLY_FOR: dict[str, Callable[[str, list[str]], bool]] = {
    "max_length": lambda modality, modalities: "text" in modalities,  # a multimodal run's text branch included
    "companion": lambda modality, modalities: modality in COMPANIONS,  # the loop blends one only for these
}
GROUP_TITLES = {"model": "Model", "training": "Training", "system": "System"}


# ---------------------------------------------------------------- registries (cached: they are static)
@st.cache_data(show_spinner=False)
def backbones(modality: str) -> list[dict]:
    from lepton.backbones import list_backbones

    specs = list_backbones(modality=modality)
    # The offline default first, real models next, tiny test models last.
    specs = sorted(specs, key=lambda s: (not s.default, s.tiny, s.name))
    return [{"name": s.name, "modality": s.modality, "dim": s.dim, "params": s.params, "description": s.description,
             "recommended_adapter": s.recommended_adapter, "default": s.default, "tiny": s.tiny,
             "supports": list(s.supports)} for s in specs]


@st.cache_data(show_spinner=False)
def adapters() -> dict[str, dict]:
    from lepton.adapters import ADAPTERS

    return {name: {"description": cls.description, "when": cls.when, "frozen": bool(cls.frozen),
                   "default_lr": cls.default_lr, "default_epochs": cls.default_epochs,
                   "head_init": cls.head_init} for name, cls in ADAPTERS.items()}


@st.cache_data(show_spinner=False)
def fusions() -> dict[str, str]:
    from lepton.fusion import FUSIONS

    return {name: cls.description for name, cls in FUSIONS.items()}


@st.cache_data(show_spinner=False, max_entries=16)
def trainable_table(backbone: str, modality: str, n_classes: int) -> dict[str, dict]:
    """Trainable / total parameters of every adapter that wraps this backbone, at default options (one build)."""
    from lepton.adapters import trainable_counts
    from lepton.backbones import resolve_backbone

    return trainable_counts(resolve_backbone(backbone, modality), n_classes)


@st.cache_data(show_spinner=False, max_entries=64)
def trainable_count(backbone: str, modality: str, adapter: str, n_classes: int, options: tuple = ()) -> dict:
    """Trainable / total parameters of backbone+adapter+head with these options. Loads real weights: on demand, cached."""
    from lepton.adapters import trainable_counts
    from lepton.backbones import resolve_backbone

    return trainable_counts(resolve_backbone(backbone, modality), n_classes, {adapter: dict(options)})[adapter]


# ---------------------------------------------------------------- form widgets from RunConfig fields
def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(inner type, optional?) for `X | None`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def _step(x: float) -> float:
    if not x:
        return 0.01
    return float(10 ** math.floor(math.log10(abs(x))))


# What an empty optional field means, where that is not "the adapter's or auto's choice".
EMPTY = {"max_minutes": "no limit"}


def field_widget(f: dataclasses.Field, hint: Any, placeholder: Any = None, key_prefix: str = "cfg_") -> Any:
    """One widget for one RunConfig field: type → widget, help → help=, min/max → bounds, Optional → empty = auto."""
    inner, optional = _unwrap(hint)
    label = f.name.replace("_", " ").capitalize().replace("Lr", "Learning rate").replace("Lora", "LoRA")
    help_ = f.metadata.get("help") or None
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    key = key_prefix + f.name
    default = f.default
    if inner is bool:
        return st.toggle(label, value=bool(default), help=help_, key=key)
    if typing.get_origin(inner) is Literal:
        options = list(typing.get_args(inner))
        return st.selectbox(label, options, index=options.index(default) if default in options else 0, help=help_, key=key)
    if inner is int:
        return st.number_input(label, value=None if default is None else int(default), step=1,
                               min_value=None if lo is None else int(lo), max_value=None if hi is None else int(hi),
                               placeholder=f"auto ({placeholder})" if placeholder is not None else ("auto" if optional else None),
                               help=help_, key=key)
    if inner is float:
        ref = default if default is not None else (placeholder or 0.01)
        return st.number_input(label, value=None if default is None else float(default), step=_step(ref), format="%g",
                               min_value=None if lo is None else float(lo), max_value=None if hi is None else float(hi),
                               placeholder=f"auto ({placeholder:g})" if placeholder is not None else (EMPTY.get(f.name, "auto") if optional else None),
                               help=help_, key=key)
    value = st.text_input(label, value=default or "", placeholder="auto" if optional else None, help=help_, key=key)
    return (value.strip() or None) if optional else value


def from_run_widget(f: dataclasses.Field, modality: str) -> str | None:
    """Warm start ("Continue from run…"): a finished run of the same modality and backbone, or none."""
    from pathlib import Path

    chosen = st.session_state.get(f"train_backbone_{modality}")
    if chosen == CUSTOM:
        chosen = (st.session_state.get(f"train_custom_{modality}") or "").strip() or None
    datasets = common.datasets_by_id()

    def meta(r: dict) -> dict:
        from lepton.errors import LeptonError
        from lepton.predict import read_meta

        try:  # what the run really used (its config may say "default", or name a file as data)
            return read_meta(Path(r.get("run_dir") or ""))
        except LeptonError:  # unfinished, damaged or tampered with: such a run cannot be a source
            return {}

    runs = []
    for r in access.runs(status="finished", limit=200):  # warm start only from runs this user may see
        cfg, m = r.get("config") or {}, meta(r)
        r_modality = m.get("modality") or (datasets.get(cfg.get("data")) or {}).get("modality")
        r_backbone = m.get("backbone") or cfg.get("backbone")
        if r_modality == modality and (chosen is None or r_backbone in (None, chosen)):
            runs.append({**r, "_backbone": r_backbone, "_adapter": m.get("adapter") or cfg.get("adapter")})
    by_id = {r["id"]: r for r in runs}
    if st.session_state.get("cfg_" + f.name) not in by_id:
        st.session_state.pop("cfg_" + f.name, None)  # the backbone changed under a chosen source

    def label(i: str | None) -> str:
        if i is None:
            return "none: start from the pretrained backbone"
        r = by_id[i]
        return f"{r.get('name') or i} · {r['_backbone'] or 'default'} + {r['_adapter'] or 'recommended'}"

    return st.selectbox("Continue from run", [None, *by_id], format_func=label, key="cfg_" + f.name,
                        help=(f.metadata.get("help") or "") + ". Lists finished runs with this modality and backbone.")


def controller_widget(f: dataclasses.Field, modality: str) -> str | None:
    """The registered controllers a user picks from (empty = auto's choice)."""
    from lepton.strategy import CONTROLLERS

    names = [n for n, c in CONTROLLERS.items() if c.user_facing]
    return st.selectbox("Controller", [None, *names], key="cfg_" + f.name, help=f.metadata.get("help"),
                        format_func=lambda n: "auto" if n is None else f"{n}: {CONTROLLERS.get(n).description}")


# Fields whose values come from the store or a registry rather than a free-form widget.
SPECIAL_WIDGETS = {"from_run": from_run_widget, "controller": controller_widget}


def hyperparameters(modality: str, adapter: str, adapter_info: dict, modalities: list[str] | None = None) -> dict[str, Any]:
    """Widgets for every RunConfig field the page does not set itself, grouped as the metadata says.
    modalities: those of the data (several for a multimodal dataset); adapter "" draws no adapter options."""
    modalities = modalities or [modality]
    hints = typing.get_type_hints(RunConfig)
    placeholders = {"epochs": adapter_info.get("default_epochs"), "lr": adapter_info.get("default_lr"),
                    "max_minutes": adapter_info.get("default_minutes")}
    groups: dict[str, list[dataclasses.Field]] = {}
    for f in dataclasses.fields(RunConfig):
        if f.name in EXPLICIT:
            continue
        if f.name in ONLY_FOR and not ONLY_FOR[f.name](modality, modalities):
            continue
        groups.setdefault(f.metadata.get("group", "training"), []).append(f)
    values: dict[str, Any] = {}
    for group in ("training", "model", "system"):
        fields = groups.get(group)
        if not fields:
            continue
        container = st.container() if group == "training" else st.expander(
            f"{GROUP_TITLES[group]} options", icon=":material/tune:" if group == "model" else ":material/settings:")
        with container:
            if group == "training":
                st.markdown("**Training**")
            if group == "model" and adapter:
                values["adapter_options"] = adapter_option_widgets(adapter)
            cols = st.columns(3)
            for i, f in enumerate(fields):
                with cols[i % 3]:
                    if f.name in SPECIAL_WIDGETS:
                        values[f.name] = SPECIAL_WIDGETS[f.name](f, modality)
                    else:
                        values[f.name] = field_widget(f, hints[f.name], placeholders.get(f.name))
    return values


def adapter_option_widgets(adapter: str, branch: str | None = None) -> dict[str, Any]:
    """The adapter's own options, one widget per field of its Options dataclass; only changed values are kept.
    branch: a multimodal run's branch, in whose narrow column they stack and whose name prefixes them (`image.r`)."""
    from lepton.adapters import ADAPTERS

    options = ADAPTERS.get(adapter).Options
    fields = dataclasses.fields(options)
    if not fields:
        return {}
    st.markdown(f"**{adapter} options**")
    hints = typing.get_type_hints(options)
    cols = st.columns(1 if branch else 3)
    chosen = {}
    for i, f in enumerate(fields):
        with cols[i % len(cols)]:
            chosen[f.name] = field_widget(f, hints[f.name], key_prefix=f"opt_{branch + '_' if branch else ''}{adapter}_")
    return {f"{branch}.{k}" if branch else k: v for k, v in chosen.items()
            if v is not None and v != getattr(options(), k)}


# ---------------------------------------------------------------- page sections
def pick_dataset() -> dict | None:
    manifests = data_ui.list_datasets()
    if not manifests:
        common.empty_state("No datasets yet. Add one on the **Data** page (a CSV for text, a .zip of label folders "
                           "for images or audio), or start a demo on **Home**.", common.PAGE_DATA, "Add a dataset",
                           ":material/database:")
        return None
    wanted = common.query_param("dataset")
    ids = [m["id"] for m in manifests]
    if st.session_state.get("train_dataset") not in ids:
        st.session_state["train_dataset"] = wanted if wanted in ids else ids[0]
    by_id = {m["id"]: m for m in manifests}
    chosen = st.selectbox("Dataset", ids, key="train_dataset", format_func=lambda i: data_ui.describe(by_id[i]))
    common.set_query_param("dataset", chosen)
    from lepton.tasks import TASKS

    task = by_id[chosen].get("task") or "single-label"
    st.caption(f"Task: **{task}**, {TASKS.get(task).description} (stored with the dataset; the Data page sets it).")
    return by_id[chosen]


def pick_backbone(modality: str, title: str = "Backbone") -> tuple[str, dict | None]:
    specs = backbones(modality)
    options = [s["name"] for s in specs] + [CUSTOM]
    by_name = {s["name"]: s for s in specs}

    def label(name: str) -> str:
        if name == CUSTOM:
            return "Other: a Hugging Face model id or a local folder…"
        s = by_name[name]
        tags = " · offline default" if s["default"] else (" · tiny test model" if s["tiny"] else "")
        return f"{name} · {common.fmt_count(s['params'])} params · {s['dim']}-d features{tags}"

    key = f"train_backbone_{modality}"
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
    name = st.selectbox(title, options, key=key, format_func=label,
                        help="The pretrained encoder. Bigger is usually more accurate and slower.")
    if name == CUSTOM:
        name = st.text_input("Model id or folder", key=f"train_custom_{modality}",
                             placeholder="e.g. sentence-transformers/all-MiniLM-L6-v2 or /models/my-encoder",
                             help="Any Hugging Face hub id (needs internet) or a local folder with a saved model")
        name = name.strip()
        if not name:
            return "", None
        spec = None
        with common.guard("Could not check that backbone"):
            from lepton.backbones import resolve_backbone

            access.check_model_ref(name)
            s = resolve_backbone(name, modality)  # checks the name only; nothing is downloaded or loaded
            spec = {"name": name, "custom": True, "dim": s.dim, "params": s.params, "description": s.description,
                    "recommended_adapter": s.recommended_adapter, "supports": list(s.supports)}
            st.caption(f"{s.description or name}. Its weights load when the run starts.")
        return (name, spec) if spec else ("", None)
    st.caption(by_name[name]["description"])
    return name, by_name[name]


AUTO = "__auto__"
AUTO_INFO = {"description": "", "frozen": False, "default_epochs": None, "default_lr": None}


def pick_adapter(spec: dict | None) -> tuple[str, dict]:
    """The adapter, or Auto (first, and the default): the strategy chooses it after measuring the data."""
    info = adapters()
    names = [AUTO] + [a for a in info if spec is None or a in spec["supports"]] or list(info)
    key = f"train_adapter_{CUSTOM if spec is None or spec.get('custom') else spec['name']}"
    if st.session_state.get(key) not in names:
        st.session_state[key] = AUTO
    counts = st.session_state.get("_adapter_counts", {}).get(spec["name"]) if spec else None

    def label(a: str) -> str:
        if a == AUTO:
            return "Auto (recommended)"
        pct = f" · {counts[a]['fraction']:.2%} trains" if counts and a in counts else ""
        return f"{a}{pct} · {info[a]['when']}"

    name = st.selectbox("Adapter", names, key=key, format_func=label,
                        help="What trains: a head on frozen features, every weight, the top blocks, or a small "
                             "parameter-efficient module. Auto picks one for this data and time budget.")
    if name == AUTO:
        st.caption("Lepton first fits a logistic probe on the untuned backbone (it measures the backbone's speed "
                   "and sets the bar), then chooses the adapter, learning rate and schedule for the time budget, and "
                   "ships the fine-tuned model only if it beats the probe on validation.")
        return "", AUTO_INFO
    a = info[name]
    note = " The backbone stays frozen: its features are computed once and cached." if a["frozen"] else ""
    st.caption(f"{a['description'].rstrip('.')}.{note}")
    return name, a


# A multimodal run's adapter: every branch frozen (a fusion head on cached features), or one adapter per branch.
ALL_FROZEN, PER_BRANCH = "linear-probe", "branches"


def pick_branches(modalities: list[str]) -> tuple[str, str, dict, dict[str, Any]] | None:
    """A multimodal dataset: a backbone and an adapter per modality, and a fusion module. Returns (backbone as
    `modality=name,…`, adapter, its info, the config values it sets), or None until every backbone is named."""
    from lepton.adapters.branches import BranchOptions, Branches

    info = adapters()
    st.markdown("**Branches** <span class='lp-muted'>(one encoder per modality, each what a single-modality run "
                "would build, fused into one model)</span>", unsafe_allow_html=True)
    names: dict[str, str] = {}
    chosen: dict[str, str] = {}
    own: dict[str, Any] = {}  # the branch adapters' own options, named `branch.option`
    cols = st.columns(len(modalities))
    for col, m in zip(cols, modalities):
        with col, st.container(border=True, key=f"branch_{m}"):
            st.markdown(f"{common.MODALITY_ICON.get(m, '')} **{m}**")
            name, spec = pick_backbone(m, f"{m.capitalize()} backbone")
            if not name:
                return None
            names[m] = name
            usable = Branches.usable(spec["supports"])
            default = getattr(BranchOptions(), m)
            key = f"train_branch_adapter_{m}"
            if st.session_state.get(key) not in usable:
                st.session_state[key] = default if default in usable else usable[0]
            chosen[m] = st.selectbox(f"{m.capitalize()} adapter", usable, key=key,
                                     format_func=lambda a: f"{a} · {info[a]['when']}",
                                     help=BranchOptions.fields_help().get(m))
            st.caption("Frozen: its features are computed once and cached." if info[chosen[m]]["frozen"] else
                       "Trains: this branch runs live every step (slower than a frozen one).")
            own.update(adapter_option_widgets(chosen[m], branch=m))
    backbone = ",".join(f"{m}={n}" for m, n in names.items())
    options = {m: a for m, a in chosen.items() if a != getattr(BranchOptions(), m)} | own
    adapter = PER_BRANCH if options else ALL_FROZEN
    with common.guard("Could not check those backbones"):
        from lepton.backbones import resolve_backbone

        # "Continue from run" lists runs of this very model: the canonical name its saved runs carry.
        st.session_state["train_backbone_multimodal"] = resolve_backbone(backbone, "multimodal").name
    fusion = fusion_widget()
    # What the loop's defaults come to with these branches (the run's placeholders show them).
    adapter_info = {**info[adapter], **Branches.settled(list(chosen.values()))} if adapter == PER_BRANCH else info[adapter]
    return backbone, adapter, adapter_info, {"fusion": fusion, "adapter_options": options}


def fusion_widget() -> str:
    """The fusion module, from the registry, each described; the default is RunConfig's."""
    f = next(f for f in dataclasses.fields(RunConfig) if f.name == "fusion")
    described = fusions()
    names = list(described)
    if st.session_state.get("cfg_fusion") not in names:
        st.session_state["cfg_fusion"] = f.default if f.default in names else names[0]
    help_ = "\n\n".join(f"**{n}**: {d}" for n, d in described.items())
    name = st.selectbox("Fusion", names, key="cfg_fusion", help=help_)
    st.caption(f"{described[name].rstrip('.')}. Each branch has a learned stand-in for a missing modality, so a row "
               "without one still predicts.")
    return name


def auto_preview(manifest: dict, cfg: RunConfig) -> None:
    """What auto decides before any model runs (budget, resolution), one line each; the rest comes after the probe."""
    from lepton.strategy import auto

    if not auto.is_auto(cfg):
        return
    with common.guard("Could not preview auto's choices"):
        reasons = auto_inputs(manifest["id"], cfg.max_minutes, cfg.image_size)
        lines = reasons + ["adapter, learning rate and head start: after the probe has measured this backbone here; "
                           "the run page lists each choice and why"]
        st.markdown("**Auto will choose:**\n" + "\n".join(f"- {line}" for line in lines))


@st.cache_data(show_spinner=False, max_entries=32)
def auto_inputs(dataset_id: str, max_minutes: float | None, image_size: int | None) -> list[str]:
    from lepton.data import load_dataset
    from lepton.strategy import auto

    ds = load_dataset(dataset_id)
    exs = ds.examples("train") if "train" in ds.splits else []
    cfg = RunConfig(data=dataset_id, max_minutes=max_minutes, image_size=image_size)
    return auto.inputs(cfg, ds.modality, len(exs), auto.native_side(ds, exs)).reasons


def parameter_count(backbone: str, modality: str, adapter: str, n_classes: int, values: dict[str, Any]) -> None:
    """On demand (it loads the weights): what each adapter trains on this backbone, shown in the adapter picker,
    and the chosen adapter's count with the options set below."""
    if not backbone:
        return
    options = tuple(sorted((values.get("adapter_options") or {}).items()))
    counted = st.session_state.setdefault("_adapter_counts", {})
    if backbone not in counted:
        if not st.button("Count trainable parameters", icon=":material/calculate:", key="count_params",
                         help="Builds the model once (loads its weights) and counts what every adapter trains on it, "
                              "so it takes a few seconds the first time."):
            return
        with common.guard("Could not build the model to count its parameters"), st.spinner("Building the model…"):
            counted[backbone] = trainable_table(backbone, modality, n_classes)
    if backbone not in counted:
        return
    with common.guard("Could not build the model to count its parameters"):
        if adapter:
            c = counted[backbone][adapter] if not options else trainable_count(backbone, modality, adapter, n_classes,
                                                                                  options)
            st.markdown(f":material/calculate: **{c['trainable']:,}** trainable parameters of "
                        f"{common.fmt_count(c['total'])} ({c['fraction']:.2%})")
        with st.expander("What each adapter trains on this backbone", icon=":material/table:"):
            info = adapters()
            st.dataframe([{"adapter": a, "trainable": c["trainable"], "share": f"{c['fraction']:.2%}",
                           "when to pick it": info[a]["when"]} for a, c in counted[backbone].items()],
                         hide_index=True, width="stretch")


def build_config(dataset_id: str, backbone: str, adapter: str, values: dict[str, Any], name: str | None,
                 test_data: str | None = None) -> RunConfig:
    raw = {"data": dataset_id, "backbone": backbone or None, "adapter": adapter or None, "name": name or None,
           "test_data": test_data or None, **values}
    return RunConfig.from_dict(raw, source="the form")


def command_line(cfg: RunConfig) -> str:
    return "lepton train " + " ".join(shlex.quote(a) for a in cfg.cli_args())


def submit(cfg: RunConfig) -> str:
    from lepton.jobs import launcher

    run_id = launcher.submit(cfg, owner=access.viewer().id)
    if not os.environ.get("LEPTON_NO_WORKER"):
        launcher.ensure_worker()
    return run_id


def page() -> None:
    manifest = pick_dataset()
    if manifest is None:
        return
    modality = manifest.get("modality") or "text"
    modalities = list(manifest.get("modalities") or [modality])
    n_classes = len(manifest.get("classes") or [])
    if len(modalities) > 1:  # one branch per modality, fused
        picked = pick_branches(modalities)
        if picked is None:
            st.info("Type a Hugging Face model id (`org/name`) or the path of a local model folder to continue.")
            return
        backbone, adapter, adapter_info, chosen = picked
        # Each branch's adapter options sit in its column, so the Model options hold no adapter's own fields.
        values = {**hyperparameters(modality, "", adapter_info, modalities), **chosen}
    else:
        c1, c2 = st.columns(2)
        with c1:
            backbone, spec = pick_backbone(modality)
        if not backbone:
            st.info("Type a Hugging Face model id (`org/name`) or the path of a local model folder to continue.")
            return
        with c2:
            adapter, adapter_info = pick_adapter(spec)
        if not adapter:
            from lepton.strategy.auto import default_minutes

            adapter_info = {**adapter_info, "default_minutes": default_minutes(
                (manifest.get("sizes") or {}).get("train", 0), modality)}
        values = hyperparameters(modality, adapter, adapter_info)
    parameter_count(backbone, modality, adapter, n_classes, values)
    run_name = st.text_input("Run name (optional)", key="train_name",
                             placeholder=f"{manifest.get('name')} · {backbone} + {adapter or 'auto'}",
                             help=RunConfig.fields_help().get("name"))
    cfg = None
    with common.guard("The settings do not form a valid run"):
        cfg = build_config(manifest["id"], backbone, adapter, values, run_name)
    if cfg is None:
        return
    auto_preview(manifest, cfg)
    with st.expander("Reproduce from the command line", icon=":material/terminal:"):
        st.code(command_line(cfg), language="bash", wrap_lines=True)
        st.caption("or save this as run.yaml and run `lepton train --config run.yaml`:")
        st.code(cfg.to_yaml(), language="yaml")
    if st.button("Start training", type="primary", icon=":material/play_arrow:", key="start"):
        with common.guard("Could not start the run"):
            run_id = submit(cfg)
            st.switch_page(common.PAGE_RUNS, query_params={"run": run_id})
