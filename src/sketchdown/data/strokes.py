"""Stroke geometry: Douglas-Peucker simplification, and tracing a raster sketch into strokes.

QMUL-V1, Sketchy and most users' sketches are images, but the paper's canvas selector reads strokes, and strokes
can be drawn at any canvas with a line width of our choosing instead of shrinking a 256 px drawing whose 1 px lines
fade to grey. ``trace`` recovers strokes from an image: scikit-image thins the ink to a one-pixel skeleton, and the
skeleton's pixel graph is walked into polylines between its end points and junctions. Traced strokes keep the
drawing's geometry but not how it was drawn: the drawing order, the pen direction and where the pen lifted are
unknown, so strokes come out split at junctions (joined again where a line runs straight through one) and ordered
greedily, each next stroke starting nearest to where the last one ended.

RDP runs in GEOS through shapely (Douglas-Peucker, ``preserve_topology=False``): the ``rdp`` package is
unmaintained since 2016 and took 14 ms per ChairV2 sketch on the reference CPU, where shapely takes 0.2 ms.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from ..errors import InputError
from .sketch import Sketch

INK_THRESHOLD = 160  # grey level below which a pixel is ink (paper is 255; anti-aliased edges are kept)
MIN_STROKE_PIXELS = 4.0  # skeleton branches shorter than this (in pixels) that end in nothing are thinning noise
TRACE_EPSILON = 0.5  # RDP tolerance of traced strokes, in pixels of the raster (drops the staircase, keeps shape)
_STRAIGHT = np.cos(np.radians(135))  # two strokes meeting at a junction are joined when they turn by < 45 degrees

# 8-neighbour offsets (dy, dx); the first four are the 4-neighbours
_OFFSETS = ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def rdp_strokes(strokes: list[np.ndarray], epsilon: float) -> list[np.ndarray]:
    """Douglas-Peucker on every stroke at once (GEOS); a stroke keeps its end points, a single point stays."""
    import shapely

    lines = [s for s in strokes if len(s) > 1]
    if not lines:
        return strokes
    geoms = shapely.linestrings(np.concatenate(lines).astype(np.float64),
                                indices=np.repeat(np.arange(len(lines)), [len(s) for s in lines]))
    simple = iter(shapely.get_coordinates(g) for g in shapely.simplify(geoms, epsilon, preserve_topology=False))
    return [next(simple).astype(np.float32) if len(s) > 1 else s for s in strokes]


class _Graph(NamedTuple):
    """The skeleton's pixel graph under m-adjacency: a diagonal neighbour counts only when neither pixel that shares
    a side with both is set, so a staircase is a chain, not a chain of triangles. Pixels are numbered in raster
    order (``ys``, ``xs``); ``nbrs`` lists each one's neighbours in ``_OFFSETS`` order, then -1s (the walk's order
    depends on both orders). ``deg``, ``first`` and ``second`` are Python lists: the walk reads them per pixel."""

    ys: np.ndarray
    xs: np.ndarray
    nbrs: np.ndarray
    deg: list[int]
    first: list[int]
    second: list[int]

    @classmethod
    def of(cls, skeleton: np.ndarray) -> "_Graph":
        ys, xs = np.nonzero(skeleton)
        index = np.full((skeleton.shape[0] + 2, skeleton.shape[1] + 2), -1, dtype=np.int32)  # pixel number, padded
        index[ys + 1, xs + 1] = np.arange(len(ys), dtype=np.int32)
        pad = index >= 0
        found = np.empty((len(ys), len(_OFFSETS)), dtype=np.int32)
        for k, (dy, dx) in enumerate(_OFFSETS):
            found[:, k] = index[ys + 1 + dy, xs + 1 + dx]
            if dy and dx:  # diagonal: not when a 4-neighbour path exists
                found[pad[ys + 1 + dy, xs + 1] | pad[ys + 1, xs + 1 + dx], k] = -1
        valid = found >= 0
        rows, cols = np.nonzero(valid)
        nbrs = np.full_like(found, -1)
        nbrs[rows, (np.cumsum(valid, axis=1) - 1)[rows, cols]] = found[rows, cols]  # valid ones first, in order
        return cls(ys, xs, nbrs, valid.sum(1).tolist(), nbrs[:, 0].tolist(), nbrs[:, 1].tolist())

    def neighbours(self, p: int) -> list[int]:
        return self.nbrs[p, : self.deg[p]].tolist()


def _edge(p: int, q: int) -> tuple[int, int]:
    return (p, q) if p < q else (q, p)


def _walk(g: _Graph, start: int, step: int, used: set[tuple[int, int]]) -> list[int]:
    """The pixels from ``start`` through ``step`` until a pixel that is not a plain chain link (or back to start)."""
    deg, first, second = g.deg, g.first, g.second
    path, prev, cur = [start, step], start, step
    used.add(_edge(start, step))
    while cur != start:
        if deg[cur] != 2:
            break
        nxt = second[cur] if first[cur] == prev else first[cur]
        edge = (cur, nxt) if cur < nxt else (nxt, cur)  # _edge inlined: this loop is most of tracing's time
        if edge in used:
            break
        used.add(edge)
        path.append(nxt)
        prev, cur = cur, nxt
    return path


def _paths(g: _Graph) -> list[list[int]]:
    """Every edge of the skeleton graph once: chains between end points / junctions, then closed loops."""
    used: set[tuple[int, int]] = set()
    paths = []
    for p in (p for p, d in enumerate(g.deg) if d != 2):
        for q in g.neighbours(p):
            if _edge(p, q) not in used:
                paths.append(_walk(g, p, q, used))
    for p in (p for p, d in enumerate(g.deg) if d == 2):  # what is left are loops of chain pixels (an O, a rim)
        if _edge(p, g.first[p]) not in used:
            paths.append(_walk(g, p, g.first[p], used))
    return paths


def _length(points: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum()) if len(points) > 1 else 0.0


def _direction(points: np.ndarray, at_end: bool, span: int = 5) -> np.ndarray:
    """Unit vector pointing out of a polyline at one of its ends (over up to ``span`` points)."""
    seg = points[-min(span, len(points)):] if at_end else points[min(span, len(points)) - 1::-1]
    d = seg[-1] - seg[0]
    n = np.linalg.norm(d)
    return d / n if n > 0 else d


def _join_straight(strokes: list[np.ndarray], ends: list[tuple[int, int]]) -> list[np.ndarray]:
    """Join strokes that meet at the same junction and go on in nearly the same direction: a pen line the
    skeleton split where another line crossed or touched it. ``ends[i]`` are the junction ids of stroke i's
    first and last point (-1: a free end)."""
    strokes = list(strokes)
    alive = [True] * len(strokes)
    dirs: dict[tuple[int, bool], np.ndarray] = {}  # (stroke, at its end) -> direction, until the stroke changes

    def direction(i: int, last: bool) -> np.ndarray:
        if (i, last) not in dirs:
            dirs[i, last] = _direction(strokes[i], last)
        return dirs[i, last]

    changed = True
    while changed:
        changed = False
        at: dict[int, list[tuple[int, bool]]] = {}
        for i, (a, b) in enumerate(ends):
            if alive[i]:
                for node, last in ((a, False), (b, True)):
                    if node >= 0:
                        at.setdefault(node, []).append((i, last))
        for node, members in at.items():
            best = None
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    (i, li), (j, lj) = members[x], members[y]
                    if i == j:
                        continue
                    cos = float(direction(i, li) @ direction(j, lj))
                    if cos < _STRAIGHT and (best is None or cos < best[0]):
                        best = (cos, i, li, j, lj)
            if best is None:
                continue
            _, i, li, j, lj = best
            a = strokes[i] if li else strokes[i][::-1]  # ends at the junction
            b = strokes[j] if not lj else strokes[j][::-1]  # starts at the junction
            strokes[i] = np.concatenate([a, b[1:]])
            ends[i] = ((ends[i][0] if li else ends[i][1]), (ends[j][1] if not lj else ends[j][0]))
            alive[j] = False
            for end in (False, True):
                dirs.pop((i, end), None)
            changed = True
            break
    return [s for s, keep in zip(strokes, alive) if keep]


def _greedy_order(strokes: list[np.ndarray]) -> list[np.ndarray]:
    """Start at the stroke end nearest the top left; then always the stroke whose end is nearest the pen."""
    starts = np.array([s[0] for s in strokes])
    finishes = np.array([s[-1] for s in strokes])
    taken = np.zeros(len(strokes), dtype=bool)
    pen = np.zeros(2, dtype=np.float32)
    out = []
    for _ in strokes:
        d_start = np.linalg.norm(starts - pen, axis=1)
        d_end = np.linalg.norm(finishes - pen, axis=1)
        i = int(np.argmin(np.where(taken, np.inf, np.minimum(d_start, d_end))))  # the first of a tie, as ever
        taken[i] = True
        stroke = strokes[i][::-1] if d_end[i] < d_start[i] else strokes[i]
        out.append(np.ascontiguousarray(stroke))
        pen = stroke[-1]
    return out


def trace(sketch: Sketch, threshold: int = INK_THRESHOLD, min_pixels: float = MIN_STROKE_PIXELS,
          epsilon: float = TRACE_EPSILON) -> Sketch:
    """Strokes of a raster sketch, in its own pixel frame (a vector sketch is returned as it is).

    The ink (grey < ``threshold``) is thinned to a one-pixel skeleton, whose pixel graph is cut into polylines at
    its end points and junctions; spurs shorter than ``min_pixels`` are dropped, lines that run straight through
    a junction are joined, each polyline is simplified with RDP (``epsilon`` pixels) and the strokes are ordered
    greedily. Coordinates are pixel centres; the frame is the raster's width x height.
    """
    if sketch.is_vector:
        return sketch
    from skimage.morphology import skeletonize

    ink = sketch.raster < threshold
    if not ink.any():
        raise InputError(sketch.source, f"no ink darker than grey {threshold} to trace")
    g = _Graph.of(skeletonize(ink))
    paths = _paths(g)
    node_of: dict[int, int] = {}  # junction pixel -> junction id (adjacent junction pixels are one junction)
    for p in (p for p, d in enumerate(g.deg) if d > 2):
        if p not in node_of:
            stack, node_of[p] = [p], len(node_of)
            while stack:
                q = stack.pop()
                for r in g.neighbours(q):
                    if g.deg[r] > 2 and r not in node_of:
                        node_of[r] = node_of[p]
                        stack.append(r)
    strokes, ends = [], []
    sizes = [len(path) for path in paths]
    pixels = np.fromiter(itertools.chain.from_iterable(paths), dtype=np.int64, count=sum(sizes))
    points = np.stack([g.xs[pixels] + 0.5, g.ys[pixels] + 0.5], axis=1).astype(np.float32)
    for path, pts in zip(paths, np.split(points, np.cumsum(sizes)[:-1])):
        a, b = node_of.get(path[0], -1), node_of.get(path[-1], -1)
        if a >= 0 and a == b and len(path) <= 3:  # a link inside one junction's pixels
            continue
        # a spur of the thinning, or a speck (a step is at least 1 px: only a path this short can be that short)
        if (a < 0 or b < 0) and len(path) - 1 < min_pixels and _length(pts) < min_pixels:
            continue
        strokes.append(pts)
        ends.append((a, b))
    strokes += [np.array([(g.xs[p] + 0.5, g.ys[p] + 0.5)], dtype=np.float32)
                for p, d in enumerate(g.deg) if not d and min_pixels <= 1]
    if not strokes:
        raise InputError(sketch.source, "tracing found no strokes (the ink is only specks)")
    strokes = rdp_strokes(_join_straight(strokes, ends), epsilon)
    return Sketch(strokes=tuple(_greedy_order(strokes)), width=sketch.width, height=sketch.height,
                  source=sketch.source, meta={**sketch.meta, "traced": True})
