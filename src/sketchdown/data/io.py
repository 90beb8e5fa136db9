"""Readers for every sketch and sketch/photo-pair format the project meets, each failing with one InputError.

Users bring their own files, so every reader checks what it reads and reports the file and the problem in one
line; none of them runs code from a file (pickles go through an unpickler that admits numpy arrays only).
"""

from __future__ import annotations

import csv
import io
import json
import math
import pickle
import re
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from xml.parsers import expat

import numpy as np
import svgelements
from PIL import Image, ImageOps

from .. import limits
from ..errors import InputError
from .sketch import Sketch

try:  # numpy >= 2 (and the 1.26 shim); older numpy only has numpy.core
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy < 1.26
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
SKETCH_SUFFIXES = RASTER_SUFFIXES | {".svg", ".json", ".ndjson"}
SKETCHX_SIZE = 256.0  # SketchX pickles, Quick, Draw! simplified and most stroke data sets draw on a 256 x 256 canvas


# ----------------------------------------------------------------------------------------------- common


def _kind(p: Path) -> str:
    """"file", "folder" or "missing"; a path the OS cannot even look up (a NUL byte, a name over 255 bytes) is
    an InputError, not an OSError or ValueError traceback."""
    try:
        return "folder" if p.is_dir() else "file" if p.is_file() else "missing"
    except (OSError, ValueError) as err:
        raise InputError(repr(str(p)) if "\0" in str(p) else p, f"not a usable path ({err})") from None


def _existing(path: str | Path) -> Path:
    """The path as a Path, or an InputError saying why it cannot be read as a file."""
    p = Path(path)
    kind = _kind(p)
    if kind == "folder":
        raise InputError(p, "is a folder, not a file")
    if kind == "missing":
        raise InputError(p, "no such file")
    return p


def _unreadable(p: Path, err: OSError) -> InputError:
    """The InputError for a file that exists but cannot be read, instead of an OSError traceback."""
    return InputError(p, f"cannot read it: {err.strerror or err}")


def _read_bytes(path: str | Path, limit: str = "file_bytes") -> tuple[bytes, Path]:
    """A file's bytes and its Path, its size checked against ``limit`` before it is read."""
    p = _existing(path)
    limits.check_file(p, limit)
    try:
        return p.read_bytes(), p
    except OSError as err:
        raise _unreadable(p, err) from err


def _existing_dir(path: str | Path, what: str) -> Path:
    p = Path(path)
    if _kind(p) != "folder":
        raise InputError(p, f"no such folder ({what})")
    return p


def _ink_frame(strokes: Iterable[np.ndarray]) -> float:
    """Canvas side for strokes given without one: SketchX's 256 when the ink fits in it, else the ink's extent."""
    pts = [s for s in strokes if len(s)]
    top = float(np.max(np.concatenate(pts))) if pts else 0.0
    return SKETCHX_SIZE if not top > SKETCHX_SIZE else float(math.ceil(min(top, float(np.finfo(np.float32).max))))


def _files_by_stem(folder: Path, suffixes: frozenset[str]) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes and p.is_file()}


# ----------------------------------------------------------------------------------------------- images


def _open_image(path: str | Path) -> Image.Image:
    """Decode an image fully (so truncation shows here), upright per EXIF, 8 bits, transparency on white.

    Its size is checked from the header first (``limits``), so a few bytes announcing a huge image cost nothing.
    """
    p = _existing(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides, just below
            img = Image.open(p)
        with img:
            limits.check_image(*img.size, p)
            img.load()
            return on_white(to_8bit(ImageOps.exif_transpose(img)))
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, Image.DecompressionBombError) as err:
        raise InputError(p, f"cannot decode the image ({err})") from err


def to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey (``I;16``, ``I``) scaled to 8 bits, float grey (``F``) read as 0-1 or 0-255.

    PIL's own ``convert("L")`` clips these at 255, which turns a 16-bit sketch blank and a 16-bit photo white.
    """
    if img.mode.startswith("I;16") or img.mode == "I":
        a = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.clip(a / 257.0, 0, 255).round().astype(np.uint8), "L")
    if img.mode == "F":
        a = np.nan_to_num(np.asarray(img, dtype=np.float64))
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(a * scale, 0, 255).round().astype(np.uint8), "L")
    return img


def on_white(img: Image.Image) -> Image.Image:
    """RGB with any transparency composited on white paper, so transparent ink-only sketches keep dark ink."""
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return img.convert("RGB")


def read_image(path: str | Path) -> Image.Image:
    """A photo as an RGB image."""
    return _open_image(path)


def read_raster_sketch(path: str | Path) -> Sketch:
    """A raster sketch as grey uint8 (white paper); transparent paper becomes white so ink stays dark."""
    grey = np.asarray(_open_image(path).convert("L"))
    return Sketch(raster=grey, source=str(path))


# ----------------------------------------------------------------------------------------------- dispatch


def read_sketch(path: str | Path) -> Sketch:
    """Read a sketch file of any supported kind, chosen by its suffix."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in RASTER_SUFFIXES:
        return read_raster_sketch(p)
    if suffix == ".svg":
        return read_svg(p)
    if suffix == ".json":
        return read_stroke_json(p)
    if suffix == ".ndjson":
        return _ndjson_item(p, "0")
    raise InputError(p, f"unknown sketch file type {suffix or '(no suffix)'!r}; expected one of {', '.join(sorted(SKETCH_SUFFIXES))}")


