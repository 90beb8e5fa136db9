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
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any
from xml.parsers import expat

import numpy as np
import svgelements
from PIL import Image, ImageOps

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


def _existing(path: str | Path) -> Path:
    """The path as a Path, or an InputError saying why it cannot be read as a file."""
    p = Path(path)
    if p.is_dir():
        raise InputError(p, "is a folder, not a file")
    if not p.is_file():
        raise InputError(p, "no such file")
    return p


def _unreadable(p: Path, err: OSError) -> InputError:
    """The InputError for a file that exists but cannot be read, instead of an OSError traceback."""
    return InputError(p, f"cannot read it: {err.strerror or err}")


def _read_bytes(path: str | Path) -> tuple[bytes, Path]:
    """A file's bytes and its Path."""
    p = _existing(path)
    try:
        return p.read_bytes(), p
    except OSError as err:
        raise _unreadable(p, err) from err


def _existing_dir(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise InputError(p, f"no such folder ({what})")
    return p


def _ink_frame(strokes: Iterable[np.ndarray]) -> float:
    """Canvas side for strokes given without one: SketchX's 256 when the ink fits in it, else the ink's extent."""
    pts = [s for s in strokes if len(s)]
    top = float(np.max(np.concatenate(pts))) if pts else 0.0
    return SKETCHX_SIZE if top <= SKETCHX_SIZE else float(math.ceil(top))


def _files_by_stem(folder: Path, suffixes: frozenset[str]) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes and p.is_file()}


# ----------------------------------------------------------------------------------------------- images


def _open_image(path: str | Path) -> Image.Image:
    """Decode an image fully (so truncation shows here), upright per EXIF, transparency composited on white."""
    p = _existing(path)
    try:
        with Image.open(p) as img:
            img.load()
            return on_white(ImageOps.exif_transpose(img))
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise InputError(p, f"cannot decode the image ({err})") from err


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


def _check_xml(data: bytes, source: str) -> dict[str, str]:
    """Parse once with expat to reject malformed XML and entity declarations (entity-expansion bombs).

    Returns the root element's attributes, which say whether the file defines its own canvas.
    """
    roots: list[dict[str, str]] = []

    def on_start(_name: str, attrs: dict[str, str]) -> None:
        if not roots:
            roots.append(attrs)

    def on_entity(*_: Any) -> None:
        raise InputError(source, "the SVG declares XML entities; refusing to expand them")

    parser = expat.ParserCreate()
    parser.StartElementHandler = on_start
    parser.EntityDeclHandler = on_entity
    try:
        parser.Parse(data, True)
    except expat.ExpatError as err:
        raise InputError(source, f"malformed XML ({err})") from err
    return roots[0]


def _is_ink(element: svgelements.Shape) -> bool:
    """Whether a shape draws visible ink: a white background rectangle or a hidden shape is not a stroke."""
    if element.values.get("visibility") == "hidden":
        return False

    def dark(c: svgelements.Color | None) -> bool:
        return c is not None and c.value is not None and c.alpha > 0 and min(c.red, c.green, c.blue) < 250

    return dark(element.stroke) or dark(element.fill)


def _flatten(path: svgelements.Path, step: float) -> list[np.ndarray]:
    """Polylines of a path: lines keep their end points, curves and arcs get a point about every ``step``."""
    strokes: list[list[np.ndarray]] = []
    for seg in path:
        if isinstance(seg, svgelements.Move):
            strokes.append([np.array([[seg.end.x, seg.end.y]])])
        elif not strokes:
            raise ValueError("path data must begin with a move (M or m)")
        elif isinstance(seg, (svgelements.Line, svgelements.Close)):
            strokes[-1].append(np.array([[seg.end.x, seg.end.y]]))
        else:
            coarse = np.asarray(seg.npoint(np.linspace(0.0, 1.0, 9)))
            length = float(np.linalg.norm(np.diff(coarse, axis=0), axis=1).sum())
            n = int(min(max(math.ceil(length / step), 4), 256))
            strokes[-1].append(np.asarray(seg.npoint(np.linspace(0.0, 1.0, n + 1)))[1:])
    return [np.concatenate(s) for s in strokes]


