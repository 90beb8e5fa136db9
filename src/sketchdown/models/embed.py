"""Backbone -> embedding: global pooling, optional projection, L2 normalisation; and self-describing checkpoints.

Every model answers ``encode_sketch`` and ``encode_photo``. An ``EmbeddingNet`` is one tower that serves both
(shared, "Siamese" weights); a ``TwinNet`` has a sketch tower and a photo tower with their own weights (untied, the
heterogeneous triplet network), which on Chair-V1 beat one shared network by 20+ acc@1 points; an ``EnsembleNet``
joins trained models of either kind.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, SketchdownError
from ..files import write_atomic
from .canvas_norm import add_canvas_stats, last_downsample, nearest_slot
from .registry import Backbone, create_backbone


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild an embedding network (stored in every checkpoint)."""

    backbone: str = "mobilenet_v2"
    embed_dim: int | None = None  # None: the pooled backbone features, no projection
    pool: str = "avg"  # "avg" or "max" global pooling
    weights: str = "auto"  # initial backbone weights; a checkpoint overrides them
    canvas_stats: tuple[int, ...] = ()  # batch-norm statistics per these canvases (a multi-canvas sketch tower)
    canvas_affine: bool = False  # and a batch-norm scale and shift per canvas too
    canvas_affine_residual: bool = False  # those as offsets on a shared scale and shift
    canvas_unstride: tuple[int, ...] = ()  # of canvas_stats: the backbone's last downsampling at stride 1 there

    def __post_init__(self) -> None:
        if self.pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {self.pool!r}")
        object.__setattr__(self, "canvas_stats", tuple(sorted(int(c) for c in self.canvas_stats)))
        if self.canvas_affine and not self.canvas_stats:
            raise ValueError("canvas_affine needs canvas_stats (the canvases to keep a scale and shift for)")
        if self.canvas_affine_residual and not self.canvas_affine:
            raise ValueError("canvas_affine_residual needs canvas_affine (the offsets are per canvas)")
        object.__setattr__(self, "canvas_unstride", tuple(sorted(int(c) for c in self.canvas_unstride)))
        if not set(self.canvas_unstride) <= set(self.canvas_stats):
            raise ValueError(f"canvas_unstride {list(self.canvas_unstride)} must be canvases of canvas_stats "
                             f"{list(self.canvas_stats)} (the input's size picks the canvas)")


# Fields added after models shipped, with the value every earlier model has: a config stores them only when set,
# so the identity (a hash of the config) of every earlier model, and of the indexes it filled, stays as it was.
LATER_FIELDS = {"canvas_affine": False, "canvas_affine_residual": False, "canvas_unstride": ()}


def config_dict(config: object) -> dict:
    """A model's (or twin's) config as plain data, as checkpoints store and identities hash it."""
    return asdict(config, dict_factory=lambda pairs: {k: v for k, v in pairs
                                                      if k not in LATER_FIELDS or v != LATER_FIELDS[k]})


