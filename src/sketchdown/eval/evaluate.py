"""Encode a retrieval set with a model and score it: the one evaluation path every command uses."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data.datasets import PHOTO_SIZE, PhotoDataset, RetrievalSet, SketchCanvasDataset
from ..data.render import DEFAULT_RASTER_METHOD
from .metrics import retrieval_metrics


@torch.inference_mode()
def encode(model: nn.Module, dataset: Dataset, batch_size: int = 64, workers: int = 0, desc: str = "encode",
           progress: bool = True) -> torch.Tensor:
    """Embeddings of every item of ``dataset`` (model in eval mode), in order."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    return torch.cat([model(x) for x in tqdm(loader, desc=desc, leave=False, disable=not progress)])


def evaluate(model: nn.Module, rset: RetrievalSet, canvas: int = 256, photo_size: int = PHOTO_SIZE,
             batch_size: int = 64, workers: int = 0, raster_method: str = DEFAULT_RASTER_METHOD,
             photo_emb: torch.Tensor | None = None, progress: bool = True) -> dict:
    """acc@1/5/10 and ranks of ``rset``'s sketches at ``canvas`` against its unique photos.

    ``photo_emb`` may be passed in to reuse one gallery encoding across canvases.
    """
    if photo_emb is None:
        photo_emb = encode(model, PhotoDataset(rset.photos, photo_size), batch_size, workers, "photos", progress)
    sketch_emb = encode(model, SketchCanvasDataset(rset.sketches, canvas, raster_method), batch_size, workers,
                        f"sketches@{canvas}", progress)
    out = retrieval_metrics(sketch_emb, photo_emb, torch.tensor(rset.targets))
    out.update(set=rset.name, canvas=canvas, gallery=len(rset.photos))
    return out


def write_json(data: dict | list, path: str | Path) -> None:
    """Write JSON atomically (a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
