"""A multimodal backbone: one single-modality branch per modality, each exactly what a single-modality run builds.

Its name lists the branches, `multimodal[image=efficientnet-lite0,text=all-minilm-l6-v2]`, so a run's meta.json
rebuilds it like any backbone. The user names branches with `--backbone "image=tiny-vit,text=tiny-bert"`; a
modality left out gets its offline default. Items are `{modality: item or None}`; the output is every branch's
pooled features side by side plus one presence bit per modality (lepton/fusion/base.py says why), zeros where a
row lacks that modality. Branches only run on the rows that have their modality.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lepton.backbones.base import Backbone, BackboneSpec
from lepton.errors import RegistryError

PREFIX = "multimodal["
ORDER = ("text", "image", "audio")  # branch order: the layout of the features, the fusion's tokens


def check_one_modality(modality: str, what: str, subject: str, instead: str) -> None:
    """One line for a feature that takes single-modality runs or data so far (export, serve, studies)."""
    from lepton.errors import IncompatibleError

    if modality == "multimodal":
        raise IncompatibleError(f"{subject} is multimodal: {what} takes one modality for now; {instead}")


def is_multimodal_name(name: str | None) -> bool:
    return bool(name) and (name.startswith(PREFIX) or "=" in name)


def named(name: str | None) -> dict[str, str]:
    """{modality: backbone name} as written: `image=x,text=y` or `multimodal[image=x,text=y]`."""
    given: dict[str, str] = {}
    body = (name or "").strip()
    if body.startswith(PREFIX) and body.endswith("]"):
        body = body[len(PREFIX):-1]
    for part in filter(None, (p.strip() for p in body.split(","))):
        m, eq, backbone = part.partition("=")
        if not eq or not backbone.strip():
            raise RegistryError(f"backbone '{name}': a multimodal run names a backbone per modality as "
                                "`modality=backbone`, separated by commas (e.g. `image=efficientnet-lite0,text=minilm-l6`)")
        given[m.strip()] = backbone.strip()
    return given


def branch_names(name: str | None, modalities: list[str]) -> dict[str, str]:
    """{modality: backbone name} for these modalities: the ones named, defaults for the rest."""
    from lepton.backbones import default_backbone

    given = named(name)
    stray = sorted(set(given) - set(modalities))
    if stray:
        raise RegistryError(f"backbone '{name}' names {', '.join(stray)}, which the data does not have; its modalities "
                            f"are {', '.join(modalities)}")
    return {m: given.get(m) or default_backbone(m).name for m in ORDER if m in modalities}


def multimodal_spec(name: str | None, modalities: list[str] | None = None) -> BackboneSpec:
    """The spec of a multimodal backbone; `modalities` defaults to the ones the name lists."""
    from lepton.backbones import resolve_backbone

    if modalities is None:
        modalities = [m for m in ORDER if m in named(name)]
    specs = {m: resolve_backbone(n, m) for m, n in branch_names(name, modalities).items()}
    if len(specs) < 2:
        raise RegistryError(f"backbone '{name}': a multimodal backbone needs two or more branches")
    canonical = PREFIX + ",".join(f"{m}={s.name}" for m, s in sorted(specs.items())) + "]"
    return BackboneSpec(
        name=canonical, modality="multimodal", dim=sum(s.dim for s in specs.values()) + len(specs),
        params=sum(s.params for s in specs.values()),
        description="Fusion of " + ", ".join(f"{m}: {s.name}" for m, s in specs.items()),
        loader=lambda: MultimodalBackbone({m: s.build() for m, s in specs.items()}, specs),
        recommended_adapter="linear-probe", trainable=any(s.trainable for s in specs.values()), arch="fused",
        tiny=all(s.tiny for s in specs.values()),
        extra={"identity": {m: {"name": s.name, **s.extra.get("identity", {})} for m, s in specs.items()},
               "branches": specs})


class MultimodalBackbone(Backbone):
    modality = "multimodal"

    def __init__(self, branches: dict[str, Backbone], specs: dict[str, BackboneSpec]):
        super().__init__()
        self.branches = nn.ModuleDict(branches)
        self.specs = dict(specs)
        self.layout = [(m, b.dim) for m, b in branches.items()]
        self.dim = sum(d for _, d in self.layout) + len(self.layout)
        self.trainable = any(b.trainable for b in branches.values())
        self.external_params = sum(b.external_params for b in branches.values())

    # ---- inputs: each branch sees only the rows that have its modality
    def _rows(self, items: list[dict[str, Any]], m: str) -> list[int]:
        return [i for i, it in enumerate(items) if it.get(m) is not None]

    def _batch(self, items: list[dict[str, Any]], per_branch) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {"present": torch.tensor(
            [[float(it.get(m) is not None) for m, _ in self.layout] for it in items]).reshape(len(items), len(self.layout))}
        for m, branch in self.branches.items():
            rows = self._rows(items, m)
            if rows:
                out[f"{m}:rows"] = torch.tensor(rows, dtype=torch.long)
                out.update({f"{m}.{k}": v for k, v in per_branch(branch, [items[i][m] for i in rows]).items()})
        return out

    def preprocess(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self._batch(items, lambda branch, xs: branch.preprocess(xs))

    def encode(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{m: None for m in self.branches} for _ in items]
        for m, branch in self.branches.items():
            rows = self._rows(items, m)
            for i, enc in zip(rows, branch.encode([items[i][m] for i in rows]) if rows else []):
                out[i][m] = enc
        return out

    def collate(self, encoded: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self._batch(encoded, lambda branch, xs: branch.collate(xs))

    def augment(self, encoded: list[dict[str, Any]], rng: Any, flip: bool) -> list[dict[str, Any]]:
        out = [dict(e) for e in encoded]
        for m, branch in self.branches.items():
            rows = self._rows(encoded, m)
            for i, enc in zip(rows, branch.augment([encoded[i][m] for i in rows], rng, flip) if rows else []):
                out[i][m] = enc
        return out

    def augment_batch(self, batch: dict[str, torch.Tensor], rng: Any) -> dict[str, torch.Tensor]:
        out = dict(batch)
        for m, branch in self.branches.items():
            if f"{m}:rows" in batch:
                out.update({f"{m}.{k}": v for k, v in branch.augment_batch(self._sub(batch, m), rng).items()})
        return out

    @staticmethod
    def _sub(batch: dict[str, torch.Tensor], m: str) -> dict[str, torch.Tensor]:
        return {k[len(m) + 1:]: v for k, v in batch.items() if k.startswith(m + ".")}

    def forward_features(self, **batch: torch.Tensor) -> torch.Tensor:
        present = batch["present"]
        parts = []
        for m, branch in self.branches.items():
            rows = batch.get(f"{m}:rows")
            if rows is None:
                parts.append(None)
                continue
            f = branch.forward_features(**self._sub(batch, m))
            parts.append(torch.zeros(len(present), branch.dim, dtype=f.dtype, device=f.device).index_copy(0, rows, f))
        dtype = next((p.dtype for p in parts if p is not None), torch.float32)
        parts = [p if p is not None else torch.zeros(len(present), d, dtype=dtype, device=present.device)
                 for p, (_, d) in zip(parts, self.layout)]
        return torch.cat(parts + [present.to(dtype)], dim=1)

    def configure(self, max_length: int | None = None, image_size: int | None = None) -> None:
        for branch in self.branches.values():
            branch.configure(max_length=max_length, image_size=image_size)

    def make_head(self, kind: str, width: int, fusion: str | None = None) -> nn.Module:
        """Every head of a multimodal run is fused (lepton/fusion): the probe's linear model on the features as they
        are, plus the fusion path. "probe" starts it as exactly the probe (which is also what a shipped probe loads
        into); "classification" starts both paths at random."""
        from lepton.fusion import FusedHead

        return FusedHead(self.layout, fusion or "concat", width, from_probe=kind == "probe")
