import time

import numpy as np
import pytest

from sketchdown.data.render import (CANVASES, MIN_LINE_WIDTH, SHRINK_METHODS, line_width, render_strokes, shrink_raster,
                                    to_canvas, to_tensor)
from sketchdown.data.sketch import Sketch
from sketchdown.errors import InputError

SQUARE = Sketch(strokes=(np.array([[64, 64], [192, 64], [192, 192], [64, 192], [64, 64]]),))


@pytest.mark.parametrize("canvas", CANVASES + (48, 300))
def test_render_any_canvas_draws_ink_where_the_strokes_are(canvas):
    img = render_strokes(SQUARE, canvas)
    assert img.shape == (canvas, canvas) and img.dtype == np.uint8
    assert img.max() == 255 and img.min() < 160  # ink on white paper (thin lines are anti-aliased grey)
    c = canvas // 2
    assert img[c, c] == 255  # inside the square is empty
    assert img[canvas // 4 - 1: canvas // 4 + 1, c].min() < 200  # the top edge at y = 64/256 is inked


def test_line_width_scales_with_the_canvas_but_has_a_floor():
    assert line_width(256) > line_width(128) > line_width(64) >= line_width(32) == MIN_LINE_WIDTH > 0
    # every canvas still shows the whole outline: each side of the square carries visible ink
    for c in CANVASES:
        img = render_strokes(SQUARE, c)
        q = c // 4  # the square's sides sit at 1/4 and 3/4 of the canvas
        for side in (img[q - 1:q + 1, q:3 * q], img[3 * q - 1:3 * q + 1, q:3 * q],
                     img[q:3 * q, q - 1:q + 1], img[q:3 * q, 3 * q - 1:3 * q + 1]):
            assert (side.min(axis=0 if side.shape[0] == 2 else 1) < 200).all(), f"a side fades at canvas {c}"


def test_single_point_stroke_is_a_dot():
    img = render_strokes(Sketch(strokes=(np.array([[128.0, 128.0]]),)), 64)
    y, x = np.unravel_index(img.argmin(), img.shape)
    assert img.min() < 224 and abs(y - 32) <= 1 and abs(x - 32) <= 1


def test_render_keeps_the_drawing_frame():
    # a sketch drawn on a 512 frame lands in the same relative place
    big = Sketch(strokes=(np.array([[128, 128], [384, 128]]),), width=512, height=512)
    img = render_strokes(big, 64)
    assert img[15:17, 32].min() < 200 and img[48, 32] == 255


def test_render_real_chair_strokes_fast(chair_pickle):
    from sketchdown.data.io import read_sketchx_pickle

    sketches = list(read_sketchx_pickle(chair_pickle).values())[:100]
    t0 = time.perf_counter()
    for s in sketches:
        for c in CANVASES:
            img = render_strokes(s, c)
            assert (img < 128).any()
    per_sketch_ms = (time.perf_counter() - t0) * 1e3 / len(sketches)
    assert per_sketch_ms < 50, f"rendering 4 canvases took {per_sketch_ms:.1f} ms per sketch"


def test_drawing_is_pixel_for_pixel_pils_curve_joints(data, chair_pickle, monkeypatch):
    """The students were trained on PIL's ``line(joint="curve")``; ``render._curve_lines`` is its faster twin and
    must draw the same pixels: traced QMUL sketches with the traced pen and ChairV2 strokes with the default pens,
    at every canvas (pens of 1-16 supersampled pixels: no joints, joints, joints with gap lines)."""
    from sketchdown.data import render
    from sketchdown.data.datasets import load_set
    from sketchdown.data.io import read_sketch, read_sketchx_pickle
    from sketchdown.data.strokes import trace

    def pil(draw, lines, width):
        for points in lines:
            draw.line([tuple(p) for p in points], fill=0, width=width, joint="curve")

    traced = [trace(read_sketch(p)) for obj in ("shoes-v1", "chairs-v1")
              for p in load_set(obj, "test", data).sketches[:4]]
    drawn = list(read_sketchx_pickle(chair_pickle).values())[:8]
    cases = [(s, c, 1.0) for s in traced for c in CANVASES] + [(s, c, None) for s in drawn for c in CANVASES]
    ours = [render_strokes(s, c, w) for s, c, w in cases]
    monkeypatch.setattr(render, "_curve_lines", pil)
    assert all(np.array_equal(a, render_strokes(s, c, w)) for a, (s, c, w) in zip(ours, cases))


@pytest.mark.parametrize("method", SHRINK_METHODS)
def test_shrink_raster_keeps_a_one_pixel_line_visible(method):
    raster = np.full((256, 256), 255, np.uint8)
    raster[100, 20:230] = 0  # a 1-px horizontal line
    small = shrink_raster(raster, 32, method)
    assert small.shape == (32, 32)
    assert small.min() < 255  # some trace of the line survives
    if method == "maxink":
        assert small.min() == 0  # and maxink keeps it fully dark


def test_shrink_raster_pads_non_square_and_rejects_unknown_method():
    raster = np.full((100, 200), 255, np.uint8)
    raster[50, :] = 0
    assert shrink_raster(raster, 64).shape == (64, 64)
    with pytest.raises(ValueError, match="unknown raster downscaling"):
        shrink_raster(raster, 64, "nearest-ish")


def test_to_canvas_and_tensor_for_raster_and_vector():
    raster = Sketch(raster=render_strokes(SQUARE, 256))
    for s in (SQUARE, raster):
        t = to_tensor(to_canvas(s, 64))
        assert t.shape == (3, 64, 64) and 0.0 <= float(t.min()) and float(t.max()) <= 1.0


def test_render_rejects_raster_input():
    with pytest.raises(InputError):
        render_strokes(Sketch(raster=render_strokes(SQUARE, 32)), 32)
