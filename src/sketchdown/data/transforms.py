"""Augmentations that suit each modality, and the photo preprocessing shared by training and evaluation.

Sketches: affine jitter and a mirror flip, at a strength named in ``SKETCH_AUGMENTS``; vector sketches are
transformed on their points (exact at any canvas), may lose a few strokes, as people leave details out, and under
``strong`` each stroke also moves a little on its own, as another hand would place it. Photos: mild crop, flip and
colour jitter. Randomness comes from torch's global generator, which ``TripletDataset`` seeds per item for
determinism.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .._compat import torchvision
from .sketch import Sketch

from torchvision.transforms import v2  # noqa: E402  (after the _compat import above)


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand(()).item()


@dataclass(frozen=True)
class SketchAugment:
    """How far a training sketch may be moved: rotation in degrees, scale range, shift and per-stroke shift as
    fractions of the frame, mirror and stroke-drop probabilities (the stroke terms act on vector sketches only)."""

    degrees: float
    scale: tuple[float, float]
    shift: float
    flip: float
    stroke_drop: float
    stroke_shift: float


SKETCH_AUGMENTS = {
    "standard": SketchAugment(degrees=10.0, scale=(0.9, 1.1), shift=0.05, flip=0.5, stroke_drop=0.1, stroke_shift=0.0),
    # Tried against memorising 170 sketches; they were underfit, and this fits worse (docs/training.md).
    "strong": SketchAugment(degrees=15.0, scale=(0.8, 1.2), shift=0.08, flip=0.5, stroke_drop=0.2, stroke_shift=0.02),
}


def augment_vector(sketch: Sketch, aug: SketchAugment = SKETCH_AUGMENTS["standard"]) -> Sketch:
    """Random similarity transform about the frame centre, optional mirror, random stroke dropout and, when
    ``aug.stroke_shift`` is set, an independent shift per stroke."""
    keep = torch.rand(len(sketch.strokes)) >= aug.stroke_drop
    if not keep.any():
        keep[torch.randint(len(keep), ())] = True
    strokes = [s for s, k in zip(sketch.strokes, keep.tolist()) if k]
    a = math.radians(_uniform(-aug.degrees, aug.degrees))
    s = _uniform(*aug.scale)
    mirror = -1.0 if torch.rand(()).item() < aug.flip else 1.0
    m = s * np.array([[math.cos(a) * mirror, -math.sin(a)], [math.sin(a) * mirror, math.cos(a)]], dtype=np.float32)
    centre = np.array([sketch.width / 2, sketch.height / 2], dtype=np.float32)
    t = centre + np.array([_uniform(-aug.shift, aug.shift) * sketch.width,
                           _uniform(-aug.shift, aug.shift) * sketch.height], dtype=np.float32)
    moved = [(p - centre) @ m.T + t for p in strokes]
    if aug.stroke_shift:
        size = np.array([sketch.width, sketch.height], dtype=np.float32)
        jitter = ((torch.rand(len(moved), 2).numpy() * 2 - 1) * aug.stroke_shift * size).astype(np.float32)
        moved = [p + d for p, d in zip(moved, jitter)]
    return Sketch(strokes=tuple(moved), width=sketch.width, height=sketch.height, source=sketch.source,
                  meta=sketch.meta)


def raster_augmenter(aug: SketchAugment = SKETCH_AUGMENTS["standard"]) -> v2.Compose:
    """The raster counterpart of ``augment_vector`` (same ranges, no stroke terms; paper stays white)."""
    return v2.Compose([v2.RandomHorizontalFlip(aug.flip),
                       v2.RandomAffine(degrees=aug.degrees, translate=(aug.shift, aug.shift), scale=aug.scale,
                                       fill=255)])


def augment_raster(sketch: Sketch, augmenter: v2.Compose) -> Sketch:
    out = np.asarray(augmenter(Image.fromarray(sketch.raster)))
    if out.min() == out.max():  # jitter pushed all ink off the page: keep the original
        return sketch
    return Sketch(raster=out, source=sketch.source, meta=sketch.meta)


def photo_augmenter(size: int) -> v2.Compose:
    return v2.Compose([v2.RandomResizedCrop(size, scale=(0.8, 1.0), ratio=(0.9, 1.1), antialias=True),
                       v2.RandomHorizontalFlip(0.5),
                       v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)])


def photo_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float 3xHxW in [0, 1]. Normalisation lives in the model (``Backbone``)."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
