"""torch.export (the .pt2 archive): TorchScript is deprecated in torch 2.9, so this is the torch-native format."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from lepton.export.base import EXPORTERS, Exporter, Net, Run


@EXPORTERS.register("pt2")
class Pt2Exporter(Exporter):
    name = "pt2"
    suffix = "model.pt2"
    library = "pytorch"
    description = "torch.export program (.pt2) with dynamic batch and sequence, for torch.export.load"

    def write(self, net: Net, inputs: dict[str, np.ndarray], folder: Path) -> list[str]:
        from torch.export import Dim

        # Dim.AUTO, not named Dims: named constraints fail inside transformers' masking code (ENVIRONMENT.md).
        shapes = {k: {a: Dim.AUTO for a in axes} for k, axes in net.dynamic_axes(inputs).items()}
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.export.export(net, net.example(inputs), dynamic_shapes=shapes)
        torch.export.save(program, folder / self.suffix)
        return [self.suffix]

    def runner(self, folder: Path, net: Net) -> Run:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.export.load(folder / self.suffix).module()

        def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
            with torch.no_grad():
                return module(*(torch.from_numpy(inputs[n]) for n in net.names)).numpy()

        return run
