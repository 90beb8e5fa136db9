"""ONNX export of a retriever's embedding net, both towers of an untied one (dynamic batch and canvas size),
checked against torch, and an onnxruntime engine that runs it; and the learned canvas policies on onnxruntime, so
SketchyNetV2's selector runs on the engine its student runs on.

The exported graph takes what the torch model takes (RGB in [0, 1], any batch, any height and width; the input
normalisation is inside the model) and records the model's identity in its metadata, so an index can refuse an
ONNX file of another model just as it refuses the torch model.
"""

from __future__ import annotations

import io
import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from ..errors import InputError, SketchdownError
from ..files import write_atomic
from ..models import artifact
from ..models.canvas_norm import traced_slot
from ..models.embed import canvas_stats, pin_canvas
from ..select.policy import CanvasPolicy, VectorPolicy
from .encoder import Retriever

OPSET = 17
TOLERANCE = 1e-4  # max |onnxruntime - torch| over embedding components (unit vectors) that export accepts
CHECK_SHAPES: tuple[tuple[int, int], ...] = ((1, 32), (2, 256), (3, 97))  # (batch, side): batch 1, large, odd
IDENTITY_KEY = "sketchdown.identity"
PHOTO_INPUT = "photo"  # the branch switch of a two-tower export


class _Branch(torch.nn.Module):
    """One branch of a model as a plain forward (what the exporter traces)."""

    def __init__(self, model: torch.nn.Module, branch: str) -> None:
        super().__init__()
        self.model, self.branch = model, branch

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, f"encode_{self.branch}")(image)


class _Slot(torch.nn.Module):
    """The index of the canvas whose batch-norm statistics an image of this size uses (``nearest_slot``)."""

    def __init__(self, canvases: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("canvases", torch.tensor(canvases))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return traced_slot(self.canvases, image)


def _export_graph(module: torch.nn.Module, output: str = "embedding", batched: bool = True) -> onnx.ModelProto:
    """``module`` traced on images of any batch, height and width; ``batched``: its output has the batch axis."""
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, **({output: {0: "batch"}} if batched else {})}
    buf = io.BytesIO()
    with warnings.catch_warnings():  # torch 2.13 warns about the TorchScript exporter; the dynamo one needs onnxscript
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(module.eval(), (torch.rand(2, 3, 64, 64),), buf, dynamo=False, opset_version=OPSET,
                          input_names=["image"], output_names=[output], dynamic_axes=axes)
    return onnx.load_from_string(buf.getvalue())


def _share_constants(bodies: list[onnx.GraphProto]) -> list[onnx.NodeProto]:
    """Constants that several bodies hold alike (the sketch tower's convolution weights are the same in every
    canvas's graph) moved out of them into one ``Constant`` node each of the enclosing graph, which they all read:
    the file holds the weights once. (Nodes, not initializers: ``add_prefix_graph`` renames an outer initializer
    but not its uses inside subgraphs.)"""
    def key(t: onnx.TensorProto) -> bytes:
        c = onnx.TensorProto()
        c.CopyFrom(t)
        c.name = ""
        return c.SerializeToString()

    keys = [[key(t) for t in body.initializer] for body in bodies]
    holders = Counter(k for ks in keys for k in set(ks))
    names: dict[bytes, str] = {}
    nodes = []
    for body, ks in zip(bodies, keys):
        rename, keep = {}, []
        for t, k in zip(body.initializer, ks):
            if holders[k] < 2:
                keep.append(t)
                continue
            if k not in names:
                names[k] = f"shared/{len(names)}"
                nodes.append(onnx.helper.make_node("Constant", [], [names[k]], value=t))
            rename[t.name] = names[k]
        del body.initializer[:]
        body.initializer.extend(keep)
        for node in body.node:
            node.input[:] = [rename.get(x, x) for x in node.input]
    return nodes


