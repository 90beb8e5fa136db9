import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from sketchdown.data.datasets import (PhotoDataset, RetrievalSet, SketchCanvasDataset, TripletDataset,
                                      load_set)
from sketchdown.errors import InputError


def test_named_sets_have_the_official_sizes(data):
    for name, split, n in [("shoes-v1", "train", 304), ("shoes-v1", "test", 115),
                           ("chairs-v1", "train", 200), ("chairs-v1", "test", 97)]:
        s = load_set(name, split, data)
        assert len(s) == n and len(s.photos) == n
        assert sorted(s.targets) == list(range(n))  # one sketch per photo


def test_extra_sketches_join_their_photos(data):
    both = load_set("shoes-v1", "train", data).concat(load_set("shoes-v1-extra", "train", data))
    assert len(both) == 304 * 4 and len(both.photos) == 304
    assert np.bincount(both.targets).tolist() == [4] * 304


def test_sketchy_has_categories_and_several_sketches_per_photo(data):
    s = load_set("sketchy", None, data)  # all splits
    assert len(s) == 3125 and len(s.photos) == 578 and len(set(s.categories)) == 125


def test_validation_split_holds_out_whole_photos(data):
    train, val = load_set("shoes-v1", "train", data).split_by_photo(0.2, seed=1)
    assert len(val.photos) == round(0.2 * 304) and len(train.photos) + len(val.photos) == 304
    assert not set(train.photos) & set(val.photos)
    assert all(val.photos[t].stem == str(s.stem) for s, t in zip(val.sketches, val.targets))


def test_triplets_are_deterministic_and_well_formed(data):
    rset = load_set("chairs-v1", "test", data)
    ds = TripletDataset(rset, canvases=(32, 256), photo_size=128, seed=7)
    a, b = ds[5], ds[5]
    assert a["sketch"][32].shape == (3, 32, 32) and a["sketch"][256].shape == (3, 256, 256)
    assert a["positive"].shape == (3, 128, 128)
    assert a["negative_index"] != a["target"] == rset.targets[5]
    for key in ("positive", "negative"):
        assert torch.equal(a[key], b[key])
    assert torch.equal(a["sketch"][256], b["sketch"][256])
    negatives = {ds[i]["negative_index"] for i in range(3)}
    ds.set_epoch(1)
    assert {ds[i]["negative_index"] for i in range(3)} != negatives or not torch.equal(ds[5]["positive"], a["positive"])
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["sketch"][32].shape == (2, 3, 32, 32)


def test_eval_datasets_give_unaugmented_tensors(data):
    rset = load_set("shoes-v1", "test", data)
    assert SketchCanvasDataset(rset.sketches, 64)[0].shape == (3, 64, 64)
    p = PhotoDataset(rset.photos, 256)[0]
    assert p.shape == (3, 256, 256) and 0 <= float(p.min()) and float(p.max()) <= 1


def test_sketchx_v2_folder_becomes_a_set(tmp_path, chair_pickle):
    from sketchdown.data.io import read_sketchx_pickle

    keys = [k for k in read_sketchx_pickle(chair_pickle) if k.startswith("/test/")]
    ids = sorted({k.split("/")[2].rsplit("_", 1)[0] for k in keys})
    (tmp_path / "photo").mkdir()
    for pid in ids:
        Image.new("RGB", (8, 8), "white").save(tmp_path / "photo" / f"{pid}.png")
    shutil.copy(chair_pickle, tmp_path / "ChairV2_Coordinate")
    s = load_set(str(tmp_path), "test")
    assert len(s) == 323 and len(s.photos) == len(ids) == 100
    assert s.sketches[0].is_vector
    ds = TripletDataset(s, canvases=(64,), photo_size=32)
    assert ds[0]["sketch"][64].shape == (3, 64, 64)


def test_bad_sets_get_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not a named set"):
        load_set(str(tmp_path / "nowhere"), "test")
    with pytest.raises(InputError):
        RetrievalSet("empty", [], [], [])


def test_stroke_shift_moves_each_stroke_on_its_own():
    from sketchdown.data.sketch import Sketch
    from sketchdown.data.transforms import SKETCH_AUGMENTS, SketchAugment, augment_vector

    strokes = tuple(np.array([[10.0 + 40 * i, 20.0], [30.0 + 40 * i, 60.0], [20.0 + 40 * i, 90.0]], np.float32)
                    for i in range(5))
    sketch = Sketch(strokes=strokes, width=256, height=256)
    still = dict(degrees=0.0, scale=(1.0, 1.0), shift=0.0, flip=0.0, stroke_drop=0.0)
    torch.manual_seed(0)
    offsets = [o - s for o, s in zip(augment_vector(sketch, SketchAugment(**still, stroke_shift=0.02)).strokes,
                                     strokes)]
    for d in offsets:  # a rigid move per stroke, within 2% of the frame
        assert np.allclose(d, d[0], atol=1e-4) and np.abs(d[0]).max() <= 0.02 * 256 + 1e-4
    assert len({tuple(np.round(d[0], 3)) for d in offsets}) == len(strokes)
    torch.manual_seed(0)
    unshifted = augment_vector(sketch, SketchAugment(**still, stroke_shift=0.0)).strokes
    assert all(np.allclose(a, b) for a, b in zip(unshifted, strokes))
    standard, strong = SKETCH_AUGMENTS["standard"], SKETCH_AUGMENTS["strong"]
    assert standard.stroke_shift == 0 and strong.stroke_shift > 0 and strong.degrees > standard.degrees


def test_strong_sketch_augmentation_is_deterministic_and_differs(data):
    rset = load_set("chairs-v1", "test", data)
    standard = TripletDataset(rset, canvases=(64,), photo_size=32, seed=3, raster_method="trace")
    strong = TripletDataset(rset, canvases=(64,), photo_size=32, seed=3, raster_method="trace",
                            sketch_augment="strong")
    assert torch.equal(strong[2]["sketch"][64], strong[2]["sketch"][64])
    assert not torch.equal(strong[2]["sketch"][64], standard[2]["sketch"][64])
    with pytest.raises(ValueError, match="standard"):
        TripletDataset(rset, canvases=(64,), sketch_augment="wild")
