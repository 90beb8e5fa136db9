"""Triplet training of a sketch/photo embedding model (shared or untied towers): the teacher and the direct
baselines. Every layer trains by default, with fresh augmentation each epoch; ``freeze_blocks`` + ``cache_views``
is the cheaper frozen-trunk option for shared towers."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..data.datasets import RetrievalSet, TripletDataset, load_set
from ..errors import SketchdownError
from ..eval.evaluate import evaluate
from ..losses import triplet_loss
from ..models.embed import EmbeddingNet, Model
from ..models.precision import evaluation
from .cache import CachedTriplets, trunk_views, validate_cached
from .configs import FOLD_GALLERIES, TrainConfig
from . import distributed
from .loop import ValidateFn, fit, start_run, test_best


def train_pool(cfg: TrainConfig) -> RetrievalSet:
    """The union of the train splits of ``cfg.train_sets``, before anything is held out."""
    train = load_set(cfg.train_sets[0], "train", cfg.data)
    for name in cfg.train_sets[1:]:
        train = train.concat(load_set(name, "train", cfg.data))
    return train


def hold_out(pool: RetrievalSet, val_fraction: float) -> tuple[RetrievalSet, RetrievalSet]:
    """(train, validation) of a training pool, held out by photo with a fixed seed: comparable across seeds and
    runs, and reproducible for any model afterwards (``sketchdown select``, ``sketchdown evaluate --split val``)."""
    return pool.split_by_photo(val_fraction, seed=0)


def build_sets(cfg: TrainConfig) -> tuple[RetrievalSet, RetrievalSet, RetrievalSet | None]:
    """(train, validation, test). Validation is held out of train by photo (and with ``folds``, one fold more);
    test is only read at the end."""
    train, val = hold_out(train_pool(cfg), cfg.val_fraction)
    if cfg.folds:  # cross-fitting: the left-out fold's sketches are scored by this run, so it never sees them
        train = train.fold_split(cfg.fold, cfg.folds)[0]
    if cfg.limit:
        train = RetrievalSet(train.name, train.sketches[: cfg.limit], train.targets[: cfg.limit], train.photos,
                             train.categories)
    test_name = cfg.test_set or cfg.train_sets[0]
    try:
        test = load_set(test_name, "test", cfg.data)
    except SketchdownError:
        test = None
    return train, val, test


def held_out_fold(cfg: TrainConfig, gallery: str = "pool") -> RetrievalSet:
    """The sketches a cross-fitting run (``folds``) left out of its training, each to be ranked among every photo
    of its train sets (``pool``: a gallery the size of the training pool, of which the run pulled most photos onto
    their own sketches) or among the photos the run never trained on (``unseen``: the fold's and the validation's,
    new to it as a real catalogue's photos are to the shipped student)."""
    if not cfg.folds:
        raise SketchdownError("not a cross-fitting run: it was trained without --folds")
    if gallery not in FOLD_GALLERIES:
        raise ValueError(f"gallery must be one of {FOLD_GALLERIES}, got {gallery!r}")
    pool = train_pool(cfg)
    train, val = hold_out(pool, cfg.val_fraction)
    held = train.fold_split(cfg.fold, cfg.folds)[1]
    name = f"{pool.name}:fold{cfg.fold}of{cfg.folds}"
    return held.among(pool, name) if gallery == "pool" else held.among(held.concat(val), f"{name}:unseen")


def embedders(model: Model, from_block: int):
    """(sketch, photo) functions: images -> fp32 embeddings, or cached trunk features of ``from_block`` blocks of a
    shared tower -> fp32 embeddings (losses stay fp32 under bf16 autocast)."""
    if from_block:
        fn = lambda x: model.forward_from(x.float(), from_block).float()  # noqa: E731
        return fn, fn
    return (lambda x: model.encode_sketch(x).float()), (lambda x: model.encode_photo(x).float())


def photo_pool(batch: dict, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The in-batch photos negatives are mined from, with their gallery ids: this batch's positives and negatives,
    and under torchrun every rank's (gathered with their gradients)."""
    return (distributed.gather(torch.cat([pos, neg])),
            distributed.gather(torch.cat([batch["target"], batch["negative_index"]])))


def triplet_step(cfg: TrainConfig, from_block: int = 0):
    """The per-batch loss: triplet loss averaged over the sketch canvases."""

    def step(model: Model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        sketch, photo = embedders(model, from_block)
        pos, neg = photo(batch["positive"]), photo(batch["negative"])
        pool = photo_pool(batch, pos, neg)
        losses = [triplet_loss(sketch(batch["sketch"][c]), pos, neg, batch["target"], batch["negative_index"],
                               cfg.margin, cfg.mining, pool) for c in cfg.canvases]
        return torch.stack(losses).mean(), {}

    return step


def training_data(cfg, model: EmbeddingNet, train_set: RetrievalSet, val_set: RetrievalSet,
                  progress: bool = True) -> tuple[Dataset, ValidateFn, int]:
    """(train dataset, validation function, first block the step runs): cached trunk views or plain images."""
    ds = TripletDataset(train_set, cfg.canvases, cfg.photo_size, augment=cfg.augment, seed=cfg.seed,
                        raster_method=cfg.raster_method, sketch_augment=cfg.sketch_augment)
    if not cfg.cache_views:
        precision = evaluation(cfg.precision, cfg.memory_format, cfg.backbone)
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
    run = start_run(cfg, out, resume)
    torch.manual_seed(cfg.seed)
    model = cfg.build_model()
    train_set, val_set, test_set = build_sets(cfg)
    ds, validate, from_block = training_data(cfg, model, train_set, val_set, progress)
    best = fit(model, triplet_step(cfg, from_block), ds, validate, cfg, run, resume=resume, progress=progress)
    canvases = tuple(sorted({cfg.eval_canvas, *cfg.canvases, *cfg.test_canvases}))
    test = test_best(run, test_set, canvases, cfg) if test_set and distributed.is_main() else []
    return {"best": best, "test": test}
