"""ONNX through torch.onnx.export(dynamo=True), checked and run with onnxruntime."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from lepton.export.base import EXPORTERS, Exporter, Net, Run


INT8_FILE = "model.int8.onnx"


def session(path: Path, threads: int = 0):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def session_runner(path: Path, names: list[str], threads: int = 0) -> Run:
    sess = session(path, threads)
    graph_inputs = [i.name for i in sess.get_inputs()]
    # The graph keeps the inputs it uses, named as the batch's tensors (input_names at export).
    return lambda inputs: sess.run(None, {n: inputs[n] for n in names if n in graph_inputs})[0]


@EXPORTERS.register("onnx")
class OnnxExporter(Exporter):
    name = "onnx"
    suffix = "model.onnx"
    library = "onnx"
    description = "ONNX graph (opset 18, dynamic batch and sequence) for onnxruntime; --int8 adds a quantised copy"

    def write(self, net: Net, inputs: dict[str, np.ndarray], folder: Path) -> list[str]:
        path = folder / self.suffix
        quiet = logging.getLogger("torch.onnx")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:  # the exporter prints its progress and warns about ops it does not need here
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(net, net.example(inputs), str(path), input_names=net.names, output_names=["probs"],
                                  dynamic_shapes=net.dynamic_axes(inputs), dynamo=True, external_data=False)
        finally:
            quiet.setLevel(level)
        return [self.suffix]

    def runner(self, folder: Path, net: Net) -> Run:
        return session_runner(folder / self.suffix, net.names)


def quantize(path: Path) -> Path:
    """onnxruntime's dynamic int8 (weights int8, activations quantised on the fly) beside the fp32 graph."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = path.with_name(INT8_FILE)
    # It logs "consider pre-processing" on the root logger for every model; the export re-scores the result on
    # the test split instead, which is the check that matters, so the hint is only noise on the user's stderr.
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    return out
