"""The retriever: an embedding model for photos and sketches plus every setting it is used with, as one object.

Photos go through the model's photo branch and sketches through its sketch branch (one shared network, or two
untied towers); photos at ``photo_size``, sketches drawn with ``raster_method`` at a fixed canvas or one a
selector picks per sketch (SketchyNetV2). ``load`` builds one from a shipped model name, an artifact folder, a
training run folder or checkpoint, or a backbone name (zero-shot), and ``Retriever.save`` writes the artifact
(``models.artifact``) that ``load`` reads back with the same settings. A sketch may arrive as a file, a PIL image,
an array or strokes; ``as_sketch`` turns each into the one ``Sketch`` type so everything after it is shared.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol, Union

import numpy as np
import torch
from PIL import Image

from .. import limits, pretrained
from ..data import io
from ..data.datasets import PHOTO_SIZE, load_photo
from ..data.render import DEFAULT_RASTER_METHOD, RASTER_METHODS, REFERENCE_CANVAS, prepare, to_canvas, to_tensor
from ..data.sketch import Sketch
from ..data.transforms import photo_to_tensor
from ..errors import InputError, SketchdownError
from ..files import checkpoint_path, digest
from ..models import artifact
from ..models.embed import Model, config_dict, create_model, load_model, read_checkpoint, state_parts
from ..models.precision import resolve
from ..models.registry import list_backbones
from ..eval.flops import query_gflops
from ..select.cascade import CascadePolicy
from ..select.policy import CanvasPolicy, Selector, build_policy, load_policy, policy_part
from ..select.probe import Probe

SketchLike = Union[str, Path, Sketch, Image.Image, np.ndarray, list, tuple, dict]
ENGINES = ("torch", "onnx")


class CanvasSelector(Protocol):
    """Picks the canvas for one sketch (SketchyNetV2); it sees every sketch, raster ones too (``select.policy``).

    ``select`` asks ``probe(canvas)`` for a look at the sketch there (its vector and, in an index, the search) as
    often as it needs, and returns the probe whose retrieval counts, the canvases computed and its own FLOPs: a
    policy looks once, a cascade until it is confident. Its time is part of every query it serves. An optional
    ``source`` attribute (the file it was loaded from) is recorded in an index, so ``sketchdown search`` can use
    the same selector again.
    """

    def select(self, sketch: Sketch, probe: Callable[[int], Probe]) -> tuple[Probe, tuple[int, ...], int]: ...


class Query(NamedTuple):
    """One sketch's query: the probe whose vector (and search) is the answer, every canvas computed, and the
    GFLOPs spent in the paper's accounting (the sketch tower at each canvas computed, plus the selector)."""

    probe: Probe
    canvases: tuple[int, ...]
    gflops: float

    @property
    def vector(self) -> np.ndarray:
        return self.probe.vector

    @property
    def canvas(self) -> int:
        return self.probe.canvas


Search = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # D vector -> (top similarities, photo indices)


class Engine(Protocol):
    """Runs one branch of the model: float32 B x 3 x H x W in [0, 1] -> B x D unit vectors."""

    name: str

    def __call__(self, images: np.ndarray, branch: str) -> np.ndarray: ...


class TorchEngine:
    """Eager PyTorch on the CPU, at the precision measured best for the use: batched photos or one sketch."""

    name = "torch"

    def __init__(self, model: Model, precision: str = "auto", memory_format: str = "auto") -> None:
        self.model = model.eval()
        self.precision = {use: resolve(precision, memory_format, model.config.backbone, use)
                          for use in ("batch", "query")}
        self._format: bool | None = None  # the memory format the weights are in now

    def __call__(self, images: np.ndarray, branch: str) -> np.ndarray:
        p = self.precision["query" if len(images) == 1 else "batch"]
        if self._format is not p.channels_last:
            with torch.no_grad():  # not inference mode: re-laid weights made there could not be traced (ONNX)
                p.prepare(self.model)
            self._format = p.channels_last
        with torch.inference_mode(), p.autocast():
            out = getattr(self.model, f"encode_{branch}")(p.inputs(torch.from_numpy(images)))
        return out.float().numpy()