def _sketch_graph(model: torch.nn.Module) -> onnx.ModelProto:
    """The sketch branch. A tower with batch-norm statistics per canvas is one graph per canvas, each with its
    statistics as constants (onnxruntime folds them into the convolutions), behind a chain of ``If`` on the slot
    the input's size picks. One graph that gathered the statistics at run time left every batch norm as separate
    arithmetic: the student took 3.9 ms at 128 px against 2.3 ms for the same MobileNetV2 with plain batch norms
    (benchmarks/query_breakdown.py)."""
    branch = model if model.shared else _Branch(model, "sketch")
    canvases = canvas_stats(model)
    if len(canvases) < 2:
        with pin_canvas(model, 0):
            return _export_graph(branch)
    graphs = []
    for k in range(len(canvases)):
        with pin_canvas(model, k):
            graphs.append(_export_graph(branch))
    bodies = [_branch_body(g, f"canvas{c}/") for g, c in zip(graphs, canvases)]
    common = _share_constants(bodies)
    slot = onnx.compose.add_prefix_graph(_export_graph(_Slot(canvases), output="slot", batched=False).graph, "slot/",
                                         rename_inputs=False)
    which = slot.output[0].name
    embedding = graphs[0].graph.output[0]

    def dispatch(k: int) -> onnx.GraphProto:
        """The graph body for slots k and above."""
        if k == len(canvases) - 1:
            return bodies[k]
        out = onnx.helper.make_tensor_value_info(f"from{canvases[k]}/embedding", embedding.type.tensor_type.elem_type,
                                                 None)
        nodes = [onnx.helper.make_node("Constant", [], [f"from{canvases[k]}/k"],
                                       value=onnx.helper.make_tensor("k", onnx.TensorProto.INT64, [], [k])),
                 onnx.helper.make_node("Equal", [which, f"from{canvases[k]}/k"], [f"from{canvases[k]}/is"]),
                 onnx.helper.make_node("If", [f"from{canvases[k]}/is"], [out.name], then_branch=bodies[k],
                                       else_branch=dispatch(k + 1))]
        return onnx.helper.make_graph(nodes, f"from{canvases[k]}/body", [], [out])

    body = dispatch(0)
    nodes = common + list(slot.node) + list(body.node)
    nodes.append(onnx.helper.make_node("Identity", [body.output[0].name], [embedding.name]))
    graph = onnx.helper.make_graph(nodes, "sketch", [graphs[0].graph.input[0]], [embedding],
                                   list(slot.initializer))
    proto = onnx.helper.make_model(graph, opset_imports=list(graphs[0].opset_import))
    proto.ir_version = graphs[0].ir_version
    return proto


def _branch_body(proto: onnx.ModelProto, prefix: str) -> onnx.GraphProto:
    """A tower's graph as the body of an ``If``: names prefixed, no inputs of its own (it reads the outer
    ``image``)."""
    g = onnx.compose.add_prefix_graph(proto.graph, prefix, rename_inputs=False)
    return onnx.helper.make_graph(list(g.node), prefix + "body", [], list(g.output), list(g.initializer),
                                  value_info=list(g.value_info))


