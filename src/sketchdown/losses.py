"""Losses: the FG-SBIR triplet loss with a choice of negatives.

Embeddings are L2-normalised, distances Euclidean, margin 0.2 by default (the group's public code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MINING = ("random", "semihard", "hard")


def triplet_loss(sketch: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, targets: torch.Tensor,
                 negative_targets: torch.Tensor, margin: float = 0.2, mining: str = "random",
                 pool: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """max(0, m + d(s, p+) - d(s, p-)), averaged over the batch.

    ``random`` uses each sketch's sampled negative photo. ``hard`` and ``semihard`` pick, per sketch, a negative
    among every photo in the batch (positives and sampled negatives, or ``pool``: photos and their ids, e.g. every
    rank's) whose identity differs from its own: ``hard`` the closest, ``semihard`` the closest that is still
    farther than the positive (FaceNet), falling back to the hardest when none is.
    """
    if mining not in MINING:
        raise ValueError(f"unknown mining {mining!r}; choose one of {', '.join(MINING)}")
    d_pos = (sketch - positive).norm(dim=1)
    if mining == "random":
        return F.relu(margin + d_pos - (sketch - negative).norm(dim=1)).mean()
    photos, ids = pool if pool is not None else (torch.cat([positive, negative]), torch.cat([targets, negative_targets]))
    dist = torch.cdist(sketch, photos)
    inf = torch.finfo(dist.dtype).max
    valid = ids[None, :] != targets[:, None]
    hardest = dist.masked_fill(~valid, inf).amin(dim=1)
    if mining == "hard":
        d_neg = hardest
    else:
        semi = dist.masked_fill(~valid | (dist <= d_pos[:, None]), inf).amin(dim=1)
        d_neg = torch.where(semi < inf, semi, hardest)
    return F.relu(margin + d_pos - d_neg).mean()


def _huber(student: torch.Tensor, teacher: torch.Tensor, beta: float) -> torch.Tensor:
    return F.smooth_l1_loss(student, teacher.to(student.dtype), beta=beta)


def rkd_triplet_loss(sketch: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                     t_sketch: torch.Tensor, t_positive: torch.Tensor, t_negative: torch.Tensor,
                     beta: float = 0.1) -> torch.Tensor:
    """The paper's L_RKD: H(d_sp) + H(d_sn) + H(d_pn) between student and teacher distances, batch-averaged.

    Only distances are compared, so the two embedding sizes may differ.
    """
    def dists(s: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> list[torch.Tensor]:
        return [(s - p).norm(dim=1), (s - n).norm(dim=1), (p - n).norm(dim=1)]

    return sum(_huber(a, b, beta) for a, b in zip(dists(sketch, positive, negative),
                                                   dists(t_sketch, t_positive, t_negative)))


def rkd_batch_loss(sketch: torch.Tensor, photos: torch.Tensor, t_sketch: torch.Tensor, t_photos: torch.Tensor,
                   beta: float = 0.1) -> torch.Tensor:
    """In-batch generalisation: every sketch-photo and every photo-photo distance of the batch.

    A batch of B sketches and 2B photos gives 2B^2 + B(2B-1) relations instead of 3B, so each step passes on far
    more of the teacher's geometry. Photo-photo pairs are counted once (upper triangle).
    """
    return _huber(torch.cdist(sketch, photos), torch.cdist(t_sketch, t_photos), beta) + \
        rkd_photo_loss(photos, t_photos, beta)


def rkd_photo_loss(photos: torch.Tensor, t_photos: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """Photo-photo distances only: distillation on unpaired photos, which the teacher labels for free."""
    iu = torch.triu_indices(len(photos), len(photos), offset=1)
    return _huber(torch.cdist(photos, photos)[iu[0], iu[1]], torch.cdist(t_photos, t_photos)[iu[0], iu[1]], beta)