def as_sketch(sketch: SketchLike) -> Sketch:
    """Any supported sketch input as a ``Sketch``.

    A path (PNG/JPG/SVG/stroke JSON), a ``Sketch``, a PIL image, a uint8 array (H x W grey or H x W x 3/4 colour),
    a float (N, 3) array of SketchX points (x, y, 1 where a stroke ends), or strokes (a list of [[x, y], ...]
    lists or (n, 2) arrays, or the stroke-JSON object).
    """
    if isinstance(sketch, Sketch):
        return sketch
    if isinstance(sketch, (str, Path)):
        return io.read_sketch(sketch)
    if isinstance(sketch, Image.Image):
        return Sketch(raster=np.asarray(io.on_white(sketch).convert("L")), source="<PIL image>")
    if isinstance(sketch, np.ndarray):
        return _array_sketch(sketch)
    if isinstance(sketch, (list, tuple, dict)):
        return io.read_stroke_json(list(sketch) if isinstance(sketch, tuple) else sketch)
    raise InputError(None, f"cannot use a {type(sketch).__name__} as a sketch; give a file path, a Sketch, "
                           "a PIL image, an array or a list of strokes")


def _array_sketch(a: np.ndarray) -> Sketch:
    if a.dtype.kind == "f" and a.ndim == 2 and a.shape[1] == 3:
        return Sketch.from_points(a, source="<array>")
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] in (3, 4):
        return as_sketch(Image.fromarray(a))
    if a.dtype == np.uint8 and a.ndim == 2:
        return Sketch(raster=a, source="<array>")
    raise InputError("<array>", f"a {a.dtype} array of shape {a.shape} is not a sketch; expected uint8 H x W "
                                "(grey) or H x W x 3/4 (colour), or float (N, 3) SketchX points")


def model_identity(model: Model, photo_size: int) -> str:
    """sha256 of everything that fixes the photo vectors: config, every weight and buffer, and the photo size."""
    config = json.dumps({"config": config_dict(model.config), "photo_size": photo_size}, sort_keys=True)
    return digest([config, *state_parts(model.state_dict())])


def photo_identity(model: Model, photo_size: int) -> str:
    """sha256 of what fixes the photo vectors alone: the photo towers' configs and weights and the photo size. An
    index serves every retriever with this photo side: a SketchyNetV1 student that embeds sketches into its
    teacher's frozen photo space searches the teacher's index."""
    towers = {k: t for k, t in model.towers.items() if not k.endswith("sketch")}
    config = json.dumps({"towers": {k: config_dict(t.config) for k, t in towers.items()}, "photo_size": photo_size},
                        sort_keys=True)
    return digest([config, *(b for k, t in sorted(towers.items()) for b in state_parts(t.state_dict()))])


def selector_source(selector: CanvasSelector | None) -> str | None:
    """How an index names a selector: its ``source`` (a file, folder or shipped name) if it has one, else its
    type."""
    if selector is None:
        return None
    return str(getattr(selector, "source", None) or type(selector).__name__)


