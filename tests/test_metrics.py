import numpy as np
import pytest
import torch

from sketchdown.eval.metrics import metrics_from_ranks, paired_bootstrap, retrieval_metrics, true_ranks


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


def test_paired_bootstrap_difference_interval_and_groups():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 200).astype(float)
    same = paired_bootstrap(a, a, np.arange(200) // 4)
    assert same["diff"] == same["lo"] == same["hi"] == 0.0 and same["p_ahead"] == 0.0
    better = paired_bootstrap(np.zeros(200), np.ones(200), np.arange(200) // 4)
    assert better["diff"] == better["lo"] == 1.0 and better["p_ahead"] == 1.0 and better["groups"] == 50
    # half the queries gain and half lose: by query the interval is narrow; when each photo's sketches all move
    # together (4 per photo) the same figures carry a quarter of the information, and the interval widens
    b = np.where(np.arange(200) % 8 < 4, 1.0, -1.0)
    by_query = paired_bootstrap(np.zeros(200), b, np.arange(200))
    by_photo = paired_bootstrap(np.zeros(200), b, np.arange(200) // 4)
    assert by_query["diff"] == by_photo["diff"] == 0.0
    assert (by_photo["hi"] - by_photo["lo"]) > 1.5 * (by_query["hi"] - by_query["lo"])
    with pytest.raises(ValueError):
        paired_bootstrap(np.zeros(3), np.zeros(4), np.arange(3))
