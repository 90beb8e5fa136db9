"""How large a difference between two models a split can see: per-sketch acc@1 of each model at each canvas on
the validation split (held out of the runs' training pool by photo, as training holds it out) and, with --test, on
the test split, and the paired difference of every model from the first (the incumbent), with a 95% interval from
resampling photos (a photo with all its sketches) and the share of resamples where the challenger is ahead.

It asks whether validation and test disagree or merely cannot tell two models apart. The test split read here
diagnoses; it chooses nothing (a choice between models reads the validation rows only).

    python benchmarks/paired.py --sets shoes-v1 shoes-v1-extra --test \
        --models OLD_ARTIFACT weights/shoes-v1/sketchynet teacher-shoes --out results/validation/shoes-v1-paired.json
"""

from __future__ import annotations

import argparse

import numpy as np

from sketchdown.data.datasets import PhotoDataset, RetrievalSet, load_set
from sketchdown.eval.evaluate import encode, query_ranks
from sketchdown.eval.metrics import paired_bootstrap
from sketchdown.files import write_json
from sketchdown.models.precision import evaluation
from sketchdown.retrieval.encoder import load
from sketchdown.train.configs import TrainConfig
from sketchdown.train.triplet import hold_out, train_pool


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["shoes-v1", "shoes-v1-extra"],
                   help="the train sets of the runs, the first the one whose test split --test reads")
    p.add_argument("--models", nargs="+", required=True,
                   help="run folders, artifact folders or shipped names; each is compared with the first")
    p.add_argument("--canvas", type=int, nargs="+", default=[32, 64, 128, 256])
    p.add_argument("--test", action="store_true", help="also score the test split (diagnosis only)")
    p.add_argument("--resamples", type=int, default=10_000)
    p.add_argument("--data", default=None)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    return p


def hits(spec: str, rset: RetrievalSet, canvases: list[int]) -> np.ndarray:
    """canvases x sketches: 1 where the model ranks the sketch's own photo first."""
    retriever = load(spec, selector=False)
    model = retriever.model
    precision = evaluation("fp32", "auto", model.config.backbone)
    photos = encode(model, PhotoDataset(rset.photos, retriever.photo_size), "photo", progress=False,
                    precision=precision)
    return np.stack([query_ranks(model, rset, c, retriever.photo_size, raster_method=retriever.raster_method,
                                 photo_emb=photos, progress=False, precision=precision) == 1 for c in canvases])


def main(args: argparse.Namespace) -> list[dict]:
    cfg = TrainConfig(train_sets=tuple(args.sets), data=args.data)
    splits = {"validation": hold_out(train_pool(cfg), cfg.val_fraction)[1]}
    if args.test:
        splits["test"] = load_set(args.sets[0], "test", args.data)
    rows = []
    for split, rset in splits.items():
        per = {spec: hits(spec, rset, args.canvas).astype(np.float64) for spec in args.models}
        base = args.models[0]
        for spec in args.models[1:]:
            views = {**{f"@{c}": (per[base][i], per[spec][i]) for i, c in enumerate(args.canvas)},
                     "mean": (per[base].mean(0), per[spec].mean(0))}
            for view, (a, b) in views.items():
                stats = paired_bootstrap(100 * a, 100 * b, rset.targets, args.resamples)
                rows.append({"split": split, "incumbent": base, "challenger": spec, "canvas": view,
                             "incumbent_acc1": float(100 * a.mean()), "challenger_acc1": float(100 * b.mean()),
                             **stats})
    print("| split | challenger - incumbent | canvas | incumbent | challenger | difference | 95% interval | "
          "challenger ahead | photos | sketches |")
    print("|---|---|---|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['split']} | {r['challenger']} - {r['incumbent']} | {r['canvas']} | {r['incumbent_acc1']:.2f} | "
              f"{r['challenger_acc1']:.2f} | {r['diff']:+.2f} | [{r['lo']:+.2f}, {r['hi']:+.2f}] | "
              f"{100 * r['p_ahead']:.0f}% | {r['groups']} | {r['queries']} |")
    if args.out:
        write_json({"command": "python benchmarks/paired.py " + " ".join(
            ["--sets", *args.sets, *(["--test"] if args.test else []), "--models", *args.models,
             "--out", args.out]), "resamples": args.resamples, "rows": rows}, args.out)
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
