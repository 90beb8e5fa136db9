"""Catalogue search at a million photos: exact search against compressed IVF-PQ (with and without OPQ), in one run.

The vectors: the shipped Shoe-V1 retriever's embeddings of the 115 real Shoe-V1 test photos, then of the 2,000
real ShoeV2 photos tiled to --vectors rows with Gaussian noise of norm --noise added to each copy and renormalised
(synthetic photos around real ones: the real ones are all there are here; at norm 0.5 a copy is as far from its
photo, cosine 0.89, as a real ShoeV2 photo is from its nearest real neighbour, median cosine 0.90). The queries:
its embeddings of the 115 Shoe-V1 test sketches. For each structure: build time (training on a --train-size
sample, then adding every vector in chunks), memory per photo (the serialised faiss structure over the photo count;
exact: the float vectors), batch-1 query latency (median / p95 over the queries), recall@10 against exact search,
and acc@1 / acc@10 of each sketch's true photo among the million, for each --nprobe. Writes results/scale.json and .md and the
README block ``scale`` (``tables.render``).

    python benchmarks/scale.py                       # 1,000,000 vectors
    python benchmarks/scale.py --vectors 20000 --nlist 64 --train-size 5000   # a quick look
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from sketchdown.data.datasets import data_root, load_set, load_sketch
from sketchdown.models.weights import cache_dir
from sketchdown.retrieval import load, recall_at_k
from sketchdown.retrieval.index import build_file
from sketchdown.retrieval.structures import Compression, train_ivfpq
from tables import publish, scale_table

K = 10


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sketchynet-v1-shoes", help="shipped Shoe-V1 retriever (or artifact)")
    p.add_argument("--vectors", type=int, default=1_000_000)
    p.add_argument("--noise", type=float, default=0.5, help="norm of the noise added to each copy")
    p.add_argument("--chunk", type=int, default=100_000, help="vectors generated and added at a time")
    p.add_argument("--nlist", type=int, default=1024, help="IVF cells (0: about 4 x sqrt(vectors))")
    p.add_argument("--pq-bytes", type=int, nargs="+", default=[64, 160, 320], help="IVF-PQ code sizes to compare")
    p.add_argument("--opq", action="store_true", help="also each code size after an OPQ rotation (slow)")
    p.add_argument("--train-size", type=int, default=50_000)
    p.add_argument("--nprobe", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    return p


def chunks(base: np.ndarray, n: int, size: int, noise: float):
    """The synthetic catalogue, chunk by chunk, the same on every call (one seed a chunk)."""
    d = base.shape[1]
    for c, start in enumerate(range(0, n, size)):
        rng = np.random.default_rng(1000 + c)
        rows = min(size, n - start)
        x = base[rng.integers(len(base), size=rows)] + rng.standard_normal((rows, d), dtype=np.float32) * \
            np.float32(noise / np.sqrt(d))
        yield x / np.linalg.norm(x, axis=1, keepdims=True)


def latency(index: faiss.Index, queries: np.ndarray) -> dict:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None], K)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95))}


def main(args: argparse.Namespace) -> dict:
    root = args.data or data_root()
    retriever = load(args.model, selector=False)  # the student at its fixed canvas: the photo side is what matters
    photos = sorted((root / "shoe-v2-photos" / "photos").glob("*.jpg"))
    gallery = build_file(retriever, photos, cache_dir() / "bench" / f"{retriever.photo_identity[:16]}-shoev2.idx",
                         kind="exact", progress=True)
    base = gallery.vectors
    test = load_set("shoes-v1", "test", root)
    queries = np.stack([retriever.encode_sketch(load_sketch(s)) for s in test.sketches])
    # the real Shoe-V1 test photos lead the catalogue, so each query's true photo is among the million
    real, _ = retriever.encode_photos(test.photos)
    targets = np.asarray(test.targets)
    d, n = base.shape[1], args.vectors
    rows = []

    def catalogue():
        first = True
        for x in chunks(base, n - len(real), args.chunk, args.noise):
            yield np.concatenate([real, x]) if first else x
            first = False

    def true_photo(found: np.ndarray) -> dict:
        """acc@1 / acc@10 of the true photos among the whole catalogue."""
        hit = found == targets[:, None]
        return {"acc1": 100 * float(hit[:, :1].any(1).mean()), "acc10": 100 * float(hit.any(1).mean())}

    t0 = time.perf_counter()
    exact = faiss.IndexFlatIP(d)
    for x in catalogue():
        exact.add(x)
    build = time.perf_counter() - t0
    truth = exact.search(queries, K)[1]
    rows.append({"structure": "exact (IndexFlatIP)", "build_s": build, "bytes_per_photo": 4 * d,
                 "probes": [{"nprobe": None, "recall10": 1.0, **true_photo(truth), **latency(exact, queries[:40])}]})
    print(f"exact: {build:.0f} s, {rows[-1]['probes'][0]['median_ms']:.1f} ms/query", flush=True)
    del exact

    for pq_bytes, opq in ((b, o) for b in args.pq_bytes for o in ((False, True) if args.opq else (False,))):
        comp = Compression(nlist=args.nlist, pq_bytes=pq_bytes, opq=opq, train_size=args.train_size)
        sample = next(chunks(base, args.train_size, args.train_size, args.noise))
        t0 = time.perf_counter()
        index = train_ivfpq(sample, n, comp)
        trained = time.perf_counter() - t0
        for x in catalogue():
            index.add(x)
        build = time.perf_counter() - t0
        size = faiss.serialize_index(index).nbytes
        probes = []
        ivf = faiss.extract_index_ivf(index)
        for nprobe in args.nprobe:
            ivf.nprobe = nprobe
            found = index.search(queries, K)[1]
            probes.append({"nprobe": nprobe, "recall10": recall_at_k(found, truth, K), **true_photo(found),
                           **latency(index, queries)})
        rows.append({"structure": comp.factory(d, n), "train_s": trained, "build_s": build,
                     "bytes_per_photo": size / n, "probes": probes})
        print(f"{rows[-1]['structure']}: {build:.0f} s, {size / n:.1f} B/photo, "
              + ", ".join(f"nprobe {p['nprobe']}: recall {p['recall10']:.3f} {p['median_ms']:.2f} ms" for p in probes),
              flush=True)
        del index

    result = {"rows": rows, "meta": {
        "vectors": n, "dim": d, "base_photos": len(base), "queries": len(queries), "noise": args.noise,
        "model": args.model, "threads": faiss.omp_get_max_threads(), "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(), "faiss": faiss.__version__,
        "command": f"python {' '.join(sys.argv)}"}}
    return publish(result, "scale", scale_table, args.results, args.readme)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
