"""SketchyNetV1: cross-modal relational distillation from a frozen teacher into a photo-efficient student.

Student loss per step = lambda * triplet + (1 - lambda) * L_RKD, averaged over the sketch rendered at every
canvas (photos stay full size), so one student serves every canvas. L_RKD compares Euclidean distances
(sketch-positive, sketch-negative, positive-negative; or every pair of the batch with ``relation=batch``) in the
teacher's and the student's spaces with a Huber loss. Optionally, unpaired photos add photo-photo relations.

By default every student layer trains on fresh augmentations and the frozen teacher embeds the same batch under
no_grad. With ``photo_tower="teacher"`` (the asymmetric design) the student is the teacher's frozen photo tower plus
a sketch tower of its own (optionally starting as a copy of the teacher's, with batch-norm statistics per canvas):
the gallery is the teacher's, so student and teacher share one space, and besides the relations the student's sketch
embedding is pulled onto the teacher's (``direct``) inside L_RKD's share, and sketches that have no photo can add
the same pull for the small canvases (``unpaired``: the teacher sees each at its own canvas; in either design
``unpaired_target="self"`` pulls them onto the student's own embedding at that canvas instead). With
``photo_tower="own"`` and ``student_init="teacher"`` both student towers start as copies of the teacher's and both
train; photos without sketches (``unlabelled``) then add the teacher's photo-photo distances. With ``cache_views``
(shared-tower students only) the teacher's embeddings of every cached view are computed once (the teacher is frozen,
and the student's views are the same images: same view seed), so a step costs only the student's unfrozen blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import copy
import dataclasses

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .. import pretrained
from ..data.datasets import PhotoViews, RetrievalSet, SketchViews, TripletDataset, item_seed, unpaired_sketches
from ..data.io import RASTER_SUFFIXES
from ..errors import InputError, SketchdownError
from ..losses import rkd_batch_loss, rkd_photo_loss, rkd_triplet_loss, triplet_loss
from ..eval.evaluate import evaluate_canvases
from ..files import checkpoint_path
from ..models import artifact
from ..models.embed import EmbeddingNet, EnsembleNet, Model, ModelConfig, TwinNet, load_model, read_checkpoint
from ..models.precision import Precision, evaluation, resolve
from .cache import CachedTriplets, TrunkViews, trunk_views, validate_cached
from .configs import DistillConfig
from . import distributed
from .loop import Run, fit, start_run, test_best
from .triplet import build_sets, embedders, photo_pool


def load_teacher(spec: str) -> tuple[Model, dict]:
    """The frozen teacher and its training config (for its frozen blocks and canvas): a training run folder or
    checkpoint, or a retriever artifact (a shipped name or a folder), whose settings give its canvas."""
    folder, _ = pretrained.resolve(spec)
    if artifact.is_artifact(folder):
        art = artifact.read(folder, "retriever")
        teacher = artifact.build_model(art).requires_grad_(False)
        return teacher, {"eval_canvas": art.settings.get("canvas"), "backbone": teacher.config.backbone}
    ckpt_path = checkpoint_path(folder)
    config = read_checkpoint(ckpt_path).get("config") or {}
    teacher = load_model(ckpt_path).requires_grad_(False)
    return teacher, config


def unlabelled_set(folder: str) -> RetrievalSet:
    """A photo-only set: every image of ``folder`` (sorted), standing in as its own target."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, "unlabelled photo folder does not exist")
    photos = sorted(p for p in root.rglob("*") if p.suffix.lower() in RASTER_SUFFIXES)
    if len(photos) < 2:
        raise InputError(root, "needs at least two photos")
    return RetrievalSet(f"unlabelled:{root.name}", list(photos), list(range(len(photos))), photos)


