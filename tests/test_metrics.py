import numpy as np
import pytest
import torch

from sketchdown.eval.metrics import metrics_from_ranks, retrieval_metrics, true_ranks


def test_hand_made_ranks_and_accuracies():
    # 4 queries over 12 gallery items; the true item sits at ranks 1, 3, 7, 12
    scores = torch.zeros(4, 12)
    targets = torch.tensor([0, 1, 2, 3])
    for q, rank in enumerate([1, 3, 7, 12]):
        scores[q, targets[q]] = 0.5
        others = [j for j in range(12) if j != targets[q]][: rank - 1]
        scores[q, others] = 1.0  # exactly rank-1 items score higher than the true one
    ranks = true_ranks(scores, targets)
    assert ranks.tolist() == [1, 3, 7, 12]
    m = metrics_from_ranks(ranks)
    assert m["acc1"] == 25.0 and m["acc5"] == 50.0 and m["acc10"] == 75.0
    assert m["mean_rank"] == pytest.approx((1 + 3 + 7 + 12) / 4) and m["median_rank"] == 5.0


def test_ties_count_against_the_query():
    ranks = true_ranks(torch.zeros(2, 5), torch.tensor([0, 4]))
    assert ranks.tolist() == [5, 5]  # a constant model is the worst model, not the best


def test_embeddings_identity_is_perfect_and_shuffle_is_not():
    emb = torch.nn.functional.normalize(torch.randn(20, 16), dim=1)
    assert retrieval_metrics(emb, emb, np.arange(20))["acc1"] == 100.0
    assert retrieval_metrics(emb, emb, np.roll(np.arange(20), 1))["acc1"] == 0.0


def test_shape_errors():
    with pytest.raises(ValueError):
        true_ranks(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long))
