"""The faiss structures a catalogue is searched with: built, tuned, stored and checked in one place.

- ``exact``: ``IndexFlatIP``; every query reads every vector (4 x dim bytes a photo).
- ``fp16``: the same scan over half-precision copies of the vectors (``IndexScalarQuantizer`` QT_fp16; the query
  stays fp32): half the bytes to read, so 3x faster than ``exact`` at 5,000 x 1280 on the 2-core reference CPU
  (``benchmarks/latency.py``), with scores within about 1e-4 of exact and the same top-1. ``auto`` picks it up to
  ``HNSW_THRESHOLD`` photos.
- ``hnsw``: a navigable graph over the same vectors (inner product), for catalogues past ``HNSW_THRESHOLD``:
  faster queries, a little recall lost, more memory than exact.
- ``ivfpq``: an inverted file over k-means cells of the catalogue with product-quantised codes, optionally after
  an OPQ rotation (``Compression``; from 9,984 photos, what OPQ's codebooks need): ``pq_bytes`` bytes a photo
  (plus faiss's 8-byte id) instead of 4 x dim,
  the raw vectors are not kept, and ``nprobe`` cells are scanned per query, the knob between speed and recall. It
  is trained on a sample of the catalogue, so it suits catalogues far past what exact search or HNSW hold in memory.
  Measured (``results/scale.md``): the code size decides the accuracy; OPQ barely moved it and is off by default.

A stored structure is serialised by faiss into a uint8 array of the index's .npz (no pickle) and checked when it is
read back: its type, metric, dimension and size must be what the index says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np

from ..errors import InputError, SketchdownError

KINDS = ("auto", "exact", "fp16", "hnsw", "ivfpq")
SCANS = ("exact", "fp16")  # rebuilt from the stored vectors when an index is read; the others are stored
# Photos. A scan reads every vector for every query; past about 10,000 x 1280 (26 MB in fp16, most of a 32-48 MB L3
# cache) each query streams the catalogue from memory, and HNSW answers in a fraction of the time.
HNSW_THRESHOLD = 10_000
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128


@dataclass(frozen=True)
class Compression:
    """IVF-PQ settings. ``nlist`` 0: about 4 x sqrt(photos) cells (at least 39 training photos a cell);
    ``pq_bytes`` 0: a byte for every 4 dimensions (320 for 1280: on ShoeV2-like data that keeps acc@1 within a
    point of exact search, where 64 bytes halves it; ``benchmarks/scale.py``)."""

    nlist: int = 0
    pq_bytes: int = 0  # sub-quantisers of 8 bits: bytes of one photo's code
    opq: bool = False  # rotate the vectors first so the sub-spaces carry equal variance (OPQ; slow to train)
    nprobe: int = 16  # cells scanned per query unless a search asks for another number
    train_size: int = 100_000  # photos sampled to train the cells and codebooks
    seed: int = 0

    def __post_init__(self) -> None:
        if self.nlist < 0 or self.pq_bytes < 1 or self.nprobe < 1 or self.train_size < 1:
            raise SketchdownError(f"invalid IVF-PQ settings {self}")

    def cells(self, n: int) -> int:
        return self.nlist or max(1, min(round(4 * math.sqrt(n)), n // 39))

    def code_bytes(self, dim: int) -> int:
        return self.pq_bytes or max(1, dim // 4)

    def factory(self, dim: int, n: int) -> str:
        """The faiss index_factory string for ``n`` photos of ``dim`` dimensions."""
        m = self.code_bytes(dim)
        if dim % m:
            raise SketchdownError(f"pq_bytes {m} must divide the embedding size {dim}")
        bits = 8 if n >= 256 else max(1, int(math.log2(n)))  # a codebook needs as many training photos as codes
        # OPQ trains 8-bit codebooks of its own: only with the 39 photos a code faiss asks for
        rotation = f"OPQ{m}," if self.opq and n >= 39 * 256 else ""
        return f"{rotation}IVF{self.cells(n)},PQ{m}x{bits}"


def auto_kind(n: int) -> str:
    return "hnsw" if n > HNSW_THRESHOLD else "fp16"


def build(vectors: np.ndarray, kind: str, compression: Compression | None = None) -> faiss.Index:
    """The structure of ``kind`` over ``vectors`` (N x D float32 unit vectors)."""
    d = vectors.shape[1]
    if kind == "exact":
        index = faiss.IndexFlatIP(d)
    elif kind == "fp16":
        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind == "ivfpq":
        index = train_ivfpq(vectors, len(vectors), compression or Compression())
    else:
        raise SketchdownError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS[1:])}")
    index.add(vectors)
    return index


def train_ivfpq(sample: np.ndarray, n: int, compression: Compression) -> faiss.Index:
    """An empty, trained IVF-PQ for a catalogue of ``n`` photos: cells and codebooks from (a seeded subset of)
    ``sample``. Add the catalogue with ``index.add`` (in chunks, if it does not fit in memory as floats)."""
    if len(sample) > compression.train_size:
        pick = np.random.default_rng(compression.seed).choice(len(sample), compression.train_size, replace=False)
        sample = sample[np.sort(pick)]
    index = faiss.index_factory(sample.shape[1], compression.factory(sample.shape[1], n), faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    ivf.cp.seed = compression.seed
    ivf.pq.cp.min_points_per_centroid = 1  # a small catalogue trains its codebooks on what it has, silently
    ivf.do_polysemous_training = False  # the factory's default: a code reordering for Hamming filters we do not use,
    # and 95% of the training time (90 s for 5,000 vectors of 1280 dimensions on 2 cores)
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    faiss.extract_index_ivf(index).nprobe = compression.nprobe
    return index


def configure(index: faiss.Index, kind: str, k: int, nprobe: int | None = None) -> None:
    """Search settings for one query: HNSW's candidate list at least k; IVF-PQ's cells to scan."""
    if kind == "hnsw":
        index.hnsw.efSearch = max(HNSW_EF_SEARCH, k)
    elif kind == "ivfpq" and nprobe is not None:
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = min(nprobe, ivf.nlist)


def serialize(index: faiss.Index) -> np.ndarray:
    return faiss.serialize_index(index)


def restore(data: np.ndarray | None, kind: str, dim: int, count: int, vectors: np.ndarray | None,
            where: object) -> faiss.Index:
    """A stored structure, checked to be of ``kind`` over ``count`` photos of ``dim`` dimensions (an HNSW graph:
    over exactly ``vectors``); anything else is an ``InputError`` naming ``where``."""
    if data is None or data.dtype != np.uint8 or data.ndim != 1:
        raise InputError(where, f"an {kind} index without its faiss structure; build it again")
    try:
        index = faiss.deserialize_index(data)
        ok = index.metric_type == faiss.METRIC_INNER_PRODUCT and index.d == dim and index.ntotal == count
        if kind == "hnsw":
            ok = ok and isinstance(index, faiss.IndexHNSW) and vectors is not None and np.array_equal(
                faiss.downcast_index(index.storage).reconstruct_n(0, index.ntotal), vectors)
        else:
            ok = ok and isinstance(faiss.downcast_index(faiss.extract_index_ivf(index)), faiss.IndexIVFPQ)
    except Exception as err:  # faiss raises RuntimeError, MemoryError (std::bad_alloc) or AssertionError
        raise InputError(where, f"the {kind} structure is unreadable ({type(err).__name__}); build it again") from None
    if not ok:
        raise InputError(where, f"the {kind} structure does not hold the index's photos; build it again")
    return index

