"""A searchable photo catalogue: a unit vector per photo, the identity of the model that made them, a faiss index.

Exact inner-product search (``IndexFlatIP``) by default. Past ``HNSW_THRESHOLD`` photos (or on request) an HNSW
graph answers instead, and ``recall_at_k`` measures what it misses against exact search. The file is one NumPy
.npz archive (no pickles) written atomically; it records the model's identity, so searching with another model is
refused instead of returning wrong neighbours.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import faiss
import numpy as np
from tqdm import tqdm

from ..data.io import RASTER_SUFFIXES, read_npz_array
from ..errors import InputError, SketchdownError
from ..files import write_atomic
from ..select.policy import Selector
from ..select.probe import TOP
from .encoder import Retriever, SketchLike, load, load_selector

FORMAT, VERSION = "sketchdown-index", 1
KINDS = ("auto", "exact", "hnsw")
# Photos. Exact search reads every vector for every query; past about 10,000 x 1280 floats (48 MB, this CPU's L3
# cache) each query streams the catalogue from memory, and HNSW answers in a fraction of the time.
HNSW_THRESHOLD = 10_000
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128
OUT_OF_DOMAIN = 0.1  # confidence below which a search is flagged as out of domain (chosen on validation: docs/search.md)
CHECKPOINT_EVERY = 512  # photos encoded between two progress files of an interrupted build
PROGRESS_EVERY = 256  # photos between two progress lines when stderr is not a terminal (a log, a pipe)


class Hit(NamedTuple):
    """One search result: the photo and its cosine similarity to the sketch."""

    path: Path
    score: float


class Results(list):
    """The hits of one search, best first, and how far to trust them.

    ``confidence``: the share of the retriever's in-domain validation sketches whose top-1 cosine this query's
    top-1 cosine reaches (None when the retriever carries no calibration, e.g. zero-shot). ``in_domain`` is False
    below ``OUT_OF_DOMAIN``: the sketch matches its best photo worse than 90% of real sketches of the retriever's
    domain do, which is what a chair drawn against a shoe catalogue looks like. ``canvas``: the canvas the sketch
    was drawn at (the selector's choice, if any); ``canvases`` every canvas computed and ``gflops`` their cost.
    """

    def __init__(self, hits: list[Hit], canvas: int, confidence: float | None, canvases: tuple[int, ...] = (),
                 gflops: float | None = None, ids: list[int] | None = None) -> None:
        super().__init__(hits)
        self.ids = ids or []  # each hit's number in the index (``Index.photo(i)``)
        self.canvas, self.confidence = canvas, confidence
        self.canvases = canvases or (canvas,)  # every canvas computed (a cascade may look at several)
        self.gflops = gflops  # the paper's cost of the query: the sketch tower at each canvas, plus the selector
        self.in_domain = None if confidence is None else confidence >= OUT_OF_DOMAIN


def confidence(top1: float, calibration: dict | None) -> float | None:
    """Where ``top1`` falls among the calibration's in-domain top-1 scores (0: below all, 1: above all)."""
    if not calibration or not calibration.get("top1_quantiles"):
        return None
    q = np.asarray(calibration["top1_quantiles"], dtype=np.float64)
    return float(np.interp(top1, q, np.linspace(0, 1, len(q))))


class ModelMismatchError(SketchdownError):
    """The index's vectors come from another model than the one asked to search it."""


def list_photos(folder: str | Path) -> list[Path]:
    """The images under ``folder`` (recursively), in a stable order."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, "no such photo folder")
    photos = sorted(p for p in root.rglob("*") if p.suffix.lower() in RASTER_SUFFIXES and p.is_file())
    if not photos:
        raise InputError(root, f"holds no photos ({', '.join(sorted(RASTER_SUFFIXES))})")
    return photos


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int = 10) -> float:
    """Share of the exact top-k that the approximate top-k also returns, averaged over queries."""
    hits = [len(set(a[:k]) & set(e[:k])) / k for a, e in zip(np.asarray(approx_ids), np.asarray(exact_ids))]
    return float(np.mean(hits))


def _stamp(path: Path) -> tuple[int, int]:
    """Size and modification time: a photo with the same stamp need not be encoded again."""
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _faiss_index(vectors: np.ndarray, kind: str) -> faiss.Index:
    d = vectors.shape[1]
    if kind == "exact":
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    index.add(vectors)
    return index


class Index:
    """Photo vectors, faiss search, and the model they came from; made by ``Index.build``, reopened by ``load``."""

    def __init__(self, root: Path, paths: list[str], vectors: np.ndarray, stamps: np.ndarray, model: dict,
                 kind: str = "exact", skipped: Sequence[str] = (), graph: faiss.Index | None = None,
                 origin: str = "<index>") -> None:
        if kind not in ("exact", "hnsw"):
            raise SketchdownError(f"unknown index kind {kind!r}; choose exact or hnsw")
        vectors, stamps = np.asarray(vectors), np.asarray(stamps)
        if vectors.dtype.kind != "f" or vectors.ndim != 2 or not len(vectors) or not np.isfinite(vectors).all():
            raise SketchdownError(f"{origin}: photo vectors must be a non-empty 2-D array of finite floats, got "
                                  f"{vectors.dtype} {vectors.shape}" + ("" if vectors.dtype.kind != "f" or not
                                  vectors.size else f" with {int((~np.isfinite(vectors)).sum())} non-finite values"))
        if stamps.shape != (len(vectors), 2) or len(paths) != len(vectors):
            raise SketchdownError(f"{origin}: {len(paths)} paths, {len(vectors)} vectors and stamps of shape "
                                  f"{stamps.shape} do not agree (expected one path and one (size, time) stamp a vector)")
        self.root, self.paths, self.model, self.kind = Path(root), list(paths), model, kind
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.stamps = stamps.astype(np.int64)
        self.skipped, self.origin = list(skipped), origin
        self.encoder: Retriever | None = None
        self._attaching = threading.Lock()  # concurrent first searches load the recorded model once
        self.reused = 0  # vectors taken over from earlier indexes by `build`
        self._faiss = graph if graph is not None else _faiss_index(self.vectors, kind)

    def __len__(self) -> int:
        return len(self.paths)

    def photo(self, i: int) -> Path:
        return self.root / self.paths[i]

    # ------------------------------------------------------------------------------------------- build

    @classmethod
    def build(cls, model: Retriever | str | Path, photos: str | Path | Sequence[str | Path],
              kind: str = "auto", batch_size: int = 32, skip_bad: bool = False, progress: bool = False,
              reuse: Iterable["Index"] = (), checkpoint: str | Path | None = None) -> "Index":
        """Encode every photo of a folder (recursively) or a list; ``kind`` auto = exact up to HNSW_THRESHOLD.

        ``reuse``: earlier indexes of the same model whose vectors stand for unchanged photos (same path, size and
        modification time). ``checkpoint``: a folder that gets a small index file every CHECKPOINT_EVERY photos,
        for resuming an interrupted build through ``reuse``.
        """
        if kind not in KINDS:
            raise SketchdownError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
        encoder = model if isinstance(model, Retriever) else load(model)
        if isinstance(photos, (str, Path)):
            # Paths stay as found under the folder: a photo that is a link to elsewhere is indexed under its link.
            root = Path(photos).resolve()
            files = [root / p.relative_to(photos) for p in list_photos(photos)]
        else:
            files = [Path(p).resolve() for p in photos]
            if not files:
                raise InputError(None, "no photos given")
            root = Path(os.path.commonpath([p.parent for p in files]))
        stamps = []
        for p in files:
            if not p.is_file():
                raise InputError(p, "no such photo")
            stamps.append(_stamp(p))
        known = {str(ix.photo(i)): (tuple(ix.stamps[i]), ix.vectors[i])
                 for ix in reuse if ix.serves(encoder) for i in range(len(ix))}
        vectors: dict[int, np.ndarray] = {}
        for i, (p, st) in enumerate(zip(files, stamps)):
            if str(p) in known and known[str(p)][0] == st:
                vectors[i] = known[str(p)][1]
        todo = [i for i in range(len(files)) if i not in vectors]
        skipped: list[Path] = []
        bar = tqdm(total=len(todo), desc="photos", unit="photo", disable=None if progress else True)
        started, done = time.perf_counter(), 0

        def advance(n: int) -> None:
            """The bar on a terminal; where tqdm stays silent (stderr is a log or a pipe), a line every
            PROGRESS_EVERY photos and at the end, so a long build is visibly alive."""
            nonlocal done
            bar.update(n)
            before, done = done, done + n
            if progress and bar.disable and (done // PROGRESS_EVERY > before // PROGRESS_EVERY or done == len(todo)):
                rate = done / max(time.perf_counter() - started, 1e-9)
                print(f"encoded {done}/{len(todo)} photos ({rate:.1f} photos/s)", file=sys.stderr, flush=True)

        with bar:
            for start in range(0, len(todo), CHECKPOINT_EVERY):
                chunk = todo[start:start + CHECKPOINT_EVERY]
                paths = [files[i] for i in chunk]
                out, bad = encoder.encode_photos(paths, batch_size, skip_bad, advance)
                unreadable = set(bad)
                good = [i for i in chunk if files[i] not in unreadable]
                vectors.update(zip(good, out))
                skipped += bad
                if checkpoint is not None and good:
                    part = cls._assemble(encoder, root, files, stamps, {i: vectors[i] for i in good}, "exact")
                    part.save(Path(checkpoint) / f"{time.time_ns()}.idx")
        if not vectors:
            raise InputError(root, "none of the photos could be read")
        index = cls._assemble(encoder, root, files, stamps, vectors, kind, [str(p) for p in skipped])
        index.reused = len(files) - len(todo)
        return index

    @classmethod
    def _assemble(cls, encoder: Retriever, root: Path, files: list[Path], stamps: list[tuple[int, int]],
                  vectors: dict[int, np.ndarray], kind: str, skipped: Sequence[str] = ()) -> "Index":
        order = sorted(vectors)
        if kind == "auto":
            kind = "hnsw" if len(order) > HNSW_THRESHOLD else "exact"
        index = cls(root, [files[i].relative_to(root).as_posix() for i in order],
                    np.stack([vectors[i] for i in order]), np.array([stamps[i] for i in order]),
                    encoder.describe(), kind, skipped)
        index.encoder = encoder
        return index

    # ------------------------------------------------------------------------------------------- file

    def save(self, path: str | Path) -> None:
        """Write the index atomically: vectors, stamps, the HNSW graph if any, and JSON metadata."""
        meta = {"format": FORMAT, "version": VERSION, "root": str(self.root), "paths": self.paths,
                "kind": self.kind, "model": self.model, "skipped": self.skipped}
        arrays = {"vectors": self.vectors, "stamps": self.stamps,
                  "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
        if self.kind == "hnsw":
            arrays["graph"] = faiss.serialize_index(self._faiss)
        write_atomic(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: str | Path, model: Retriever | str | Path | None = None) -> "Index":
        """Open an index file. ``model``: the retriever to search with (checked against the index); without it
        the model the index records is loaded at the first sketch search."""
        p = Path(path)
        if not p.is_file():
            raise InputError(p, "no such index file (build one with `sketchdown index PHOTOS_DIR -o FILE`)")
        try:
            with zipfile.ZipFile(p) as zf:
                names = set(zf.namelist())
                missing = {"meta.npy", "vectors.npy", "stamps.npy"} - names
                if missing:
                    raise InputError(p, f"not a sketchdown index (no {', '.join(sorted(missing))})")
                arrays = {n[:-4]: read_npz_array(zf, n, f"{p}[{n[:-4]}]")
                          for n in ("meta.npy", "vectors.npy", "stamps.npy", "graph.npy") if n in names}
            meta = json.loads(arrays["meta"].tobytes())
        except (OSError, ValueError, RecursionError, zipfile.BadZipFile) as err:
            raise InputError(p, f"not a readable sketchdown index ({type(err).__name__}: {err})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InputError(p, "not a sketchdown index")
        if meta.get("version") != VERSION:
            raise InputError(p, f"index format version {meta.get('version')}, this sketchdown reads {VERSION}; "
                                "build it again")
        problem = _meta_problem(meta)
        if problem:
            raise InputError(p, f"the index metadata is damaged ({problem}); build it again")
        vectors, stamps = arrays["vectors"], arrays["stamps"]
        if vectors.dtype != np.float32 or stamps.dtype.kind not in "iu" or vectors.ndim != 2 \
                or vectors.shape[1:] != (meta["model"]["dim"],):
            raise InputError(p, f"the index holds {vectors.dtype} vectors of shape {vectors.shape} and "
                                f"{stamps.dtype} stamps, expected float32 vectors of {meta['model']['dim']} "
                                "dimensions and integer stamps; build it again")
        graph = _graph(arrays.get("graph"), vectors, p) if meta["kind"] == "hnsw" else None
        try:
            index = cls(Path(meta["root"]), meta["paths"], vectors, stamps, meta["model"], meta["kind"],
                        meta.get("skipped", ()), graph, str(p))
        except SketchdownError as err:
            raise InputError(p, f"the index is inconsistent ({err}); build it again") from None
        return index.attach(model) if model is not None else index

    # ------------------------------------------------------------------------------------------- search

    def attach(self, model: Retriever | str | Path) -> "Index":
        """Search with ``model`` from now on; refused unless it is the model that made the vectors.

        A name or path is loaded with the settings the index recorded: photo size, canvas, raster method and
        canvas selector (a recorded selector that cannot be loaded is an error, never silently dropped).
        """
        if not isinstance(model, Retriever):
            model = load(model, canvas=self.model["canvas"], photo_size=self.model["photo_size"],
                         raster_method=self.model.get("raster_method"), selector=self.recorded_selector())
        if not self.serves(model):
            m = self.model
            raise ModelMismatchError(
                f"{self.origin}: built with model {m['identity'][:12]} ({m['source'] or 'made in memory'}, "
                f"photo size {m['photo_size']}), but asked to search with model {model.identity[:12]} "
                f"({model.source or 'made in memory'}, photo size {model.photo_size}), whose photo encoder is "
                "another; search with a model of the photo encoder it was built with, or index the photos again "
                "with this one")
        self.encoder = model
        return self

    def serves(self, model: Retriever) -> bool:
        """Whether ``model``'s photo side made these vectors (its sketch encoder then belongs to them); indexes
        without a photo identity (older files) need the very model."""
        recorded = self.model.get("photo_identity")
        return model.photo_identity == recorded if recorded else model.identity == self.model["identity"]

    def recorded_selector(self) -> Selector | bool:
        """The canvas selector the index was built with, loaded again (False: it had none). One that cannot be
        loaded is an error naming it: searching at a fixed canvas instead must be asked for."""
        recorded = self.model.get("selector")
        if not recorded:
            return False
        try:
            return load_selector(recorded)
        except InputError as err:
            raise InputError(self.origin, f"was built with canvas selector {recorded!r}, which cannot be loaded "
                                          f"({err}); pass the retriever to search with (Python: Index.load(path, "
                                          "model=...); CLI: --selector PATH, or --canvas N for a fixed canvas)") from None

    def search(self, sketch: SketchLike, k: int = 10) -> Results:
        """The ``k`` photos most similar to ``sketch`` (a path, PIL image, array, strokes or Sketch), best first,
        with the canvas used and a confidence (``Results``)."""
        if self.encoder is None:
            if not self.model["source"]:
                raise SketchdownError(f"{self.origin}: built with a model made in memory; "
                                      "pass it: Index.load(path, model=...)")
            with self._attaching:
                if self.encoder is None:
                    self.attach(self.model["source"])
        if k < 1:
            raise SketchdownError(f"k must be at least 1, got {k}")
        query = self.encoder.query(sketch, search=lambda v: tuple(a[0] for a in self.search_vectors(v, max(k, TOP))))
        top, ids = query.probe.top[:k], query.probe.ids[:k]
        found = [(int(i), float(s)) for s, i in zip(top, ids) if i >= 0]
        top1 = found[0][1] if found else float("-inf")
        return Results([Hit(self.photo(i), s) for i, s in found], query.canvas,
                       confidence(top1, self.encoder.info.get("calibration")), query.canvases, query.gflops,
                       [i for i, _ in found])

    def search_vectors(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """faiss search for query vectors (D or Q x D): scores and photo indices, Q x min(k, len)."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.vectors.shape[1]:
            raise SketchdownError(f"query vectors have {q.shape[1]} dimensions, the index {self.vectors.shape[1]}")
        if k < 1:
            raise SketchdownError(f"k must be at least 1, got {k}")
        k = min(k, len(self))
        if self.kind == "hnsw":
            self._faiss.hnsw.efSearch = max(HNSW_EF_SEARCH, k)
        return self._faiss.search(q, k)


_MODEL_KEYS = {"identity": str, "backbone": str, "dim": int, "photo_size": int, "canvas": int}


def _meta_problem(meta: dict) -> str | None:
    """What is wrong with an index's metadata (keys, types, paths that leave the root), or None."""
    model, paths = meta.get("model"), meta.get("paths")
    if meta.get("kind") not in ("exact", "hnsw"):
        return f"kind {meta.get('kind')!r}"
    if not isinstance(meta.get("root"), str):
        return "root is not a path"
    if not isinstance(model, dict):
        return "no model record"
    for key, kind in _MODEL_KEYS.items():
        if not isinstance(model.get(key), kind) or isinstance(model.get(key), bool):
            return f"model {key} is {model.get(key)!r}"
    for key in ("source", "selector", "raster_method", "photo_identity"):
        if model.get(key) is not None and not isinstance(model[key], str):
            return f"model {key} is {model[key]!r}"
    if not isinstance(paths, list) or not all(isinstance(x, str) for x in paths):
        return "paths is not a list of file names"
    for x in paths:
        parts = Path(x).parts
        if not x or "\0" in x or Path(x).is_absolute() or ".." in parts:
            return f"photo path {x!r} leaves the catalogue folder"
    if not isinstance(meta.get("skipped", []), list):
        return "skipped is not a list"
    return None


def _graph(data: np.ndarray | None, vectors: np.ndarray, p: Path) -> faiss.Index:
    """The stored HNSW graph, checked to hold exactly ``vectors`` (an inner-product HNSW of the same rows)."""
    if data is None or data.dtype != np.uint8 or data.ndim != 1:
        raise InputError(p, "an hnsw index without its graph; build it again")
    try:
        graph = faiss.deserialize_index(data)
        ok = isinstance(graph, faiss.IndexHNSW) and graph.metric_type == faiss.METRIC_INNER_PRODUCT \
            and graph.d == vectors.shape[1] and graph.ntotal == len(vectors) \
            and np.array_equal(faiss.downcast_index(graph.storage).reconstruct_n(0, graph.ntotal), vectors)
    except Exception as err:  # faiss raises RuntimeError, MemoryError (std::bad_alloc) or AssertionError
        raise InputError(p, f"the hnsw graph is unreadable ({type(err).__name__}); build it again") from None
    if not ok:
        raise InputError(p, "the hnsw graph does not hold the index's vectors; build it again")
    return graph


def _previous(path: Path) -> Index | None:
    """The index at ``path`` when there is a readable one (to reuse vectors from), else None."""
    try:
        return Index.load(path) if path.is_file() else None
    except InputError:
        return None


def build_file(model: Retriever | str | Path, photos: str | Path | Sequence[str | Path], out: str | Path,
               **build_kw) -> Index:
    """Build or update the index file ``out``, safe to interrupt and re-run.

    Vectors of unchanged photos are reused from ``out`` and from the progress files an interrupted run left in
    ``out.partial/``; ``out`` is replaced only once the new index is complete, then the progress files go.
    """
    out = Path(out)
    if out.is_dir():
        raise InputError(out, "is a folder; give the index file to write")
    previous = _previous(out)
    if out.exists() and previous is None:
        raise InputError(out, "exists and is not a sketchdown index; refusing to overwrite it")
    partial = out.with_name(out.name + ".partial")
    earlier = [previous] + [_previous(p) for p in sorted(partial.glob("*.idx"))]
    index = Index.build(model, photos, reuse=[ix for ix in earlier if ix is not None], checkpoint=partial,
                        **build_kw)
    index.save(out)
    shutil.rmtree(partial, ignore_errors=True)
    return index


def open_catalogue(path: str | Path, model: str | Path | None = None, canvas: int | None = None,
                   selector: str | Path | None = None, engine: str = "torch", onnx: str | Path | None = None,
                   progress: bool = False) -> Index:
    """An index ready to search: an index file with the model it records (or ``model``, which must serve it), or a
    photo folder indexed in memory with ``model``.

    The index's canvas selector is used unless ``selector`` names another or ``canvas`` asks for a fixed canvas
    (a recorded selector is never dropped silently).
    """
    path = Path(path)
    if path.is_dir():  # a photo folder: indexed in memory, for a one-off search or a demo server
        if not model:
            raise SketchdownError(f"{path} is a photo folder: give a model to index it with")
        retriever = load(model, canvas=canvas, selector=selector or (False if canvas else None), engine=engine,
                         onnx=onnx)
        return Index.build(retriever, path, progress=progress)
    index = Index.load(path)
    info = index.model
    if not (model or info["source"]):
        raise SketchdownError(f"{path}: built with a model made in memory; give the model to search with")
    chosen = selector or (False if canvas else index.recorded_selector())
    retriever = load(model or info["source"], canvas=canvas or info["canvas"], photo_size=info["photo_size"],
                     raster_method=info.get("raster_method"), selector=chosen, engine=engine, onnx=onnx)
    return index.attach(retriever)
