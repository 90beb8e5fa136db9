"""Triplet training of a sketch/photo embedding model (shared or untied towers): the teacher and the direct
baselines. Every layer trains by default, with fresh augmentation each epoch; ``freeze_blocks`` + ``cache_views``
is the cheaper frozen-trunk option for shared towers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..data.datasets import RetrievalSet, TripletDataset, load_set
from ..data.render import DEFAULT_RASTER_METHOD, RASTER_METHODS
from ..errors import SketchdownError
from ..eval.evaluate import evaluate
from ..losses import MINING, triplet_loss
from ..models.embed import BRANCHES, EmbeddingNet, Model, create_model
from ..models.precision import resolve
from .cache import CachedTriplets, trunk_views, validate_cached
from .loop import Run, ValidateFn, fit, test_best


@dataclass(frozen=True)
class TrainConfig:
    """Everything a triplet run depends on; written to the run folder as config.yaml."""

    backbone: str = field(default="mobilenet_v2", metadata={"help": "registered backbone"})
    weights: str = field(default="auto", metadata={"help": "initial weights: auto, none, a source name or a file"})
    branches: str = field(default="untied", metadata={"help": "shared (one network for sketches and photos) or "
                                                              "untied (a sketch and a photo network)"})
    sketch_backbone: str | None = field(default=None, metadata={"help": "backbone of the untied sketch tower "
                                                                        "(default: the same as the photo tower)"})
    canvas_stats: bool = field(default=True, metadata={"help": "untied sketch tower trained at several canvases: "
                                                                "batch-norm statistics per canvas"})
    embed_dim: int | None = field(default=None, metadata={"help": "projection size (None: pooled features)"})
    pool: str = field(default="avg", metadata={"help": "global pooling: avg or max"})
    train_sets: tuple[str, ...] = field(default=("shoes-v1",), metadata={"help": "sets whose train split is used"})
    test_set: str | None = field(default=None, metadata={"help": "test split evaluated at the end (default: the "
                                                                  "first train set)"})
    data: str | None = field(default=None, metadata={"help": "data root (default ../shared/data)"})
    val_fraction: float = field(default=0.15, metadata={"help": "photos held out of train for model selection"})
    canvases: tuple[int, ...] = field(default=(256,), metadata={"help": "sketch canvases per step (loss averaged)"})
    eval_canvas: int = field(default=256, metadata={"help": "sketch canvas for validation"})
    test_canvases: tuple[int, ...] = field(default=(), metadata={"help": "extra sketch canvases evaluated on the "
                                                                          "test split (besides the training ones)"})
    photo_size: int = field(default=256, metadata={"help": "photo side in pixels"})
    epochs: int = field(default=20, metadata={"help": "epochs"})
    batch_size: int = field(default=16, metadata={"help": "triplets per step"})
    lr: float = field(default=1e-4, metadata={"help": "peak AdamW learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    warmup_epochs: float = field(default=1.0, metadata={"help": "linear warm-up, then cosine decay"})
    margin: float = field(default=0.2, metadata={"help": "triplet margin"})
    mining: str = field(default="random", metadata={"help": f"negatives: {', '.join(MINING)}"})
    freeze_blocks: int = field(default=0, metadata={"help": "freeze this many leading backbone blocks"})
    cache_views: int = field(default=0, metadata={"help": "precompute the frozen blocks' output for this many "
                                                          "views per image (0: no cache, fresh augmentation)"})
    augment: bool = field(default=True, metadata={"help": "sketch and photo augmentation"})
    raster_method: str = field(default=DEFAULT_RASTER_METHOD, metadata={"help": "raster sketch downscaling: "
                                                                               + ", ".join(RASTER_METHODS)})
    precision: str = field(default="auto", metadata={"help": "fp32, bf16 (autocast) or auto (per backbone and "
                                                              "use, from the measured table)"})
    memory_format: str = field(default="auto", metadata={"help": "contiguous, channels_last or auto"})
    seed: int = field(default=0, metadata={"help": "seed for sampling, augmentation and init"})
    workers: int = field(default=0, metadata={"help": "data-loader worker processes"})
    limit: int | None = field(default=None, metadata={"help": "use only the first N training sketches (smoke runs)"})
    steps_per_epoch: int | None = field(default=None, metadata={"help": "cap on steps per epoch (smoke runs)"})

    def __post_init__(self) -> None:
        if self.mining not in MINING:
            raise ValueError(f"mining must be one of {MINING}")
        if not self.train_sets:
            raise ValueError("train_sets is empty")
        if self.raster_method not in RASTER_METHODS:
            raise ValueError(f"raster_method must be one of {RASTER_METHODS}")
        if self.cache_views and not self.freeze_blocks:
            raise ValueError("cache_views needs freeze_blocks > 0 (only frozen blocks can be cached)")
        if self.cache_views and self.branches != "shared":
            raise ValueError("the frozen-trunk cache serves shared towers only; use branches=shared or no cache")
        if self.branches not in BRANCHES:
            raise ValueError(f"branches must be one of {BRANCHES}")
        if self.sketch_backbone and self.branches != "untied":
            raise ValueError("sketch_backbone needs branches=untied")
        resolve(self.precision, self.memory_format)  # raises on an unknown value

    def build_model(self) -> Model:
        per_canvas = self.canvas_stats and self.branches == "untied" and len(self.canvases) > 1
        return create_model(self.backbone, self.embed_dim, self.pool, self.weights, self.branches,
                            self.sketch_backbone, tuple(self.canvases) if per_canvas else ())


def build_sets(cfg: TrainConfig) -> tuple[RetrievalSet, RetrievalSet, RetrievalSet | None]:
    """(train, validation, test). Validation is held out of train by photo; test is only read at the end."""
    train = load_set(cfg.train_sets[0], "train", cfg.data)
    for name in cfg.train_sets[1:]:
        train = train.concat(load_set(name, "train", cfg.data))
    train, val = train.split_by_photo(cfg.val_fraction, seed=0)  # fixed split: comparable across seeds
    if cfg.limit:
        train = RetrievalSet(train.name, train.sketches[: cfg.limit], train.targets[: cfg.limit], train.photos,
                             train.categories)
    test_name = cfg.test_set or cfg.train_sets[0]
    try:
        test = load_set(test_name, "test", cfg.data)
    except SketchdownError:
        test = None
    return train, val, test


def embedders(model: Model, from_block: int):
    """(sketch, photo) functions: images -> fp32 embeddings, or cached trunk features of ``from_block`` blocks of a
    shared tower -> fp32 embeddings (losses stay fp32 under bf16 autocast)."""
    if from_block:
        fn = lambda x: model.forward_from(x.float(), from_block).float()  # noqa: E731
        return fn, fn
    return (lambda x: model.encode_sketch(x).float()), (lambda x: model.encode_photo(x).float())


def triplet_step(cfg: TrainConfig, from_block: int = 0):
    """The per-batch loss: triplet loss averaged over the sketch canvases."""

    def step(model: Model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        sketch, photo = embedders(model, from_block)
        pos, neg = photo(batch["positive"]), photo(batch["negative"])
        losses = [triplet_loss(sketch(batch["sketch"][c]), pos, neg, batch["target"], batch["negative_index"],
                               cfg.margin, cfg.mining) for c in cfg.canvases]
        return torch.stack(losses).mean(), {}

    return step


def training_data(cfg, model: EmbeddingNet, train_set: RetrievalSet, val_set: RetrievalSet,
                  progress: bool = True) -> tuple[Dataset, ValidateFn, int]:
    """(train dataset, validation function, first block the step runs): cached trunk views or plain images."""
    ds = TripletDataset(train_set, cfg.canvases, cfg.photo_size, augment=cfg.augment, seed=cfg.seed,
                        raster_method=cfg.raster_method)
    if not cfg.cache_views:
        precision = resolve(cfg.precision, cfg.memory_format, cfg.backbone, "batch")
        return ds, lambda m: evaluate(m, val_set, cfg.eval_canvas, cfg.photo_size, raster_method=cfg.raster_method,
                                      precision=precision, progress=False), 0
    k = cfg.freeze_blocks
    views = trunk_views(model, k, ds, cfg.cache_views, progress=progress)
    val_ds = TripletDataset(val_set, (cfg.eval_canvas,), cfg.photo_size, augment=False,
                            raster_method=cfg.raster_method)
    val_views = trunk_views(model, k, val_ds, 1, progress=progress)
    return (CachedTriplets(train_set, views, cfg.seed),
            lambda m: validate_cached(m, val_views, val_set, cfg.eval_canvas), k)


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train (or resume) a triplet run in ``out``; returns best validation record and test metrics."""
    run = Run(out)
    if not resume:
        run.start(cfg)
    torch.manual_seed(cfg.seed)
    model = cfg.build_model()
    train_set, val_set, test_set = build_sets(cfg)
    ds, validate, from_block = training_data(cfg, model, train_set, val_set, progress)
    best = fit(model, triplet_step(cfg, from_block), ds, validate, cfg, run, resume=resume, progress=progress)
    canvases = tuple(sorted({cfg.eval_canvas, *cfg.canvases, *cfg.test_canvases}))
    test = test_best(run, test_set, canvases, cfg) if test_set else []
    return {"best": best, "test": test}
