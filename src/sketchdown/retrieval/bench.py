"""Retrieval latency at catalogue scale on this CPU, and accuracy among 5,000 photos.

Per model (teacher and SketchyNetV1 at canvas 256; SketchyNetV2 = the V1 student + its canvas selector) and engine
(torch eager, onnxruntime); batch 1, warm (after --warmup queries), median and p95 over --queries queries, the
Shoe-V1 test sketches cycled, each already read into memory:
  encode    sketch -> canvas (the selector's choice included) -> embedding
  query     encode + exact top-10 search over the 5,000-photo gallery: what a user waits for
  search    exact inner product over 115 real photo vectors; exact and HNSW over the 5,000 real ones and over
            100,000 synthetic ones (real gallery vectors plus noise of norm 0.5, renormalised), with HNSW recall@10
            against exact
  accuracy  acc@1/@10 of the 115 Shoe-V1 test sketches among their 115 photos and among 5,000 (Shoe-V2 photos and
            a seeded sample of Sketchy photos as distractors); and whether torch and onnxruntime rank alike
Photo vectors are cached as index files under --cache, so only the first run encodes the gallery.

    python benchmarks/latency.py --teacher runs/teacher --v1 runs/v1 --v2 runs/v2
    python benchmarks/latency.py --teacher xception --v1 mobilenet_v2 --queries 20 --warmup 2   # zero-shot smoke
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from ..data.datasets import RetrievalSet, data_root, load_set, load_sketch
from ..data.sketch import Sketch
from ..errors import SketchdownError
from ..files import write_json, write_text
from ..eval.metrics import metrics_from_ranks, true_ranks
from ..models.weights import cache_dir
from .encoder import Retriever, load
from .index import Index, build_file, recall_at_k

TARGET_MS, TARGET_SPEEDUP = 5.0, 20.0  # SketchyNetV2 on onnxruntime, query over 5,000 photos; vs the teacher's
K = 10


def time_calls(fn: Callable[[Any], object], queries: list, warmup: int) -> dict:
    """Median and p95 wall-clock milliseconds of ``fn`` over ``queries``, after ``warmup`` untimed calls."""
    for s in queries[:warmup]:
        fn(s)
    times = []
    for s in queries:
        t0 = time.perf_counter()
        fn(s)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95)), "n": len(times)}


def gallery_photos(root: Path, distractors: int) -> tuple[RetrievalSet, list[Path]]:
    """Shoe-V1 test (115 sketches, their photos first), then Shoe-V2 photos, then seeded Sketchy photos."""
    test = load_set("shoes-v1", "test", root)
    shoes = sorted((root / "shoe-v2-photos" / "photos").glob("*.jpg"))[:distractors]
    sketchy = sorted((root / "sketchy-subset" / "photo").rglob("*.jpg"))
    rest = distractors - len(shoes)
    if rest > len(sketchy):
        raise SketchdownError(f"{root}: {len(shoes) + len(sketchy)} distractor photos, {distractors} asked for")
    pick = np.random.default_rng(0).choice(len(sketchy), rest, replace=False)
    return test, list(test.photos) + shoes + [sketchy[i] for i in sorted(pick)]


def models(args: argparse.Namespace) -> dict[str, Retriever]:
    out = {}
    if args.teacher:
        out["teacher"] = load(args.teacher, canvas=256)
    if args.v1:
        out["SketchyNetV1"] = load(args.v1, canvas=256)
    if args.v2:
        if not args.v1:
            raise SketchdownError("--v2 is a canvas selector that runs on the --v1 student: give --v1 too")
        out["SketchyNetV2"] = load(args.v1, canvas=256, selector=args.v2)
    if not out:
        raise SketchdownError("nothing to measure: give --teacher, --v1 and/or --v2")
    return out


def search_rows(label: str, vectors: np.ndarray, queries: np.ndarray, warmup: int,
                kinds: tuple[str, ...] = ("exact", "hnsw")) -> list[dict]:
    """Build time and search latency of each index kind over ``vectors``; HNSW recall@10 against exact."""
    n, dim = vectors.shape
    info = {"identity": label, "source": None, "dim": dim}
    rows, found = [], {}
    for kind in kinds:
        t0 = time.perf_counter()
        ix = Index(Path("."), [str(i) for i in range(n)], vectors, np.zeros((n, 2)), info, kind)
        build_s = time.perf_counter() - t0
        found[kind] = ix.search_vectors(queries, K)[1]
        rows.append({"model": label, "dim": dim, "photos": n, "index": kind, "build_s": build_s,
                     **time_calls(lambda v: ix.search_vectors(v, K), list(queries), warmup)})
        print(f"search {label:<13} {n:>7} {kind:<5} {rows[-1]['median_ms']:8.3f} ms (built in {build_s:.1f} s)",
              flush=True)
    if "hnsw" in found:
        rows[-1]["recall10"] = recall_at_k(found["hnsw"], found["exact"], K)
    return rows


def measure_model(name: str, enc: Retriever, gallery: Index, test: RetrievalSet, sketches: list[Sketch],
                  queries: list[Sketch], args: argparse.Namespace, threads: int,
                  search: bool = True) -> dict[str, list[dict]]:
    """Encode and query timings on both engines, accuracy and engine agreement of one model, and search timings
    unless ``search`` is off (SketchyNetV2 searches V1's vectors)."""
    small = gallery.vectors[:len(test.photos)]  # the test photos come first
    share = Counter(enc.canvas_for(s) for s in sketches)
    canvas = ", ".join(f"{c}: {100 * n / len(sketches):.0f}%" for c, n in sorted(share.items()))
    out: dict[str, list[dict]] = {"latency": [], "search": [], "accuracy": []}
    vectors = {}
    for engine in ("torch", "onnx"):
        e = enc if engine == "torch" else enc.with_engine("onnx", threads=threads)
        encode = time_calls(e.encode_sketch, queries, args.warmup)
        query = time_calls(lambda s: gallery.search_vectors(e.encode_sketch(s), K), queries, args.warmup)
        out["latency"].append({"model": name, "engine": engine, "canvas": canvas, "encode": encode, "query": query})
        vectors[engine] = np.stack([e.encode_sketch(s) for s in sketches])
        print(f"{name:<13} {engine:<6} encode {encode['median_ms']:8.2f} ms   query {query['median_ms']:8.2f} ms",
              flush=True)
    q = np.stack([vectors["torch"][i % len(sketches)] for i in range(len(queries))])
    if search:
        out["search"] = search_rows(name, small, q, args.warmup, ("exact",)) + \
            search_rows(name, gallery.vectors, q, args.warmup)
    torch_top, onnx_top = (gallery.search_vectors(vectors[e], K)[1] for e in ("torch", "onnx"))
    row = {"model": name, "same_top10": float((torch_top == onnx_top).all(1).mean()),
           "max_abs_diff": float(np.abs(vectors["torch"] - vectors["onnx"]).max())}
    for photos in (small, gallery.vectors):
        m = metrics_from_ranks(true_ranks(vectors["torch"] @ photos.T, test.targets))
        row[f"acc1@{len(photos)}"], row[f"acc10@{len(photos)}"] = m["acc1"], m["acc10"]
    out["accuracy"].append(row)
    return out


def synthetic(gallery: Index, n: int) -> np.ndarray:
    """``n`` noisy copies of real gallery vectors (noise of norm about 0.5), renormalised."""
    rng = np.random.default_rng(0)
    base = gallery.vectors[rng.integers(len(gallery), size=n)]
    noisy = base + rng.standard_normal(base.shape, dtype=np.float32) * np.float32(0.5 / np.sqrt(base.shape[1]))
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def targets(latency: list[dict], photos: int) -> list[dict]:
    """The issue's targets, each with the measured value (None: not measured)."""
    def median(model: str, engine: str) -> float | None:
        return next((r["query"]["median_ms"] for r in latency if (r["model"], r["engine"]) == (model, engine)), None)

    v2, teacher = median("SketchyNetV2", "onnx"), median("teacher", "torch")
    rows = [{"target": f"SketchyNetV2 on onnxruntime, query over {photos:,} photos: median <= {TARGET_MS:g} ms",
             "value": v2, "met": None if v2 is None else v2 <= TARGET_MS}]
    speedup = teacher / v2 if v2 and teacher else None
    rows.append({"target": f">= {TARGET_SPEEDUP:g}x faster than the teacher on torch (same run)",
                 "value": speedup, "met": None if speedup is None else speedup >= TARGET_SPEEDUP})
    return rows


def markdown(result: dict) -> str:
    m = result["meta"]
    lines = [f"Query latency, batch 1, warm: median / p95 ms over {m['queries']} queries "
             f"({m['threads']} threads, {m['cpu']}).", "",
             "| model | canvas | engine | encode sketch | query (encode + search {0:,} photos) |".format(m["gallery"]),
             "|---|---|---|---:|---:|"]
    lines += [f"| {r['model']} | {r['canvas']} | {r['engine']} | {r['encode']['median_ms']:.2f} / "
              f"{r['encode']['p95_ms']:.2f} | {r['query']['median_ms']:.2f} / {r['query']['p95_ms']:.2f} |"
              for r in result["latency"]]
    lines += ["", "| search: model (dim) | photos | index | median / p95 ms | HNSW recall@10 vs exact |",
              "|---|---:|---|---:|---:|"]
    lines += [f"| {r['model']} ({r['dim']}) | {r['photos']:,} | {r['index']} | {r['median_ms']:.3f} / "
              f"{r['p95_ms']:.3f} | {r['recall10']:.3f} |" if "recall10" in r else
              f"| {r['model']} ({r['dim']}) | {r['photos']:,} | {r['index']} | {r['median_ms']:.3f} / "
              f"{r['p95_ms']:.3f} | |" for r in result["search"]]
    small, big = m["test_photos"], m["gallery"]
    lines += ["", f"| Shoe-V1 test sketches | acc@1 / @10 among {small} | among {big:,} | torch = onnxruntime top-10 |",
              "|---|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r[f'acc1@{small}']:.2f} / {r[f'acc10@{small}']:.2f} | {r[f'acc1@{big}']:.2f} / "
              f"{r[f'acc10@{big}']:.2f} | {100 * r['same_top10']:.0f}% |" for r in result["accuracy"]]
    lines.append("")
    for t in result["targets"]:
        value = "not measured" if t["value"] is None else f"{t['value']:.2f}"
        verdict = "" if t["met"] is None else (" (met)" if t["met"] else " (NOT met)")
        lines.append(f"- {t['target']}: {value}{verdict}")
    lines += [f"- note: {n}" for n in m["notes"]]
    lines.append(f"\n_torch {m['torch']}, onnxruntime {m['onnxruntime']}, faiss {m['faiss']}; "
                 f"command: `{m['command']}`_")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    faiss.omp_set_num_threads(threads)
    encoders = models(args)
    test, photos = gallery_photos(args.data or data_root(), args.distractors)
    sketches = [load_sketch(s) for s in test.sketches]
    queries = [sketches[i % len(sketches)] for i in range(args.queries)]
    cache = args.cache or cache_dir() / "bench"
    result: dict = {"latency": [], "search": [], "accuracy": []}
    galleries: dict[str, Index] = {}
    for name, enc in encoders.items():
        gallery = build_file(enc, photos, cache / f"{enc.identity[:16]}.idx", kind="exact", progress=True)
        searched = any(g.model["identity"] == enc.identity for g in galleries.values())
        galleries[name] = gallery
        for key, rows in measure_model(name, enc, gallery, test, sketches, queries, args, threads,
                                       not searched).items():
            result[key] += rows
    name = next(n for n in ("SketchyNetV1", "SketchyNetV2", "teacher") if n in encoders)
    q = np.stack([encoders[name].encode_sketch(s) for s in queries])
    result["search"] += search_rows(f"{name} synthetic", synthetic(galleries[name], args.synthetic), q, args.warmup)
    result["targets"] = targets(result["latency"], len(photos))
    notes = ["the SketchyNetV2 selector runs in torch on both engines; only the student moves to onnxruntime"] \
        if "SketchyNetV2" in encoders else ["SketchyNetV2 not measured (no --v2 selector given)"]
    command = f"python {' '.join(sys.argv)}" if sys.argv[0].endswith(".py") else f"sketchdown {' '.join(sys.argv[1:])}"
    result["meta"] = {"command": command, "cpu": platform.processor() or platform.machine(),
                      "threads": threads, "torch": torch.__version__, "onnxruntime": version("onnxruntime"),
                      "faiss": faiss.__version__, "queries": args.queries, "warmup": args.warmup,
                      "test_photos": len(test.photos), "gallery": len(photos), "synthetic": args.synthetic,
                      "models": {n: e.describe() for n, e in encoders.items()}, "notes": notes}
    write_json(result, args.out)
    table = markdown(result)
    write_text(args.out.with_suffix(".md"), table + "\n")
    print(table)
    return result