class EmbeddingNet(nn.Module):
    """Shared sketch/photo encoder: RGB in [0, 1] of any size -> unit-length embedding."""

    def __init__(self, config: ModelConfig, backbone: Backbone | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone if backbone is not None else create_backbone(config.backbone, config.weights)
        c = self.backbone.out_channels
        self.head = nn.Linear(c, config.embed_dim) if config.embed_dim else nn.Identity()
        self.dim = config.embed_dim or c
        self._canvas_norms = (add_canvas_stats(self.backbone, config.canvas_stats, config.canvas_affine,
                                               config.canvas_affine_residual) if config.canvas_stats else [])
        # a tuple, not an attribute nn.Module would register (the conv is the backbone's, saved once)
        self._unstride = (last_downsample(self.backbone),) if config.canvas_unstride else ()

    pinned_slot: int | None = None  # the canvas statistics to use whatever the input's size (``pin_canvas``)

    def use_canvas(self, side: int | None) -> None:
        """Set the per-canvas layers for an input of ``side`` px (or the pinned canvas): which statistics (and
        scales and shifts) the batch norms use, and the stride of the downsampling ``canvas_unstride`` skips."""
        if not self._canvas_norms:
            return
        slot = self.pinned_slot if self.pinned_slot is not None else nearest_slot(self.config.canvas_stats, side)
        for norm in self._canvas_norms:
            norm.slot = slot
        step = 1 if self.config.canvas_stats[slot] in self.config.canvas_unstride else 2
        for conv in self._unstride:
            conv.stride = (step, step)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap.amax(dim=(2, 3)) if self.config.pool == "max" else fmap.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the layers of the canvas this input was drawn at (pinned: the shape, traced in an export, is not read)
        if self._canvas_norms:
            self.use_canvas(max(x.shape[-2:]) if self.pinned_slot is None else None)
        # normalised in fp32: under bf16 autocast a bf16 norm leaves vectors up to 0.3% off unit length
        return F.normalize(self.head(self.pool(self.backbone(x))).float(), dim=1)

    def encode_sketch(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    def encode_photo(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    @property
    def towers(self) -> dict[str, "EmbeddingNet"]:
        return {"shared": self}

    shared = True  # one network embeds sketches and photos alike (``forward``)

    @property
    def sketch_tower(self) -> "EmbeddingNet":
        """The network a query pays for (its cost is the paper's FLOPs)."""
        return self

    @property
    def weights_source(self) -> str:
        return self.backbone.weights

    def trunk(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Input normalisation + the first ``k`` backbone blocks: what a frozen-trunk cache stores."""
        h = self.backbone.normalize(x)
        for block in self.backbone.blocks()[:k]:
            h = block(h)
        return h

    def forward_from(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """The rest of ``forward`` after ``trunk(x, k)``: ``forward_from(trunk(x, k), k) == forward(x)``
        (for towers without per-canvas statistics: the frozen-trunk cache serves shared towers only)."""
        for block in self.backbone.blocks()[k:]:
            h = block(h)
        return F.normalize(self.head(self.pool(h)).float(), dim=1)


@dataclass(frozen=True)
class TwinConfig:
    """An untied model: the sketch tower's and the photo tower's configs (they may differ, e.g. a light sketch
    backbone beside a heavy photo one; then both need the same ``embed_dim``)."""

    sketch: ModelConfig
    photo: ModelConfig

    @property
    def backbone(self) -> str:
        """One name for tables and logs: the sketch backbone (the branch a query pays for), and the photo one if
        it differs."""
        s, p = self.sketch.backbone, self.photo.backbone
        return s if s == p else f"{s}/{p}"


class TwinNet(nn.Module):
    """A sketch tower and a photo tower with their own weights, trained jointly into one embedding space."""

    def __init__(self, sketch: EmbeddingNet, photo: EmbeddingNet) -> None:
        super().__init__()
        if sketch.dim != photo.dim:
            raise SketchdownError(f"sketch and photo towers embed to {sketch.dim} and {photo.dim} dimensions; "
                                  "give an embed_dim so both project to the same size")
        self.sketch, self.photo = sketch, photo
        self.dim = sketch.dim
        self.config = TwinConfig(sketch.config, photo.config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise SketchdownError("an untied model has two networks: call encode_sketch or encode_photo")

    def encode_sketch(self, x: torch.Tensor) -> torch.Tensor:
        return self.sketch(x)

    def encode_photo(self, x: torch.Tensor) -> torch.Tensor:
        return self.photo(x)

    @property
    def towers(self) -> dict[str, EmbeddingNet]:
        return {"sketch": self.sketch, "photo": self.photo}

    shared = False

    @property
    def sketch_tower(self) -> EmbeddingNet:
        return self.sketch

    @property
    def weights_source(self) -> str:
        s, p = self.sketch.backbone.weights, self.photo.backbone.weights
        return s if s == p else f"sketch {s}; photo {p}"


BRANCHES = ("shared", "untied")


def create_model(backbone: str = "mobilenet_v2", embed_dim: int | None = None, pool: str = "avg",
                 weights: str = "auto", branches: str = "shared", sketch_backbone: str | None = None,
                 canvas_stats: tuple[int, ...] = (), canvas_affine: bool = False,
                 canvas_affine_residual: bool = False,
                 canvas_unstride: tuple[int, ...] = ()) -> EmbeddingNet | TwinNet:
    """One shared tower, or (``branches="untied"``) a sketch tower (``sketch_backbone``, default the same; with
    batch-norm statistics per ``canvas_stats`` canvas if given, and a scale and shift per canvas with
    ``canvas_affine``, offsets on a shared one with ``canvas_affine_residual``, the last downsampling skipped at
    the ``canvas_unstride`` canvases) and a photo tower, each starting from ``weights``."""
    if branches not in BRANCHES:
        raise SketchdownError(f"branches must be one of {', '.join(BRANCHES)}, got {branches!r}")
    photo = EmbeddingNet(ModelConfig(backbone=backbone, embed_dim=embed_dim, pool=pool, weights=weights))
    if branches == "shared":
        if sketch_backbone not in (None, backbone) or canvas_stats:
            raise SketchdownError("a separate sketch backbone or per-canvas statistics need branches='untied'")
        return photo
    sketch = EmbeddingNet(ModelConfig(backbone=sketch_backbone or backbone, embed_dim=embed_dim, pool=pool,
                                      weights=weights, canvas_stats=tuple(canvas_stats), canvas_affine=canvas_affine,
                                      canvas_affine_residual=canvas_affine_residual,
                                      canvas_unstride=tuple(canvas_unstride)))
    return TwinNet(sketch, photo)


def canvas_stats(model: Model) -> tuple[int, ...]:
    """The canvases a model's towers keep batch-norm statistics for (empty: none does); towers that keep them
    must agree."""
    found = {t.config.canvas_stats for t in model.towers.values() if t.config.canvas_stats}
    if len(found) > 1:
        raise SketchdownError(f"the towers keep batch-norm statistics for different canvases ({sorted(found)}); "
                              "one canvas set per model is supported (ensemble students trained at the same canvases)")
    return found.pop() if found else ()


@contextmanager
def pin_canvas(model: Model, slot: int) -> Iterator[None]:
    """Inside the block every tower with per-canvas statistics uses those of ``canvas_stats(model)[slot]``,
    whatever its input's size: the ONNX export traces one graph per canvas, whose batch norms are then constants
    that fold into the convolutions."""
    towers = [t for t in model.towers.values() if t.config.canvas_stats]
    for t in towers:
        t.pinned_slot = slot
    try:
        yield
    finally:
        for t in towers:
            t.pinned_slot = None


def _atomic_save(obj: dict, path: str | Path) -> None:
    """``torch.save`` through a temporary file, so a crash never leaves half a checkpoint."""
    write_atomic(path, lambda f: torch.save(obj, f))


def state_parts(state: dict[str, torch.Tensor]) -> Iterator[bytes]:
    """Every tensor's name, dtype, shape and raw bytes, in name order: what a content hash of weights reads."""
    for name, t in sorted(state.items()):
        yield f"{name}:{t.dtype}:{tuple(t.shape)}".encode()
        yield t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def save_checkpoint(path: str | Path, model: EmbeddingNet, **extra) -> None:
    """Write weights + the config that rebuilds them (+ any extra plain data), atomically."""
    _atomic_save({"model_config": config_dict(model.config), "state_dict": model.state_dict(),
                  "backbone_weights": model.weights_source, **extra}, path)


def read_checkpoint(path: str | Path, required: tuple[str, ...] = ("model_config", "state_dict")) -> dict:
    """Load a checkpoint dict with ``weights_only=True`` (never unpickles code); ``required`` keys must be there."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint file does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise InputError(path, f"not a readable sketchdown checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in required):
        raise InputError(path, f"not a sketchdown checkpoint (no {'/'.join(required)})")
    return ckpt


class EnsembleNet(nn.Module):
    """Several trained embedding nets used as one: unit embeddings concatenated and renormalised, which ranks by
    the mean of the members' cosine similarities. A teacher candidate; each member keeps its own normalisation."""

    def __init__(self, members: list[EmbeddingNet]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.dim = sum(m.dim for m in members)
        self.config = ModelConfig(backbone="+".join(m.config.backbone for m in members), embed_dim=self.dim)

    @property
    def shared(self) -> bool:
        return all(m.shared for m in self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.shared:
            raise SketchdownError("this ensemble has untied members: call encode_sketch or encode_photo")
        return self.encode_sketch(x)

    def encode_sketch(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(torch.cat([m.encode_sketch(x) for m in self.members], dim=1), dim=1)

    def encode_photo(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(torch.cat([m.encode_photo(x) for m in self.members], dim=1), dim=1)

    @property
    def towers(self) -> dict[str, EmbeddingNet]:
        return {f"{i}.{k}": t for i, m in enumerate(self.members) for k, t in m.towers.items()}

    @property
    def weights_source(self) -> str:
        return "ensemble"


Model = Union[EmbeddingNet, TwinNet, EnsembleNet]  # what load_model returns and every consumer accepts


def _tower(config: dict, path: str | Path) -> EmbeddingNet:
    if not isinstance(config, dict):
        raise InputError(path, f"a tower's model config in the checkpoint is not a mapping: {config!r:.80}")
    known = {f.name for f in fields(ModelConfig)}
    try:
        cfg = ModelConfig(**{k: v for k, v in config.items() if k in known})
        net = EmbeddingNet(cfg, create_backbone(cfg.backbone, "none"))
    except (TypeError, ValueError, KeyError, AttributeError, SketchdownError) as err:
        raise InputError(path, f"invalid model config in the checkpoint ({type(err).__name__}: {err})") from None
    net.backbone.weights = f"checkpoint:{path}"
    return net


def _build(ckpt: dict, path: str | Path) -> EmbeddingNet | TwinNet:
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model_config"), dict):
        raise InputError(path, "model_config in the checkpoint is not a mapping")
    config = ckpt["model_config"]
    if "sketch" in config and "photo" in config:
        model: EmbeddingNet | TwinNet = TwinNet(_tower(config["sketch"], path), _tower(config["photo"], path))
    else:
        model = _tower(config, path)
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "the checkpoint's state_dict is not a mapping of tensors")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as err:
        raise InputError(path, f"weights do not fit the model config ({str(err).splitlines()[0]})") from None
    return model.eval()


def load_model(path: str | Path) -> Model:
    """Rebuild a model from a checkpoint; backbones start empty, then take the saved weights."""
    ckpt = read_checkpoint(path)
    if "members" in ckpt:
        members = ckpt["members"]
        if not isinstance(members, list) or len(members) < 2:
            raise InputError(path, "an ensemble checkpoint's members must be a list of at least two checkpoints")
        return EnsembleNet([_build(m, path) for m in members]).eval()
    return _build(ckpt, path)


def save_ensemble(path: str | Path, members: list[str | Path], **extra) -> None:
    """One self-contained checkpoint holding every member's config and weights."""
    kept = ("model_config", "state_dict", "backbone_weights", "config")
    parts = [{k: v for k, v in read_checkpoint(m).items() if k in kept} for m in members]
    names = [(p["model_config"].get("sketch") or p["model_config"])["backbone"] for p in parts]  # twins: sketch's
    _atomic_save({"model_config": {"backbone": "+".join(names)},
                  "state_dict": {}, "members": parts, **extra}, path)
