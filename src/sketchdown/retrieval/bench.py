"""Retrieval latency at catalogue scale on this CPU, and accuracy among 5,000 photos.

Per model (teacher and SketchyNetV1 at canvas 256; SketchyNetV2 = the V1 student + its canvas selector) and engine
(torch eager, onnxruntime; a learned policy runs on the student's engine); batch 1, warm (after --warmup queries),
median and p95 over --queries queries, the test sketches of --set cycled, each already read into memory:
  encode    sketch -> canvas (the selector's choice included) -> embedding (not for a cascade, which searches)
  query     ``Index.search`` over the 5,000-photo gallery, top 10: drawing the canvas, the selector, the student,
            the search (a cascade's every canvas and search): what a user waits for; from the image (a ``trace``
            model traces it first), and from strokes (the same sketches traced beforehand, as the draw-and-search
            page sends a drawing)
  search    exact inner product over 115 real photo vectors; exact and HNSW over the 5,000 real ones and over
            100,000 synthetic ones (real gallery vectors plus noise of norm 0.5, renormalised), with HNSW recall@10
            against exact
  stages    the steps of a query from the image timed apart (trace, selector, draw, network, search), at the
            canvas each sketch's query used: what limits the end-to-end figure, and whether a change between two
            runs is the model's or the machine's (the teacher's unchanged steps show the latter)
  accuracy  acc@1/@10 of the test sketches among their own photos and among 5,000 (Shoe-V2 photos and a seeded
            sample of Sketchy photos as distractors), through the same search; and whether torch and onnxruntime
            rank alike
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
from ..data.render import prepare, to_canvas, to_tensor
from ..data.sketch import Sketch
from ..data.strokes import trace
from ..errors import SketchdownError
from ..files import write_json, write_text
from ..models.weights import cache_dir
from .. import pretrained
from ..select.cascade import CascadePolicy
from ..select.policy import CanvasPolicy
from ..select.probe import TOP
from .encoder import Retriever, load
from .index import Index, build_file, recall_at_k

TARGET_MS, TARGET_SPEEDUP, TARGET_V1_SPEEDUP = 5.0, 20.0, 3.0  # V2 on onnxruntime over 5,000 photos; vs teacher; vs V1
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


def gallery_photos(root: Path, distractors: int, name: str = "shoes-v1") -> tuple[RetrievalSet, list[Path]]:
    """The test split of ``name`` (its photos first), then Shoe-V2 photos, then seeded Sketchy photos."""
    test = load_set(name, "test", root)
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
        out["teacher"] = load(args.teacher, canvas=256, selector=False)
    if args.v1:
        out["SketchyNetV1"] = load(args.v1, canvas=256, selector=False)
    if args.v2:
        # a retriever with its selector (a SketchyNetV2 artifact or name), or a selector run for the --v1 student
        own = load(args.v2) if pretrained.resolve(args.v2)[0].joinpath("manifest.json").is_file() else None
        if own is not None and own.selector is not None:
            out["SketchyNetV2"] = own
        elif args.v1:
            out["SketchyNetV2"] = load(args.v1, selector=args.v2)
        else:
            raise SketchdownError("--v2 is a canvas selector that runs on the --v1 student: give --v1 too")
    if not out:
        raise SketchdownError("nothing to measure: give --teacher, --v1 and/or --v2")
    return out


def search_rows(label: str, vectors: np.ndarray, queries: np.ndarray, warmup: int,
                kinds: tuple[str, ...] = ("exact", "fp16", "hnsw")) -> list[dict]:
    """Build time and search latency of each index kind over ``vectors``; recall@10 of the others against exact."""
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
    for row in rows:
        if row["index"] != "exact" and "exact" in found:
            row["recall10"] = recall_at_k(found[row["index"]], found["exact"], K)
    return rows


def stage_times(enc: Retriever, index: Index, queries: list[Sketch], warmup: int) -> dict[str, dict]:
    """Each step of a query from the image timed apart, at the canvas the query itself chose: the raster traced
    into strokes (``trace`` models), the selector's decision (features and policy), the canvas drawn, the sketch
    network, the search. A cascade's steps repeat per canvas looked at, so it gets none."""
    prepared = [prepare(s, enc.raster_method) for s in queries]
    canvases = [index.search(s, K).canvas for s in prepared]
    drawn = list(zip(prepared, canvases))
    images = [to_tensor(to_canvas(s, c, enc.raster_method))[None].numpy() for s, c in drawn]
    vectors = [enc.engine(x, "sketch") for x in images]
    out = {"trace": time_calls(lambda s: prepare(s, enc.raster_method), queries, warmup)}
    if enc.selector is not None:
        out["selector"] = time_calls(lambda s: enc.selector.select(s, lambda c: c), prepared, warmup)
    out["draw"] = time_calls(lambda sc: to_tensor(to_canvas(*sc, enc.raster_method)), drawn, warmup)
    out["network"] = time_calls(lambda x: enc.engine(x, "sketch"), images, warmup)
    out["search"] = time_calls(lambda v: index.search_vectors(v, max(K, TOP)), vectors, warmup)
    return out


