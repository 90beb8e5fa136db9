"""Where a batch-1 raster query's time goes: tracing the image into strokes, drawing the canvases, the sketch
network alone at each canvas, the whole query, on torch and on onnxruntime.

For a shipped SketchyNetV2 (student + selector) and its SketchyNetV1 name (the student at 256): the median over
--sketches test sketches of each step (a network alone: over --calls calls on one random canvas, the student's
sketch tower and the --teacher's), on the threads torch has. A query is ``Index.search`` over an index of the set's
test photos built by the model on its engine: a cascade selector decides from that search, and the other queries
pay the same few hundredths of a millisecond. Prints a Markdown table; the README quotes it.

    python benchmarks/query_breakdown.py --set chairs-v1 --v2 sketchynet-v2-chairs --v1 sketchynet-v1-chairs \
        --teacher teacher-chairs
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

import sketchdown
from sketchdown.data.datasets import load_set
from sketchdown.data.io import read_sketch
from sketchdown.data.render import to_canvas
from sketchdown.data.strokes import trace
from sketchdown.retrieval.bench import time_calls
from sketchdown.retrieval.index import Index


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", default="chairs-v1")
    p.add_argument("--v2", default="sketchynet-v2-chairs", help="a retriever with its selector")
    p.add_argument("--v1", default="sketchynet-v1-chairs", help="SketchyNetV1: a student at a fixed canvas")
    p.add_argument("--teacher", default="teacher-chairs", help="a model whose sketch network is timed beside the "
                                                                "student's (the same MobileNetV2 without per-canvas "
                                                                "batch norms)")
    p.add_argument("--sketches", type=int, default=30)
    p.add_argument("--calls", type=int, default=100, help="timed calls of a network alone")
    p.add_argument("--data", default=None)
    return p


def median_ms(fn: Callable, items: list) -> float:
    """Median ms of ``fn`` over ``items``, after two untimed calls (the latency benchmark's timer)."""
    return time_calls(fn, items, warmup=2)["median_ms"]


def main(args: argparse.Namespace) -> None:
    test = load_set(args.set, "test", args.data)
    images = [read_sketch(p) for p in test.sketches[: args.sketches]]
    strokes = [trace(s) for s in images]
    v2, v1, teacher = sketchdown.load(args.v2), sketchdown.load(args.v1), sketchdown.load(args.teacher)
    engines = {"torch": (v2, v1, teacher), "onnx": tuple(r.with_engine("onnx") for r in (v2, v1, teacher))}
    search = {id(r): Index.build(r, test.photos).search for models in engines.values() for r in models}
    for models in engines.values():  # warm up
        for r in models:
            for s in images[:5]:
                search[id(r)](s)
    rows = [("trace an image into strokes", median_ms(trace, images))]
    rows += [(f"draw the strokes at {c} px", median_ms(lambda s, c=c: to_canvas(s, c, "trace"), strokes))
             for c in (32, 64, 128, 256)]
    for engine, (e2, e1, et) in engines.items():
        for name, model in (("student", e2), (args.teacher, et)):
            for c in (32, 64, 128, 256):
                x = np.random.default_rng(0).random((1, 3, c, c), dtype=np.float32)
                model.engine(x, "sketch")
                rows.append((f"{engine}: {name} sketch network alone at {c} px",
                             median_ms(lambda _: model.engine(x, "sketch"), range(args.calls))))
        rows += [(f"{engine}: {args.v2} query from the image", median_ms(search[id(e2)], images)),
                 (f"{engine}: {args.v2} query from strokes", median_ms(search[id(e2)], strokes)),
                 (f"{engine}: {args.v1} query from the image", median_ms(search[id(e1)], images)),
                 (f"{engine}: {args.v1} query from strokes", median_ms(search[id(e1)], strokes))]
    print(f"| step ({args.set}, median of {len(images)} test sketches) | ms |\n|---|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} |")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
