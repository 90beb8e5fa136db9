"""Frozen-trunk feature cache: run the frozen leading blocks once per augmented view, then train only the rest.

On 2 CPU cores a full forward+backward of Xception costs about a second per image; with the first k blocks
frozen their output never changes for a given input, so it is computed once for V fixed augmented views of every
training sketch (at every canvas) and photo, and each step samples one view per image. This is exact for the
frozen part (the same numbers the full network would compute on that view); what it gives up is augmentation
diversity (V views instead of a fresh one per step). View 0 is the clean image, views 1.. are augmented. Caches
live in ``$SKETCHDOWN_HOME/features`` keyed by everything they depend on, so seeds and configs that share a trunk
share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..data.datasets import RetrievalSet, TripletDataset, item_seed
from ..eval.metrics import retrieval_metrics
from ..files import digest, write_atomic
from ..models.embed import EmbeddingNet, state_parts
from ..models.weights import cache_dir

VIEW_SEED = 1234  # fixed: every run (any seed) sees the same cached views, so runs stay comparable


@dataclass
class TrunkViews:
    """Trunk outputs (float16): ``sketches[canvas]`` is V x N x C x h x w, ``photos`` V x P x C x H x W."""

    k: int
    sketches: dict[int, torch.Tensor]
    photos: torch.Tensor

    @property
    def views(self) -> int:
        return self.photos.shape[0]


def _identity(model: EmbeddingNet, k: int, ds: TripletDataset, views: int) -> str:
    """A key over the trunk's weights and every input that shapes the cached tensors."""
    tensors = [model.backbone.mean, model.backbone.std, model.backbone.channels]
    for block in model.backbone.blocks()[:k]:  # only the trunk: fine-tuning later blocks keeps the key
        tensors += [*block.parameters(), *block.buffers()]
    parts = [model.config.backbone, k, views, VIEW_SEED, ds.canvases, ds.photo_size, ds.augment, ds.raster_method,
             ds.sketch_augment, [str(s) for s in ds.rset.sketches], [str(p) for p in ds.rset.photos]]
    return digest([*state_parts({f"{i:04d}": t for i, t in enumerate(tensors)}), repr(parts)], 20)


@torch.inference_mode()
def _run_trunk(model: EmbeddingNet, k: int, images: list[torch.Tensor], batch_size: int) -> torch.Tensor:
    return torch.cat([model.trunk(torch.stack(images[i:i + batch_size]), k).half()
                      for i in range(0, len(images), batch_size)])


def trunk_views(model: EmbeddingNet, k: int, ds: TripletDataset, views: int, batch_size: int = 32,
                progress: bool = True, use_disk: bool = True) -> TrunkViews:
    """Trunk outputs of ``views`` views of every sketch (each canvas of ``ds``) and photo; cached on disk."""
    path = cache_dir() / "features" / f"{_identity(model, k, ds, views)}.pt"
    if use_disk and path.is_file():
        data = torch.load(path, map_location="cpu", weights_only=True)
        return TrunkViews(k, data["sketches"], data["photos"])
    model.eval()
    clean = TripletDataset(ds.rset, ds.canvases, ds.photo_size, augment=False, seed=VIEW_SEED,
                           raster_method=ds.raster_method)
    aug = TripletDataset(ds.rset, ds.canvases, ds.photo_size, augment=ds.augment, seed=VIEW_SEED,
                         raster_method=ds.raster_method, sketch_augment=ds.sketch_augment)
    sketches: dict[int, list[torch.Tensor]] = {c: [] for c in ds.canvases}
    photos: list[torch.Tensor] = []
    for v in tqdm(range(views), desc=f"trunk views ({model.config.backbone}, {k} blocks)", disable=not progress):
        src = clean if v == 0 else aug
        src.set_epoch(v)
        rendered = [src.sketch_view(i) for i in range(len(ds.rset))] if ds.canvases else []
        for c in ds.canvases:
            sketches[c].append(_run_trunk(model, k, [r[c] for r in rendered], batch_size))
        photos.append(_run_trunk(model, k, [src.photo_view(j) for j in range(len(ds.rset.photos))], batch_size))
    out = TrunkViews(k, {c: torch.stack(t) for c, t in sketches.items()}, torch.stack(photos))
    if use_disk:
        write_atomic(path, lambda f: torch.save({"sketches": out.sketches, "photos": out.photos}, f))
    return out


class CachedTriplets(Dataset):
    """Triplets over cached trunk views: the same items as ``TripletDataset``, as trunk features.

    Per (seed, epoch, index): a random view of the sketch, one of the positive photo, a random negative photo and
    a view of it. Items keep ``TripletDataset``'s keys, so the same step function serves both, plus ``views``
    (the three view indices, to look up a teacher's embeddings of the same views).
    """

    def __init__(self, rset: RetrievalSet, views: TrunkViews, seed: int = 0) -> None:
        self.rset, self.cache, self.seed, self.epoch = rset, views, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rset)

    def __getitem__(self, i: int) -> dict:
        target = self.rset.targets[i]
        g = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, i))
        negative = int(torch.randint(len(self.rset.photos) - 1, (), generator=g))
        negative += negative >= target
        vs, vp, vn = torch.randint(self.cache.views, (3,), generator=g).tolist()
        return {"sketch": {c: t[vs, i] for c, t in self.cache.sketches.items()},
                "positive": self.cache.photos[vp, target], "negative": self.cache.photos[vn, negative],
                "target": target, "negative_index": negative, "index": i, "views": torch.tensor([vs, vp, vn])}


@torch.inference_mode()
def validate_cached(model: EmbeddingNet, views: TrunkViews, rset: RetrievalSet, canvas: int,
                    batch_size: int = 64) -> dict:
    """Retrieval metrics from the clean view (0) of a cached set; equals ``evaluate`` on the full model."""
    model.eval()

    def embed(feats: torch.Tensor) -> torch.Tensor:
        return torch.cat([model.forward_from(feats[i:i + batch_size].float(), views.k)
                          for i in range(0, len(feats), batch_size)])

    return retrieval_metrics(embed(views.sketches[canvas][0]), embed(views.photos[0]), torch.tensor(rset.targets))