def measure_model(name: str, enc: Retriever, gallery: Index, test: RetrievalSet, sketches: list[Sketch],
                  queries: list[Sketch], strokes: list[Sketch], args: argparse.Namespace, threads: int,
                  search: bool = True) -> dict[str, list[dict]]:
    """Query timings on both engines through ``Index.search``, accuracy and engine agreement of one model, and
    search timings unless ``search`` is off (SketchyNetV2 searches V1's vectors)."""
    n = len(test.photos)  # the test photos come first
    small = Index(gallery.root, gallery.paths[:n], gallery.vectors[:n], gallery.stamps[:n], gallery.model,
                  gallery.kind)
    out: dict[str, list[dict]] = {"latency": [], "search": [], "accuracy": []}
    found: dict[str, list[list[int]]] = {}
    cascade = isinstance(enc.selector, CascadePolicy)
    for engine in ("torch", "onnx"):
        e = enc if engine == "torch" else enc.with_engine("onnx", threads=threads)
        big = gallery.attach(e)
        encode = None if cascade else time_calls(e.encode_sketch, queries, args.warmup)
        query = time_calls(lambda s: big.search(s, K), queries, args.warmup)
        from_strokes = time_calls(lambda s: big.search(s, K), strokes, args.warmup)
        results = [big.search(s, K) for s in sketches]
        share = Counter(r.canvas for r in results)
        canvas = ", ".join(f"{c}: {100 * k / len(results):.0f}%" for c, k in sorted(share.items()))
        stages = None if cascade else stage_times(e, big, queries, args.warmup)
        out["latency"].append({"model": name, "engine": engine, "canvas": canvas, "encode": encode, "query": query,
                               "query_strokes": from_strokes, "stages": stages,
                               "gflops": float(np.mean([r.gflops for r in results]))})
        found[engine] = [r.ids for r in results]
        print(f"{name:<13} {engine:<6} query {query['median_ms']:8.2f} ms, from strokes "
              f"{from_strokes['median_ms']:8.2f} ms ({canvas})", flush=True)
        if engine == "torch":
            row = {"model": name}
            for photos, index in ((n, small.attach(e)), (len(gallery), big)):
                hits = [index.search(s, K).ids for s in sketches]
                first = [h[:1] for h in hits]
                row[f"acc1@{photos}"] = 100 * float(np.mean([t in f for t, f in zip(test.targets, first)]))
                row[f"acc10@{photos}"] = 100 * float(np.mean([t in h for t, h in zip(test.targets, hits)]))
            out["accuracy"].append(row)
    out["accuracy"][-1]["same_top10"] = float(np.mean([a == b for a, b in zip(found["torch"], found["onnx"])]))
    if search:
        q = np.stack([enc.query(s, search=lambda v: gallery.search_vectors(v, K)).vector
                      for s in queries]) if cascade else np.stack([enc.encode_sketch(s) for s in queries])
        out["search"] = search_rows(name, small.vectors, q, args.warmup, ("exact",)) + \
            search_rows(name, gallery.vectors, q, args.warmup)
    return out


def synthetic(gallery: Index, n: int) -> np.ndarray:
    """``n`` noisy copies of real gallery vectors (noise of norm about 0.5), renormalised."""
    rng = np.random.default_rng(0)
    base = gallery.vectors[rng.integers(len(gallery), size=n)]
    noisy = base + rng.standard_normal(base.shape, dtype=np.float32) * np.float32(0.5 / np.sqrt(base.shape[1]))
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def targets(latency: list[dict], photos: int, kind: str) -> list[dict]:
    """The issue's targets, each with the measured value (None: not measured); ratios on the same engine. Each from
    the image (a raster sketch file: a traced student traces it) and from strokes (what the drawing page sends)."""
    def median(model: str, engine: str, key: str) -> float | None:
        return next((r[key]["median_ms"] for r in latency if (r["model"], r["engine"]) == (model, engine)), None)

    rows = []
    for key, start in (("query", "from the image"), ("query_strokes", "from strokes")):
        v2 = median("SketchyNetV2", "onnx", key)
        rows.append({"target": f"SketchyNetV2 on onnxruntime, query {start} over {photos:,} photos ({kind} index): "
                               f"median <= {TARGET_MS:g} ms", "value": v2, "met": None if v2 is None else v2 <= TARGET_MS})
        for other, times in (("teacher", TARGET_SPEEDUP), ("SketchyNetV1", TARGET_V1_SPEEDUP)):
            for engine in ("torch", "onnx"):
                a, b = median(other, engine, key), median("SketchyNetV2", engine, key)
                ratio = a / b if a and b else None
                rows.append({"target": f">= {times:g}x faster than {other} ({engine}, {start}, same run)",
                             "value": ratio, "met": None if ratio is None else ratio >= times})
    return rows


