"""The one sketch type: strokes (vector) or a raster, whichever the source gave.

Strokes are absolute (x, y) points in a coordinate frame of ``width`` x ``height`` (the canvas the sketch was
drawn on); each stroke is a pen-down polyline and the pen lifts between strokes. A raster is a grey image,
white (255) paper and dark ink, as sketch PNGs are stored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import limits
from ..errors import InputError


@dataclass(frozen=True)
class Sketch:
    """A sketch as strokes or as a raster. Exactly one of the two is set."""

    strokes: tuple[np.ndarray, ...] | None = None
    raster: np.ndarray | None = None
    width: float = 256.0
    height: float = 256.0
    source: str = "<memory>"
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if (self.strokes is None) == (self.raster is None):
            raise ValueError("a Sketch holds either strokes or a raster")
        if self.strokes is not None:
            limits.check("sketch_strokes", len(self.strokes), self.source, "strokes")
            strokes = tuple(_points(s, i, self.source) for i, s in enumerate(self.strokes))
            limits.check("sketch_points", sum(len(s) for s in strokes), self.source, "points")
            strokes = tuple(s for s in strokes if len(s))
            if not strokes:
                raise InputError(self.source, "the sketch has no strokes")
            for side in (self.width, self.height):
                if not (isinstance(side, (int, float)) and math.isfinite(side) and side > 0):
                    raise InputError(self.source, f"the canvas size must be positive and finite, got "
                                                  f"{self.width!r} x {self.height!r}")
            object.__setattr__(self, "strokes", strokes)
        else:
            r = np.asarray(self.raster)
            if r.ndim != 2 or r.dtype != np.uint8 or min(r.shape) == 0:
                raise InputError(self.source, f"a raster sketch must be a non-empty 2-D uint8 array, got {r.dtype} {r.shape}")
            limits.check_image(r.shape[1], r.shape[0], self.source)
            if int(r.min()) == int(r.max()):
                raise InputError(self.source, "the sketch is blank (every pixel has the same value)")
            object.__setattr__(self, "raster", r)
            object.__setattr__(self, "height", float(r.shape[0]))
            object.__setattr__(self, "width", float(r.shape[1]))

    @property
    def is_vector(self) -> bool:
        return self.strokes is not None

    @property
    def num_points(self) -> int:
        return sum(len(s) for s in self.strokes) if self.strokes is not None else 0

    @classmethod
    def from_points(cls, points: np.ndarray, width: float = 256.0, height: float = 256.0, source: str = "<memory>") -> "Sketch":
        """From SketchX-style (N, 3) absolute points: x, y, and 1 where a stroke ends."""
        pts = _numeric(points, source)
        if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
            raise InputError(source, f"expected an (N, 3) array of x, y, pen-up points, got shape {pts.shape}")
        ends = np.flatnonzero(pts[:, 2] > 0.5) + 1
        return cls(strokes=tuple(np.split(pts[:, :2], ends)), width=width, height=height, source=source)

    @classmethod
    def from_stroke3(cls, deltas: np.ndarray, source: str = "<memory>", margin: float = 0.05, size: float = 256.0) -> "Sketch":
        """From sketch-rnn stroke-3 (dx, dy, pen lifted after this point); fitted into a ``size`` square."""
        d = _numeric(deltas, source)
        if d.ndim != 2 or d.shape[1] != 3 or len(d) == 0:
            raise InputError(source, f"expected an (N, 3) stroke-3 array, got shape {d.shape}")
        xy = np.cumsum(d[:, :2], axis=0)
        pts = np.concatenate([xy, d[:, 2:3]], axis=1)
        return cls.from_points(pts, source=source).fit(size, margin)

    def to_points(self) -> np.ndarray:
        """SketchX-style (N, 3) absolute points with 1 at each stroke's last point."""
        self._need_vector("to_points")
        return stroke_points(self.strokes)

    def to_stroke3(self) -> np.ndarray:
        """sketch-rnn stroke-3: first row relative to the origin, then deltas."""
        pts = self.to_points()
        out = pts.copy()
        out[1:, :2] = np.diff(pts[:, :2], axis=0)
        return out

    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the ink."""
        if self.strokes is not None:
            allp = np.concatenate(self.strokes)
            x0, y0 = allp.min(0)
            x1, y1 = allp.max(0)
            return float(x0), float(y0), float(x1), float(y1)
        ys, xs = np.nonzero(self.raster < 250)
        if len(xs) == 0:
            return 0.0, 0.0, self.width, self.height
        return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)

    def fit(self, size: float = 256.0, margin: float = 0.05) -> "Sketch":
        """Scale and centre the strokes into a ``size`` square with a relative margin, keeping aspect."""
        self._need_vector("fit")
        x0, y0, x1, y1 = self.bounds()
        span = max(x1 - x0, y1 - y0, 1e-6)
        scale = size * (1 - 2 * margin) / span
        off = np.array([(size - (x1 - x0) * scale) / 2, (size - (y1 - y0) * scale) / 2], dtype=np.float32)
        base = np.array([x0, y0], dtype=np.float32)
        strokes = tuple((s - base) * scale + off for s in self.strokes)
        return Sketch(strokes=strokes, width=size, height=size, source=self.source, meta=self.meta)

    def _need_vector(self, what: str) -> None:
        if self.strokes is None:
            raise InputError(self.source, f"{what} needs a vector sketch; this one is a raster image")


def stroke_points(strokes: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 3) float32 absolute points of non-empty (n, 2) strokes, with 1 at each stroke's last point."""
    points = np.zeros((sum(len(s) for s in strokes), 3), dtype=np.float32)
    points[:, :2] = np.concatenate(strokes)
    points[np.cumsum([len(s) for s in strokes]) - 1, 2] = 1
    return points


def _numeric(values: object, source: str) -> np.ndarray:
    """A real-number array as float64; strings, objects, records, complex numbers and non-finite values are an
    InputError (numpy would turn "1" into 1.0, or fail with a TypeError deep in a reader)."""
    arr = np.asarray(values) if not isinstance(values, np.ndarray) else values
    if arr.dtype.kind not in "iuf":
        raise InputError(source, f"expected an array of numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InputError(source, "the points are not all finite numbers")
    return arr


def _points(stroke: object, i: int, source: str) -> np.ndarray:
    """One stroke as (n, 2) float32; a coordinate that is not finite (or beyond float32's range) is an error."""
    arr = _numeric(stroke, source)
    if not (arr.ndim == 2 and arr.shape[1] == 2 or arr.ndim == 1 and arr.size % 2 == 0):
        raise InputError(source, f"stroke {i} must be (x, y) points, got an array of shape {arr.shape}")
    with np.errstate(over="ignore"):
        pts = arr.astype(np.float32).reshape(-1, 2)
    if not np.isfinite(pts).all():
        raise InputError(source, f"stroke {i} has coordinates beyond float32's range")
    return pts