def read_svg(path_or_text: str | Path | bytes) -> Sketch:
    """Strokes from an SVG: every visible shape's outline, with transforms applied and viewBox mapped to the canvas.

    Bytes, or a str that starts with '<', are SVG text; any other str or Path is a file name.
    """
    if isinstance(path_or_text, str) and path_or_text.lstrip().startswith("<"):
        path_or_text = path_or_text.encode()
    if isinstance(path_or_text, bytes):
        data, source = path_or_text, "<svg text>"
    else:
        data, p = _read_bytes(path_or_text)
        source = str(p)
    root = _check_xml(data, source)
    try:
        svg = svgelements.SVG.parse(io.BytesIO(data))
        own_frame = "viewBox" in root or ("width" in root and "height" in root)
        width, height = (svg.width, svg.height) if own_frame else (None, None)
        step = max(width or SKETCHX_SIZE, height or SKETCHX_SIZE) / SKETCHX_SIZE
        shapes = [e for e in svg.elements() if isinstance(e, svgelements.Shape) and _is_ink(e)]
        strokes = [s for e in shapes for s in _flatten(svgelements.Path(e), step)]
    except (ValueError, TypeError, AttributeError, IndexError, ZeroDivisionError) as err:
        raise InputError(source, f"cannot interpret the SVG ({type(err).__name__}: {err})") from err
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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InputError(source, f"{key!r} must be a positive number, got {value!r}")
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
    data, p = _read_bytes(path_or_obj)
    return _json_sketch(_parse_json(data, str(p)), str(p))


def _ndjson_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, text) of each non-blank line, streamed: Quick, Draw! files run to hundreds of MB."""
    p = _existing(path)
    try:
        with p.open("rb") as f:
            yield from ((n, line) for n, line in enumerate(f, 1) if line.strip())
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
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(f"{core}.multiarray", name): getattr(_multiarray, name) for core in _NUMPY_CORES for name in ("_reconstruct", "scalar")},
    **{(f"{core}.numeric", "_frombuffer"): _numeric._frombuffer for core in _NUMPY_CORES},  # protocol 5
}


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays, dtypes and scalars and refuses every other global."""

    def __init__(self, file: io.BytesIO, source: str) -> None:
        super().__init__(file, encoding="latin1")  # latin1: Python 2 pickles (sketch-rnn) hold array bytes as str
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return self._latin1_encode
        try:
            return _SAFE_GLOBALS[module, name]
        except KeyError:
            raise InputError(self.source, f"pickle holds {module}.{name}, which is not a numpy array; refusing to load it") from None

    def _latin1_encode(self, text: str, encoding: str = "latin1") -> bytes:
        """Stand-in for _codecs.encode, which pickles of protocol < 3 use for bytes; only that harmless use is allowed."""
        if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
            problem = f"pickle holds _codecs.encode to {encoding!r}, which is not numpy array data; refusing to load it"
            raise InputError(self.source, problem)
        return text.encode("latin1")


def _unpickle(data: bytes, source: str) -> object:
    try:
        return _NumpyUnpickler(io.BytesIO(data), source).load()
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


def _read_npz_member(zf: zipfile.ZipFile, member: str, source: str) -> np.ndarray:
    """One .npy from an open npz without np.load's pickle: object arrays go through the numpy-only unpickler."""
    with zf.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise InputError(source, f"unsupported .npy format version {version}")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        if dtype.hasobject:
            arr = _unpickle(f.read(), source)
            if not isinstance(arr, np.ndarray) or arr.shape != shape:
                raise InputError(source, f"the pickled payload is not the {shape} array its header announces")
            return arr
    with zf.open(member) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def read_stroke3_npz(path: str | Path, split: str = "train") -> list[Sketch]:
    """sketch-rnn .npz (keys train/valid/test of stroke-3 arrays), each sketch fitted into a 256 square."""
    p = _existing(path)
    try:
        with zipfile.ZipFile(p) as zf:
            members = {Path(n).stem: n for n in zf.namelist() if n.endswith(".npy")}
            if split not in members:
                raise InputError(p, f"has no split {split!r}; it holds {sorted(members)}")
            source = f"{p}[{split}]"
            arr = _read_npz_member(zf, members[split], source)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
        raise InputError(p, f"not a readable .npz archive ({err})") from err
    items = [arr] if arr.dtype != object and arr.ndim == 2 else list(arr)
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
        sketches = read_stroke3_npz(p, split)
        if key is None or not key.isdigit() or int(key) >= len(sketches):
            raise InputError(p, f"pass --key N with 0 <= N < {len(sketches)} to pick a sketch of split {split!r}")
        return sketches[int(key)]
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
    photo = photo.resolve()
    return Pair(sketch=sketch.resolve(), photo=photo, split=split, key=str(photo), category=category)


def _check_exist(pairs: list[Pair], source: str | Path) -> None:
    missing = [str(p) for pair in pairs for p in (pair.sketch, pair.photo) if not p.is_file()]
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
