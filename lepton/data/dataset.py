"""A stored dataset: LEPTON_HOME/datasets/<id>/{manifest.json, items.jsonl, files/}."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lepton.data.base import MODALITIES, SPLITS, split_alias
from lepton.errors import DataError


@dataclass(frozen=True)
class Example:
    x: Any  # the text (text), the absolute Path of the stored file (image/audio), or {modality: either or None}
    label: Any  # what the task makes of it: an index into Dataset.classes, a tuple of them, or a number
    ref: str  # short human name for reports: "line 12" or "cat/003.png"


def load_item(modality: str, x: Any) -> Any:
    """Raw item for a backbone's preprocess: str / RGB PIL.Image / (float32 mono wave, sample_rate)."""
    return MODALITIES.get(modality).load(x)


class Dataset:
    def __init__(self, root: Path):
        self.root = Path(root)
        try:
            self.manifest: dict[str, Any] = json.loads((self.root / "manifest.json").read_text("utf-8"))
        except (OSError, ValueError):
            raise DataError(f"dataset `{self.root.name}` is damaged (no readable manifest.json): delete it and ingest the data again") from None
        self._items: list[dict[str, Any]] | None = None

    # ---- manifest fields ----
    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def name(self) -> str:
        return self.manifest.get("name") or self.id

    @property
    def modality(self) -> str:
        return self.manifest["modality"]

    @property
    def modalities(self) -> list[str]:
        """The modalities of an example: one, or those of a multimodal dataset's columns."""
        return list(self.manifest.get("modalities") or [self.modality])

    @property
    def task(self) -> str:
        """What a label is (lepton/tasks); datasets stored before tasks existed are single-label."""
        return self.manifest.get("task", "single-label")

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.manifest["classes"])

    @property
    def sizes(self) -> dict[str, int]:
        return dict(self.manifest.get("sizes", {}))

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        return {s: dict(c) for s, c in self.manifest.get("counts", {}).items()}

    @property
    def splits(self) -> list[str]:
        return [s for s in SPLITS if self.manifest.get("sizes", {}).get(s)]

    @property
    def warnings(self) -> list[str]:
        return list(self.manifest.get("warnings", []))

    # ---- examples ----
    def _load_items(self) -> list[dict[str, Any]]:
        if self._items is None:
            try:
                with open(self.root / "items.jsonl", encoding="utf-8") as f:
                    self._items = [json.loads(line) for line in f if line.strip()]
            except (OSError, ValueError):
                raise DataError(f"dataset `{self.id}` is damaged (items.jsonl unreadable): delete it and ingest the data again") from None
        return self._items

    def examples(self, split: str) -> list[Example]:
        s = split_alias(split) if isinstance(split, str) else None
        if s is None:
            raise DataError(f"unknown split '{split}'; valid splits: {', '.join(SPLITS)}")
        from lepton.tasks import TASKS  # lepton.tasks reads lepton.data.base: imported here, not at the top

        target = TASKS.get(self.task).target
        index = {c: i for i, c in enumerate(self.manifest["classes"])}
        out = []
        for it in self._load_items():
            if it["split"] != s:
                continue
            x = MODALITIES.get(self.modality).stored(it, self.root)
            out.append(Example(x=x, label=target(it["label"], index), ref=it.get("ref", "")))
        return out

    def load(self, x: Any) -> Any:
        return load_item(self.modality, x)

    def __len__(self) -> int:
        return sum(self.sizes.values())

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={n}" for s, n in self.sizes.items() if n)
        return (f"Dataset(id={self.id!r}, name={self.name!r}, modality={self.modality!r}, task={self.task!r}, "
                f"classes={self.num_classes}, {sizes})")
