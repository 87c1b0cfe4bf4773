"""The data layer: uploads become validated, split, content-addressed datasets.

    res = ingest("photos.zip")          # -> IngestResult(dataset, warnings, reused)
    ds = load_dataset(res.dataset.id)   # or a path: ingested first, reused when unchanged
    for ex in ds.examples("train"):     # Example(x, label, ref)
        item = ds.load(ex.x)            # str / RGB PIL.Image / (float32 mono wave, sample_rate)

One file per modality (text.py, image.py, audio.py, and multimodal.py for rows holding several), each registered
in MODALITIES.
"""

from lepton.data.base import MODALITIES, SPLITS, Modality
from lepton.data import text, image, audio, multimodal  # noqa: F401,E402  (each registers its modality)
from lepton.data.dataset import Dataset, Example, load_item
from lepton.data.ingest import (
    IngestResult,
    check_path,
    delete_dataset,
    ingest,
    list_datasets,
    load_dataset,
    stratified_split,
)
from lepton.data.audio import resample

__all__ = [
    "MODALITIES",
    "SPLITS",
    "Modality",
    "Dataset",
    "Example",
    "IngestResult",
    "check_path",
    "ingest",
    "load_dataset",
    "list_datasets",
    "delete_dataset",
    "load_item",
    "resample",
    "stratified_split",
]
