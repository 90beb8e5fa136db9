"""Views of a training run's validation split, to ask why validation and test disagree: acc@1 per canvas of the
validation sketches ranked as training ranks them (among the validation photos), split by where each sketch comes
from (a set's own sketches, as in its test split, or another train set's, e.g. Shoe-V1-extra), and ranked among the
whole training pool (the validation photos plus every photo the runs trained on). Only validation is read.

Writes a Markdown table (stdout) and, with --out, the figures as JSON.

    python benchmarks/validation_views.py --sets shoes-v1 shoes-v1-extra \
        --models runs/shoes-v1/v1a-trace-affine-lr100-s0 runs/shoes-v1/v1a-trace-affine-lr100-s2 \
        --out results/validation/shoes-v1-views.json
"""

from __future__ import annotations

import argparse

import numpy as np

from sketchdown.data.datasets import RetrievalSet, load_set
from sketchdown.eval.evaluate import evaluate_canvases
from sketchdown.files import write_json
from sketchdown.models.precision import evaluation
from sketchdown.retrieval.encoder import load
from sketchdown.train.configs import TrainConfig
from sketchdown.train.triplet import hold_out, train_pool


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["shoes-v1", "shoes-v1-extra"],
                   help="the train sets of the runs, the first the one whose own sketches the test split holds")
    p.add_argument("--models", nargs="+", required=True, help="run folders, artifact folders or shipped names")
    p.add_argument("--canvas", type=int, nargs="+", default=[32, 64, 128, 256])
    p.add_argument("--data", default=None)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    return p


def views(cfg: TrainConfig) -> dict[str, RetrievalSet]:
    """The validation split as training ranks it, its sketches by source, and ranked among the training pool."""
    pool = train_pool(cfg)
    val = hold_out(pool, cfg.val_fraction)[1]
    own = {p.resolve() for p in load_set(cfg.train_sets[0], "train", cfg.data).sketches}
    other = np.array([p.resolve() not in own for p in val.sketches])

    def part(keep: np.ndarray, name: str) -> RetrievalSet:
        return RetrievalSet(name, [s for s, k in zip(val.sketches, keep) if k],
                            [t for t, k in zip(val.targets, keep) if k], val.photos, val.categories)

    return {"validation": val, f"{cfg.train_sets[0]} own sketches": part(~other, "own"),
            "other sets' sketches": part(other, "other"), "among the training pool": val.among(pool, "pool")}


def main(args: argparse.Namespace) -> list[dict]:
    cfg = TrainConfig(train_sets=tuple(args.sets), data=args.data)
    sets = views(cfg)
    rows = []
    for spec in args.models:
        retriever = load(spec, selector=False)
        model = retriever.model
        precision = evaluation("fp32", "auto", model.config.backbone)
        for view, rset in sets.items():
            results = evaluate_canvases(model, rset, args.canvas, raster_method=retriever.raster_method,
                                        precision=precision)
            rows.append({"model": spec, "view": view, "sketches": len(rset.sketches), "photos": len(rset.photos),
                         "acc1": {m["canvas"]: m["acc1"] for m in results},
                         "mean_acc1": float(np.mean([m["acc1"] for m in results]))})
    print(f"| model | view | sketches | photos | {' | '.join(f'@{c}' for c in args.canvas)} | mean |")
    print("|---|---|---:|---:|" + "---:|" * (len(args.canvas) + 1))
    for r in rows:
        print(f"| {r['model']} | {r['view']} | {r['sketches']} | {r['photos']} | "
              + " | ".join(f"{r['acc1'][c]:.2f}" for c in args.canvas) + f" | {r['mean_acc1']:.2f} |")
    if args.out:
        write_json({"command": "python benchmarks/validation_views.py " + " ".join(
            ["--sets", *args.sets, "--models", *args.models, "--out", args.out]), "rows": rows}, args.out)
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
