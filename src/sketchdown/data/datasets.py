"""Retrieval sets (sketches + a gallery of unique photos) and the torch datasets built on them.

A ``RetrievalSet`` is the one shape every source is turned into: each sketch (a file or an in-memory
``Sketch``) points at the index of its true photo in ``photos``. Named sets resolve to the shipped data
(``../shared/data`` or ``$SKETCHDOWN_DATA``); any ``pairs.csv`` or SketchX V2 folder works the same way.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import InputError
from . import io
from .render import (CANVASES, DEFAULT_RASTER_METHOD, REFERENCE_CANVAS, TRACED_LINE_WIDTH, prepare, render_strokes,
                     to_canvas, to_tensor)
from .sketch import Sketch
from .transforms import (SKETCH_AUGMENTS, augment_raster, augment_vector, photo_augmenter, photo_to_tensor,
                         raster_augmenter)

PHOTO_SIZE = 256

# name -> (pairs.csv relative to the data root, object filter)
NAMED_SETS: dict[str, tuple[str, str | None]] = {
    "shoes-v1": ("qmul-v1/pairs.csv", "shoes"),
    "chairs-v1": ("qmul-v1/pairs.csv", "chairs"),
    "shoes-v1-extra": ("shoe-v1-extra/pairs.csv", None),
    "sketchy": ("sketchy-subset/pairs.csv", None),
}


def data_root() -> Path:
    """``$SKETCHDOWN_DATA``, else ``../shared/data`` from the working directory, else beside the repository."""
    if "SKETCHDOWN_DATA" in os.environ:
        return Path(os.environ["SKETCHDOWN_DATA"])
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "data"


@dataclass
class RetrievalSet:
    """Sketches, a gallery of unique photos, and each sketch's true photo index."""

    name: str
    sketches: list[Path | Sketch]
    targets: list[int]
    photos: list[Path]
    categories: list[str] = field(default_factory=list)  # per photo, when the source has them

    def __post_init__(self) -> None:
        if len(self.sketches) != len(self.targets):
            raise ValueError("one target per sketch")
        if not self.sketches or not self.photos:
            raise InputError(self.name, "the set has no sketches or no photos")

    def __len__(self) -> int:
        return len(self.sketches)

    @classmethod
    def from_pairs(cls, pairs: list[io.Pair], name: str) -> "RetrievalSet":
        photo_index: dict[str, int] = {}
        photos: list[Path] = []
        categories: list[str] = []
        targets: list[int] = []
        for p in pairs:
            if p.key not in photo_index:
                photo_index[p.key] = len(photos)
                photos.append(p.photo)
                categories.append(p.category)
            targets.append(photo_index[p.key])
        return cls(name, [p.sketch for p in pairs], targets, photos, categories)

    def concat(self, other: "RetrievalSet") -> "RetrievalSet":
        """Union of two sets; photos with the same path are merged (e.g. Shoe-V1 + its extra sketches)."""
        index = {p.resolve(): i for i, p in enumerate(self.photos)}
        photos, categories = list(self.photos), list(self.categories)
        remap = []
        for j, p in enumerate(other.photos):
            key = p.resolve()
            if key not in index:
                index[key] = len(photos)
                photos.append(p)
                categories.append(other.categories[j] if other.categories else "")
            remap.append(index[key])
        return RetrievalSet(f"{self.name}+{other.name}", self.sketches + other.sketches,
                            self.targets + [remap[t] for t in other.targets], photos, categories)

    def split_by_photo(self, fraction: float, seed: int = 0) -> tuple["RetrievalSet", "RetrievalSet"]:
        """Hold out ``fraction`` of the photos (with all their sketches), e.g. a validation split from train."""
        rng = np.random.default_rng(seed)
        held = set(rng.permutation(len(self.photos))[: max(1, round(fraction * len(self.photos)))].tolist())
        return self._subset([i not in held for i in range(len(self.photos))]), \
            self._subset([i in held for i in range(len(self.photos))])

    def among(self, gallery: "RetrievalSet", name: str | None = None) -> "RetrievalSet":
        """These sketches ranked among ``gallery``'s photos, a superset of their own (a held-out part of a training
        set searched among every training photo, a gallery the size of a real one)."""
        index = {p.resolve(): i for i, p in enumerate(gallery.photos)}
        return RetrievalSet(name or self.name, self.sketches, [index[self.photos[t].resolve()] for t in self.targets],
                            list(gallery.photos), gallery.categories)

    def fold_split(self, fold: int, folds: int, seed: int = 0) -> tuple["RetrievalSet", "RetrievalSet"]:
        """(the other folds, fold ``fold``) of ``folds`` disjoint parts by photo (a photo with all its sketches):
        cross-fitting, where a model trained on the other folds scores the sketches of this one."""
        if not 0 <= fold < folds or folds < 2:
            raise ValueError(f"fold must be in [0, folds) with folds >= 2, got {fold} of {folds}")
        part = np.empty(len(self.photos), dtype=np.int64)
        part[np.random.default_rng(seed).permutation(len(self.photos))] = np.arange(len(self.photos)) % folds
        return self._subset((part != fold).tolist()), self._subset((part == fold).tolist())

    def _subset(self, keep_photo: list[bool]) -> "RetrievalSet":
        new = {old: n for n, old in enumerate(i for i, k in enumerate(keep_photo) if k)}
        rows = [(s, new[t]) for s, t in zip(self.sketches, self.targets) if t in new]
        cats = [c for c, k in zip(self.categories, keep_photo) if k] if self.categories else []
        return RetrievalSet(self.name, [s for s, _ in rows], [t for _, t in rows],
                            [p for p, k in zip(self.photos, keep_photo) if k], cats)


