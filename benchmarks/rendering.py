"""Choose the line width for vector rendering and the raster downscaling, by measurement.

Protocol (zero-shot, no training, so it can run before any model exists): each sketch is made at a small
canvas (32/64/128), enlarged back to 256, and embedded by an ImageNet MobileNetV2, as is the 256 reference;
"self-retrieval acc@1" is the share of small-canvas sketches whose nearest reference is their own 256 version.
A rendering that keeps the drawing legible at a small canvas keeps it identifiable. For rasters we also report zero-shot sketch->photo acc@10 on
Shoe-V1 test at each canvas. Writes results/rendering.json and docs/canvases.png.

    python benchmarks/rendering.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from sketchdown.data import io
from sketchdown.data.datasets import PhotoDataset, data_root, load_set
from sketchdown.data.render import RASTER_METHODS, line_width, render_strokes, shrink_raster, to_tensor
from sketchdown.eval.evaluate import encode, evaluate
from sketchdown.files import write_json
from sketchdown.eval.metrics import retrieval_metrics
from sketchdown.models.embed import create_model

SMALL = (32, 64, 128)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="data root (default ../shared/data)")
    p.add_argument("--widths-256", type=float, nargs="+", default=[2.0, 3.0, 4.0, 5.0, 6.0])
    p.add_argument("--vector-sketches", type=int, default=160, help="ChairV2 test sketches used (first N by name)")
    p.add_argument("--min-widths", type=float, nargs="+", default=[0.5, 1.0, 1.5])
    p.add_argument("--parts", nargs="+", default=["strokes", "vector", "raster"], choices=["strokes", "vector", "raster"],
                   help="which studies to (re)run; the others are kept from an existing --out file")
    p.add_argument("--out", type=Path, default=Path("results/rendering.json"))
    p.add_argument("--figure", type=Path, default=Path("docs/canvases.png"))
    return p


def self_retrieval(model: torch.nn.Module, small: list[np.ndarray], ref_emb: torch.Tensor) -> float:
    """acc@1 of finding each sketch's own reference rendering from its small-canvas rendering.

    The small canvas is enlarged back to 256 (bilinear) before embedding, so the score measures what the
    canvas kept of the drawing, not how well an ImageNet network copes with 32x32 inputs.
    """
    up = [F.interpolate(to_tensor(x)[None], size=256, mode="bilinear")[0] for x in small]
    q = encode(model, up, "sketch", progress=False)
    return retrieval_metrics(q, ref_emb, np.arange(len(small)))["acc1"]


def embed_all(model: torch.nn.Module, images: list[np.ndarray]) -> torch.Tensor:
    return encode(model, [to_tensor(x) for x in images], "sketch", progress=False)


def vector_study(model, sketches, widths_256, min_widths) -> list[dict]:
    rows = []
    for w256 in widths_256:
        ref = embed_all(model, [render_strokes(s, 256, w256) for s in sketches])
        for wmin in min_widths:
            row = {"width_256": w256, "min_width": wmin}
            for c in SMALL:
                small = [render_strokes(s, c, line_width(c, w256, wmin)) for s in sketches]
                row[f"self_acc1@{c}"] = self_retrieval(model, small, ref)
                row[f"ink@{c}"] = float(np.mean([(x < 128).mean() for x in small]))
            row["mean_self_acc1"] = float(np.mean([row[f"self_acc1@{c}"] for c in SMALL]))
            rows.append(row)
            print(f"width_256 {w256} min {wmin}: " + "  ".join(f"@{c} {row[f'self_acc1@{c}']:.1f}" for c in SMALL),
                  flush=True)
    return rows


def raster_study(model, data: Path) -> list[dict]:
    rows = []
    for name in ("shoes-v1", "chairs-v1"):
        rset = load_set(name, "test", data)
        rasters = [io.read_sketch(p).raster for p in rset.sketches]
        photos = encode(model, PhotoDataset(rset.photos), "photo", progress=False)
        ref = embed_all(model, rasters)
        for method in RASTER_METHODS:
            row = {"set": name, "method": method}
            for c in SMALL:
                row[f"self_acc1@{c}"] = self_retrieval(model, [shrink_raster(r, c, method) for r in rasters], ref)
            for c in SMALL + (256,):
                row[f"zero_shot_acc10@{c}"] = evaluate(model, rset, c, raster_method=method, photo_emb=photos,
                                                       progress=False)["acc10"]
            rows.append(row)
            print(f"{name} {method}: " + "  ".join(f"{k} {v:.1f}" for k, v in row.items() if "@" in k), flush=True)
    return rows


def _run_lengths(mask: np.ndarray) -> np.ndarray:
    """For each True pixel, the length of the horizontal run of True pixels it belongs to."""
    padded = np.pad(mask, ((0, 0), (1, 1))).astype(np.int8)
    d = np.diff(padded, axis=1)
    out = np.zeros(mask.shape, dtype=np.int32)
    for r, (starts, ends) in enumerate(zip((d == 1), (d == -1))):
        for a, b in zip(np.flatnonzero(starts), np.flatnonzero(ends)):
            out[r, a:b] = b - a
    return out


def stroke_width(grey: np.ndarray) -> float:
    """Median over ink pixels of the shorter of its horizontal and vertical ink runs: ~ the pen width."""
    ink = grey < 128
    runs = np.minimum(_run_lengths(ink), _run_lengths(ink.T).T)[ink]
    return float(np.median(runs)) if runs.size else 0.0


def stroke_study(data: Path, vector_sketches, widths_256) -> dict:
    """Pen width of the human raster sketches we train on, and of our 256 renders at each candidate width."""
    sets = {"shoes-v1": "qmul-v1/shoes/test/sketches/*.png", "chairs-v1": "qmul-v1/chairs/test/sketches/*.png",
            "shoe-v1-extra": "shoe-v1-extra/sketches/*.png", "sketchy": "sketchy-subset/sketch/*/*.png"}
    human = {name: float(np.median([stroke_width(io.read_sketch(p).raster)
                                    for p in sorted(data.glob(pattern))[:100]])) for name, pattern in sets.items()}
    rendered = {str(w): float(np.median([stroke_width(render_strokes(s, 256, w)) for s in vector_sketches[:100]]))
                for w in widths_256}
    ms = {}
    for c in SMALL + (256,):
        t0 = time.perf_counter()
        for s in vector_sketches:
            render_strokes(s, c)
        ms[str(c)] = (time.perf_counter() - t0) * 1e3 / len(vector_sketches)
    print(f"pen width at 256: human {human}; rendered {rendered}; ms per render {ms}", flush=True)
    return {"human_median_px": human, "rendered_median_px": rendered, "render_ms_per_sketch": ms}


def figure(vector_sketch, raster, path: Path) -> None:
    """One vector sketch at every canvas, and one raster sketch shrunk by each method (shown 4x enlarged)."""
    cell, pad = 160, 6
    rows = [("strokes", [render_strokes(vector_sketch, c) for c in SMALL + (256,)])]
    rows += [(f"raster/{m}", [shrink_raster(raster, c, m) for c in SMALL + (256,)]) for m in RASTER_METHODS]
    sheet = Image.new("L", (110 + 4 * (cell + pad), 24 + len(rows) * (cell + pad)), 255)
    draw = ImageDraw.Draw(sheet)
    for j, c in enumerate(SMALL + (256,)):
        draw.text((110 + j * (cell + pad) + cell // 2 - 20, 6), f"{c}x{c}", fill=0)
    for i, (label, imgs) in enumerate(rows):
        y = 24 + i * (cell + pad)
        draw.text((6, y + cell // 2), label, fill=0)
        for j, img in enumerate(imgs):
            sheet.paste(Image.fromarray(img).resize((cell, cell), Image.NEAREST), (110 + j * (cell + pad), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    data = args.data or data_root()
    t0 = time.time()
    model = create_model("mobilenet_v2").eval()
    chairs = io.read_sketchx_pickle(data / "chair-v2-strokes" / "ChairV2_Coordinate")
    test_keys = sorted(k for k in chairs if k.startswith("/test/"))[: args.vector_sketches]
    vector_sketches = [chairs[k] for k in test_keys]
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if "strokes" in args.parts:
        results["pen_width"] = stroke_study(data, vector_sketches, args.widths_256)
    if "vector" in args.parts:
        results["vector"] = vector_study(model, vector_sketches, args.widths_256, args.min_widths)
        results["vector_sketches"] = len(test_keys)
    if "raster" in args.parts:
        results["raster"] = raster_study(model, data)
    results.update({"protocol": __doc__.strip().split("\n\n")[1], "backbone": f"mobilenet_v2 ({model.backbone.weights})"})
    results.setdefault("commands", {}).update({part: "python " + " ".join(sys.argv) for part in args.parts})
    results.setdefault("seconds", {}).update({"+".join(args.parts): round(time.time() - t0, 1)})
    write_json(results, args.out)
    figure(chairs[test_keys[0]], io.read_sketch(load_set("shoes-v1", "test", data).sketches[0]).raster, args.figure)
    print(f"wrote {args.out}, {args.figure}")

if __name__ == "__main__":
    main(get_args_parser().parse_args())
