"""benchmarks/validation_views.py: the views of a validation split split its sketches by source without losing or
moving one, and the pool view ranks the same sketches among every training photo."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from validation_views import views  # noqa: E402

from sketchdown.data.datasets import load_set  # noqa: E402
from sketchdown.train.configs import TrainConfig  # noqa: E402


def test_shoe_v1_validation_views_split_by_source_and_widen_the_gallery(data):
    sets = views(TrainConfig(train_sets=("shoes-v1", "shoes-v1-extra"), data=str(data)))
    val, own, other, pool = sets.values()
    assert (len(val.sketches), len(val.photos)) == (184, 46)  # the split every Shoe-V1 run validates on
    assert (len(own.sketches), len(other.sketches)) == (46, 138)
    assert sorted(map(str, own.sketches + other.sketches)) == sorted(map(str, val.sketches))
    shoes = {p.resolve() for p in load_set("shoes-v1", "train", data).sketches}
    assert all(p.resolve() in shoes for p in own.sketches) and not any(p.resolve() in shoes for p in other.sketches)
    for part in (own, other):  # each sketch keeps its own photo
        truth = dict(zip(val.sketches, (val.photos[t] for t in val.targets)))
        assert all(part.photos[t] == truth[s] for s, t in zip(part.sketches, part.targets))
    assert pool.sketches == val.sketches and len(pool.photos) == 304
    assert [pool.photos[t].resolve() for t in pool.targets] == [val.photos[t].resolve() for t in val.targets]
