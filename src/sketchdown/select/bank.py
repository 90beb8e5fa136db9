"""A frozen student's view of a retrieval set at every canvas, computed once and saved.

The policy's reward for a (sketch, canvas) pair depends only on the frozen student's embedding of that sketch at
that canvas, so the whole reward table can be made up front: minutes of student forward passes once, then an
epoch of policy training is a fraction of a second. The bank also keeps what the policies read (the smallest
canvas for the raster policy, the strokes when the sketches are vectors) and the student's cost per canvas.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ..data.datasets import PHOTO_SIZE, PhotoDataset, RetrievalSet, SketchCanvasDataset, load_sketch
from ..data.render import CANVASES, DEFAULT_RASTER_METHOD, to_canvas
from ..data.sketch import Sketch
from ..errors import InputError
from ..files import digest, write_atomic
from ..eval.evaluate import encode
from ..eval.flops import backbone_cost
from ..eval.metrics import true_ranks
from ..models.embed import Model, state_parts

TRIPLET_MARGIN = 0.2  # the margin the students are trained with (losses.triplet_loss default)


@dataclass
class Bank:
    """Per sketch and canvas: the student's embedding, the true photo's rank and the mean triplet loss."""

    name: str
    key: str  # identifies student weights + set + settings, so a stale cache is never reused
    canvases: tuple[int, ...]
    sketch_emb: torch.Tensor  # N x K x D
    photo_emb: torch.Tensor  # P x D
    targets: torch.Tensor  # N
    ranks: torch.Tensor  # N x K, 1-based rank of the true photo (ties count against it)
    triplet: torch.Tensor  # N x K, triplet loss against every other photo, averaged
    student_gflops: torch.Tensor  # K, paper accounting (conv features, 2 per MAC)
    student_params_m: float
    rasters: torch.Tensor  # N x S x S uint8, the sketches at the smallest canvas (raster policy input)
    points: list[np.ndarray] | None = None  # per sketch (n, 3) x, y, stroke-end, when every sketch has strokes
    frames: torch.Tensor | None = None  # N x 2 drawing-frame width, height of those strokes

    def __len__(self) -> int:
        return len(self.targets)

    def policy_sketches(self, kind: str) -> list[Sketch]:
        """What a policy of ``kind`` reads: the strokes (vector) or the smallest canvas as a raster sketch."""
        if kind == "raster":
            return [Sketch(raster=r.numpy(), source=f"{self.name}[{i}]") for i, r in enumerate(self.rasters)]
        if self.points is None:
            raise InputError(self.name, "the vector policy needs stroke sketches; this set holds images only "
                                        "(use --policy raster)")
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


def bank_key(student: Model, rset: RetrievalSet, canvases: tuple[int, ...], photo_size: int,
             raster_method: str) -> str:
    """Hash of the student's weights, the set's files and the settings a bank depends on."""
    names = [s.source if isinstance(s, Sketch) else str(s) for s in rset.sketches] + [str(p) for p in rset.photos]
    return digest([*state_parts(student.state_dict()),
                   repr((rset.name, names, rset.targets, canvases, photo_size, raster_method))], 32)


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
    """Encode every sketch at every canvas and the gallery once; rank the true photo for each pair."""
    canvases = tuple(sorted(canvases))
    sketches = [load_sketch(s) for s in rset.sketches]
    photo_emb = encode(student, PhotoDataset(rset.photos, photo_size), "photo", batch_size, desc="photos", progress=progress)
    sketch_emb = torch.stack([encode(student, SketchCanvasDataset(sketches, c, raster_method), "sketch", batch_size,
                                     desc=f"sketches@{c}", progress=progress) for c in canvases], dim=1)
    targets = torch.tensor(rset.targets)
    scores = torch.einsum("nkd,pd->nkp", sketch_emb, photo_emb)
    ranks = torch.stack([torch.from_numpy(true_ranks(scores[:, k], targets)) for k in range(len(canvases))], 1)
    costs = [backbone_cost(student.sketch_tower.backbone, c) for c in canvases]
    vector = all(s.is_vector for s in sketches)
    return Bank(
        name=rset.name, key=bank_key(student, rset, canvases, photo_size, raster_method), canvases=canvases,
        sketch_emb=sketch_emb, photo_emb=photo_emb, targets=targets, ranks=ranks.long(),
        triplet=mean_triplet(scores, targets), student_gflops=torch.tensor([c.gflops for c in costs]),
        student_params_m=costs[0].params_m,
        rasters=torch.stack([torch.tensor(to_canvas(s, canvases[0], raster_method)) for s in sketches]),
        points=[s.to_points() for s in sketches] if vector else None,
        frames=torch.tensor([[s.width, s.height] for s in sketches]) if vector else None)


def cached_bank(path: str | Path, student: Model, rset: RetrievalSet, canvases: tuple[int, ...] = CANVASES,
                photo_size: int = PHOTO_SIZE, raster_method: str = DEFAULT_RASTER_METHOD,
                progress: bool = True) -> Bank:
    """The bank at ``path`` if it was made from this very student, set and settings; else build and save it."""
    path = Path(path)
    key = bank_key(student, rset, tuple(sorted(canvases)), photo_size, raster_method)
    if path.is_file():
        bank = Bank.load(path)
        if bank.key == key:
            return bank
    bank = build_bank(student, rset, canvases, photo_size, raster_method, progress=progress)
    bank.save(path)
    return bank
