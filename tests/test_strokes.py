"""Tracing raster sketches into strokes: real QMUL sketches come back as strokes that draw the same picture, the
skeleton graph is cut and joined where a pen line would be, and the ``trace`` raster method draws small canvases
with full-contrast lines."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sketchdown.data import io
from sketchdown.data.datasets import load_set
from sketchdown.data.render import render_strokes, to_canvas
from sketchdown.data.sketch import Sketch
from sketchdown.data.strokes import INK_THRESHOLD, trace
from sketchdown.errors import InputError
from sketchdown.files import digest


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance (pixels) from each ink pixel of one image to the nearest ink pixel of the other, both ways."""
    return float((ndimage.distance_transform_edt(~b)[a].mean() + ndimage.distance_transform_edt(~a)[b].mean()) / 2)


@pytest.mark.parametrize("obj", ["shoes-v1", "chairs-v1"])
def test_a_traced_qmul_sketch_draws_back_onto_its_own_ink(data, obj):
    for path in load_set(obj, "test", data).sketches[:3]:
        raster = io.read_sketch(path)
        strokes = trace(raster)
        assert strokes.is_vector and strokes.meta["traced"] and (strokes.width, strokes.height) == (256, 256)
        assert 1 <= len(strokes.strokes) < 80 and strokes.num_points < 2000
        drawn = render_strokes(strokes, 256, width=1.0) < INK_THRESHOLD
        ink = raster.raster < INK_THRESHOLD
        assert chamfer(ink, drawn) < 0.6  # every drawn line lies on the sketch's ink, and every ink on a line
        assert drawn.sum() == pytest.approx(ink.sum(), rel=0.35)


@pytest.mark.parametrize("obj,expected", [("shoes-v1", "b7d9f48b052e3cb0"), ("chairs-v1", "92c18683405e4d76")])
def test_tracing_gives_the_strokes_the_shipped_students_were_trained_on(data, obj, expected):
    """The students trained with ``--raster-method trace`` saw these exact strokes: a faster or "better" tracer
    that moves a point changes every raster query's input, so it has to be a new raster method, not an edit. The
    whole test split of each set (115 and 97 sketches) is pinned: a faster tracer must give these bytes, joins and
    ties included."""
    sketches = [trace(io.read_sketch(p)).strokes for p in load_set(obj, "test", data).sketches]
    # each stroke with its shape, so that moving a point from one stroke to the next changes the digest
    parts = [np.asarray(s.shape, np.int64).tobytes() + s.tobytes() for strokes in sketches for s in strokes]
    assert digest(parts, 16) == expected


def test_lines_are_cut_at_junctions_joined_where_straight_and_loops_stay_closed():
    img = np.full((64, 64), 255, np.uint8)
    img[32, 4:60] = 0  # a plus: two straight lines crossing
    img[4:60, 32] = 0
    plus = trace(Sketch(raster=img))
    assert len(plus.strokes) == 2  # not four arms: each line runs straight through the junction
    for s in plus.strokes:
        span = s.max(0) - s.min(0)
        assert max(span) > 50 and min(span) < 2 and len(s) <= 4  # RDP keeps a straight line's few points

    ring = np.full((64, 64), 255, np.uint8)
    yy, xx = np.mgrid[:64, :64]
    ring[np.abs(np.hypot(yy - 32, xx - 32) - 20) < 1] = 0
    loop = trace(Sketch(raster=ring))
    assert len(loop.strokes) == 1 and np.linalg.norm(loop.strokes[0][0] - loop.strokes[0][-1]) < 2


def test_strokes_stay_as_they_are_and_inkless_images_are_refused():
    vector = Sketch(strokes=(np.array([[0, 0], [10, 10]], np.float32),))
    assert trace(vector) is vector
    faint = np.full((32, 32), 255, np.uint8)
    faint[5, 5] = 200  # lighter than the ink threshold
    with pytest.raises(InputError, match="no ink"):
        trace(Sketch(raster=faint))
    speck = np.full((32, 32), 255, np.uint8)
    speck[5, 5] = 0
    with pytest.raises(InputError, match="specks"):
        trace(Sketch(raster=speck))


def test_the_trace_method_keeps_small_canvases_dark(data):
    sketch = io.read_sketch(load_set("chairs-v1", "test", data).sketches[0])
    area, traced = to_canvas(sketch, 32, "area"), to_canvas(sketch, 32, "trace")
    assert area.shape == traced.shape == (32, 32)
    assert traced.min() < 60 < area.min()  # a 1 px line at 256 shrinks to light grey; traced it stays dark
    assert (traced < 128).sum() > 2 * (area < 128).sum()


def test_trace_thin_scales_the_traced_pen_with_the_canvas(data):
    """"trace-thin" draws the same strokes with QMUL's 1 px pen scaled to the canvas (0.5 px floor): the same at
    256, less ink below."""
    sketch = trace(io.read_sketch(load_set("chairs-v1", "test", data).sketches[0]))
    assert (to_canvas(sketch, 256, "trace-thin") == to_canvas(sketch, 256, "trace")).all()
    for canvas in (32, 64, 128):
        thin, full = to_canvas(sketch, canvas, "trace-thin"), to_canvas(sketch, canvas, "trace")
        assert (255 - thin.astype(int)).sum() < 0.7 * (255 - full.astype(int)).sum()
