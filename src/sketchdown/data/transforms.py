"""Augmentations that suit each modality, and the photo preprocessing shared by training and evaluation.

Sketches: small affine jitter and a mirror flip; vector sketches are transformed on their points (exact at any
canvas) and may lose a few strokes, as people leave details out. Photos: mild crop, flip and colour jitter.
Randomness comes from torch's global generator, which ``TripletDataset`` seeds per item for determinism.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from .._compat import torchvision
from .sketch import Sketch

from torchvision.transforms import v2  # noqa: E402  (after the _compat import above)


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand(()).item()


def augment_vector(sketch: Sketch, degrees: float = 10.0, scale: tuple[float, float] = (0.9, 1.1),
                   shift: float = 0.05, flip: float = 0.5, stroke_drop: float = 0.1) -> Sketch:
    """Random similarity transform about the frame centre, optional mirror, and random stroke dropout."""
    keep = torch.rand(len(sketch.strokes)) >= stroke_drop
    if not keep.any():
        keep[torch.randint(len(keep), ())] = True
    strokes = [s for s, k in zip(sketch.strokes, keep.tolist()) if k]
    a = math.radians(_uniform(-degrees, degrees))
    s = _uniform(*scale)
    mirror = -1.0 if torch.rand(()).item() < flip else 1.0
    m = s * np.array([[math.cos(a) * mirror, -math.sin(a)], [math.sin(a) * mirror, math.cos(a)]], dtype=np.float32)
    centre = np.array([sketch.width / 2, sketch.height / 2], dtype=np.float32)
    t = centre + np.array([_uniform(-shift, shift) * sketch.width, _uniform(-shift, shift) * sketch.height],
                          dtype=np.float32)
    moved = tuple((p - centre) @ m.T + t for p in strokes)
    return Sketch(strokes=moved, width=sketch.width, height=sketch.height, source=sketch.source, meta=sketch.meta)


def raster_augmenter(degrees: float = 10.0, scale: tuple[float, float] = (0.9, 1.1), shift: float = 0.05,
                     flip: float = 0.5) -> v2.Compose:
    """The raster counterpart of ``augment_vector`` (same ranges; paper stays white)."""
    return v2.Compose([v2.RandomHorizontalFlip(flip),
                       v2.RandomAffine(degrees=degrees, translate=(shift, shift), scale=scale, fill=255)])


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
