"""Encode a retrieval set with a model and score it: the one evaluation path every command uses."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data.datasets import PHOTO_SIZE, PhotoDataset, RetrievalSet, SketchCanvasDataset
from ..data.render import DEFAULT_RASTER_METHOD
from ..models.precision import Precision
from .metrics import metrics_from_ranks, true_ranks


BRANCHES = ("sketch", "photo")


@torch.inference_mode()
def encode(model: nn.Module, dataset: Dataset, branch: str, batch_size: int = 64, workers: int = 0,
           desc: str | None = None, progress: bool = True, precision: Precision | None = None) -> torch.Tensor:
    """fp32 embeddings of every item of ``dataset`` through the model's ``branch`` (sketch or photo), in order.

    ``precision`` (default fp32, contiguous) sets autocast and memory format for the pass.
    """
    if branch not in BRANCHES:
        raise ValueError(f"branch must be one of {BRANCHES}, got {branch!r}")
    precision = precision or Precision()
    precision.prepare(model.eval())
    fn = getattr(model, f"encode_{branch}")
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    with precision.autocast():
        return torch.cat([fn(precision.inputs(x)).float()
                          for x in tqdm(loader, desc=desc or branch, leave=False, disable=not progress)])


def evaluate(model: nn.Module, rset: RetrievalSet, canvas: int = 256, photo_size: int = PHOTO_SIZE,
             batch_size: int = 64, workers: int = 0, raster_method: str = DEFAULT_RASTER_METHOD,
             photo_emb: torch.Tensor | None = None, progress: bool = True,
             precision: Precision | None = None) -> dict:
    """acc@1/5/10 and ranks of ``rset``'s sketches at ``canvas`` against its unique photos.

    ``photo_emb`` may be passed in to reuse one gallery encoding across canvases.
    """
    out = metrics_from_ranks(query_ranks(model, rset, canvas, photo_size, batch_size, workers, raster_method,
                                         photo_emb, progress, precision))
    out.update(set=rset.name, canvas=canvas, gallery=len(rset.photos))
    return out


def query_ranks(model: nn.Module, rset: RetrievalSet, canvas: int = 256, photo_size: int = PHOTO_SIZE,
                batch_size: int = 64, workers: int = 0, raster_method: str = DEFAULT_RASTER_METHOD,
                photo_emb: torch.Tensor | None = None, progress: bool = True,
                precision: Precision | None = None) -> np.ndarray:
    """The 1-based rank of each sketch's true photo among ``rset``'s photos: per-query figures for paired
    comparisons of two models on the same sketches (``evaluate`` reduces them to acc@K)."""
    if photo_emb is None:
        photo_emb = encode(model, PhotoDataset(rset.photos, photo_size), "photo", batch_size, workers, "photos",
                           progress, precision)
    sketch_emb = encode(model, SketchCanvasDataset(rset.sketches, canvas, raster_method), "sketch", batch_size,
                        workers, f"sketches@{canvas}", progress, precision)
    return true_ranks(sketch_emb @ photo_emb.T, rset.targets)


def evaluate_canvases(model: nn.Module, rset: RetrievalSet, canvases: tuple[int, ...] | list[int],
                      photo_size: int = PHOTO_SIZE, batch_size: int = 64, raster_method: str = DEFAULT_RASTER_METHOD,
                      precision: Precision | None = None, progress: bool = False) -> list[dict]:
    """``evaluate`` at each canvas, with the gallery encoded once (photos do not depend on the sketch canvas)."""
    photos = encode(model, PhotoDataset(rset.photos, photo_size), "photo", batch_size, desc="photos",
                    progress=progress, precision=precision)
    return [evaluate(model, rset, c, photo_size, batch_size, raster_method=raster_method, photo_emb=photos,
                     progress=progress, precision=precision) for c in canvases]


