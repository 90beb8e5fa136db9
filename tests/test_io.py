"""Readers in sketchdown.data.io: the real data sets in ../shared/data, small files written here, and bad inputs."""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sketchdown import cli
from sketchdown.data import io as sio
from sketchdown.data.render import to_canvas
from sketchdown.data.sketch import Sketch
from sketchdown.errors import InputError

DATA = Path(os.environ.get("SKETCHDOWN_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data sets not found at {DATA} (set SKETCHDOWN_DATA)")
CHAIR_V2 = DATA / "chair-v2-strokes" / "ChairV2_Coordinate"
SHEEP = DATA / "sketch-rnn-sheep" / "aaron_sheep.npz"


def _raises(problem: str):
    """pytest.raises for an InputError whose message contains ``problem``."""
    return pytest.raises(InputError, match=problem)


# ----------------------------------------------------------------------------------------------- real data


@needs_data
def test_qmul_v1_pairs_csv_counts_and_files():
    pairs = sio.read_pairs_csv(DATA / "qmul-v1" / "pairs.csv")
    assert len(pairs) == 716
    counts = {(o, s): len(sio.read_pairs_csv(DATA / "qmul-v1" / "pairs.csv", split=s, object=o))
              for o in ("shoes", "chairs") for s in ("train", "test")}
    assert counts == {("shoes", "train"): 304, ("shoes", "test"): 115, ("chairs", "train"): 200, ("chairs", "test"): 97}
    assert len({p.key for p in pairs}) == 716
    p = pairs[0]
    assert p.sketch.is_file() and p.photo.is_file() and p.key == str(p.photo) and p.category == "shoes"


@needs_data
def test_shoe_v1_extra_shares_photo_keys_with_qmul_v1():
    extra = sio.read_pairs_csv(DATA / "shoe-v1-extra" / "pairs.csv")
    assert len(extra) == 912 and {p.split for p in extra} == {"train"}
    keys = {p.key for p in extra}
    assert len(keys) == 304
    assert keys == {p.key for p in sio.read_pairs_csv(DATA / "qmul-v1" / "pairs.csv", "train", "shoes")}


@needs_data
def test_sketchy_subset_pairs():
    pairs = sio.read_pairs_csv(DATA / "sketchy-subset" / "pairs.csv")
    assert len(pairs) == 3125
    assert len({p.category for p in pairs}) == 125
    assert len({p.key for p in pairs}) == 578
    assert {p.split for p in pairs} == {"train", "test"}


@needs_data
@pytest.mark.parametrize("obj,split,n", [("shoes", "train", 304), ("shoes", "test", 115), ("chairs", "train", 200), ("chairs", "test", 97)])
def test_read_qmul_v1_matches_csv(obj, split, n):
    raw = sio.read_qmul_v1(DATA / "qmul-v1", obj, split)
    assert len(raw) == n
    ids = [int(p.photo.stem) for p in raw]
    assert ids == sorted(ids)  # numeric order, not 1, 10, 100
    by_csv = sio.read_pairs_csv(DATA / "qmul-v1" / "pairs.csv", split=split, object=obj)
    assert sorted(raw, key=lambda p: p.key) == sorted(by_csv, key=lambda p: p.key)


@needs_data
def test_qmul_rgba_png_and_photo():
    png = DATA / "qmul-v1" / "shoes" / "train" / "sketches" / "1.png"
    assert Image.open(png).mode == "RGBA"
    s = sio.read_sketch(png)
    assert not s.is_vector and s.raster.dtype == np.uint8 and s.raster.shape == (256, 256)
    assert np.array_equal(s.raster, np.asarray(Image.open(png).convert("RGB").convert("L")))
    photo = sio.read_image(DATA / "qmul-v1" / "shoes" / "train" / "images" / "1.jpg")
    assert photo.mode == "RGB" and photo.size == (256, 256)


@needs_data
def test_chair_v2_pickle():
    sketches = sio.read_sketchx_pickle(CHAIR_V2)
    assert len(sketches) == 1275
    assert sum(k.startswith("/train/") for k in sketches) == 952
    assert sum(k.startswith("/test/") for k in sketches) == 323
    raw = sio.safe_load_pickle(CHAIR_V2)
    key = next(iter(raw))
    s = sketches[key]
    assert s.is_vector and (s.width, s.height) == (256.0, 256.0)
    assert np.allclose(s.to_points(), raw[key], atol=1e-4)


@needs_data
def test_sheep_npz_matches_numpy_loader():
    counts = {split: len(sio.read_stroke3_npz(SHEEP, split)) for split in ("valid", "test")}
    train = sio.read_stroke3_npz(SHEEP)
    assert (len(train), counts) == (7400, {"valid": 300, "test": 300})
    trusted = np.load(SHEEP, allow_pickle=True, encoding="latin1")["train"]  # the shared file is known to be safe
    expected = Sketch.from_stroke3(trusted[5])
    assert all(np.array_equal(a, b) for a, b in zip(train[5].strokes, expected.strokes, strict=True))
    with _raises("no split 'dev'"):
        sio.read_stroke3_npz(SHEEP, "dev")


def _fake_v2_release(root: Path, split: str) -> list[str]:
    """The official layout around the real ChairV2 pickle: photo/<id>.png for every photo of ``split``."""
    (root / "photo").mkdir(parents=True)
    (root / "ChairV2_Coordinate").symlink_to(CHAIR_V2)
    ids = sorted({k.split("/")[2].rsplit("_", 1)[0] for k in sio.safe_load_pickle(CHAIR_V2) if k.startswith(f"/{split}/")})
    Image.new("RGB", (8, 8), "red").save(root / "photo" / "template.png")
    for pid in ids:
        os.link(root / "photo" / "template.png", root / "photo" / f"{pid}.png")
    (root / "photo" / "template.png").unlink()
    return ids


@needs_data
def test_sketchx_v2_layout(tmp_path):
    ids = _fake_v2_release(tmp_path, "test")
    sketches, photos = sio.read_sketchx_v2(tmp_path, "test")
    assert len(sketches) == 323 and len(photos) == 100 == len(ids)
    assert set(photos) == set(ids) and all(photos[pid].is_file() for pid, _ in sketches)
    assert "CHABRA003GRY-UK_v1_PearlGrey" in photos  # ids keep their own underscores
    renamed = tmp_path / "strokes.pkl"
    renamed.symlink_to(CHAIR_V2)
    (tmp_path / "ChairV2_Coordinate").unlink()
    with _raises("no \\*_Coordinate stroke pickle"):
        sio.read_sketchx_v2(tmp_path, "test")
    assert len(sio.read_sketchx_v2(tmp_path, "test", pickle=renamed)[0]) == 323
    with _raises("photo\\(s\\) of split 'train' are missing"):
        sio.read_sketchx_v2(tmp_path, "train", pickle=renamed)
    with _raises("no sketches in split 'val'"):
        sio.read_sketchx_v2(tmp_path, "val", pickle=renamed)


# ----------------------------------------------------------------------------------------------- SVG

INKSCAPE_SVG = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">
<svg xmlns="http://www.w3.org/2000/svg" xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape"
     width="200" height="100" viewBox="0 0 400 200" version="1.1">
  <rect x="0" y="0" width="400" height="200" fill="#ffffff"/>
  <g inkscape:groupmode="layer" transform="translate(100,50) scale(2)">
    <path style="fill:none;stroke:#000000;stroke-width:1px"
          d="m 10,10 l 20,0 c 5,5 10,5 15,0 s 10,-5 15,0 q 5,-5 10,0 t 10,0 h 10 v 10 a 5,5 0 0 1 -10,0 z m 5,5 L 20,20"/>
  </g>
  <polyline points="0,0 40,40 80,0" stroke="black" fill="none" transform="matrix(1,0,0,1,10,20)"/>
  <line x1="300" y1="20" x2="380" y2="180" stroke="black"/>
  <path d="M 0 0 L 400 200" stroke="black" visibility="hidden"/>
</svg>
"""


def test_svg_like_inkscape(tmp_path):
    f = tmp_path / "drawing.svg"
    f.write_text(INKSCAPE_SVG)
    s = sio.read_sketch(f)
    assert s.is_vector and (s.width, s.height) == (200.0, 100.0)
    # the group path, its second subpath, the polyline and the line; background rect and hidden path are no ink
    assert len(s.strokes) == 4
    first = s.strokes[0]
    # viewBox halves everything: (100 + 2 * 10, 50 + 2 * 10) / 2
    assert np.allclose(first[0], [60, 35]) and np.allclose(first[1], [80, 35])
    assert np.allclose(first[-1], first[0])  # z closes the subpath
    assert len(first) > 30  # curves and the arc are flattened into many points
    assert np.allclose(s.strokes[1], [[65, 40], [70, 45]])  # relative m after z, then absolute L in group space
    assert np.allclose(s.strokes[2], [[5, 10], [25, 30], [45, 10]])  # matrix transform on the element
    assert np.allclose(s.strokes[3], [[150, 10], [190, 90]])
    x0, y0, x1, y1 = s.bounds()
    assert x0 >= 0 and y0 >= 0 and x1 <= 200 and y1 <= 100


def test_svg_text_shapes_and_ink_frame():
    s = sio.read_svg('<svg xmlns="http://www.w3.org/2000/svg"><circle cx="300" cy="300" r="100" stroke="red" fill="none"/>'
                     '<ellipse cx="50" cy="50" rx="20" ry="10"/><polygon points="0,0 10,0 10,10"/></svg>')
    assert len(s.strokes) == 3 and s.width == s.height == 400.0  # no canvas given: the ink's extent
    assert np.allclose(np.linalg.norm(s.strokes[0] - [300, 300], axis=1), 100, atol=1e-3)
    assert np.allclose(s.strokes[2][-1], s.strokes[2][0])  # polygon closes


@pytest.mark.parametrize("text,problem", [
    ("<svg><path d='M0 0 L1 1'", "malformed XML"),
    ("<svg xmlns='http://www.w3.org/2000/svg'><text>hello</text></svg>", "no strokes"),
    ("<svg xmlns='http://www.w3.org/2000/svg'><path d='L 5 5'/></svg>", "must begin with a move"),
    ("<svg xmlns='http://www.w3.org/2000/svg' width='abc' height='x'><path d='M0 0 L5 5'/></svg>", "canvas size is not positive"),
    ("<?xml version='1.0'?><!DOCTYPE svg [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;'>]>"
     "<svg xmlns='http://www.w3.org/2000/svg'><text>&b;</text></svg>", "declares XML entities"),
])
def test_svg_bad(tmp_path, text, problem):
    f = tmp_path / "bad.svg"
    f.write_text(text)
    with _raises(problem):
        sio.read_sketch(f)


# ----------------------------------------------------------------------------------------------- stroke JSON


def test_stroke_json_forms_and_round_trip(tmp_path):
    strokes = [[[10, 20, 0.1], [30.5, 40, 0.2]], [[50, 60, 0.3]]]  # third value: time, ignored
    s = sio.read_stroke_json(strokes)
    assert (s.width, s.height) == (256.0, 256.0) and np.array_equal(s.strokes[0], [[10, 20], [30.5, 40]])
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"strokes": strokes, "width": 800, "height": 600}))
    s = sio.read_sketch(f)
    assert (s.width, s.height) == (800.0, 600.0)
    wiggly = Sketch(strokes=(np.random.default_rng(0).random((50, 2)) * 256,), width=300, height=200)
    sio.write_stroke_json(wiggly, tmp_path / "out.json")
    back = sio.read_sketch(tmp_path / "out.json")
    assert (back.width, back.height) == (300.0, 200.0) and np.array_equal(back.strokes[0], wiggly.strokes[0])
    assert sio.read_stroke_json([[[0, 0], [1000, 10]]]).width == 1000.0  # ink beyond 256 widens the canvas


@pytest.mark.parametrize("text,problem", [
    ("[[[1, 2], [3, 4]]", "malformed JSON"),
    ("[[1, 2], [3, 4]]", "stroke 0 must be a list of \\[x, y\\] points"),
    ("[[[[1, 2]]]]", "stroke 0 must be a list of \\[x, y\\] points"),
    ('[[["a", "b"], [3, 4]]]', "coordinates must be numbers"),
    ("[[[1, null]]]", "coordinates must be numbers"),
    ("[[[1, 2], [3]]]", "unequal length"),
    ("[]", "no strokes"),
    ("[[], []]", "no strokes"),
    ('{"lines": []}', "needs one of the keys 'strokes' \\(point lists\\) and 'drawing'"),
    ('{"strokes": [[[1, 2]]], "drawing": []}', "needs one of the keys"),
    ("[[[1, NaN]]]", "coordinates must be finite, found nan"),
    ('{"strokes": [[[1, 2]]], "width": -5}', "'width' must be a number of canvas units"),
    ('"hello"', "must be a JSON list"),
    # Quick, Draw!
    ('{"drawing": [[[0, 1, 2, 3], [0, 1, 2]]]}', "stroke 0: its x, y \\(and t\\) lists are of unequal length \\[4, 3\\]"),
    ('{"drawing": [[[0, 1], [0, 1], [5]]]}', "unequal length \\[2, 2, 1\\]"),
    ("[[[0, 1, 2, 3], [0, 1, 2]]]", "unequal length \\[4, 3\\]"),
    ('{"drawing": [[[0, NaN, 2, 3], [0, 1, 2, 3]]]}', "stroke 0: coordinates must be finite, found nan"),
    ('{"drawing": [[[0, 1], [0, Infinity]]]}', "must be finite, found inf"),
    ('{"drawing": [[[0, 1], [0, 1e999]]]}', "must be finite, found inf"),
    ('{"drawing": [[[0, "1"], [0, 1]]]}', "coordinates must be numbers"),
    ('{"drawing": [[[0, true], [0, 1]]]}', "coordinates must be numbers"),
    ('{"drawing": [[0, 1], [2, 3]]}', "stroke 0 must be Quick, Draw! lists"),
    ('{"drawing": [[[0], [1], [2], [3]]]}', "stroke 0 must be Quick, Draw! lists"),
    ('{"drawing": [[[[0]], [[1]]]]}', "stroke 0 must be Quick, Draw! lists"),
    ('{"drawing": []}', "no strokes"),
    ('{"drawing": [[[], []]]}', "no strokes"),
    ('{"drawing": {"x": 1}}', "must be a JSON list"),
])
def test_stroke_json_bad(tmp_path, text, problem):
    f = tmp_path / "bad.json"
    f.write_text(text)
    with _raises(f"^{re.escape(str(f))}: .*{problem}"):  # one line, naming the file
        sio.read_sketch(f)


# Quick, Draw! ([[xs], [ys]] or [[xs], [ys], [ts]] per stroke), as bare lists, "drawing" objects and ndjson lines
QD_XS, QD_YS = [[0, 50, 100], [5, 6, 7, 8]], [[10, 60, 200], [9, 9, 9, 9]]
QD_POINTS = [[[x, y] for x, y in zip(xs, ys)] for xs, ys in zip(QD_XS, QD_YS)]


def _same_raster(a: Sketch, b: Sketch) -> bool:
    return (a.width, a.height) == (b.width, b.height) and all(np.array_equal(to_canvas(a, c), to_canvas(b, c)) for c in (32, 256))


def test_quickdraw_simplified_reads_as_its_points():
    bare = [[xs, ys] for xs, ys in zip(QD_XS, QD_YS)]  # the second stroke's 4-long lists cannot be points
    for qd in (sio.read_stroke_json(bare), sio.read_stroke_json({"word": "cat", "drawing": bare})):
        assert [len(s) for s in qd.strokes] == [3, 4] and np.array_equal(qd.strokes[0], [[0, 10], [50, 60], [100, 200]])
        assert _same_raster(qd, sio.read_stroke_json(QD_POINTS)) and qd.width == 256.0
    assert sio.read_stroke_json({"word": "cat", "key_id": "5", "drawing": bare}).meta == {"word": "cat", "key_id": "5"}


def test_quickdraw_raw_drops_times_and_takes_the_ink_extent(tmp_path):
    raw = [[[x * 7 for x in xs], [y * 7 for y in ys], list(range(len(xs)))] for xs, ys in zip(QD_XS, QD_YS)]
    points = [[[x * 7, y * 7] for x, y in stroke] for stroke in QD_POINTS]
    f = tmp_path / "raw.json"
    f.write_text(json.dumps({"drawing": raw}))
    for qd in (sio.read_sketch(f), sio.read_stroke_json(raw)):
        assert [len(s) for s in qd.strokes] == [3, 4] and np.array_equal(qd.strokes[1], [[35, 63], [42, 63], [49, 63], [56, 63]])
        assert qd.width == qd.height == 1400.0 and _same_raster(qd, sio.read_stroke_json(points))


def test_stroke_layout_is_decided_per_file_by_the_documented_rule():
    def first(obj):
        return sio.read_stroke_json(obj).strokes[0].tolist()

    assert first([[[0, 0], [9, 9]]]) == [[0, 0], [9, 9]]  # ambiguous throughout: point lists
    assert first([[[0, 0, 1], [9, 9, 2], [5, 5, 3]]]) == [[0, 0], [9, 9], [5, 5]]  # [x, y, t] points
    assert first({"drawing": [[[0, 0], [9, 9]]]}) == [[0, 9], [0, 9]]  # an object says which
    assert first({"strokes": [[[0, 1, 2, 3], [4, 5, 6, 7]]]}) == [[0, 1], [4, 5]]
    assert first([[[0, 0], [9, 9]], [[1, 2, 3, 4], [1, 2, 3, 4]]]) == [[0, 9], [0, 9]]  # another stroke decides
    assert first([[[1], [2]]]) == [[1, 2]]  # one-point Quick, Draw! stroke
    # a stroke with 4 points cannot be Quick, Draw!, so the whole file is point lists
    assert first([[[0, 1, 2, 3], [4, 5, 6, 7]], [[0, 0], [1, 1], [2, 2], [3, 3]]]) == [[0, 1], [4, 5]]


def _ndjson(path: Path, drawings: list) -> Path:
    path.write_text("\n".join(json.dumps({"word": w, "key_id": str(k), "recognized": True, "drawing": d})
                              for w, k, d in drawings) + "\n\n")  # the blank line at the end is skipped
    return path


NDJSON_DRAWINGS = [("cat", 11, [[[0, 255], [0, 255]]]), ("dog", 22, [[[0, 50, 100], [100, 50, 0]], [[9], [9]]]),
                   ("cow", 33, [[[10, 20], [30, 40], [0, 5]]])]


def test_ndjson_reads_every_line_and_picks_one(tmp_path):
    f = _ndjson(tmp_path / "animals.ndjson", NDJSON_DRAWINGS)
    sketches = list(sio.read_ndjson(f))
    assert [s.meta["word"] for s in sketches] == ["cat", "dog", "cow"] and sketches[2].meta["recognized"] is True
    assert [s.source for s in sketches] == [f"{f}:{n} ({w}, key_id {k})" for n, (w, k, _) in enumerate(NDJSON_DRAWINGS, 1)]
    assert sketches[0].strokes[0].tolist() == [[0, 0], [255, 255]]  # a "drawing" is Quick, Draw! even when ambiguous
    assert [len(s.strokes) for s in sketches] == [1, 2, 1] and sketches[2].strokes[0].tolist() == [[10, 30], [20, 40]]
    assert [s.meta["word"] for s in sio.read_ndjson(f, limit=2)] == ["cat", "dog"]
    assert sio.read_sketch(f).source == sketches[0].source
    assert sio.read_sketch_item(f).source == sketches[0].source
    picked = sio.read_sketch_item(f, key="1")
    assert picked.source == sketches[1].source and _same_raster(picked, sketches[1])
    for key in ("3", "x", "-1"):
        with _raises("pass --key N with 0 <= N < 3 to pick a drawing"):
            sio.read_sketch_item(f, key=key)


def test_ndjson_render_cli_picks_the_key(tmp_path, capsys):
    f = _ndjson(tmp_path / "animals.ndjson", NDJSON_DRAWINGS)
    out = tmp_path / "out"
    assert cli.main(["render", str(f), "--key", "1", "--canvas", "32", "64", "-o", str(out)]) == 0
    dog = sio.read_sketch_item(f, key="1")
    for c in (32, 64):
        assert np.array_equal(np.asarray(Image.open(out / f"1_{c}.png")), to_canvas(dog, c))
    assert cli.main(["render", str(f), "--key", "7", "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{f}: pass --key N with 0 <= N < 3 to pick a drawing")


@pytest.mark.parametrize("lines,problem", [
    (['{"drawing": [[[0, 1], [0, 1]]]}', '{"drawing": [[[0, 1]'], "bad.ndjson:2: malformed JSON"),
    (['{"word": "dog", "drawing": [[[0, 1, 2, 3], [0, 1]]]}'], "bad.ndjson:1 \\(dog\\): stroke 0: its x, y"),
    (['', '{"key_id": "7", "drawing": [[[0, NaN], [0, 1]]]}'], "bad.ndjson:2 \\(key_id 7\\): stroke 0: coordinates must be finite"),
    (['{"drawing": []}'], "bad.ndjson:1: the sketch has no strokes"),
    (['"hello"'], "bad.ndjson:1: strokes must be a JSON list"),
    (['{"drawing": [[[0], [1]]]}', b'\xff\xfe{'], "bad.ndjson:2: malformed JSON"),
])
def test_ndjson_bad_line_names_the_file_and_line(tmp_path, lines, problem):
    f = tmp_path / "bad.ndjson"
    f.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines))
    with _raises(problem):
        list(sio.read_ndjson(f))


def test_ndjson_empty_or_missing(tmp_path):
    f = tmp_path / "empty.ndjson"
    f.write_text("\n \n")
    assert list(sio.read_ndjson(f)) == []
    with _raises(f"{f}: holds no drawings"):
        sio.read_sketch(f)
    with _raises("no such file"):
        list(sio.read_ndjson(tmp_path / "missing.ndjson"))


def test_raster_cannot_become_json():
    raster = Sketch(raster=np.array([[0, 255]], dtype=np.uint8))
    with _raises("only a vector sketch"):
        sio.sketch_to_json(raster)


# ----------------------------------------------------------------------------------------------- raster images


def _ink_on_transparent(mode: str) -> Image.Image:
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    rgba.paste((0, 0, 0, 255), (8, 8, 24, 12))
    return rgba.convert(mode) if mode != "P" else rgba.quantize(2)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_png_gets_white_paper(tmp_path, mode):
    f = tmp_path / "ink.png"
    img = _ink_on_transparent(mode)
    if mode == "P":  # a palette PNG marks its transparent entry with the transparency chunk
        img.info["transparency"] = img.getpixel((0, 0))
        img.save(f, transparency=img.getpixel((0, 0)))
    else:
        img.save(f)
    r = sio.read_sketch(f).raster
    assert r[0, 0] == 255 and r[10, 10] == 0


def test_bad_rasters(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    with _raises("cannot decode the image"):
        sio.read_sketch(tmp_path / "text.png")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with _raises("cannot decode the image"):
        sio.read_sketch(tmp_path / "cut.png")
    with _raises("cannot decode the image"):
        sio.read_image(tmp_path / "cut.png")
    Image.new("L", (16, 16), 255).save(tmp_path / "blank.png")
    with _raises("blank"):
        sio.read_sketch(tmp_path / "blank.png")
    with _raises("no such file"):
        sio.read_sketch(tmp_path / "missing.png")
    with _raises("no such file"):
        sio.read_image(tmp_path / "missing.jpg")
    (tmp_path / "folder.png").mkdir()
    with _raises("is a folder"):
        sio.read_sketch(tmp_path / "folder.png")
    with _raises("unknown sketch file type '.txt'"):
        sio.read_sketch(tmp_path / "notes.txt")


# ----------------------------------------------------------------------------------------------- pickles and npz


class _Exploit:
    """Pickles into a shell command that would create ``marker`` if it were ever run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickle_with_code_is_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"
    f = tmp_path / "Evil_Coordinate"
    f.write_bytes(pickle.dumps({"/train/x_1": _Exploit(marker)}))
    with _raises("pickle holds posix.system, which is not a numpy array; refusing to load it"):
        sio.read_sketchx_pickle(f)
    with _raises("refusing to load it"):
        sio.safe_load_pickle(pickle.dumps(_Exploit(marker), protocol=0))
    with _raises("refusing to load it"):  # _codecs.encode is admitted for latin1 bytes only
        sio.safe_load_pickle(b"c_codecs\nencode\n(X\x03\x00\x00\x00abcX\x04\x00\x00\x00zlibtR.")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_safe_pickle_rebuilds_numpy(protocol):
    obj = {"a": np.arange(6.0).reshape(2, 3), "b": [np.float32(1.5), np.array(["x"], dtype=object)]}
    back = sio.safe_load_pickle(pickle.dumps(obj, protocol=protocol))
    assert np.array_equal(back["a"], obj["a"]) and back["b"][0] == 1.5 and back["b"][1][0] == "x"


def test_bad_sketchx_pickles(tmp_path):
    f = tmp_path / "p"
    data = pickle.dumps({"/train/x_1": np.zeros((4, 3))})
    f.write_bytes(data[:-10])
    with _raises("truncated or corrupt"):
        sio.read_sketchx_pickle(f)
    f.write_bytes(pickle.dumps([np.zeros((4, 3))]))
    with _raises("expected a dict"):
        sio.read_sketchx_pickle(f)
    f.write_bytes(pickle.dumps({"/train/x_1": [1, 2, 3]}))
    with _raises("expected a dict of str -> numpy array"):
        sio.read_sketchx_pickle(f)
    f.write_bytes(pickle.dumps({"/train/x_1": np.zeros((4, 2))}))
    with _raises(r"\[/train/x_1\]: expected an \(N, 3\) array"):
        sio.read_sketchx_pickle(f)
    with _raises("no such file"):
        sio.read_sketchx_pickle(tmp_path / "nothing")


def _npz_with_object_payload(path: Path, payload: bytes, shape: tuple[int, ...]) -> None:
    """An npz whose train.npy announces an object array and carries ``payload`` as its pickle."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("train.npy", header.getvalue() + payload)


def test_npz_with_code_is_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"
    _npz_with_object_payload(tmp_path / "evil.npz", pickle.dumps(_Exploit(marker)), (1,))
    with _raises("refusing to load it"):
        sio.read_stroke3_npz(tmp_path / "evil.npz")
    assert not marker.exists()
    _npz_with_object_payload(tmp_path / "liar.npz", pickle.dumps(np.empty(3, dtype=object)), (2,))
    with _raises("not the \\(2,\\) array its header announces"):
        sio.read_stroke3_npz(tmp_path / "liar.npz")


def test_npz_plain_arrays_and_bad_archives(tmp_path):
    drawings = np.array([[[5, 0, 0], [0, 5, 1], [-5, 0, 1]]] * 2, dtype=np.int16)
    np.savez(tmp_path / "plain.npz", train=drawings)
    assert len(sio.read_stroke3_npz(tmp_path / "plain.npz")) == 2
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = drawings[0], drawings[0][:2]
    np.savez(tmp_path / "obj.npz", train=ragged)
    assert [s.num_points for s in sio.read_stroke3_npz(tmp_path / "obj.npz")] == [3, 2]
    (tmp_path / "junk.npz").write_bytes(b"PK not really")
    with _raises("not a readable .npz archive"):
        sio.read_stroke3_npz(tmp_path / "junk.npz")


# ----------------------------------------------------------------------------------------------- pairs


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4), 0).save(path)
    return path


def _csv(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def test_pairs_csv_relative_paths_share_photo_keys(tmp_path):
    _image(tmp_path / "main" / "photos" / "1.jpg")
    _image(tmp_path / "main" / "sketches" / "1.png")
    _image(tmp_path / "extra" / "s" / "1-1.png")
    main_rows = [["split", "sketch", "photo", "id"], ["train", "sketches/1.png", "photos/1.jpg", "1"]]
    extra_rows = [["split", "sketch", "photo"], ["train", "s/1-1.png", "../main/photos/1.jpg"]]
    main = sio.read_pairs_csv(_csv(tmp_path / "main" / "pairs.csv", main_rows))
    extra = sio.read_pairs_csv(_csv(tmp_path / "extra" / "pairs.csv", extra_rows))
    assert main[0].key == extra[0].key and ".." not in extra[0].key and extra[0].category == ""


def test_pairs_csv_bad(tmp_path):
    with _raises("missing column\\(s\\) sketch, photo"):
        sio.read_pairs_csv(_csv(tmp_path / "a.csv", [["split", "image"], ["train", "x.png"]]))
    bad = _csv(tmp_path / "b.csv", [["split", "sketch", "photo"], ["train", "gone.png", "gone.jpg"]])
    with _raises("2 referenced file\\(s\\) do not exist"):
        sio.read_pairs_csv(bad)
    with _raises("no rows with split='tset'; it has \\['train'\\]"):
        sio.read_pairs_csv(bad, split="tset")
    with _raises("has no object or category column"):
        sio.read_pairs_csv(bad, object="shoes")
    with _raises("empty sketch or photo path"):
        sio.read_pairs_csv(_csv(tmp_path / "c.csv", [["split", "sketch", "photo"], ["train", "", "x.jpg"]]))
    with _raises("no such file"):
        sio.read_pairs_csv(tmp_path / "none.csv")


def test_read_qmul_v1_layout(tmp_path):
    for i in ("1", "2", "10"):
        _image(tmp_path / "shoes" / "train" / "images" / f"{i}.jpg")
        _image(tmp_path / "shoes" / "train" / "sketches" / f"{i}.png")
    pairs = sio.read_qmul_v1(tmp_path, "shoes", "train")
    assert [p.photo.stem for p in pairs] == ["1", "2", "10"] and pairs[0].category == "shoes"
    _image(tmp_path / "shoes" / "train" / "images" / "11.jpg")
    with _raises("1 id\\(s\\) have a photo or a sketch but not both, e.g. 11"):
        sio.read_qmul_v1(tmp_path, "shoes", "train")
    with _raises("no such folder"):
        sio.read_qmul_v1(tmp_path, "chairs", "train")
    shutil.rmtree(tmp_path / "shoes" / "train" / "sketches")
    with _raises("no such folder \\(sketches\\)"):
        sio.read_qmul_v1(tmp_path, "shoes", "train")