def markdown(result: dict) -> str:
    m = result["meta"]
    lines = [f"Query latency, batch 1, warm: median / p95 ms over {m['queries']} queries "
             f"({m['threads']} threads, {m['cpu']}).", "",
             "| model | canvas | engine | GFLOPs / query | encode sketch | query: Index.search over {0:,} photos "
             "({1} index) | query from strokes |".format(m["gallery"], m.get("index", "exact")),
             "|---|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['canvas']} | {r['engine']} | {r['gflops']:.3f} | "
              + ("(searches)" if r["encode"] is None else f"{r['encode']['median_ms']:.2f} / {r['encode']['p95_ms']:.2f}")
              + f" | {r['query']['median_ms']:.2f} / {r['query']['p95_ms']:.2f} | "
              + ("" if "query_strokes" not in r else
                 f"{r['query_strokes']['median_ms']:.2f} / {r['query_strokes']['p95_ms']:.2f}") + " |"
              for r in result["latency"]]
    steps = ("trace", "selector", "draw", "network", "search")
    staged = [r for r in result["latency"] if r.get("stages")]
    if staged:
        lines += ["", "Where the time of a query from the image goes, each step timed apart at the canvas the query "
                      "used (median ms; the sum leaves out Python between the steps):", "",
                  "| model | engine | " + " | ".join(steps) + " | sum | query |",
                  "|---|---|" + "---:|" * (len(steps) + 2)]
        lines += [f"| {r['model']} | {r['engine']} | "
                  + " | ".join(f"{r['stages'][k]['median_ms']:.2f}" if k in r["stages"] else "" for k in steps)
                  + f" | {sum(v['median_ms'] for v in r['stages'].values()):.2f} | {r['query']['median_ms']:.2f} |"
                  for r in staged]
    lines += ["", "| search: model (dim) | photos | index | median / p95 ms | recall@10 vs exact |",
              "|---|---:|---|---:|---:|"]
    lines += [f"| {r['model']} ({r['dim']}) | {r['photos']:,} | {r['index']} | {r['median_ms']:.3f} / "
              f"{r['p95_ms']:.3f} | {r['recall10']:.3f} |" if "recall10" in r else
              f"| {r['model']} ({r['dim']}) | {r['photos']:,} | {r['index']} | {r['median_ms']:.3f} / "
              f"{r['p95_ms']:.3f} | |" for r in result["search"]]
    small, big = m["test_photos"], m["gallery"]
    lines += ["", f"| {m['set']} test sketches | acc@1 / @10 among {small} | among {big:,} | torch = onnxruntime top-10 |",
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
    test, photos = gallery_photos(args.data or data_root(), args.distractors, args.set)
    sketches = [load_sketch(s) for s in test.sketches]
    queries = [sketches[i % len(sketches)] for i in range(args.queries)]
    traced = [trace(s) for s in sketches]
    strokes = [traced[i % len(traced)] for i in range(args.queries)]
    cache = args.cache or cache_dir() / "bench"
    result: dict = {"latency": [], "search": [], "accuracy": []}
    galleries: dict[str, Index] = {}
    for name, enc in encoders.items():
        gallery = build_file(enc, photos, cache / f"{enc.photo_identity[:16]}.idx", kind=args.kind, progress=True)
        searched = any(g.model.get("photo_identity") == enc.photo_identity for g in galleries.values())
        galleries[name] = gallery
        for key, rows in measure_model(name, enc, gallery, test, sketches, queries, strokes, args, threads,
                                       not searched).items():
            result[key] += rows
    name = next(n for n in ("SketchyNetV1", "teacher", "SketchyNetV2") if n in encoders)
    q = np.stack([encoders[name].query(s, search=lambda v: galleries[name].search_vectors(v, K)).vector
                  for s in queries])
    result["search"] += search_rows(f"{name} synthetic", synthetic(galleries[name], args.synthetic), q, args.warmup)
    result["targets"] = targets(result["latency"], len(photos), galleries[name].kind)
    v2 = encoders.get("SketchyNetV2")
    notes = ["SketchyNetV2 not measured (no --v2 selector given)"] if v2 is None else [
        "a learned policy runs on onnxruntime with its student there" if isinstance(v2.selector, CanvasPolicy) else
        "the cascade's stop heads (a few multiply-adds on the similarities) run in torch on both engines; every "
        "canvas it looks at and every search it makes is in the query time"]
    command = f"python {' '.join(sys.argv)}" if sys.argv[0].endswith(".py") else f"sketchdown {' '.join(sys.argv[1:])}"
    result["meta"] = {"command": command, "cpu": platform.processor() or platform.machine(),
                      "threads": threads, "torch": torch.__version__, "onnxruntime": version("onnxruntime"),
                      "faiss": faiss.__version__, "queries": args.queries, "warmup": args.warmup,
                      "index": galleries[name].kind,
                      "set": args.set, "test_photos": len(test.photos), "gallery": len(photos),
                      "synthetic": args.synthetic,
                      "models": {n: e.describe() for n, e in encoders.items()}, "notes": notes}
    write_json(result, args.out)
    table = markdown(result)
    write_text(args.out.with_suffix(".md"), table + "\n")
    print(table)
    return result
