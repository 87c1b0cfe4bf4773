"""The merged model as safetensors + meta.json: a folder `Predictor.load` (and so every Lepton verb) reads directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.torch import save_file

from lepton.export.base import EXPORTERS, Exporter, Net, Run


@EXPORTERS.register("safetensors")
class SafetensorsExporter(Exporter):
    name = "safetensors"
    suffix = "model.safetensors"
    library = "lepton"
    description = "merged weights (safetensors) + meta.json: `lepton predict/serve FOLDER` and Predictor.load read it"

    def write(self, net: Net, inputs: dict[str, np.ndarray], folder: Path) -> list[str]:
        # Every tensor, not only the trained ones: the folder must not depend on the run it came from.
        state = {k: v.detach().cpu().contiguous().clone() for k, v in net.model.state_dict().items()}
        save_file(state, folder / self.suffix)
        return [self.suffix]

    def runner(self, folder: Path, net: Net) -> Run:
        import torch

        from lepton.predict import Predictor

        again = Net(Predictor.load(folder).model, net.names, net.features_only).eval()  # meta.json is written first

        def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
            with torch.no_grad():
                return again(*again.example(inputs)).numpy()

        return run
