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

import bisect
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
    order (``ys``, ``xs``); ``nbrs[p, k]`` is p's neighbour at ``_OFFSETS[k]`` or -1, and ``first`` / ``second``
    are the first two of them in that order (the walk's order depends on both orders). ``deg``, ``first`` and
    ``second`` are Python lists: the walk reads them per pixel; ``degree`` and ``first_nbr`` are arrays of the same,
    for picking pixels by degree."""

    ys: np.ndarray
    xs: np.ndarray
    nbrs: np.ndarray
    degree: np.ndarray
    first_nbr: np.ndarray
    deg: list[int]
    first: list[int]
    second: list[int]

    @classmethod
    def of(cls, skeleton: np.ndarray) -> "_Graph":
        stride = skeleton.shape[1] + 2  # pixel numbers in the raster padded by one, flat: one gather finds all
        ys, xs = np.divmod(np.flatnonzero(skeleton), skeleton.shape[1])
        at = (ys + 1) * stride + xs + 1
        index = np.full((skeleton.shape[0] + 2) * stride, -1, dtype=np.int32)
        index[at] = np.arange(len(ys), dtype=np.int32)
        nbrs = index[at[:, None] + np.array([dy * stride + dx for dy, dx in _OFFSETS])]
        side = nbrs[:, :4] >= 0  # a diagonal neighbour does not count when a 4-neighbour path to it exists
        nbrs[:, 4:][side[:, [0, 0, 1, 1]] | side[:, [2, 3, 2, 3]]] = -1
        valid = nbrs >= 0
        degree, rows, k = valid.sum(1), np.arange(len(ys)), valid.argmax(1)
        first = np.where(degree > 0, nbrs[rows, k], -1)
        valid[rows, k] = False
        second = np.where(degree > 1, nbrs[rows, valid.argmax(1)], -1)
        return cls(ys, xs, nbrs, degree, first, degree.tolist(), first.tolist(), second.tolist())

    def neighbours(self, p: int) -> list[int]:
        return [q for q in self.nbrs[p].tolist() if q >= 0]


def _edge(p: int, q: int, n: int) -> int:
    """The edge (p, q) of a graph of n pixels as one int, either way round: ints hash faster than pairs."""
    return p * n + q if p < q else q * n + p


def _walk(g: _Graph, start: int, step: int, used: set[int]) -> list[int]:
    """The pixels from ``start`` through ``step`` until a pixel that is not a plain chain link (or back to start),
    each edge walked added to ``used`` (``_edge``)."""
    deg, first, second, n = g.deg, g.first, g.second, len(g.deg)
    path, prev, cur = [start, step], start, step
    used.add(_edge(start, step, n))
    while cur != start:
        if deg[cur] != 2:
            break
        nxt = second[cur] if first[cur] == prev else first[cur]
        edge = cur * n + nxt if cur < nxt else nxt * n + cur  # _edge inlined: this loop is most of tracing's time
        if edge in used:
            break
        used.add(edge)
        path.append(nxt)
        prev, cur = cur, nxt
    return path


def _paths(g: _Graph) -> list[list[int]]:
    """Every edge of the skeleton graph once: chains between end points / junctions, then closed loops."""
    used: set[int] = set()
    paths = []
    n = len(g.deg)
    for p in np.flatnonzero(g.degree != 2).tolist():
        for q in g.neighbours(p):
            if _edge(p, q, n) not in used:
                paths.append(_walk(g, p, q, used))
    # what is left are loops of chain pixels (an O, a rim): chain pixels whose first edge no chain walked
    chain = np.flatnonzero(g.degree == 2)
    first = g.first_nbr[chain]
    keys = np.minimum(chain, first) * n + np.maximum(chain, first)  # _edge of each, at once
    left = ~np.isin(keys, np.fromiter(used, np.int64, len(used)))
    for p, key in zip(chain[left].tolist(), keys[left].tolist()):
        if key not in used:  # a loop walked since
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
    first and last point (-1: a free end).

    One join at a time, always at the junction whose first stroke end comes first (stroke number, then its first
    end before its last), and there the straightest pair, the first of a tie; a join changes only the junctions
    of the two strokes' ends, so only their best pairs are looked at again."""
    strokes = list(strokes)
    dirs: dict[tuple[int, bool], np.ndarray] = {}  # (stroke, at its end) -> direction, until the stroke changes

    def direction(i: int, last: bool) -> np.ndarray:
        if (i, last) not in dirs:
            dirs[i, last] = _direction(strokes[i], last)
        return dirs[i, last]

    def straightest(members: list[tuple[int, bool]]) -> tuple[float, int, bool, int, bool] | None:
        best = None
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                (i, li), (j, lj) = members[x], members[y]
                if i == j:
                    continue
                cos = float(direction(i, li) @ direction(j, lj))
                if cos < _STRAIGHT and (best is None or cos < best[0]):
                    best = (cos, i, li, j, lj)
        return best

    at: dict[int, list[tuple[int, bool]]] = {}  # junction -> the stroke ends there, in order
    for i, (a, b) in enumerate(ends):
        for node, last in ((a, False), (b, True)):
            if node >= 0:
                at.setdefault(node, []).append((i, last))
    best = {node: straightest(members) for node, members in at.items()}
    alive = [True] * len(strokes)
    while True:
        joinable = [(at[node][0], node) for node, pair in best.items() if pair is not None]
        if not joinable:
            break
        _, i, li, j, lj = best[min(joinable)[1]]
        a = strokes[i] if li else strokes[i][::-1]  # ends at the junction
        b = strokes[j] if not lj else strokes[j][::-1]  # starts at the junction
        touched = {*ends[i], *ends[j]}
        strokes[i] = np.concatenate([a, b[1:]])
        ends[i] = ((ends[i][0] if li else ends[i][1]), (ends[j][1] if not lj else ends[j][0]))
        alive[j] = False
        for end in (False, True):
            dirs.pop((i, end), None)
        touched.discard(-1)
        for node in touched:
            at[node] = [m for m in at[node] if m[0] != i and m[0] != j]
        for node, last in ((ends[i][0], False), (ends[i][1], True)):
            if node >= 0:
                bisect.insort(at[node], (i, last))
        for node in touched:
            best[node] = straightest(at[node]) if at[node] else None
    return [s for s, keep in zip(strokes, alive) if keep]


def _greedy_order(strokes: list[np.ndarray]) -> list[np.ndarray]:
    """Start at the stroke end nearest the top left; then always the stroke whose end is nearest the pen.

    The pen is only ever at the origin or at a stroke's end, so the distances from each of those places to every
    stroke end are taken at once, and each step reads its row."""
    n = len(strokes)
    starts = np.array([s[0] for s in strokes])
    finishes = np.array([s[-1] for s in strokes])
    pens = np.concatenate([np.zeros((1, 2), dtype=np.float32), starts, finishes])[:, None]
    d_start = np.linalg.norm(starts - pens, axis=2)
    d_end = np.linalg.norm(finishes - pens, axis=2)
    near = np.minimum(d_start, d_end)
    taken = np.zeros(n, dtype=bool)
    pen, out = 0, []
    for _ in strokes:
        i = int(np.argmin(np.where(taken, np.inf, near[pen])))  # the first of a tie, as ever
        taken[i] = True
        flip = bool(d_end[pen, i] < d_start[pen, i])
        out.append(np.ascontiguousarray(strokes[i][::-1] if flip else strokes[i]))
        pen = 1 + i if flip else 1 + n + i  # the pen stops on the stroke's start when drawn backwards
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
    for p in np.flatnonzero(g.degree > 2).tolist():
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
    if min_pixels <= 1:  # single pixels are kept as dots
        strokes += [np.array([(g.xs[p] + 0.5, g.ys[p] + 0.5)], dtype=np.float32) for p in np.flatnonzero(g.degree == 0)]
    if not strokes:
        raise InputError(sketch.source, "tracing found no strokes (the ink is only specks)")
    strokes = rdp_strokes(_join_straight(strokes, ends), epsilon)
    return Sketch(strokes=tuple(_greedy_order(strokes)), width=sketch.width, height=sketch.height,
                  source=sketch.source, meta={**sketch.meta, "traced": True})