# ----------------------------------------------------------------------------------------------- SVG


_NOT_FINITE = re.compile(rb"(?i)nan|inf")
_NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _expanded(children: list[list[int]], target: list[int | None], own: list[float], source: str) -> float:
    """Sum of ``own`` over the tree from node 0, every ``<use>`` counted as a copy of its target; a ``<use>``
    that refers to itself or its own ancestors is an InputError. Iterative: deep chains cannot overflow Python."""
    total: list[float | None] = [None] * len(own)
    on_path = [False] * len(own)
    stack = [(0, False)]
    while stack:
        node, done = stack.pop()
        edges = children[node] + ([target[node]] if target[node] is not None else [])
        if done:
            total[node] = own[node] + sum(total[e] for e in edges)  # type: ignore[misc]
            on_path[node] = False
            continue
        if total[node] is not None:
            continue
        on_path[node] = True
        stack.append((node, True))
        for e in edges:
            if on_path[e]:
                raise InputError(source, "the SVG has a <use> that refers to itself or to an element around it")
            if total[e] is None:
                stack.append((e, False))
    return total[0]  # type: ignore[return-value]


def _check_xml(data: bytes, source: str) -> dict[str, str]:
    """Parse once with expat before svgelements sees the file: reject malformed XML (namespaces included), entity
    declarations (expansion bombs) and entities defined outside the file, and bound the work svgelements would
    do (``limits``: nesting depth, elements counting every ``<use>`` expansion, coordinates).

    Returns the root element's attributes, which say whether the file defines its own canvas.
    """
    roots: list[dict[str, str]] = []
    children: list[list[int]] = []
    hrefs: list[str | None] = []
    numbers: list[float] = []
    ids: dict[str, int] = {}
    stack: list[int] = []
    cap = limits.current()

    def on_start(_name: str, attrs: dict[str, str]) -> None:
        if not roots:
            roots.append(attrs)
        node = len(children)
        if node >= cap.svg_elements:
            limits.check("svg_elements", node + 1, source, "SVG elements")
        if len(stack) >= cap.svg_depth:
            limits.check("svg_depth", len(stack) + 1, source, "SVG nesting depth")
        if stack:
            children[stack[-1]].append(node)
        children.append([])
        href = next((v for k, v in attrs.items() if k == "href" or k.endswith((" href", ":href"))), "")
        hrefs.append(href[1:] if href.startswith("#") else None)
        geometry = [v.encode() for k, v in attrs.items() if k in ("d", "points")]
        if any(_NOT_FINITE.search(v) for v in geometry):
            raise InputError(source, "the SVG's path data holds a coordinate that is not a finite number")
        numbers.append(sum(len(_NUMBER.findall(v)) for v in geometry))
        if "id" in attrs:
            ids.setdefault(attrs["id"], node)
        stack.append(node)

    def on_end(_name: str) -> None:
        stack.pop()

    def on_entity(*_: Any) -> None:
        raise InputError(source, "the SVG declares XML entities; refusing to expand them")

    def on_skipped(name: str, _is_parameter: bool) -> None:
        raise InputError(source, f"the SVG uses entity &{name}; defined outside the file; refusing to fetch it")

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler, parser.EndElementHandler = on_start, on_end
    parser.EntityDeclHandler, parser.SkippedEntityHandler = on_entity, on_skipped
    try:
        parser.Parse(data, True)
    except expat.ExpatError as err:
        raise InputError(source, f"malformed XML ({err})") from err
    target = [ids.get(h) if h is not None else None for h in hrefs]
    limits.check("svg_elements", _expanded(children, target, [1.0] * len(children), source), source,
                 "SVG elements after <use> expansion")
    limits.check("sketch_points", int(_expanded(children, target, numbers, source) // 2), source,
                 "SVG coordinate pairs after <use> expansion")
    return roots[0]


def _is_ink(element: svgelements.Shape) -> bool:
    """Whether a shape draws visible ink: a white background rectangle or a hidden shape is not a stroke."""
    if element.values.get("visibility") == "hidden":
        return False

    def dark(c: svgelements.Color | None) -> bool:
        return c is not None and c.value is not None and c.alpha > 0 and min(c.red, c.green, c.blue) < 250

    return dark(element.stroke) or dark(element.fill)


def _flatten(path: svgelements.Path, step: float, budget: list[int], source: str) -> list[np.ndarray]:
    """Polylines of a path: lines keep their end points, curves and arcs get a point about every ``step``.

    ``budget[0]`` counts the points made so far for the whole file, stopped at the ``sketch_points`` limit.
    """
    strokes: list[list[np.ndarray]] = []
    cap = limits.current().sketch_points
    for seg in path:
        if budget[0] > cap:
            limits.check("sketch_points", budget[0], source, "points after flattening the SVG's curves")
        if isinstance(seg, svgelements.Move):
            strokes.append([np.array([[seg.end.x, seg.end.y]])])
        elif not strokes:
            raise ValueError("path data must begin with a move (M or m)")
        elif isinstance(seg, (svgelements.Line, svgelements.Close)):
            strokes[-1].append(np.array([[seg.end.x, seg.end.y]]))
        else:
            coarse = np.asarray(seg.npoint(np.linspace(0.0, 1.0, 9)))
            length = float(np.linalg.norm(np.diff(coarse, axis=0), axis=1).sum())
            if not math.isfinite(length):
                raise ValueError(f"a curve has coordinates that are not finite numbers ({seg})")
            n = int(min(max(math.ceil(length / step), 4), 256))
            strokes[-1].append(np.asarray(seg.npoint(np.linspace(0.0, 1.0, n + 1)))[1:])
        budget[0] += len(strokes[-1][-1])
    out = [np.concatenate(s) for s in strokes]
    if not all(np.isfinite(s).all() for s in out):
        raise ValueError("a path has coordinates that are not finite numbers")
    return out


def read_svg(path_or_text: str | Path | bytes) -> Sketch:
    """Strokes from an SVG: every visible shape's outline, with transforms applied and viewBox mapped to the canvas.

    Bytes, or a str that starts with '<', are SVG text; any other str or Path is a file name.
    """
    if isinstance(path_or_text, str) and path_or_text.lstrip().startswith("<"):
        path_or_text = path_or_text.encode()
    if isinstance(path_or_text, bytes):
        data, source = path_or_text, "<svg text>"
    else:
        data, p = _read_bytes(path_or_text, "sketch_bytes")
        source = str(p)
    limits.check("sketch_bytes", len(data), source, "SVG size in bytes")
    root = _check_xml(data, source)
    try:
        svg = svgelements.SVG.parse(io.BytesIO(data))
        own_frame = "viewBox" in root or ("width" in root and "height" in root)
        width, height = (svg.width, svg.height) if own_frame else (None, None)
        step = max(width or SKETCHX_SIZE, height or SKETCHX_SIZE) / SKETCHX_SIZE
        shapes = [e for e in svg.elements() if isinstance(e, svgelements.Shape) and _is_ink(e)]
        budget = [0]
        strokes = [s for e in shapes for s in _flatten(svgelements.Path(e), step, budget, source)]
    except (ValueError, TypeError, AttributeError, IndexError, ZeroDivisionError, OverflowError, KeyError,
            RecursionError, ElementTree.ParseError) as err:
        raise InputError(source, f"cannot interpret the SVG ({type(err).__name__}: {err})") from None
    if not strokes:
        raise InputError(source, "the SVG has no strokes (no visible path, line, polyline, polygon, rect, circle or ellipse)")
    if width is None:
        width = height = _ink_frame(strokes)
    if not (0 < width < math.inf and 0 < height < math.inf):
        raise InputError(source, f"the SVG's canvas size is not positive: width {root.get('width')!r}, height {root.get('height')!r}")
    return Sketch(strokes=tuple(strokes), width=float(width), height=float(height), source=source)


# ----------------------------------------------------------------------------------------------- stroke JSON


def _json_numbers(stroke: Any, i: int, source: str) -> np.ndarray:
    """A stroke's nested lists as one finite numeric array, whatever the layout; anything else is an InputError."""
    try:
        arr = np.asarray(stroke)
    except ValueError as err:
        raise InputError(source, f"stroke {i}: lists of unequal length ({err})") from err
    if arr.size and arr.dtype.kind not in "iuf":
        raise InputError(source, f"stroke {i}: coordinates must be numbers, got {arr.dtype.kind!r} values such as {arr.flat[0]!r}")
    if any(isinstance(v, (bool, np.bool_)) for v in np.asarray(stroke, dtype=object).flat):  # numpy reads true as 1
        raise InputError(source, f"stroke {i}: coordinates must be numbers, got true or false")
    if not np.isfinite(arr).all():
        raise InputError(source, f"stroke {i}: coordinates must be finite, found {arr[~np.isfinite(arr)][0]}")
    return arr


def _json_stroke(stroke: Any, i: int, source: str) -> np.ndarray:
    """One point-list stroke [[x, y], ...] as (n, 2) floats; extra per-point values (time, pressure) are dropped."""
    arr = _json_numbers(stroke, i, source)
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise InputError(source, f"stroke {i} must be a list of [x, y] points, got nesting of shape {arr.shape} "
                         "(expected [[[x, y], ...], ...]: a list of strokes, each a list of points)")
    return arr[:, :2].astype(np.float64)


def _qd_lengths(stroke: Any) -> list[int] | None:
    """The lengths of a stroke's lists when it has the Quick, Draw! shape (2 or 3 lists), else None."""
    if isinstance(stroke, list) and len(stroke) in (2, 3) and all(isinstance(v, list) for v in stroke):
        return [len(v) for v in stroke]
    return None


def _qd_stroke(stroke: Any, i: int, source: str) -> np.ndarray:
    """One Quick, Draw! stroke [[xs], [ys]] or [[xs], [ys], [ts]] as (n, 2) floats; the times are dropped."""
    lengths = _qd_lengths(stroke)
    if lengths is not None and len(set(lengths)) > 1:
        raise InputError(source, f"stroke {i}: its x, y (and t) lists are of unequal length {lengths}; "
                         "they need one value per point each")
    arr = None if lengths is None else _json_numbers(stroke, i, source)
    if arr is None or arr.ndim != 2:
        raise InputError(source, f"stroke {i} must be Quick, Draw! lists [[x0, x1, ...], [y0, y1, ...]] "
                         "(optionally a third list of times)")
    return arr[:2].T.astype(np.float64)


def _is_quickdraw(strokes: list) -> bool:
    """Whether a bare stroke list is in the Quick, Draw! layout, by the rule read_stroke_json documents."""
    shapes = [_qd_lengths(s) for s in strokes]
    return None not in shapes and any(n < 2 or n > 3 for lengths in shapes for n in lengths)


def _json_size(obj: dict, key: str, source: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1e-3 <= value <= 1e9:
        raise InputError(source, f"{key!r} must be a number of canvas units from 0.001 to 1e9, got {value!r}")
    return float(value)


def _parse_json(data: bytes, source: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as err:
        raise InputError(source, f"malformed JSON ({err})") from err


def _json_sketch(obj: Any, source: str) -> Sketch:
    """The Sketch of parsed stroke JSON (see read_stroke_json); an object's other keys become ``meta``."""
    width = height = quickdraw = None
    meta: dict = {}
    if isinstance(obj, dict):
        keys = [k for k in ("strokes", "drawing") if k in obj]
        if len(keys) != 1:
            raise InputError(source, "a JSON object needs one of the keys 'strokes' (point lists) and 'drawing' "
                             f"(Quick, Draw!), found {sorted(obj)}")
        quickdraw = keys[0] == "drawing"
        width, height = _json_size(obj, "width", source), _json_size(obj, "height", source)
        meta = {k: v for k, v in obj.items() if k not in (keys[0], "width", "height")}
        obj = obj[keys[0]]
    if not isinstance(obj, list):
        raise InputError(source, f"strokes must be a JSON list of strokes, got {type(obj).__name__}")
    if quickdraw is None:
        quickdraw = _is_quickdraw(obj)
    limits.check("sketch_strokes", len(obj), source, "strokes")
    points = sum((len(s[0]) if s and isinstance(s[0], list) else 0) if quickdraw else len(s)
                 for s in obj if isinstance(s, list))
    limits.check("sketch_points", points, source, "points")
    read = _qd_stroke if quickdraw else _json_stroke
    strokes = [read(s, i, source) for i, s in enumerate(obj)]
    side = _ink_frame(strokes)
    return Sketch(strokes=tuple(strokes), width=width or side, height=height or side, source=source, meta=meta)


def read_stroke_json(path_or_obj: str | Path | list | dict) -> Sketch:
    """Strokes from JSON (docs/formats.md): point lists or Google Quick, Draw! coordinate lists.

    ``{"strokes": [[[x, y], ...], ...], "width": W, "height": H}`` holds point lists (a point may carry more
    values, such as a time, which are dropped); ``{"drawing": [[[x0, x1, ...], [y0, y1, ...]], ...], ...}`` is a
    Quick, Draw! drawing, each stroke its xs, ys and optionally times (dropped); its other keys (word, key_id,
    ...) go to ``Sketch.meta``. A bare list of strokes is Quick, Draw! when every stroke is 2 or 3 lists and some
    list has fewer than 2 or more than 3 entries, which no [x, y] or [x, y, t] point has; otherwise it is point
    lists. The layout is decided once per file, never per stroke, so a file whose strokes are all 2 or 3 lists of
    2 or 3 numbers (``[[[0, 0], [9, 9]]]``) stays point lists: wrap such a Quick, Draw! drawing in
    ``{"drawing": ...}``. Without a canvas size the 256 x 256 canvas of SketchX and Quick, Draw! simplified data
    is assumed, widened to the ink if it does not fit (raw Quick, Draw! data).
    """
    if isinstance(path_or_obj, (list, dict)):
        return _json_sketch(path_or_obj, "<json>")
    data, p = _read_bytes(path_or_obj, "sketch_bytes")
    return _json_sketch(_parse_json(data, str(p)), str(p))


def _ndjson_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, text) of each non-blank line, streamed: Quick, Draw! files run to hundreds of MB."""
    p = _existing(path)
    cap = limits.current().sketch_bytes
    try:
        with p.open("rb") as f:
            for n, line in enumerate(iter(lambda: f.readline(cap + 1), b""), 1):
                if len(line) > cap:
                    limits.check("sketch_bytes", len(line), f"{p}:{n}", "line length in bytes")
                if line.strip():
                    yield n, line
    except OSError as err:
        raise _unreadable(p, err) from err


def _ndjson_sketch(p: Path, n: int, line: bytes) -> Sketch:
    """Line ``n`` as a Sketch whose source names the file, the line and, for Quick, Draw!, the word and key_id."""
    where = f"{p}:{n}"
    obj = _parse_json(line, where)
    if isinstance(obj, dict):
        tags = [str(obj["word"])] if "word" in obj else []
        tags += [f"key_id {obj['key_id']}"] if "key_id" in obj else []
        where += f" ({', '.join(tags)})" if tags else ""
    return _json_sketch(obj, where)


def read_ndjson(path: str | Path, limit: int | None = None) -> Iterator[Sketch]:
    """The sketches of an ndjson file, one stroke-JSON text a line (Quick, Draw! objects), at most ``limit``.

    Blank lines are skipped. Lines are read as they are yielded, so a malformed one fails when it is reached,
    with an InputError naming the file and the line.
    """
    p = Path(path)
    for n, line in islice(_ndjson_lines(p), limit):
        yield _ndjson_sketch(p, n, line)


def _ndjson_item(p: Path, key: str) -> Sketch:
    """Drawing ``key`` (0-based, blank lines not counted) of an ndjson file, reading only as far as it."""
    found = next(islice(_ndjson_lines(p), int(key), None), None) if key.isdecimal() else None
    if found is None:
        count = sum(1 for _ in _ndjson_lines(p))
        raise InputError(p, f"pass --key N with 0 <= N < {count} to pick a drawing" if count else "holds no drawings")
    return _ndjson_sketch(p, *found)


def sketch_to_json(sketch: Sketch) -> dict:
    """The stroke-JSON object for a vector sketch, exact to float32 and short (shortest round-trip decimals)."""
    if not sketch.is_vector:
        raise InputError(sketch.source, "only a vector sketch can be written as stroke JSON; this one is a raster image")
    strokes = [[[float(np.format_float_positional(v)) for v in pt] for pt in s] for s in sketch.strokes]
    return {"width": sketch.width, "height": sketch.height, "strokes": strokes}


def write_stroke_json(sketch: Sketch, path: str | Path) -> None:
    """Write a vector sketch as stroke JSON that read_stroke_json reads back unchanged."""
    text = json.dumps(sketch_to_json(sketch), separators=(",", ":"))
    try:
        Path(path).write_text(text)
    except OSError as err:
        raise InputError(path, f"cannot write it: {err.strerror or err}") from err


# ----------------------------------------------------------------------------------------------- pickles


_NUMPY_CORES = ("numpy.core", "numpy._core")  # numpy 1 and numpy 2 names of the same module; pickles hold either
# Besides numpy.ndarray, _reconstruct and _frombuffer (protocol 5), which _NumpyUnpickler guards itself.
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "dtype"): np.dtype,
    **{(f"{core}.multiarray", "scalar"): _multiarray.scalar for core in _NUMPY_CORES},
}


class _Budget:
    """What one pickle or npz may allocate: array bytes and array count (``limits``), charged BEFORE allocation."""

    def __init__(self, source: str) -> None:
        self.source, self.bytes, self.arrays = source, 0, 0

    def charge(self, shape: Any, dtype: Any = np.float64, count: int = 1) -> None:
        try:
            dims = tuple(int(n) for n in (shape if isinstance(shape, (tuple, list)) else (shape,)))
            itemsize = np.dtype(dtype).itemsize
        except (TypeError, ValueError) as err:
            raise InputError(self.source, f"an array of unusable shape {shape!r} or type {dtype!r} ({err})") from None
        if any(n < 0 for n in dims):
            raise InputError(self.source, f"an array of negative shape {dims}")
        elements = math.prod(dims)
        self.bytes += elements * itemsize
        self.arrays += count + (elements if np.dtype(dtype).hasobject else 0)
        limits.check("array_bytes", self.bytes, self.source, "bytes of arrays announced")
        limits.check("arrays", self.arrays, self.source, "arrays and array references")


def _state_shape(state: Any) -> tuple[Any, Any, Any]:
    """(shape, dtype, data) of an ndarray ``__setstate__`` tuple (numpy writes 5 items, old pickles 4)."""
    if isinstance(state, tuple) and len(state) in (4, 5):
        shape, dtype, _fortran, data = state[-4:]
        return shape, dtype, data
    raise TypeError(f"not an ndarray state ({type(state).__name__})")


def _guarded_classes(budget: _Budget) -> tuple[type, type]:
    """Stand-ins for ``numpy.ndarray`` inside one unpickling, so no pickle allocates before ``budget`` is charged.

    ``Called`` takes the place of ``numpy.ndarray`` itself (a pickle may call it with any shape: uninitialised
    gigabytes from a few bytes); ``Built`` is what ``_reconstruct`` makes, whose ``__setstate__`` (where numpy
    pickles put the real shape) is charged first. ``Built`` arrays are turned back into plain ones afterwards.
    """

    class Called(np.ndarray):
        def __new__(cls, shape: Any, dtype: Any = float, *args: Any, **kw: Any) -> np.ndarray:
            budget.charge(shape, dtype)
            return np.ndarray.__new__(np.ndarray, shape, dtype, *args, **kw)

    class Built(np.ndarray):
        def __setstate__(self, state: Any) -> None:
            shape, dtype, data = _state_shape(state)
            budget.charge(shape, dtype)
            if isinstance(data, list):
                budget.charge((), dtype, len(data))
            super().__setstate__(state)

    return Called, Built


def _plain(obj: Any, built: type) -> Any:
    """The unpickled object with every guarded array (also inside object arrays) as a plain ndarray."""
    if isinstance(obj, np.ndarray):
        out = obj.view(np.ndarray) if isinstance(obj, built) else obj
        if out.dtype.hasobject:
            flat = out.reshape(-1)
            for i in range(flat.size):
                flat[i] = _plain(flat[i], built)
        return out
    if isinstance(obj, dict):
        return {k: _plain(v, built) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v, built) for v in obj)
    return obj


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays, dtypes and scalars and refuses every other global; arrays are charged
    to a ``_Budget`` before they are allocated."""

    def __init__(self, file: io.BytesIO, source: str, budget: _Budget) -> None:
        super().__init__(file, encoding="latin1")  # latin1: Python 2 pickles (sketch-rnn) hold array bytes as str
        self.source, self.budget = source, budget
        self.called, self.built = _guarded_classes(budget)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return self._latin1_encode
        if (module, name) == ("numpy", "ndarray"):
            return self.called
        if name == "_reconstruct" and module in (f"{c}.multiarray" for c in _NUMPY_CORES):
            return self._reconstruct
        if name == "_frombuffer" and module in (f"{c}.numeric" for c in _NUMPY_CORES):
            return self._frombuffer
        try:
            return _SAFE_GLOBALS[module, name]
        except KeyError:
            raise InputError(self.source, f"pickle holds {module}.{name}, which is not a numpy array; refusing to load it") from None

    def _reconstruct(self, cls: Any, shape: Any, dtype: Any) -> np.ndarray:
        if cls not in (self.called, np.ndarray):
            raise InputError(self.source, f"pickle rebuilds a {getattr(cls, '__name__', cls)!r}, not a numpy array")
        self.budget.charge(shape, dtype)
        return _multiarray._reconstruct(self.built, shape, dtype)

    def _frombuffer(self, buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
        self.budget.charge(shape, dtype)
        return _numeric._frombuffer(buf, dtype, shape, order)

    def _latin1_encode(self, text: str, encoding: str = "latin1") -> bytes:
        """Stand-in for _codecs.encode, which pickles of protocol < 3 use for bytes; only that harmless use is allowed."""
        if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
            problem = f"pickle holds _codecs.encode to {encoding!r}, which is not numpy array data; refusing to load it"
            raise InputError(self.source, problem)
        return text.encode("latin1")


def _unpickle(data: bytes, source: str, budget: _Budget | None = None) -> object:
    unpickler = _NumpyUnpickler(io.BytesIO(data), source, budget or _Budget(source))
    try:
        return _plain(unpickler.load(), unpickler.built)
    except InputError:
        raise
    except Exception as err:  # a malformed pickle can fail in any of numpy's or pickle's own checks
        raise InputError(source, f"the pickle is truncated or corrupt ({type(err).__name__}: {err})") from err


def safe_load_pickle(path_or_bytes: str | Path | bytes) -> object:
    """Load a pickle that may only hold numpy arrays (and the lists/dicts around them); anything else is refused."""
    if isinstance(path_or_bytes, bytes):
        return _unpickle(path_or_bytes, "<pickle bytes>")
    data, p = _read_bytes(path_or_bytes)
    return _unpickle(data, str(p))


def read_sketchx_pickle(path: str | Path) -> dict[str, Sketch]:
    """SketchX stroke pickle (QMUL-ShoeV2/ChairV2): '/split/<photo_id>_<k>' -> (N, 3) absolute x, y, stroke-end."""
    obj = safe_load_pickle(path)
    if not isinstance(obj, dict):
        raise InputError(path, f"expected a dict of sketch name -> (N, 3) array, got {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise InputError(path, f"expected a dict of str -> numpy array, found {type(key).__name__} -> {type(value).__name__}")
        out[key] = Sketch.from_points(value, SKETCHX_SIZE, SKETCHX_SIZE, source=f"{path}[{key}]")
    return out


# ----------------------------------------------------------------------------------------------- sketch-rnn npz


def read_npz_array(zf: zipfile.ZipFile, member: str, source: str) -> np.ndarray:
    """One .npy from an open npz without np.load's pickle: the header's shape is charged to the ``limits`` before
    anything is read, and object arrays go through the numpy-only unpickler."""
    budget = _Budget(source)
    try:
        with zf.open(member) as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise InputError(source, f"unsupported .npy format version {version}")
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            try:
                shape, _, dtype = read_header(f)
            except Exception as err:  # numpy parses the header with ast/tokenize: any of their errors
                raise InputError(source, f"the .npy header is malformed ({type(err).__name__}: {err})") from None
            budget.charge(shape, dtype)
            if dtype.hasobject:
                limits.check("file_bytes", zf.getinfo(member).file_size, source, "pickled array size in bytes")
                arr = _unpickle(f.read(), source, budget)
                if not isinstance(arr, np.ndarray) or arr.shape != shape:
                    raise InputError(source, f"the pickled payload is not the {shape} array its header announces")
                return arr
        with zf.open(member) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except (zlib.error, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise InputError(source, f"the archive member is corrupt ({type(err).__name__}: {err})") from None


def _stroke3_arrays(path: str | Path, split: str) -> tuple[list[np.ndarray], str]:
    """The stroke-3 arrays of one split of a sketch-rnn .npz (not yet checked or converted), and their source."""
    p = _existing(path)
    try:
        with zipfile.ZipFile(p) as zf:
            members = {Path(n).stem: n for n in zf.namelist() if n.endswith(".npy")}
            if split not in members:
                raise InputError(p, f"has no split {split!r}; it holds {sorted(members)}")
            source = f"{p}[{split}]"
            arr = read_npz_array(zf, members[split], source)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
        raise InputError(p, f"not a readable .npz archive ({err})") from err
    if arr.dtype == object:
        return list(arr.reshape(-1)), source
    if arr.ndim not in (2, 3):
        raise InputError(source, f"expected stroke-3 arrays: an object array of (N, 3) arrays, one (N, 3) array or "
                                 f"an (M, N, 3) stack, got {arr.dtype} {arr.shape}")
    return [arr] if arr.ndim == 2 else list(arr), source


def read_stroke3_npz(path: str | Path, split: str = "train") -> list[Sketch]:
    """sketch-rnn .npz (keys train/valid/test of stroke-3 arrays), each sketch fitted into a 256 square."""
    items, source = _stroke3_arrays(path, split)
    return [Sketch.from_stroke3(a, source=f"{source}[{i}]") for i, a in enumerate(items)]


def read_sketch_item(path: str | Path, key: str | None = None, split: str = "test") -> Sketch:
    """One sketch from any file: a single-sketch file, or ``key`` of an ndjson, SketchX pickle or sketch-rnn ``.npz``.

    For an ``.ndjson`` ``key`` is the drawing's 0-based index (default the first), for an ``.npz`` an index into
    ``split``. Without ``key`` a pickle or ``.npz`` is an error that lists a few valid keys, so the CLI can say
    what to pass.
    """
    p = _existing(path)
    if p.suffix.lower() == ".ndjson":
        return _ndjson_item(p, key or "0")
    if p.suffix.lower() in SKETCH_SUFFIXES:
        return read_sketch(p)
    if p.suffix.lower() == ".npz":
        items, source = _stroke3_arrays(p, split)
        if key is None or not key.isdecimal() or int(key) >= len(items):
            raise InputError(p, f"pass --key N with 0 <= N < {len(items)} to pick a sketch of split {split!r}")
        return Sketch.from_stroke3(items[int(key)], source=f"{source}[{key}]")
    sketches = read_sketchx_pickle(p)
    if key not in sketches:
        raise InputError(p, f"pass --key with a sketch name of this pickle, e.g. {', '.join(list(sketches)[:3])}")
    return sketches[key]


# ----------------------------------------------------------------------------------------------- pairs


@dataclass(frozen=True)
class Pair:
    """A sketch and the photo it depicts; ``key`` identifies the photo (its resolved path), shared by all its sketches."""

    sketch: Path
    photo: Path
    split: str
    key: str
    category: str = ""


def _pair(sketch: Path, photo: Path, split: str, category: str) -> Pair:
    try:
        sketch, photo = sketch.resolve(), photo.resolve()
    except (OSError, ValueError) as err:
        raise InputError(repr(f"{sketch}, {photo}"), f"not a usable path ({err})") from None
    return Pair(sketch=sketch, photo=photo, split=split, key=str(photo), category=category)


def _check_exist(pairs: list[Pair], source: str | Path) -> None:
    missing = [str(p) for pair in pairs for p in (pair.sketch, pair.photo) if _kind(p) != "file"]
    if missing:
        raise InputError(source, f"{len(missing)} referenced file(s) do not exist, e.g. {', '.join(missing[:3])}")


def _select(rows: list[dict[str, str]], column: str, value: str | None, source: Path) -> list[dict[str, str]]:
    """Rows whose ``column`` equals ``value`` (all rows when None); an empty selection is an error, not a silent []."""
    if value is None:
        return rows
    chosen = [r for r in rows if r[column] == value]
    if not chosen:
        raise InputError(source, f"no rows with {column}={value!r}; it has {sorted({r[column] for r in rows})}")
    return chosen


def read_pairs_csv(path: str | Path, split: str | None = None, object: str | None = None) -> list[Pair]:
    """The pairs.csv of a data set: columns split, sketch, photo (paths relative to the csv) and optionally
    object or category; ``object`` filters on that column. Every referenced file must exist."""
    data, p = _read_bytes(path)
    try:
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
        header = [h.strip() for h in reader.fieldnames or []]
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(p, f"not a readable CSV ({err})") from err
    missing = [c for c in ("split", "sketch", "photo") if c not in header]
    if missing:
        raise InputError(p, f"missing column(s) {', '.join(missing)}; found {', '.join(header) or 'no header'}")
    cat_col = next((c for c in ("category", "object") if c in header), None)
    for row in rows:
        row["category"] = row.get(cat_col, "") if cat_col else ""
    if object is not None and cat_col is None:
        raise InputError(p, "has no object or category column to select from")
    rows = _select(_select(rows, "split", split, p), "category", object, p)
    empty = next((r for r in rows if not r["sketch"] or not r["photo"]), None)
    if empty is not None:
        raise InputError(p, f"a row ({empty}) has an empty sketch or photo path")
    base = p.parent
    pairs = [_pair(base / r["sketch"], base / r["photo"], r["split"], r["category"]) for r in rows]
    _check_exist(pairs, p)
    return pairs


def _id_order(name: str) -> tuple[int, int | str]:
    """Numeric ids in numeric order (2 before 10), other names after them alphabetically."""
    return (0, int(name)) if name.isdigit() else (1, name)


def read_qmul_v1(root: str | Path, object: str, split: str) -> list[Pair]:
    """The raw QMUL-V1 layout: <root>/<object>/<split>/images/<id>.jpg paired by id with sketches/<id>.png."""
    folder = _existing_dir(Path(root) / object / split, f"expected <root>/{object}/{split} with images/ and sketches/")
    photos = _files_by_stem(_existing_dir(folder / "images", "photos"), RASTER_SUFFIXES)
    sketches = _files_by_stem(_existing_dir(folder / "sketches", "sketches"), RASTER_SUFFIXES)
    unpaired = sorted(photos.keys() ^ sketches.keys(), key=_id_order)
    if unpaired:
        raise InputError(folder, f"{len(unpaired)} id(s) have a photo or a sketch but not both, e.g. {', '.join(unpaired[:5])}")
    if not photos:
        raise InputError(folder, "holds no photo/sketch pairs")
    return [_pair(sketches[i], photos[i], split, object) for i in sorted(photos, key=_id_order)]


def _coordinate_pickle(root: Path) -> Path:
    """The one '*_Coordinate' stroke pickle in the root of a SketchX release."""
    found = sorted(p for p in root.iterdir() if p.name.endswith("_Coordinate") and p.is_file())
    if len(found) != 1:
        what = "no *_Coordinate stroke pickle" if not found else f"several stroke pickles ({', '.join(p.name for p in found)})"
        raise InputError(root, f"{what}; pass pickle= to name it")
    return found[0]


def read_sketchx_v2(root: str | Path, split: str, pickle: str | Path | None = None) -> tuple[list[tuple[str, Sketch]], dict[str, Path]]:
    """The official QMUL-ShoeV2/ChairV2 layout: <root>/photo/<id>.png plus the stroke pickle.

    Returns the split's (photo id, sketch) list and the photos of that split (id -> path); every one must exist.
    """
    root = _existing_dir(root, "a SketchX V2 release with photo/ and a *_Coordinate pickle")
    sketches = read_sketchx_pickle(pickle if pickle is not None else _coordinate_pickle(root))
    prefix = f"/{split}/"
    chosen = [(key[len(prefix):].rsplit("_", 1)[0], s) for key, s in sketches.items() if key.startswith(prefix)]
    if not chosen:
        splits = sorted({k.split("/")[1] for k in sketches if k.count("/") >= 2})
        raise InputError(root, f"the stroke pickle has no sketches in split {split!r}; it has {splits}")
    photo_dir = next((root / d for d in ("photo", "photos") if (root / d).is_dir()), None)
    if photo_dir is None:
        raise InputError(root, "no photo/ folder")
    available = _files_by_stem(photo_dir, RASTER_SUFFIXES)
    wanted = dict.fromkeys(pid for pid, _ in chosen)
    missing = [pid for pid in wanted if pid not in available]
    if missing:
        raise InputError(photo_dir, f"{len(missing)} photo(s) of split {split!r} are missing, e.g. {', '.join(missing[:3])}")
    return chosen, {pid: available[pid] for pid in wanted}