class Retriever:
    """A model ready to retrieve, with its settings: encodes photos for the index and sketches for queries."""

    def __init__(self, model: Model, canvas: int = REFERENCE_CANVAS, photo_size: int = PHOTO_SIZE,
                 selector: CanvasSelector | None = None, source: str | None = None,
                 engine: Engine | None = None, precision: str = "auto", memory_format: str = "auto", *,
                 raster_method: str = DEFAULT_RASTER_METHOD, info: dict | None = None) -> None:
        limits.check_canvas(canvas, source, "canvas")
        limits.check_canvas(photo_size, source, "photo size")
        if raster_method not in RASTER_METHODS:
            raise SketchdownError(f"unknown raster method {raster_method!r}; choose one of {', '.join(RASTER_METHODS)}")
        self.model = model.eval()
        self.canvas, self.photo_size, self.selector = canvas, photo_size, selector
        self.raster_method = raster_method
        self.source = source  # what `load` can rebuild it from; None for a model made in memory
        self.info = dict(info or {})  # what it is: name, dataset, test figures (from its artifact)
        self.precision, self.memory_format = precision, memory_format  # for the torch engine (auto: measured)
        self.engine: Engine = engine or TorchEngine(self.model, precision, memory_format)
        self._identity: str | None = None
        self._photo_identity: str | None = None
        self._gflops: dict[int, float] = {}

    @property
    def identity(self) -> str:
        if self._identity is None:
            self._identity = model_identity(self.model, self.photo_size)
        return self._identity

    @property
    def photo_identity(self) -> str:
        if self._photo_identity is None:
            self._photo_identity = photo_identity(self.model, self.photo_size)
        return self._photo_identity

    @property
    def dim(self) -> int:
        return self.model.dim

    def settings(self) -> dict:
        """The inference settings an artifact stores with the weights."""
        towers = self.model.towers
        sketch = next((t for k, t in towers.items() if k.endswith("sketch")), next(iter(towers.values())))
        return {"canvas": self.canvas, "photo_size": self.photo_size, "raster_method": self.raster_method,
                "precision": self.precision, "memory_format": self.memory_format,
                "canvas_stats": list(sketch.config.canvas_stats),
                "input": {"range": "RGB in [0, 1]; each tower normalises inside the model with its mean and std",
                          **{name: {"mean": t.backbone.mean.flatten().tolist(), "std": t.backbone.std.flatten().tolist()}
                             for name, t in towers.items()}}}

    def describe(self) -> dict:
        """What an index records about the retriever that filled it."""
        return {"identity": self.identity, "photo_identity": self.photo_identity, "source": self.source,
                "backbone": self.model.config.backbone,
                "dim": self.dim, "photo_size": self.photo_size, "canvas": self.canvas,
                "raster_method": self.raster_method, "selector": selector_source(self.selector)}

    def replace(self, **changes) -> "Retriever":
        """A copy with some of the constructor's arguments changed (the identity is kept when the model and photo
        size are)."""
        args = {"model": self.model, "canvas": self.canvas, "photo_size": self.photo_size, "selector": self.selector,
                "source": self.source, "engine": self.engine, "precision": self.precision,
                "memory_format": self.memory_format, "raster_method": self.raster_method, "info": self.info}
        args.update(changes)
        out = Retriever(**args)
        if out.model is self.model and out.photo_size == self.photo_size:
            out._identity, out._photo_identity = self._identity, self._photo_identity
        return out

    def save(self, folder: str | Path, half: bool = False, info: dict | None = None) -> Path:
        """Write the retriever artifact: model weights (fp16 if ``half``), its selector if any, the settings."""
        parts = {"model": artifact.model_part(self.model)}
        if self.selector is not None:
            if not isinstance(self.selector, (CanvasPolicy, CascadePolicy)):
                raise SketchdownError(f"only a trained canvas selector can be saved, not a "
                                      f"{type(self.selector).__name__}")
            parts["selector"] = policy_part(self.selector)
        return artifact.save(folder, "retriever", parts, self.settings(), {**self.info, **(info or {})}, half)

    def with_engine(self, engine: str, onnx: str | Path | bytes | None = None,
                    threads: int | None = None) -> "Retriever":
        """The same retriever on another engine. ``onnx``: an exported file (checked to be this model's);
        without one the model is exported in memory."""
        if engine not in ENGINES:
            raise SketchdownError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
        if engine == "torch":
            policy = getattr(self.selector, "policy", self.selector)  # back from an onnxruntime policy
            return self.replace(engine=TorchEngine(self.model, self.precision, self.memory_format), selector=policy)
        from .onnx import OnnxEngine, OnnxPolicy, export_onnx

        runner = OnnxEngine(onnx if onnx is not None else export_onnx(self), threads)
        if runner.identity != self.identity:
            raise SketchdownError(f"{onnx}: exported from another model (identity {runner.identity[:12]}, "
                                  f"this model {self.identity[:12]}); export it again with export-onnx")
        # a learned policy moves to onnxruntime with the student (a cascade's heads are a few multiply-adds)
        selector = OnnxPolicy(self.selector, threads) if isinstance(self.selector, CanvasPolicy) else self.selector
        return self.replace(engine=runner, selector=selector)

    def gflops(self, canvas: int) -> float:
        """The paper's cost of one query at ``canvas`` (counted once per canvas, then remembered)."""
        if canvas not in self._gflops:
            self._gflops[canvas] = query_gflops(self.model, canvas)
        return self._gflops[canvas]

    def query(self, sketch: SketchLike, search: Search | None = None) -> Query:
        """One sketch, read, drawn at the canvas its selector picks (or the fixed one), embedded, and searched with
        ``search`` when given (an index's); a cascade selector needs ``search`` to decide."""
        s = prepare(as_sketch(sketch), self.raster_method)  # traced once: the selector and the canvas see strokes

        def probe(canvas: int) -> Probe:
            image = to_tensor(to_canvas(s, canvas, self.raster_method))[None].numpy()
            vector = self.engine(image, "sketch")[0]
            if search is None:
                return Probe(canvas, vector, np.empty(0, np.float32), np.empty(0, np.int64))
            return Probe(canvas, vector, *search(vector))

        if self.selector is None:
            chosen, canvases, selector_flops = probe(self.canvas), (self.canvas,), 0
        else:
            if search is None and isinstance(self.selector, CascadePolicy):
                raise SketchdownError("a cascade selector decides from the search results: search an index "
                                      "(Index.search) instead of encoding the sketch alone")
            chosen, canvases, selector_flops = self.selector.select(s, probe)
        return Query(chosen, canvases, sum(self.gflops(c) for c in canvases) + selector_flops / 1e9)

    def encode_sketch(self, sketch: SketchLike) -> np.ndarray:
        return self.query(sketch).vector

    def encode_photos(self, paths: Sequence[str | Path], batch_size: int = 32, skip_bad: bool = False,
                      on_batch: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[Path]]:
        """Embeddings of the photos that decode (N x D float32), and the paths skipped as unreadable.

        Without ``skip_bad`` an unreadable photo raises its ``InputError``; ``on_batch(n)`` reports progress.
        """
        vectors, skipped = [], []
        for start in range(0, len(paths), batch_size):
            batch = []
            for p in paths[start:start + batch_size]:
                try:
                    batch.append(photo_to_tensor(load_photo(Path(p), self.photo_size)).numpy())
                except InputError:
                    if not skip_bad:
                        raise
                    skipped.append(Path(p))
            if batch:
                vectors.append(self.engine(np.stack(batch), "photo"))
            if on_batch is not None:
                on_batch(len(paths[start:start + batch_size]))
        out = np.concatenate(vectors) if vectors else np.zeros((0, self.dim), np.float32)
        return np.ascontiguousarray(out, dtype=np.float32), skipped