def load_set(spec: str, split: str | None = None, root: str | Path | None = None) -> RetrievalSet:
    """A named set (``shoes-v1``, ``chairs-v1``, ``shoes-v1-extra``, ``sketchy``), a ``pairs.csv``, or a SketchX V2 folder."""
    root = Path(root) if root is not None else data_root()
    label = f"{spec}:{split}" if split else spec
    if spec in NAMED_SETS:
        csv, obj = NAMED_SETS[spec]
        return RetrievalSet.from_pairs(io.read_pairs_csv(root / csv, split=split, object=obj), label)
    path = Path(spec)
    if path.is_file() and path.suffix == ".csv":
        return RetrievalSet.from_pairs(io.read_pairs_csv(path, split=split), label)
    if path.is_dir() and (path / "photo").is_dir():
        if split is None:
            raise InputError(path, "a SketchX V2 folder needs a split (train or test)")
        items, photo_paths = io.read_sketchx_v2(path, split)
        ids = sorted({pid for pid, _ in items})
        index = {pid: i for i, pid in enumerate(ids)}
        return RetrievalSet(label, [s for _, s in items], [index[pid] for pid, _ in items],
                            [photo_paths[pid] for pid in ids])
    raise InputError(spec, f"not a named set ({', '.join(NAMED_SETS)}), a pairs.csv, or a SketchX V2 folder "
                           "(<root>/photo/ plus the stroke pickle)")


def load_sketch(item: Path | Sketch) -> Sketch:
    return item if isinstance(item, Sketch) else io.read_sketch(item)


def load_photo(path: Path, size: int = PHOTO_SIZE) -> Image.Image:
    img = io.read_image(path)
    return img if img.size == (size, size) else img.resize((size, size), Image.BICUBIC)


class SketchCanvasDataset(Dataset):
    """Sketches at one canvas, for encoding (evaluation, indexing)."""

    def __init__(self, sketches: list[Path | Sketch], canvas: int, raster_method: str = DEFAULT_RASTER_METHOD) -> None:
        self.sketches, self.canvas, self.raster_method = sketches, canvas, raster_method

    def __len__(self) -> int:
        return len(self.sketches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return to_tensor(to_canvas(load_sketch(self.sketches[i]), self.canvas, self.raster_method))


class PhotoDataset(Dataset):
    """Photos resized to ``size`` x ``size``, as tensors in [0, 1]."""

    def __init__(self, photos: list[Path], size: int = PHOTO_SIZE) -> None:
        self.photos, self.size = photos, size

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, i: int) -> torch.Tensor:
        return photo_to_tensor(load_photo(self.photos[i], self.size))


