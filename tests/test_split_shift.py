"""benchmarks/split_shift.py: the two-sample test finds a shift that is there and none where both samples are
drawn alike, and the parts it compares are disjoint with the set's own sketches only."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from split_shift import parts, shift  # noqa: E402

from sketchdown.train.configs import TrainConfig  # noqa: E402


def test_shift_is_found_where_it_is_and_not_where_it_is_not():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(60, 8, generator=g), torch.randn(40, 8, generator=g)
    alike = shift(a, b, resamples=300)
    moved = shift(a, b + 0.8, resamples=300)
    assert alike["p"] > 0.05 and moved["p"] < 0.01 and moved["mmd"] > alike["mmd"]
    assert moved["sizes"] == [60, 40]


def test_parts_are_disjoint_and_hold_the_sets_own_sketches(data):
    p = parts(TrainConfig(train_sets=("shoes-v1", "shoes-v1-extra"), data=str(data)))
    assert [len(p[k].photos) for k in ("train", "validation", "test")] == [258, 46, 115]
    assert [len(p[k].sketches) for k in ("train", "validation", "test")] == [258, 46, 115]
    photos = [{q.resolve() for q in p[k].photos} for k in ("train", "validation", "test")]
    assert not (photos[0] & photos[1]) and not (photos[0] & photos[2]) and not (photos[1] & photos[2])