def load_selector(spec: str | Path) -> Selector:
    """A trained canvas selector (SketchyNetV2's policy): a shipped model's, an artifact folder's, or a ``select``
    run folder's / checkpoint's."""
    folder, source = pretrained.resolve(spec)
    selector = load_policy(folder)
    selector.source = source
    return selector


def load(model: str | Path, canvas: int | None = None, photo_size: int | None = None,
         selector: CanvasSelector | str | Path | bool | None = None, engine: str = "torch",
         onnx: str | Path | None = None, precision: str | None = None, memory_format: str | None = None,
         raster_method: str | None = None) -> Retriever:
    """A retriever from a shipped model name (``sketchdown models``), an artifact folder, a training run folder
    (its best.pt) or checkpoint file, or a registered backbone name (zero-shot ImageNet weights).

    Every setting defaults to the one the artifact or run stores (else canvas and photo size 256, ``auto``
    precision); an argument overrides it. ``selector``: None keeps the artifact's, False drops it (a fixed
    canvas), or a selector / the path of a trained one; ``onnx``: an exported model file to run on (implies
    ``engine="onnx"``); ``precision``/``memory_format``: the torch engine's (``auto``: per backbone and per use,
    batched photos or one sketch, from the measured table).
    """
    spec = str(model)
    stored: dict = {}
    own_selector: CanvasSelector | None = None
    info: dict = {}
    folder, source = pretrained.resolve(model)
    shipped = pretrained.MODELS.get(spec)
    if shipped is not None:  # a shipped name may leave its artifact's selector out and fix a canvas
        selector = False if not shipped.selector and selector is None else selector
        canvas = canvas or shipped.canvas
    if artifact.is_artifact(folder):
        art = artifact.read(folder, "retriever")
        net, stored, info = artifact.build_model(art), art.settings, art.info
        if shipped is not None:
            info = {**info, "name": spec, "test_figures": pretrained.test_figures(spec, info, canvas or stored.get(
                "canvas"))}
        if "selector" in art.parts and selector is None:
            own_selector = build_policy(art)
            own_selector.source = source
    elif folder.exists():
        path = checkpoint_path(folder)
        net, source = load_model(path), str(path.resolve())
        stored = artifact.checkpoint_settings(read_checkpoint(path).get("config"), path)
    elif spec in list_backbones():
        net, source = create_model(spec), spec
    else:
        raise InputError(model, "not a shipped model (see `sketchdown models`), an artifact or run folder, a "
                                f"checkpoint file, or a registered backbone ({', '.join(list_backbones())})")
    if isinstance(selector, (str, Path)):
        own_selector = load_selector(selector)
    elif selector not in (None, False, True):
        own_selector = selector
    if own_selector is None and "calibration_fixed" in info:  # the artifact's student without its selector
        info = {**info, "calibration": info["calibration_fixed"]}
    retriever = Retriever(net, canvas or stored.get("canvas") or REFERENCE_CANVAS,
                          photo_size or stored.get("photo_size") or PHOTO_SIZE, own_selector, source,
                          precision=precision or stored.get("precision") or "auto",
                          memory_format=memory_format or stored.get("memory_format") or "auto",
                          raster_method=raster_method or stored.get("raster_method") or DEFAULT_RASTER_METHOD,
                          info=info)
    return retriever if engine == "torch" and onnx is None else retriever.with_engine("onnx" if onnx else engine, onnx)
