"""A searchable photo catalogue: a unit vector per photo, the identity of the model that made them, a faiss index.

Inner-product search scans every photo's vector, in half precision by default (``fp16``; ``exact`` on request).
Past ``HNSW_THRESHOLD`` photos (or on request) an HNSW graph answers instead; for catalogues past what memory holds
as floats, IVF-PQ (``structures``) keeps a few dozen bytes a photo and no raw vectors; ``recall_at_k`` measures
what either misses against exact search. The file is one NumPy .npz archive (no pickles) written atomically; it
records the model's identity, so searching with another model is refused instead of returning wrong neighbours.

A catalogue can be encoded in shards, by independent jobs (``shard=(i, n)``: every n-th photo from the i-th) or by
the ranks of a torchrun launch, and the shards joined with ``Index.merge`` into the index one job would have made.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
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
from . import structures
from .encoder import Retriever, SketchLike, load, load_selector
from .structures import KINDS, Compression

FORMAT, VERSION = "sketchdown-index", 1
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


class Index:
    """Photo vectors, faiss search, and the model they came from; made by ``Index.build``, reopened by ``load``."""

    def __init__(self, root: Path, paths: list[str], vectors: np.ndarray | None, stamps: np.ndarray, model: dict,
                 kind: str = "exact", skipped: Sequence[str] = (), structure: faiss.Index | None = None,
                 origin: str = "<index>", compression: Compression | None = None,
                 shard: tuple[int, int] | None = None) -> None:
        """``vectors`` may be None only for ``ivfpq`` with its trained ``structure`` (the raw vectors are not
        kept); ``shard``: (i, n) when this holds every n-th photo from the i-th of a catalogue."""
        if kind not in KINDS[1:]:
            raise SketchdownError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS[1:])}")
        stamps = np.asarray(stamps)
        if vectors is None and (kind != "ivfpq" or structure is None):
            raise SketchdownError(f"{origin}: only a built ivfpq index comes without its vectors")
        if vectors is not None:
            vectors = np.asarray(vectors)
            if vectors.dtype.kind != "f" or vectors.ndim != 2 or not len(vectors) or not np.isfinite(vectors).all():
                raise SketchdownError(f"{origin}: photo vectors must be a non-empty 2-D array of finite floats, "
                                      f"got {vectors.dtype} {vectors.shape}" + (
                                          "" if vectors.dtype.kind != "f" or not vectors.size else
                                          f" with {int((~np.isfinite(vectors)).sum())} non-finite values"))
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        count = len(vectors) if vectors is not None else structure.ntotal
        if stamps.shape != (count, 2) or len(paths) != count or not count:
            raise SketchdownError(f"{origin}: {len(paths)} paths, {count} vectors and stamps of shape "
                                  f"{stamps.shape} do not agree (expected one path and one (size, time) stamp a vector)")
        self.root, self.paths, self.model, self.kind = Path(root), list(paths), model, kind
        self.vectors = vectors
        self.stamps = stamps.astype(np.int64)
        self.skipped, self.origin, self.shard = list(skipped), origin, shard
        self.compression = compression or Compression() if kind == "ivfpq" else None
        self.nprobe = self.compression.nprobe if self.compression else None  # IVF-PQ cells scanned per query
        self.encoder: Retriever | None = None
        self._attaching = threading.Lock()  # concurrent first searches load the recorded model once
        self.reused = 0  # vectors taken over from earlier indexes by `build`
        self._faiss = structure if structure is not None else structures.build(vectors, kind, self.compression)

    def __len__(self) -> int:
        return len(self.paths)

    def photo(self, i: int) -> Path:
        return self.root / self.paths[i]

    # ------------------------------------------------------------------------------------------- build

    @classmethod
    def build(cls, model: Retriever | str | Path, photos: str | Path | Sequence[str | Path],
              kind: str = "auto", batch_size: int = 32, skip_bad: bool = False, progress: bool = False,
              reuse: Iterable["Index"] = (), checkpoint: str | Path | None = None,
              compression: Compression | None = None, shard: tuple[int, int] | None = None) -> "Index":
        """Encode every photo of a folder (recursively) or a list; ``kind`` auto = exact up to HNSW_THRESHOLD.

        ``reuse``: earlier indexes of the same model whose vectors stand for unchanged photos (same path, size and
        modification time). ``checkpoint``: a folder that gets a small index file every CHECKPOINT_EVERY photos,
        for resuming an interrupted build through ``reuse``. ``compression``: the IVF-PQ settings of kind ivfpq.
        ``shard`` (i, n): encode only every n-th photo from the i-th (join the shards with ``Index.merge``).
        """
        if kind not in KINDS:
            raise SketchdownError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
        if shard is not None and not (0 <= shard[0] < shard[1]):
            raise SketchdownError(f"shard {shard[0]} of {shard[1]}: the shard must be in [0, {shard[1]})")
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
        if shard is not None:
            files = files[shard[0]::shard[1]]
            if not files:
                raise InputError(root, f"shard {shard[0]} of {shard[1]} holds no photos")
        stamps = []
        for p in files:
            if not p.is_file():
                raise InputError(p, "no such photo")
            stamps.append(_stamp(p))
        known = {str(ix.photo(i)): (tuple(ix.stamps[i]), ix.vectors[i])
                 for ix in reuse if ix.vectors is not None and ix.serves(encoder) for i in range(len(ix))}
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
        index = cls._assemble(encoder, root, files, stamps, vectors, kind, [str(p) for p in skipped], compression,
                              shard)
        index.reused = len(files) - len(todo)
        return index

    @classmethod
    def _assemble(cls, encoder: Retriever, root: Path, files: list[Path], stamps: list[tuple[int, int]],
                  vectors: dict[int, np.ndarray], kind: str, skipped: Sequence[str] = (),
                  compression: Compression | None = None, shard: tuple[int, int] | None = None) -> "Index":
        order = sorted(vectors)
        kind = structures.auto_kind(len(order)) if kind == "auto" else kind
        stacked = np.stack([vectors[i] for i in order])
        index = cls(root, [files[i].relative_to(root).as_posix() for i in order],
                    stacked if kind != "ivfpq" else None, np.array([stamps[i] for i in order]), encoder.describe(),
                    kind, skipped, structures.build(stacked, kind, compression) if kind == "ivfpq" else None,
                    compression=compression, shard=shard)
        index.encoder = encoder
        return index

    @classmethod
    def merge(cls, shards: Sequence["Index"], kind: str = "auto", compression: Compression | None = None) -> "Index":
        """One index of the shards of a catalogue (``build(shard=(i, n))`` for i in 0..n-1): the photos in the
        order one build would list them. Refused: shards of other models or folders, a missing or repeated shard,
        an index that is not a shard or keeps no vectors (ivfpq)."""
        if not shards:
            raise SketchdownError("no shards to merge")
        for ix in shards:
            if ix.shard is None or ix.vectors is None:
                raise InputError(ix.origin, "not a shard with its vectors (build shards with --shard I/N, any kind "
                                            "but ivfpq)")
        first = shards[0]
        n = first.shard[1]
        for ix in shards[1:]:
            if ix.model.get("photo_identity", ix.model["identity"]) != \
                    first.model.get("photo_identity", first.model["identity"]) or ix.model["dim"] != first.model["dim"]:
                raise ModelMismatchError(f"{ix.origin}: made by model {ix.model['identity'][:12]} "
                                         f"({ix.model['source']}), {first.origin} by {first.model['identity'][:12]} "
                                         f"({first.model['source']}); shards of one index share one photo encoder")
            if ix.root != first.root or ix.shard[1] != n:
                raise InputError(ix.origin, f"a shard of {ix.root} in {ix.shard[1]} parts; {first.origin} is of "
                                            f"{first.root} in {n}")
        got = sorted(ix.shard[0] for ix in shards)
        if got != list(range(n)):
            raise InputError(first.origin, f"shards {got} of {n}: each of 0..{n - 1} is needed exactly once")
        rows = sorted(((Path(p), ix, i) for ix in shards for i, p in enumerate(ix.paths)), key=lambda r: r[0])
        index = cls(first.root, [r[0].as_posix() for r in rows], None if kind == "ivfpq" else
                    np.stack([r[1].vectors[r[2]] for r in rows]), np.stack([r[1].stamps[r[2]] for r in rows]),
                    first.model, structures.auto_kind(len(rows)) if kind == "auto" else kind,
                    [s for ix in shards for s in ix.skipped],
                    structures.build(np.stack([r[1].vectors[r[2]] for r in rows]), kind, compression)
                    if kind == "ivfpq" else None, compression=compression)
        index.encoder = first.encoder
        return index

    # ------------------------------------------------------------------------------------------- file

    def save(self, path: str | Path) -> None:
        """Write the index atomically: vectors (but for ivfpq), stamps, the faiss structure of hnsw and ivfpq (a
        scan's is rebuilt from the vectors), and JSON metadata."""
        meta = {"format": FORMAT, "version": VERSION, "root": str(self.root), "paths": self.paths,
                "kind": self.kind, "model": self.model, "skipped": self.skipped,
                "shard": list(self.shard) if self.shard else None,
                "compression": asdict(self.compression) if self.compression else None}
        arrays = {"stamps": self.stamps, "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
        if self.vectors is not None:
            arrays["vectors"] = self.vectors
        if self.kind not in structures.SCANS:
            arrays["graph"] = structures.serialize(self._faiss)
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
                missing = {"meta.npy", "stamps.npy"} - names
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
        vectors, stamps, dim = arrays.get("vectors"), arrays["stamps"], meta["model"]["dim"]
        if (vectors is None) != (meta["kind"] == "ivfpq"):
            raise InputError(p, "not a sketchdown index (no vectors.npy)" if vectors is None else
                                "an ivfpq index holds no raw vectors; this one does: build it again")
        if vectors is not None and (vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[1:] != (dim,)) \
                or stamps.dtype.kind not in "iu":
            shape = "no" if vectors is None else f"{vectors.dtype} vectors of shape {vectors.shape}"
            raise InputError(p, f"the index holds {shape} and {stamps.dtype} stamps, expected float32 vectors of "
                                f"{dim} dimensions and integer stamps; build it again")
        structure = None if meta["kind"] in structures.SCANS else structures.restore(
            arrays.get("graph"), meta["kind"], dim, len(meta["paths"]), vectors, p)
        try:
            compression = Compression(**meta["compression"]) if meta.get("compression") else None
            index = cls(Path(meta["root"]), meta["paths"], vectors, stamps, meta["model"], meta["kind"],
                        meta.get("skipped", ()), structure, str(p), compression,
                        tuple(meta["shard"]) if meta.get("shard") else None)
        except (SketchdownError, TypeError) as err:
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
        """faiss search for query vectors (D or Q x D): scores and photo indices, Q x min(k, len) (an IVF-PQ
        search that finds fewer than k photos in its ``nprobe`` cells pads with index -1)."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self._faiss.d:
            raise SketchdownError(f"query vectors have {q.shape[1]} dimensions, the index {self._faiss.d}")
        if k < 1:
            raise SketchdownError(f"k must be at least 1, got {k}")
        k = min(k, len(self))
        structures.configure(self._faiss, self.kind, k, self.nprobe)
        return self._faiss.search(q, k)


_MODEL_KEYS = {"identity": str, "backbone": str, "dim": int, "photo_size": int, "canvas": int}


def _meta_problem(meta: dict) -> str | None:
    """What is wrong with an index's metadata (keys, types, paths that leave the root), or None."""
    model, paths = meta.get("model"), meta.get("paths")
    if meta.get("kind") not in KINDS[1:]:
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
    shard = meta.get("shard")
    if shard is not None and not (isinstance(shard, list) and len(shard) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in shard) and 0 <= shard[0] < shard[1]):
        return f"shard is {shard!r}"
    compression = meta.get("compression")
    if compression is not None and not (isinstance(compression, dict) and set(compression) <= set(
            Compression.__dataclass_fields__) and all(isinstance(v, (int, bool)) for v in compression.values())):
        return f"compression is {compression!r}"
    return None


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
                   progress: bool = False, nprobe: int | None = None) -> Index:
    """An index ready to search: an index file with the model it records (or ``model``, which must serve it), or a
    photo folder indexed in memory with ``model``, on ``engine`` like the queries.

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
    if nprobe is not None:
        index.nprobe = nprobe
    return index.attach(retriever)
