"""ONNX export of a retriever's embedding net (dynamic batch and canvas size), checked against torch, and an
onnxruntime engine that runs it.

The exported graph takes what the torch model takes (RGB in [0, 1], any batch, any height and width; the input
normalisation is inside the model) and records the model's identity in its metadata, so an index can refuse an
ONNX file of another model just as it refuses the torch model.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from ..errors import InputError, SketchdownError
from .encoder import SketchEncoder
from .index import write_atomic

OPSET = 17
TOLERANCE = 1e-4  # max |onnxruntime - torch| over embedding components (unit vectors) that export accepts
CHECK_SHAPES: tuple[tuple[int, int], ...] = ((1, 32), (2, 256), (3, 97))  # (batch, side): batch 1, large, odd
IDENTITY_KEY = "sketchdown.identity"


def export_onnx(encoder: SketchEncoder, path: str | Path | None = None) -> bytes:
    """The ONNX model (input ``image`` B x 3 x H x W, output ``embedding`` B x D); written atomically to ``path``."""
    if not encoder.model.shared:
        raise SketchdownError("ONNX export takes one network that embeds sketches and photos alike; this model has "
                              f"untied or ensembled towers ({type(encoder.model).__name__}): run it on the torch "
                              "engine")
    buf = io.BytesIO()
    with warnings.catch_warnings():  # torch 2.13 warns about the TorchScript exporter; the dynamo one needs onnxscript
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(encoder.model.eval(), (torch.rand(2, 3, 64, 64),), buf, dynamo=False, opset_version=OPSET,
                          input_names=["image"], output_names=["embedding"],
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "embedding": {0: "batch"}})
    proto = onnx.load_from_string(buf.getvalue())
    onnx.helper.set_model_props(proto, {IDENTITY_KEY: encoder.identity,
                                        "sketchdown.config": json.dumps(asdict(encoder.model.config)),
                                        "sketchdown.photo_size": str(encoder.photo_size)})
    data = proto.SerializeToString()
    if path is not None:
        write_atomic(path, lambda f: f.write(data))
    return data


class OnnxEngine:
    """onnxruntime on the CPU, fully graph-optimised, with a fixed thread count (default: torch's)."""

    name = "onnx"

    def __init__(self, model: str | Path | bytes, threads: int | None = None) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        source = "<onnx bytes>" if isinstance(model, bytes) else str(model)
        if not isinstance(model, bytes) and not Path(model).is_file():
            raise InputError(source, "no such ONNX file (write one with `sketchdown export-onnx`)")
        try:
            self.session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable models
            raise InputError(source, f"not a loadable ONNX model ({type(err).__name__}: {err})") from None
        self.identity = self.session.get_modelmeta().custom_metadata_map.get(IDENTITY_KEY, "")
        if not self.identity:
            raise InputError(source, "not exported by sketchdown (no model identity in its metadata)")

    def __call__(self, images: np.ndarray, branch: str = "sketch") -> np.ndarray:
        """``branch`` is accepted for the ``Engine`` interface: the exported network serves both."""
        return self.session.run(None, {"image": np.ascontiguousarray(images, dtype=np.float32)})[0]


def verify_onnx(encoder: SketchEncoder, model: str | Path | bytes,
                shapes: tuple[tuple[int, int], ...] = CHECK_SHAPES, tolerance: float = TOLERANCE) -> list[dict]:
    """Run torch and onnxruntime on the same random inputs; raises if any embedding differs by more than
    ``tolerance``. Returns the max absolute difference per (batch, side)."""
    engine, rng = OnnxEngine(model), np.random.default_rng(0)
    rows = []
    for batch, side in shapes:
        x = rng.random((batch, 3, side, side), dtype=np.float32)
        with torch.inference_mode():
            expected = encoder.model.encode_sketch(torch.from_numpy(x)).numpy()
        rows.append({"batch": batch, "side": side, "max_abs_diff": float(np.abs(engine(x) - expected).max())})
    worst = max(rows, key=lambda r: r["max_abs_diff"])
    if worst["max_abs_diff"] > tolerance:
        raise SketchdownError(f"onnxruntime differs from torch by {worst['max_abs_diff']:.2e} at batch "
                              f"{worst['batch']}, {worst['side']}x{worst['side']} (tolerance {tolerance:.0e})")
    return rows
