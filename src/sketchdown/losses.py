"""Losses: the FG-SBIR triplet loss with a choice of negatives.

Embeddings are L2-normalised, distances Euclidean, margin 0.2 by default (the group's public code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MINING = ("random", "semihard", "hard")


def triplet_loss(sketch: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, targets: torch.Tensor,
                 negative_targets: torch.Tensor, margin: float = 0.2, mining: str = "random") -> torch.Tensor:
    """max(0, m + d(s, p+) - d(s, p-)), averaged over the batch.

    ``random`` uses each sketch's sampled negative photo. ``hard`` and ``semihard`` pick, per sketch, a negative
    among every photo in the batch (positives and sampled negatives) whose identity differs from its own:
    ``hard`` the closest, ``semihard`` the closest that is still farther than the positive (FaceNet), falling
    back to the hardest when none is.
    """
    if mining not in MINING:
        raise ValueError(f"unknown mining {mining!r}; choose one of {', '.join(MINING)}")
    d_pos = (sketch - positive).norm(dim=1)
    if mining == "random":
        return F.relu(margin + d_pos - (sketch - negative).norm(dim=1)).mean()
    photos = torch.cat([positive, negative])
    ids = torch.cat([targets, negative_targets])
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
