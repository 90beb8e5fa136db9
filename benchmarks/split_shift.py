"""Is a set's test split drawn like its training split? A two-sample test between the photos (and the set's own
sketches) of the training part, the validation part (held out of the training pool by photo, as every run holds it
out) and the test split: the maximum mean discrepancy of their embeddings under a Gaussian kernel (bandwidth the
median distance), with a permutation p-value (scipy.stats.permutation_test).

If validation is a random part of the training photos and test is not, no validation figure can stand in for test
(docs/sketchynet-v1.md, "How much the validation split can tell apart"). Embeddings come from an ImageNet
MobileNetV2, which trained on none of these images, and optionally from a given model (`--models`), whose training
photos it has seen (the train-vs-validation row says whether that alone makes them stand apart).

    python benchmarks/split_shift.py --sets shoes-v1 shoes-v1-extra --models teacher-shoes \
        --out results/validation/shoes-v1-shift.json
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import permutation_test

from sketchdown.data.datasets import PHOTO_SIZE, PhotoDataset, RetrievalSet, SketchCanvasDataset, load_set
from sketchdown.eval.evaluate import encode
from sketchdown.files import write_json
from sketchdown.models.embed import create_model
from sketchdown.retrieval.encoder import load
from sketchdown.train.configs import TrainConfig
from sketchdown.train.triplet import hold_out, train_pool

IMAGENET = "imagenet"  # the untrained-on-these-images reference embedding


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["shoes-v1", "shoes-v1-extra"],
                   help="the train sets of the runs, the first the one whose test split is compared")
    p.add_argument("--models", nargs="*", default=[], help="models besides the ImageNet MobileNetV2")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--data", default=None)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    return p


def kernel(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """The Gaussian kernel over both samples pooled, bandwidth the median pairwise distance (the same under any
    relabelling, so it is computed once)."""
    z = torch.cat([x, y]).double()
    d2 = torch.cdist(z, z).square()
    return torch.exp(-d2 / d2[d2 > 0].median()).numpy()


def shift(x: torch.Tensor, y: torch.Tensor, resamples: int) -> dict:
    """Squared MMD (biased estimate) of two samples of embeddings and the share of relabellings that reach it;
    scipy permutes the item indices, whose kernel rows the statistic reads."""
    k = kernel(x, y)

    def mmd(a: np.ndarray, b: np.ndarray) -> float:
        return float(k[np.ix_(a, a)].mean() + k[np.ix_(b, b)].mean() - 2 * k[np.ix_(a, b)].mean())

    res = permutation_test((np.arange(len(x)), np.arange(len(x), len(x) + len(y))), mmd, vectorized=False,
                           permutation_type="independent", n_resamples=resamples, alternative="greater",
                           random_state=0)
    return {"mmd": float(res.statistic), "p": float(res.pvalue), "sizes": [len(x), len(y)]}


def parts(cfg: TrainConfig) -> dict[str, RetrievalSet]:
    """Training part, validation part and test split, each with the first set's own sketches only (the test
    split holds no other)."""
    train, val = hold_out(train_pool(cfg), cfg.val_fraction)
    test = load_set(cfg.train_sets[0], "test", cfg.data)
    own = {p.resolve() for p in load_set(cfg.train_sets[0], "train", cfg.data).sketches}

    def own_only(rset: RetrievalSet) -> RetrievalSet:
        keep = [i for i, s in enumerate(rset.sketches) if s.resolve() in own]
        return RetrievalSet(rset.name, [rset.sketches[i] for i in keep], [rset.targets[i] for i in keep],
                            rset.photos, rset.categories)

    return {"train": own_only(train), "validation": own_only(val), "test": test}


def embeddings(spec: str, rset: RetrievalSet) -> dict[str, torch.Tensor]:
    """Photos at the model's photo size and sketches at 256 px, as the model draws them."""
    if spec == IMAGENET:
        model, photo_size, method = create_model("mobilenet_v2", weights="auto"), PHOTO_SIZE, "trace"
    else:
        retriever = load(spec, selector=False)
        model, photo_size, method = retriever.model, retriever.photo_size, retriever.raster_method
    return {"photos": encode(model, PhotoDataset(rset.photos, photo_size), "photo", progress=False),
            "sketches": encode(model, SketchCanvasDataset(rset.sketches, 256, method), "sketch", progress=False)}


def main(args: argparse.Namespace) -> list[dict]:
    cfg = TrainConfig(train_sets=tuple(args.sets), data=args.data)
    splits = parts(cfg)
    rows = []
    for spec in [IMAGENET, *args.models]:
        emb = {name: embeddings(spec, rset) for name, rset in splits.items()}
        for kind in ("photos", "sketches"):
            for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
                rows.append({"embedding": spec, "kind": kind, "a": a, "b": b,
                             **shift(emb[a][kind], emb[b][kind], args.resamples)})
    print("| embedding | what | compared | n | MMD^2 | permutation p |\n|---|---|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['embedding']} | {r['kind']} | {r['a']} vs {r['b']} | {r['sizes'][0]} / {r['sizes'][1]} | "
              f"{r['mmd']:.4f} | {r['p']:.4f} |")
    if args.out:
        write_json({"command": "python benchmarks/split_shift.py " + " ".join(
            ["--sets", *args.sets, *(["--models", *args.models] if args.models else []),
             "--resamples", str(args.resamples), "--out", args.out]), "rows": rows}, args.out)
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