@torch.inference_mode()
def teacher_views(teacher: EmbeddingNet | EnsembleNet, t_cfg: dict, rset: RetrievalSet, views: int,
                  cfg: DistillConfig, photos_only: bool = False,
                  progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher embeddings of the cached views: V x N x D sketches (at the teacher's canvas), V x P x D photos.

    Each (member) network reuses the trunk cache of its own training run; an ensemble concatenates its members'
    unit embeddings and renormalises, as ``EnsembleNet`` does.
    """
    if isinstance(teacher, EnsembleNet):
        parts = [teacher_views(m, c, rset, views, cfg, photos_only, progress)
                 for m, c in zip(teacher.members, t_cfg["members"])]
        return tuple(F.normalize(torch.cat(p, dim=-1), dim=-1) for p in zip(*parts))
    k, canvas = int(t_cfg.get("freeze_blocks", 0)), int(t_cfg.get("eval_canvas", max(cfg.canvases)))
    canvases = () if photos_only else (canvas,)
    ds = TripletDataset(rset, canvases, cfg.photo_size, augment=cfg.augment, raster_method=cfg.raster_method,
                        sketch_augment=cfg.sketch_augment)
    cache = trunk_views(teacher, k, ds, views, progress=progress)

    def embed(feats: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        flat = feats.flatten(0, 1)
        out = torch.cat([teacher.forward_from(flat[i:i + batch_size].float(), k)
                         for i in range(0, len(flat), batch_size)])
        return out.view(*feats.shape[:2], -1)

    sketches = embed(cache.sketches[canvas]) if canvases else torch.empty(0)
    return sketches, embed(cache.photos)


class _MoreThanTriplets(Dataset):
    """Triplet items with fields added; epochs and length are the triplets' own."""

    triplets: TripletDataset | CachedTriplets

    def set_epoch(self, epoch: int) -> None:
        self.triplets.set_epoch(epoch)

    @property
    def seed(self) -> int:
        return self.triplets.seed

    @property
    def epoch(self) -> int:
        return self.triplets.epoch

    def __len__(self) -> int:
        return len(self.triplets)


class WithSampled(_MoreThanTriplets):
    """Triplets, each with one random view of ``views`` under ``key``: a sketch that has no photo (``unpaired``,
    {canvas: image}) or a photo that has no sketch (``unlabelled``); pick and augmentation seeded per item, epoch
    and ``stream``."""

    def __init__(self, triplets: "TripletDataset | _MoreThanTriplets", key: str, views: SketchViews | PhotoViews,
                 stream: int) -> None:
        self.triplets, self.key, self.views, self.stream = triplets, key, views, stream

    def __getitem__(self, i: int) -> dict:
        item = self.triplets[i]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed(self.triplets.seed, self.triplets.epoch, i, self.stream))
            item[self.key] = self.views(int(torch.randint(len(self.views), ())))
        return item


class DistillTriplets(_MoreThanTriplets):
    """``CachedTriplets`` items plus the teacher's embeddings of the same views (and one unpaired photo)."""

    def __init__(self, triplets: CachedTriplets, t_sketches: torch.Tensor, t_photos: torch.Tensor,
                 unlabelled: tuple[TrunkViews, torch.Tensor] | None = None) -> None:
        self.triplets, self.t_sketches, self.t_photos, self.unlabelled = triplets, t_sketches, t_photos, unlabelled

    def __getitem__(self, i: int) -> dict:
        item = self.triplets[i]
        vs, vp, vn = item["views"].tolist()
        item["teacher"] = {"sketch": self.t_sketches[vs, i], "positive": self.t_photos[vp, item["target"]],
                           "negative": self.t_photos[vn, item["negative_index"]]}
        if self.unlabelled is not None:
            cache, t_emb = self.unlabelled
            g = torch.Generator().manual_seed(item_seed(self.triplets.seed, self.triplets.epoch, i, 2))
            j = int(torch.randint(cache.photos.shape[1], (), generator=g))
            v = int(torch.randint(cache.views, (), generator=g))
            item["unlabelled"], item["teacher"]["unlabelled"] = cache.photos[v, j], t_emb[v, j]
        return item


def student_from_teacher(cfg: DistillConfig, teacher: Model) -> TwinNet:
    """A copy of the teacher's photo tower, frozen (``photo_tower="teacher"``, design b) or trained (``"own"``),
    and a sketch tower of the student's own: a fresh ``cfg.backbone``, or (``student_init="teacher"``) a copy of
    the teacher's sketch tower given batch-norm statistics per canvas."""
    if isinstance(teacher, EnsembleNet):
        raise SketchdownError("a student that copies the teacher's towers needs a teacher with one photo tower, not "
                              "an ensemble: pick one of its members (on validation)")
    photo = copy.deepcopy(teacher.photo if isinstance(teacher, TwinNet) else teacher)
    photo.requires_grad_(cfg.photo_tower == "own")
    stats = tuple(cfg.canvases) if cfg.canvas_stats and len(cfg.canvases) > 1 else ()
    # the config only allows a scale and shift per canvas (or a stride) with several canvases' statistics
    affine = {"canvas_affine": cfg.canvas_affine, "canvas_affine_residual": cfg.canvas_affine_residual,
              "canvas_unstride": tuple(sorted(cfg.canvas_unstride))}
    if cfg.student_init == "teacher":
        own = teacher.sketch_tower
        if own.config.canvas_stats:
            theirs = {k: getattr(own.config, k) for k in affine}
            if tuple(own.config.canvas_stats) != tuple(sorted(stats)) or theirs != affine:
                raise SketchdownError(f"the teacher's sketch tower keeps statistics for canvases "
                                      f"{list(own.config.canvas_stats)} ({theirs}), the student trains at "
                                      f"{list(cfg.canvases)} ({affine})")
            sketch = copy.deepcopy(own)
        else:  # plain batch norms: every canvas starts from the teacher's statistics (and scale and shift)
            sketch = EmbeddingNet(dataclasses.replace(own.config, canvas_stats=stats, **affine),
                                  copy.deepcopy(own.backbone))
            sketch.load_state_dict({k: v for k, v in own.state_dict().items() if not k.startswith("backbone.")},
                                   strict=False)
    else:
        sketch = EmbeddingNet(ModelConfig(backbone=cfg.backbone, embed_dim=cfg.embed_dim, pool=cfg.pool,
                                          weights=cfg.weights, canvas_stats=stats, **affine))
    return TwinNet(sketch.requires_grad_(True), photo)


@contextmanager
def running_statistics(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block the batch norms normalise by their running statistics and leave them as they are (eval
    mode); every module gets back its own mode after (frozen blocks stay in eval)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def distill_step(cfg: DistillConfig, from_block: int, teacher: Model, teacher_canvas: int):
    """Per-batch student loss; teacher embeddings come from the batch (cached) or the frozen teacher, which sees
    the sketch at ``teacher_canvas`` (one of the batch's canvases). With the teacher's own photo tower in the
    student, its photo embeddings are the teacher's and are computed once."""
    shared_space = cfg.photo_tower == "teacher"
    weights = torch.tensor(cfg.canvas_weights or [1.0] * len(cfg.canvases))
    weights = weights / weights.sum()

    def over_canvases(terms: list[torch.Tensor]) -> torch.Tensor:
        """The per-canvas terms' weighted mean (``canvas_weights``; equal by default)."""
        return (torch.stack(terms) * weights.to(terms[0])).sum()

    def teacher_of(batch: dict, pos: torch.Tensor, neg: torch.Tensor) -> dict:
        if "teacher" in batch:
            return batch["teacher"]
        with torch.no_grad():
            out = {"sketch": teacher.encode_sketch(batch["sketch"][teacher_canvas]).float()}
            for k in ("unlabelled",) if shared_space else ("positive", "negative", "unlabelled"):
                if k in batch:
                    out[k] = teacher.encode_photo(batch[k]).float()
        if shared_space:  # the student's photo tower is the teacher's: its embeddings are the teacher's
            out.update(positive=pos, negative=neg)
        return out

    def step(model: Model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        embed_sketch, embed = embedders(model, from_block)
        pos, neg = embed(batch["positive"]), embed(batch["negative"])
        t = teacher_of(batch, pos, neg)
        pool = photo_pool(batch, pos, neg)  # every rank's photos under torchrun, with their gradients
        t_photos = distributed.gather(torch.cat([t["positive"], t["negative"]]))
        tri_terms, rkd_terms, direct_terms = [], [], []
        for c in cfg.canvases:
            sk = embed_sketch(batch["sketch"][c])
            if shared_space:
                direct_terms.append((sk - t["sketch"]).pow(2).sum(1).mean())
            tri_terms.append(triplet_loss(sk, pos, neg, batch["target"], batch["negative_index"], cfg.margin,
                                          cfg.mining, pool))
            if cfg.relation == "triplet":
                rkd_terms.append(rkd_triplet_loss(sk, pos, neg, t["sketch"], t["positive"], t["negative"], cfg.beta))
            else:
                rkd_terms.append(rkd_batch_loss(sk, pool[0], t["sketch"], t_photos, cfg.beta))
        tri, rkd = over_canvases(tri_terms), over_canvases(rkd_terms)
        logs = {"triplet": tri.item(), "rkd": rkd.item()}
        if direct_terms:
            direct = over_canvases(direct_terms)
            rkd = rkd + cfg.direct * direct
            logs["direct"] = direct.item()
        loss = cfg.lam * tri + (1 - cfg.lam) * rkd
        if "unpaired" in batch:  # sketches without photos: each small canvas onto the embedding at the teacher's
            views = batch["unpaired"]
            with running_statistics(model) if cfg.unpaired_bn == "running" else nullcontext():
                with torch.no_grad():
                    anchor = embed_sketch if cfg.unpaired_target == "self" else teacher.encode_sketch
                    target = anchor(views[teacher_canvas]).float()
                terms = [(embed_sketch(views[c]) - target).pow(2).sum(1).mean() for c in views
                         if c != teacher_canvas]
            unp = cfg.unpaired_weight * torch.stack(terms).mean()
            loss = loss + unp
            logs["unpaired"] = unp.item()
        if "unlabelled" in batch:  # photos without sketches: the teacher's photo-photo distances
            unl = cfg.unlabelled_weight * rkd_photo_loss(embed(batch["unlabelled"]), t["unlabelled"], cfg.beta)
            loss = loss + unl
            logs["rkd_unlabelled"] = unl.item()
        return loss, logs

    return step


def validate_canvases(model: Model, rset: RetrievalSet, canvases: tuple[int, ...], cfg: DistillConfig,
                      views: TrunkViews | None = None, precision: Precision | None = None) -> dict:
    """Validation metrics averaged over the canvases (one student must serve all of them), from cached trunk
    ``views`` or from the images (one photo encoding for every canvas)."""
    if views is not None:
        per = [validate_cached(model, views, rset, c) for c in canvases]
    else:
        per = evaluate_canvases(model, rset, canvases, cfg.photo_size, raster_method=cfg.raster_method,
                                precision=precision)
    out = {k: sum(m[k] for m in per) / len(per) for k in ("acc1", "acc5", "acc10", "mean_rank")}
    out.update({f"acc1@{c}": m["acc1"] for c, m in zip(canvases, per)})
    return out


def distill(cfg: DistillConfig, out: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Distil (or resume) a student in ``out``; returns the best validation record and test metrics."""
    teacher, t_cfg = load_teacher(cfg.teacher)
    teacher_canvas = int(t_cfg.get("eval_canvas", max(cfg.canvases)))
    if teacher_canvas not in cfg.canvases:
        raise SketchdownError(f"the teacher retrieves at canvas {teacher_canvas}, which is not among the student's "
                              f"canvases {list(cfg.canvases)}")
    if cfg.cache_views and not teacher.shared:
        raise SketchdownError("cached views need a teacher whose sketch and photo towers are one network; this "
                              "teacher has untied towers: distil without --cache-views (every layer trains)")
    run = start_run(cfg, out, resume)
    torch.manual_seed(cfg.seed)
    from_teacher = cfg.photo_tower == "teacher" or cfg.student_init == "teacher"
    student = student_from_teacher(cfg, teacher) if from_teacher else cfg.build_model()
    train_set, val_set, test_set = build_sets(cfg)
    if not cfg.cache_views:
        precision = evaluation(cfg.precision, cfg.memory_format, cfg.backbone)
        resolve(cfg.precision, cfg.memory_format, t_cfg.get("backbone", ""), "train").prepare(teacher)
        ds = TripletDataset(train_set, cfg.canvases, cfg.photo_size, augment=cfg.augment, seed=cfg.seed,
                            raster_method=cfg.raster_method, sketch_augment=cfg.sketch_augment)
        if cfg.unpaired:
            small = tuple(c for c in cfg.canvases if c < teacher_canvas)
            if not small:
                raise SketchdownError(f"unpaired sketches teach the canvases below the teacher's ({teacher_canvas}); "
                                      f"the student trains at {list(cfg.canvases)}")
            ds = WithSampled(ds, "unpaired", SketchViews(unpaired_sketches(cfg.unpaired), (*small, teacher_canvas),
                                                         cfg.augment, cfg.raster_method, cfg.sketch_augment), 3)
        if cfg.unlabelled:
            ds = WithSampled(ds, "unlabelled", PhotoViews(unlabelled_set(cfg.unlabelled).photos, cfg.photo_size,
                                                          cfg.augment), 2)
        best = fit(student, distill_step(cfg, 0, teacher, teacher_canvas), ds,
                   lambda m: validate_canvases(m, val_set, cfg.canvases, cfg, precision=precision), cfg, run,
                   resume=resume, progress=progress)
        return {"best": best, "test": _test(run, test_set, cfg) if distributed.is_main() else []}
    k, v = cfg.freeze_blocks, cfg.cache_views

    def views_of(net: EmbeddingNet, blocks: int, rset: RetrievalSet, canvases: tuple[int, ...], n: int,
                 aug: bool) -> TrunkViews:
        ds = TripletDataset(rset, canvases, cfg.photo_size, augment=aug, raster_method=cfg.raster_method,
                            sketch_augment=cfg.sketch_augment)
        return trunk_views(net, blocks, ds, n, progress=progress)

    s_views = views_of(student, k, train_set, cfg.canvases, v, cfg.augment)
    t_sketches, t_photos = teacher_views(teacher, t_cfg, train_set, v, cfg, progress=progress)
    unlabelled = None
    if cfg.unlabelled:
        u_set = unlabelled_set(cfg.unlabelled)
        u_views = views_of(student, k, u_set, (), v, cfg.augment)
        unlabelled = (u_views, teacher_views(teacher, t_cfg, u_set, v, cfg, True, progress)[1])
    ds = DistillTriplets(CachedTriplets(train_set, s_views, cfg.seed), t_sketches, t_photos, unlabelled)
    val_views = views_of(student, k, val_set, cfg.canvases, 1, False)
    best = fit(student, distill_step(cfg, k, teacher, teacher_canvas), ds,
               lambda m: validate_canvases(m, val_set, cfg.canvases, cfg, views=val_views), cfg, run, resume=resume,
               progress=progress)
    return {"best": best, "test": _test(run, test_set, cfg)}


def _test(run: Run, test_set: RetrievalSet | None, cfg: DistillConfig) -> list[dict]:
    canvases = tuple(sorted({*cfg.canvases, *cfg.test_canvases}))
    return test_best(run, test_set, canvases, cfg) if test_set else []