def item_seed(*parts: int) -> int:
    """A stable seed per (seed, epoch, index): the same triplet and augmentation in any worker, on any run."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little") >> 1


class SketchViews:
    """Sketches drawn at every canvas, augmented (at the ``SKETCH_AUGMENTS`` strength named) with torch's random
    state as it stands (callers seed it); each decoded, and traced for the ``trace`` raster method, once."""

    def __init__(self, sketches: list[Path | Sketch], canvases: tuple[int, ...], augment: bool = True,
                 raster_method: str = DEFAULT_RASTER_METHOD, strength: str = "standard") -> None:
        self.sketches, self.canvases = sketches, tuple(canvases)
        self.augment, self.raster_method = augment, raster_method
        if strength not in SKETCH_AUGMENTS:
            raise ValueError(f"sketch augmentation strength must be one of {tuple(SKETCH_AUGMENTS)}, not {strength!r}")
        self._aug = SKETCH_AUGMENTS[strength]
        self._raster_aug = raster_augmenter(self._aug)
        self._prepared: dict[int, Sketch] = {}

    def __len__(self) -> int:
        return len(self.sketches)

    def __call__(self, i: int) -> dict[int, torch.Tensor]:
        if i not in self._prepared:
            self._prepared[i] = prepare(load_sketch(self.sketches[i]), self.raster_method)
        sketch = self._prepared[i]
        if self.augment:
            sketch = augment_vector(sketch, self._aug) if sketch.is_vector else augment_raster(sketch, self._raster_aug)
        return {c: to_tensor(to_canvas(sketch, c, self.raster_method)) for c in self.canvases}


class PhotoViews:
    """Photos at ``size``, augmented with torch's random state as it stands (callers seed it); each decoded once."""

    def __init__(self, photos: list[Path], size: int = PHOTO_SIZE, augment: bool = True) -> None:
        self.photos, self.size, self.augment = photos, size, augment
        self._aug = photo_augmenter(size)
        self._decoded: dict[int, Image.Image] = {}

    def __len__(self) -> int:
        return len(self.photos)

    def __call__(self, j: int) -> torch.Tensor:
        if j not in self._decoded:
            self._decoded[j] = load_photo(self.photos[j], self.size)
        img = self._decoded[j]
        return photo_to_tensor(self._aug(img) if self.augment else img)


def unpaired_sketches(source: str | Path, split: str = "train", pen: float = TRACED_LINE_WIDTH) -> list[Sketch]:
    """Sketches without photos: every sketch file under a folder (sorted), or the ``split`` sketches of a SketchX
    stroke pickle (QMUL-ShoeV2/ChairV2). Stroke sketches are drawn onto a 256 px raster with a ``pen`` px line
    (QMUL-V1's pen), so they reach a student the way the raster sketches they train beside do (traced again for the
    ``trace`` raster method)."""
    path = Path(source)
    if path.is_dir():
        found = [io.read_sketch(p) for p in sorted(path.rglob("*")) if p.suffix.lower() in io.SKETCH_SUFFIXES]
    elif path.is_file():
        found = [s for key, s in sorted(io.read_sketchx_pickle(path).items()) if key.startswith(f"/{split}/")]
    else:
        raise InputError(path, "no such folder of sketches or stroke pickle")
    if not found:
        raise InputError(path, f"holds no sketches{'' if path.is_dir() else f' under /{split}/'}")
    return [Sketch(raster=render_strokes(s, REFERENCE_CANVAS, pen), source=s.source) if s.is_vector else s
            for s in found]


class TripletDataset(Dataset):
    """(sketch at every canvas, positive photo, random negative photo) triplets, deterministic per seed and epoch.

    Items are dicts: ``sketch`` {canvas: 3xcxc}, ``positive`` and ``negative`` 3xSxS, ``target``/``negative_index``
    (gallery indices, so in-batch negatives can be mined), ``index``. Decoded sketches and photos are cached.
    """

    def __init__(self, rset: RetrievalSet, canvases: tuple[int, ...] = CANVASES, photo_size: int = PHOTO_SIZE,
                 augment: bool = True, seed: int = 0, raster_method: str = DEFAULT_RASTER_METHOD,
                 sketch_augment: str = "standard") -> None:
        if len(rset.photos) < 2:
            raise InputError(rset.name, "triplets need at least two photos")
        self.rset, self.canvases, self.photo_size = rset, tuple(canvases), photo_size
        self.augment, self.seed, self.epoch, self.raster_method = augment, seed, 0, raster_method
        self.sketch_augment = sketch_augment
        self._views = SketchViews(rset.sketches, self.canvases, augment, raster_method, sketch_augment)
        self._photo = PhotoViews(rset.photos, photo_size, augment)

    def set_epoch(self, epoch: int) -> None:
        """New negatives and augmentations each epoch, still reproducible."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rset)

    def sketch_view(self, i: int) -> dict[int, torch.Tensor]:
        """Sketch ``i`` at every canvas, augmented as this epoch's seed says (a frozen-trunk cache's view)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed(self.seed, self.epoch, i))
            return self._views(i)

    def photo_view(self, j: int) -> torch.Tensor:
        """Photo ``j`` augmented as this epoch's seed says."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed(self.seed, self.epoch, j, 1))
            return self._photo(j)

    def __getitem__(self, i: int) -> dict:
        target = self.rset.targets[i]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed(self.seed, self.epoch, i))
            negative = int(torch.randint(len(self.rset.photos) - 1, ()).item())
            negative += negative >= target  # uniform over the other photos
            canvases = self._views(i)
            positive, neg = self._photo(target), self._photo(negative)
        return {"sketch": canvases, "positive": positive, "negative": neg, "target": target,
                "negative_index": negative, "index": i}
