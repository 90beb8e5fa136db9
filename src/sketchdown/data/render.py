"""Sketch -> canvas: render strokes at any size, or shrink a raster sketch, as a grey uint8 image.

Vector sketches are drawn directly at the target canvas (no big raster is made and shrunk), with PIL's C line
rasteriser on a supersampled grid that is box-filtered down, which gives anti-aliased strokes without any
per-pixel Python work. The line width follows ``line_width``: proportional to the canvas, but never thinner than
a floor, so a 32x32 canvas still shows every stroke. The constants were chosen by measurement
(``benchmarks/rendering.py``; see docs/rendering.md). Torch is imported only by the functions that use it, so
reading and drawing a vector sketch works without loading it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from .. import limits
from ..errors import InputError
from .sketch import Sketch

if TYPE_CHECKING:
    import torch

CANVASES: tuple[int, ...] = (32, 64, 128, 256)
REFERENCE_CANVAS = 256
# Line width in pixels at the 256 reference canvas, and the thinnest line at any canvas (pixels), both chosen by
# benchmarks/rendering.py (docs/rendering.md): 2 px is the middle of the pen widths of the human raster sketches
# we train on (1-3 px), and at that width a 0.5 px floor kept small canvases most identifiable.
LINE_WIDTH_256 = 2.0
MIN_LINE_WIDTH = 0.5
SUPERSAMPLE_PIXELS = 512  # supersample so the drawing grid is about this size (anti-aliasing quality)
# Joints are PIL's ``line(joint="curve")``: a pie slice and a gap line per vertex for pens over 4 supersampled
# pixels, which is most of the drawing time at 32 and 64 px. A disc per vertex was faster, but its drawing differs by
# up to 12 grey levels at 64 px and moved one of 115 Shoe-V1 test queries of the shipped student; the students were
# trained on PIL's joints, so ``_curve_lines`` draws exactly those, with the angles of all vertices computed at once.
SHRINK_METHODS = ("area", "maxink", "bilinear")  # resampling of the pixels
TRACE_METHODS = ("trace", "trace-thin")
RASTER_METHODS = (*SHRINK_METHODS, *TRACE_METHODS)
# "trace": the raster is traced into strokes (``strokes.trace``) and drawn at each canvas with this width: QMUL's
# 1 px pen at 256, and a line of full contrast at 32, where a 1 px line shrunk by "area" keeps an eighth of its ink.
# "trace-thin": traced the same, the pen scaled with the canvas as a stroke sketch's is (``line_width`` from this
# width at 256, floored at ``MIN_LINE_WIDTH``): 0.5 px, a grey line, at 32-128, which kept small drawings more
# identifiable than 1 px in the zero-shot protocol of docs/rendering.md.
TRACED_LINE_WIDTH = 1.0
# "area" kept raster sketches most identifiable at 32-128 in benchmarks/rendering.py (docs/rendering.md).
DEFAULT_RASTER_METHOD = "area"


def line_width(canvas: int, width_256: float = LINE_WIDTH_256, min_width: float = MIN_LINE_WIDTH) -> float:
    """Stroke width in pixels at ``canvas``: scaled from the reference, floored so small canvases keep ink."""
    return max(min_width, width_256 * canvas / REFERENCE_CANVAS)


def render_strokes(sketch: Sketch, canvas: int, width: float | None = None) -> np.ndarray:
    """Draw a vector sketch at ``canvas`` x ``canvas``; returns uint8, 255 paper and 0 ink.

    The sketch's own frame (``sketch.width`` x ``sketch.height``) maps onto the canvas, keeping aspect and
    centring, so a sketch drawn on a 256 canvas lands where it was drawn.
    """
    if not sketch.is_vector:
        raise InputError(sketch.source, "render_strokes needs strokes; use to_canvas for raster sketches")
    limits.check_canvas(canvas, sketch.source)
    w = line_width(canvas) if width is None else width
    ss = max(1, SUPERSAMPLE_PIXELS // canvas)
    scale = canvas * ss / max(sketch.width, sketch.height)
    with np.errstate(over="ignore", invalid="ignore"):
        drawn = [stroke * np.float32(scale) for stroke in sketch.strokes]
    if not all(np.isfinite(d).all() for d in drawn):
        raise InputError(sketch.source, f"the strokes do not fit a canvas: coordinates up to {max(sketch.bounds()):g} "
                                        f"in a frame of {sketch.width:g} x {sketch.height:g}")
    offset = np.array([(max(sketch.width, sketch.height) - sketch.width) / 2,
                       (max(sketch.width, sketch.height) - sketch.height) / 2], dtype=np.float32) * scale
    img = Image.new("L", (canvas * ss, canvas * ss), 255)
    draw = ImageDraw.Draw(img)
    pen = max(1, round(w * ss))
    r = pen / 2
    placed = [stroke + offset for stroke in drawn]
    _curve_lines(draw, [p.astype(np.float64) for p in placed if len(p) > 1], pen)
    ink = draw.draw.draw_ink(0)
    for pts in placed:
        for x, y in (pts[0], pts[-1]):  # round caps (float32 boxes, as ImageDraw.ellipse got), and single-point dots
            draw.draw.draw_ellipse((x - r, y - r, x + r, y + r), ink, 1)
    return np.asarray(img.reduce(ss))


def _curve_lines(draw: ImageDraw.ImageDraw, lines: list[np.ndarray], width: int) -> None:
    """Polylines (each N x 2 float64, N > 1) pixel for pixel as ``ImageDraw.line(points, width=width,
    joint="curve")`` draws each (Pillow 13; tests/test_render.py compares the two on real sketches): the same pie
    slice at every vertex that turns, and for pens over 8 px the same 3 px gap line. The angles of all vertices
    of all lines are computed at once and only the drawing calls loop; every shape is the same ink, so the order
    of drawing does not matter."""
    core = draw.draw
    ink = core.draw_ink(0)
    for line in lines:
        core.draw_lines(line.ravel().tolist(), ink, width)
    if width <= 4 or not lines:
        return
    half = width / 2 - 1
    points = np.concatenate(lines)
    owner = np.repeat(np.arange(len(lines)), [len(line) for line in lines])
    step = np.diff(points, axis=0)
    bearing = np.degrees(np.arctan2(step[:, 0], -step[:, 1])) % 360  # compass bearing of each segment
    into, out = bearing[:-1], bearing[1:]  # of the segments into and out of each inner point
    turns = np.flatnonzero((owner[:-2] == owner[2:]) & (into != out))  # vertices of one line that turn
    into, out, (x, y) = into[turns], out[turns], points[1:-1][turns].T
    flipped = ((out > into) & (out - 180 > into)) | ((out < into) & (out + 180 > into))
    start = np.where(flipped, out + 90, into - 90) - 90
    end = np.where(flipped, into + 90, out - 90) - 90
    boxes = np.stack([x - half, y - half, x + half, y + half], axis=1).tolist()
    for box, a, b in zip(boxes, start.tolist(), end.tolist()):
        core.draw_pieslice(box, a, b, ink, 1)
    if width <= 8:
        return
    side = np.where(flipped, 90, -90)

    def rim(angle: np.ndarray) -> np.ndarray:  # points half a pen from the vertices, the offsets truncated
        theta = np.radians(angle - 90)
        return np.stack([x + np.trunc(half * np.cos(theta)), y + np.trunc(half * np.sin(theta))], axis=1)

    for gap in np.concatenate([rim(into + side), np.stack([x, y], axis=1), rim(out + side)], axis=1).tolist():
        core.draw_lines(gap, ink, 3)


def shrink_raster(raster: np.ndarray, canvas: int, method: str = DEFAULT_RASTER_METHOD) -> np.ndarray:
    """Shrink a grey raster sketch to ``canvas`` x ``canvas`` (uint8, 255 paper).

    ``area`` averages each cell (thin strokes fade to light grey), ``bilinear`` is anti-aliased bilinear
    resampling (similar, smoother), ``maxink`` keeps the darkest pixel of each cell (thin strokes stay fully
    dark, at the cost of looking bolder).
    """
    if method not in SHRINK_METHODS:
        raise ValueError(f"unknown raster downscaling {method!r}; choose one of {', '.join(SHRINK_METHODS)} "
                         "(trace draws strokes: to_canvas)")
    limits.check_canvas(canvas)
    h, w = raster.shape
    limits.check("image_pixels", h * w, None, f"raster of {w} x {h}: pixels")
    if (h, w) == (canvas, canvas):
        return raster
    import torch
    import torch.nn.functional as F

    # Resample the drawing to its size on the canvas, then pad it to the square: the same result as padding
    # first where the sides divide evenly, at the cost of the drawing's pixels, not of a square of its long side.
    side = max(h, w)
    size = (max(1, round(h * canvas / side)), max(1, round(w * canvas / side)))
    ink = torch.from_numpy(255.0 - raster.astype(np.float32))[None, None]
    shrinking = canvas < side
    if method == "maxink" and shrinking:
        out = F.adaptive_max_pool2d(ink, size)
    elif method == "area" and shrinking:
        out = F.interpolate(ink, size=size, mode="area")
    else:
        out = F.interpolate(ink, size=size, mode="bilinear", antialias=method == "bilinear")
    top, left = (canvas - size[0]) // 2, (canvas - size[1]) // 2
    out = F.pad(out, (left, canvas - size[1] - left, top, canvas - size[0] - top))
    return (255.0 - out[0, 0].clamp(0, 255)).round().to(torch.uint8).numpy()


def prepare(sketch: Sketch, raster_method: str = DEFAULT_RASTER_METHOD) -> Sketch:
    """The sketch as ``raster_method`` draws it: a raster traced into strokes for the trace methods, else
    unchanged. Done once per sketch where it is reused (a training item, a query), so augmentation and the vector
    policy see the strokes."""
    if raster_method in TRACE_METHODS and not sketch.is_vector:
        from .strokes import trace

        return trace(sketch)
    return sketch


def to_canvas(sketch: Sketch, canvas: int, raster_method: str = DEFAULT_RASTER_METHOD) -> np.ndarray:
    """The sketch at ``canvas``: rendered from strokes when it has them (traced ones at ``TRACED_LINE_WIDTH``),
    else its raster shrunk."""
    sketch = prepare(sketch, raster_method)
    if sketch.is_vector:
        width = None
        if sketch.meta.get("traced"):
            width = line_width(canvas, TRACED_LINE_WIDTH) if raster_method == "trace-thin" else TRACED_LINE_WIDTH
        return render_strokes(sketch, canvas, width)
    return shrink_raster(sketch.raster, canvas, raster_method)


def to_tensor(canvas_img: np.ndarray) -> torch.Tensor:
    """uint8 grey canvas -> float 3xHxW in [0, 1] (grey repeated over RGB, as the backbones expect)."""
    import torch

    grey = np.asarray(canvas_img, dtype=np.float32) / np.float32(255.0)  # the same floats as torch's div
    return torch.from_numpy(np.repeat(grey[None], 3, axis=0))


def rasterize(sketch: Sketch, size: int = REFERENCE_CANVAS) -> Sketch:
    """A raster copy of a vector sketch at ``size`` (for code paths that need pixels)."""
    return Sketch(raster=to_canvas(sketch, size), source=sketch.source, meta=sketch.meta)
