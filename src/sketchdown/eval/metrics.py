"""Retrieval metrics: acc@K and the rank of the true photo, from embeddings or a score matrix."""

from __future__ import annotations

import numpy as np
import torch

TOP_K: tuple[int, ...] = (1, 5, 10)


def true_ranks(scores: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> np.ndarray:
    """1-based rank of each query's true gallery item under ``scores`` (queries x gallery, higher is better).

    Ties count against the query (rank = number of items scoring at least as high as the true one), so a model
    that scores everything alike gets the worst rank, not the best.
    """
    s = torch.as_tensor(scores, dtype=torch.float64)
    t = torch.as_tensor(targets, dtype=torch.long)
    if s.ndim != 2 or t.shape != (s.shape[0],):
        raise ValueError(f"scores must be queries x gallery and targets one per query; got {tuple(s.shape)} and {tuple(t.shape)}")
    true = s.gather(1, t[:, None])
    return (s >= true).sum(1).numpy()


def metrics_from_ranks(ranks: np.ndarray, ks: tuple[int, ...] = TOP_K) -> dict[str, float]:
    """acc@K in percent, mean and median rank."""
    ranks = np.asarray(ranks)
    out = {f"acc{k}": float(100.0 * (ranks <= k).mean()) for k in ks}
    out.update(mean_rank=float(ranks.mean()), median_rank=float(np.median(ranks)), queries=int(len(ranks)))
    return out


def retrieval_metrics(sketch_emb: torch.Tensor, photo_emb: torch.Tensor, targets: torch.Tensor | np.ndarray,
                      ks: tuple[int, ...] = TOP_K) -> dict[str, float]:
    """Metrics for L2-normalised embeddings ranked by inner product (= by Euclidean distance)."""
    return metrics_from_ranks(true_ranks(sketch_emb @ photo_emb.T, targets), ks)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, groups: np.ndarray, resamples: int = 10_000,
                     seed: int = 0) -> dict[str, float]:
    """The difference of means ``b - a`` of two models' per-query figures on the same queries, with a 95%
    percentile interval and the share of resamples where ``b`` is ahead, resampling whole ``groups`` (a photo with
    all its sketches: sketches of one photo are not independent draws) with replacement."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(groups) != len(a):
        raise ValueError("one figure per query from each model and one group per query")
    ids, group = np.unique(np.asarray(groups), return_inverse=True)
    diff = np.bincount(group, weights=b - a, minlength=len(ids))
    size = np.bincount(group, minlength=len(ids)).astype(np.float64)
    picks = np.random.default_rng(seed).integers(0, len(ids), size=(resamples, len(ids)))
    means = diff[picks].sum(1) / size[picks].sum(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"diff": float(diff.sum() / size.sum()), "lo": float(lo), "hi": float(hi),
            "p_ahead": float((means > 0).mean()), "groups": int(len(ids)), "queries": int(len(a))}
