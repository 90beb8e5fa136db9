"""A frozen student's view of a retrieval set at every canvas, computed once and saved.

The policy's reward for a (sketch, canvas) pair depends only on the frozen student's embedding of that sketch at
that canvas, so the whole reward table can be made up front: minutes of student forward passes once, then an
epoch of policy training is a fraction of a second. The bank also keeps what the selectors read (the smallest
canvas for the raster policy, the strokes for the vector policy, traced when the sketch is an image, and the top
similarities of each search for the cascade) and the student's cost per canvas. The rewards must come from
sketches the student did not train on (a student ranks its own training sketches first at every canvas): banks
of held-out folds, each scored by the student that left it out, are stacked with ``Bank.concat``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from ..data.datasets import PHOTO_SIZE, PhotoDataset, RetrievalSet, SketchCanvasDataset, load_sketch
from ..data.render import CANVASES, DEFAULT_RASTER_METHOD, prepare, to_canvas
from ..data.strokes import trace
from ..data.sketch import Sketch
from ..errors import InputError
from ..files import digest, write_atomic
from ..eval.evaluate import encode
from ..eval.flops import tower_cost
from ..eval.metrics import true_ranks
from ..models.embed import Model, state_parts
from ..train import distributed
from .probe import TOP

TRIPLET_MARGIN = 0.2  # the margin the students are trained with (losses.triplet_loss default)
# the fields with a row per sketch: what stacking banks stacks and a subset selects (``points`` is a list)
PER_SKETCH = ("targets", "ranks", "triplet", "top_scores", "rasters", "frames")


@dataclass
class Bank:
    """Per sketch and canvas: the rank of the true photo, the mean triplet loss and the top similarities."""

    name: str
    key: str  # identifies student weights + set + settings, so a stale cache is never reused
    canvases: tuple[int, ...]
    targets: torch.Tensor  # N
    ranks: torch.Tensor  # N x K, 1-based rank of the true photo (ties count against it)
    triplet: torch.Tensor  # N x K, triplet loss against every other photo, averaged
    top_scores: torch.Tensor  # N x K x TOP cosine similarities of the best photos, descending
    gallery: int  # photos the sketches were ranked among
    student_gflops: torch.Tensor  # K, paper accounting (conv features, 2 per MAC)
    student_params_m: float
    rasters: torch.Tensor  # N x S x S uint8, the sketches at the smallest canvas (raster policy input)
    points: list[np.ndarray] | None = None  # per sketch (n, 3) x, y, stroke-end: its strokes, or traced ones
    frames: torch.Tensor | None = None  # N x 2 drawing-frame width, height of those strokes

    def __len__(self) -> int:
        return len(self.targets)

    def stroke_sketches(self) -> list[Sketch]:
        """The sketches as strokes (traced where they were images): what the vector policy reads."""
        if self.points is None:
            raise InputError(self.name, "this bank holds no strokes (it was stacked from banks of which one has "
                                        "none); build it again")
        return [Sketch.from_points(p, float(w), float(h), source=f"{self.name}[{i}]")
                for i, (p, (w, h)) in enumerate(zip(self.points, self.frames.tolist()))]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "points"}
        if self.points is not None:
            data["point_counts"] = torch.tensor([len(p) for p in self.points])
            data["points"] = torch.from_numpy(np.concatenate(self.points))
        write_atomic(path, lambda f: torch.save(data, f))

    @classmethod
    def concat(cls, banks: list["Bank"], name: str) -> "Bank":
        """One bank of several (cross-fitting: each fold scored by the student that did not train on it); the
        per-sketch tables are stacked, so the banks must share canvases and student costs."""
        first = banks[0]
        for b in banks[1:]:
            if b.canvases != first.canvases or not torch.equal(b.student_gflops, first.student_gflops):
                raise ValueError(f"bank {b.name} has canvases {b.canvases} / costs {b.student_gflops.tolist()}, "
                                 f"{first.name} {first.canvases} / {first.student_gflops.tolist()}")
        vector = all(b.points is not None for b in banks)
        rows = {f: torch.cat([getattr(b, f) for b in banks]) if vector or f != "frames" else None for f in PER_SKETCH}
        return replace(first, name=name, key=digest([b.key for b in banks], 32), gallery=min(b.gallery for b in banks),
                       points=[p for b in banks for p in b.points] if vector else None, **rows)

    def subset(self, keep: torch.Tensor, name: str) -> "Bank":
        """The sketches where the boolean N-vector ``keep`` is set (out-of-fold choosing: a selector fitted on some
        of a bank's sketches and scored on the others)."""
        index = keep.nonzero()[:, 0]
        rows = index.tolist()
        return replace(self, name=name, key=digest([self.key, *map(str, rows)], 32),
                       points=None if self.points is None else [self.points[i] for i in rows],
                       **{f: getattr(self, f)[index] for f in PER_SKETCH if getattr(self, f) is not None})

    @classmethod
    def load(cls, path: str | Path) -> "Bank":
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            counts = data.pop("point_counts", None)
            if counts is not None:
                data["points"] = list(np.split(data["points"].numpy(), np.cumsum(counts.numpy())[:-1]))
            data["canvases"] = tuple(data["canvases"])
            return cls(**data)
        except Exception as err:  # a foreign, truncated or older-format file
            raise InputError(path, f"not a readable sketchdown bank ({type(err).__name__}: {err})") from None


BANK_VERSION = 2  # part of every key: a bank of an older layout is rebuilt, never misread


def bank_key(student: Model, rset: RetrievalSet, canvases: tuple[int, ...], photo_size: int,
             raster_method: str) -> str:
    """Hash of the student's weights, the set's files and the settings a bank depends on."""
    names = [s.source if isinstance(s, Sketch) else str(s) for s in rset.sketches] + [str(p) for p in rset.photos]
    return digest([*state_parts(student.state_dict()),
                   repr((BANK_VERSION, rset.name, names, rset.targets, canvases, photo_size, raster_method))], 32)


def mean_triplet(scores: torch.Tensor, targets: torch.Tensor, margin: float = TRIPLET_MARGIN) -> torch.Tensor:
    """max(0, m + d(s, p+) - d(s, p-)) averaged over every other photo p-; ``scores`` are N x K x P cosines."""
    dist = (2 - 2 * scores).clamp_min(0).sqrt()
    d_pos = dist.gather(2, targets.view(-1, 1, 1).expand(-1, dist.shape[1], 1))
    loss = (margin + d_pos - dist).clamp_min(0)
    other = torch.ones_like(dist, dtype=torch.bool).scatter_(2, targets.view(-1, 1, 1).expand_as(d_pos), False)
    return (loss * other).sum(2) / other.sum(2).clamp_min(1)


@torch.inference_mode()
def build_bank(student: Model, rset: RetrievalSet, canvases: tuple[int, ...] = CANVASES,
               photo_size: int = PHOTO_SIZE, raster_method: str = DEFAULT_RASTER_METHOD, batch_size: int = 64,
               progress: bool = True) -> Bank:
    """Encode every sketch at every canvas and the gallery once; rank the true photo for each pair.

    Raster sketches are also traced into strokes (``data.strokes.trace``), so the vector policy can read every
    sketch; the student sees each sketch as ``raster_method`` draws it. Under torchrun each rank encodes and traces
    its block of the photos and of the sketches, and every rank gets the whole bank.
    """
    canvases = tuple(sorted(canvases))
    photos = rset.photos[distributed.block(len(rset.photos))]
    photo_emb = torch.cat(distributed.gather_objects(
        encode(student, PhotoDataset(photos, photo_size), "photo", batch_size, desc="photos", progress=progress)))
    mine = distributed.block(len(rset.sketches))
    sketches = [prepare(load_sketch(s), raster_method) for s in rset.sketches[mine]]
    sketch_emb = torch.stack([encode(student, SketchCanvasDataset(sketches, c, raster_method), "sketch", batch_size,
                                     desc=f"sketches@{c}", progress=progress) for c in canvases], dim=1)
    targets = torch.tensor(rset.targets[mine], dtype=torch.long)
    scores = torch.einsum("nkd,pd->nkp", sketch_emb, photo_emb)
    top = scores.topk(min(TOP, scores.shape[2]), dim=2).values
    if top.shape[2] < TOP:  # a gallery of fewer than TOP photos: repeat the last similarity
        top = torch.cat([top, top[:, :, -1:].expand(-1, -1, TOP - top.shape[2])], dim=2)
    strokes = [s if s.is_vector else trace(s) for s in sketches]
    part = {"ranks": torch.stack([torch.from_numpy(true_ranks(scores[:, k], targets))
                                  for k in range(len(canvases))], 1).long(),
            "triplet": mean_triplet(scores, targets), "top_scores": top.float(),
            "rasters": torch.tensor(np.array([to_canvas(s, canvases[0], raster_method) for s in sketches],
                                             np.uint8).reshape(-1, canvases[0], canvases[0])),
            "points": [s.to_points() for s in strokes],
            "frames": torch.tensor([[s.width, s.height] for s in strokes], dtype=torch.float32).reshape(-1, 2)}
    parts = distributed.gather_objects(part)
    whole = {k: [x for p in parts for x in p[k]] if k == "points" else torch.cat([p[k] for p in parts])
             for k in part}
    costs = [tower_cost(student.sketch_tower, c) for c in canvases]
    return Bank(name=rset.name, key=bank_key(student, rset, canvases, photo_size, raster_method), canvases=canvases,
                targets=torch.tensor(rset.targets), gallery=len(rset.photos),
                student_gflops=torch.tensor([c.gflops for c in costs]), student_params_m=costs[0].params_m, **whole)


def cached_bank(path: str | Path, student: Model, rset: RetrievalSet, canvases: tuple[int, ...] = CANVASES,
                photo_size: int = PHOTO_SIZE, raster_method: str = DEFAULT_RASTER_METHOD,
                progress: bool = True) -> Bank:
    """The bank at ``path`` if it was made from this very student, set and settings; else build and save it."""
    path = Path(path)
    key = bank_key(student, rset, tuple(sorted(canvases)), photo_size, raster_method)
    bank = Bank.load(path) if path.is_file() else None
    if distributed.all_agree(bank is not None and bank.key == key):
        return bank
    bank = build_bank(student, rset, canvases, photo_size, raster_method, progress=progress)
    if distributed.is_main():
        bank.save(path)
    distributed.barrier()
    return bank