def export_onnx(encoder: Retriever, path: str | Path | None = None) -> bytes:
    """The ONNX model of the retriever's embedding net, written atomically to ``path`` if given.

    Input ``image`` (B x 3 x H x W), output ``embedding`` (B x D). A model with untied (or ensembled) towers is
    one file too: both towers sit in an ``If`` on a second input, the boolean scalar ``photo`` (True: the photo
    tower), so the index and the queries of one retriever use one file.
    """
    model = encoder.model.eval()
    if model.shared:
        proto = _sketch_graph(model)
    else:
        sketch, photo = _sketch_graph(model), _export_graph(_Branch(model, "photo"))
        image, embedding = sketch.graph.input[0], sketch.graph.output[0]
        flag = onnx.helper.make_tensor_value_info(PHOTO_INPUT, onnx.TensorProto.BOOL, [])
        node = onnx.helper.make_node("If", [PHOTO_INPUT], [embedding.name], then_branch=_branch_body(photo, "photo/"),
                                     else_branch=_branch_body(sketch, "sketch/"))
        graph = onnx.helper.make_graph([node], "sketchdown", [image, flag], [embedding])
        proto = onnx.helper.make_model(graph, opset_imports=list(sketch.opset_import))
        proto.ir_version = sketch.ir_version
        onnx.checker.check_model(proto)
    onnx.helper.set_model_props(proto, {IDENTITY_KEY: encoder.identity,
                                        "sketchdown.config": json.dumps(artifact.model_config(model)),
                                        "sketchdown.photo_size": str(encoder.photo_size)})
    data = proto.SerializeToString()
    if path is not None:
        write_atomic(path, lambda f: f.write(data))
    return data


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Fully graph-optimised CPU sessions with a fixed thread count (default: torch's) whose threads sleep between
    runs. onnxruntime's pool spins after each run by default; a query runs Python between its network calls
    (tracing, drawing, the policy, the search), which the spinning threads slowed on 2 cores: a SketchyNetV2 query
    took 34.2 ms with spinning and 19.9 ms without (median of 30 Chair-V1 sketches)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxEngine:
    """onnxruntime on the CPU (``session_options``)."""

    name = "onnx"

    def __init__(self, model: str | Path | bytes, threads: int | None = None) -> None:
        options = session_options(threads)
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

        self._two_towers = PHOTO_INPUT in {i.name for i in self.session.get_inputs()}

    def __call__(self, images: np.ndarray, branch: str = "sketch") -> np.ndarray:
        """Embeddings of ``branch`` ("sketch" or "photo"); a shared network serves both with one graph."""
        feed = {"image": np.ascontiguousarray(images, dtype=np.float32)}
        if self._two_towers:
            feed[PHOTO_INPUT] = np.array(branch == "photo")
        return self.session.run(None, feed)[0]


def verify_onnx(encoder: Retriever, model: str | Path | bytes,
                shapes: tuple[tuple[int, int], ...] = CHECK_SHAPES, tolerance: float = TOLERANCE) -> list[dict]:
    """Run torch and onnxruntime on the same random inputs; raises if any embedding differs by more than
    ``tolerance``. Each canvas the sketch tower keeps batch-norm statistics for is checked too. Returns the max
    absolute difference per (batch, side)."""
    engine, rng = OnnxEngine(model), np.random.default_rng(0)
    own = canvas_stats(encoder.model)
    shapes = tuple(shapes) + tuple((1, c) for c in own if c not in {side for _, side in shapes})
    rows = []
    for batch, side in shapes:
        x = rng.random((batch, 3, side, side), dtype=np.float32)
        for branch in ("sketch",) if encoder.model.shared else ("sketch", "photo"):
            with torch.inference_mode():
                expected = getattr(encoder.model, f"encode_{branch}")(torch.from_numpy(x)).numpy()
            rows.append({"branch": branch, "batch": batch, "side": side,
                         "max_abs_diff": float(np.abs(engine(x, branch) - expected).max())})
    worst = max(rows, key=lambda r: r["max_abs_diff"])
    if worst["max_abs_diff"] > tolerance:
        raise SketchdownError(f"onnxruntime differs from torch by {worst['max_abs_diff']:.2e} ({worst['branch']} "
                              f"branch) at batch "
                              f"{worst['batch']}, {worst['side']}x{worst['side']} (tolerance {tolerance:.0e})")
    return rows


class _OneSequence(torch.nn.Module):
    """The vector policy on one unpadded sequence (1 x T x 3): packing is the identity for a batch of one."""

    def __init__(self, policy: torch.nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.policy.head(self.policy.gru(seq)[1][0])


class OnnxPolicy:
    """A learned canvas policy (raster CNN or vector GRU) whose network runs on onnxruntime; its input (the 32 px
    ink, or the simplified strokes) is made exactly as the torch policy makes it. Same ``select`` interface."""

    def __init__(self, policy: CanvasPolicy, threads: int | None = None) -> None:
        self.policy, self.config = policy.eval(), policy.config
        self.source = getattr(policy, "source", None)
        vector = isinstance(policy, VectorPolicy)
        module = _OneSequence(policy) if vector else policy
        example = torch.zeros(1, 9, 3) if vector else torch.zeros(1, 1, policy.config.raster_canvas,
                                                                    policy.config.raster_canvas)
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", message=".*GRU.*batch_size.*")
            torch.onnx.export(module.eval(), (example,), buf, dynamo=False, opset_version=OPSET, input_names=["x"],
                              output_names=["logits"], dynamic_axes={"x": {1: "length"}} if vector else None)
        self.session = ort.InferenceSession(buf.getvalue(), session_options(threads),
                                            providers=["CPUExecutionProvider"])

    def logits(self, feat: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {"x": feat.numpy()[None].astype(np.float32)})[0]

    def select(self, sketch, probe):
        feat = self.policy.features(sketch)
        canvas = self.config.canvases[int(self.logits(feat).argmax())]
        return probe(canvas), (canvas,), self.policy.flops(feat)
