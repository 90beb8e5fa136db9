"""The most one input may cost: every reader checks these BEFORE the expensive work, in one place.

A web page or a folder of strangers' files must not be able to take gigabytes or minutes with a few bytes (a
140-byte 30000x2 PNG, an 86-byte pickle announcing a 3.8 GB array, an SVG whose ``<use>`` elements fan out a
million times). Each limit is generous for real sketches and photos (a Quick, Draw! sketch has a few hundred
points, a SketchX one a few thousand, a catalogue photo a few megapixels) and can be raised by a user who means
it: ``SKETCHDOWN_LIMIT_<NAME>=N`` in the environment, ``limits.override(name=N)`` around a block, or
``limits.configure(name=N)`` for the process. Going over one is a ``LimitError`` (an ``InputError``: the CLI's
one-line error, exit 2) that names the file, the figure and the limit. Torch-free: the data layer uses it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

ENV_PREFIX = "SKETCHDOWN_LIMIT_"


@dataclass(frozen=True)
class Limits:
    """One value per limit; the metadata says what it bounds (docs/limits.md is generated from it)."""

    file_bytes: int = field(default=64 << 20, metadata={"help": "bytes of one file read whole: a pickle, a "
                                                                "pickled npz member, a pairs.csv, a manifest"})
    sketch_bytes: int = field(default=16 << 20, metadata={"help": "bytes of one vector sketch file (SVG, stroke "
                                                                  "JSON) or ndjson line, before it is parsed"})
    image_pixels: int = field(default=50_000_000, metadata={"help": "pixels (width x height) of one decoded photo "
                                                                    "or raster sketch"})
    image_aspect: float = field(default=20.0, metadata={"help": "longer side over shorter side of an image"})
    sketch_points: int = field(default=250_000, metadata={"help": "points of one vector sketch, after curves are "
                                                                  "flattened"})
    sketch_strokes: int = field(default=20_000, metadata={"help": "strokes of one vector sketch"})
    svg_elements: int = field(default=100_000, metadata={"help": "elements of one SVG, counting every "
                                                                 "`<use>` expansion"})
    svg_depth: int = field(default=100, metadata={"help": "element nesting depth of an SVG"})
    array_bytes: int = field(default=1 << 30, metadata={"help": "bytes of all arrays of one pickle, npz or "
                                                                "index, or of one weights file (as announced, "
                                                                "before allocation)"})
    arrays: int = field(default=200_000, metadata={"help": "arrays (references included) in one pickle or npz"})
    canvas: int = field(default=1024, metadata={"help": "largest sketch canvas or photo side rendered"})
    batch_size: int = field(default=4096, metadata={"help": "largest batch of one command"})

    def describe(self) -> list[tuple[str, str, object]]:
        """(environment variable, what it bounds, value) per limit."""
        return [(ENV_PREFIX + f.name.upper(), f.metadata["help"], getattr(self, f.name))
                for f in dataclasses.fields(self)]


def _from_environment() -> Limits:
    values = {}
    for f in dataclasses.fields(Limits):
        raw = os.environ.get(ENV_PREFIX + f.name.upper())
        if raw is None:
            continue
        try:
            value = float(raw) if f.type in (float, "float") else int(raw)
        except ValueError:
            raise InputError(ENV_PREFIX + f.name.upper(), f"must be a number, got {raw!r}") from None
        if not value > 0:
            raise InputError(ENV_PREFIX + f.name.upper(), f"must be positive, got {raw!r}")
        values[f.name] = value
    return Limits(**values)


_current: Limits | None = None


def current() -> Limits:
    """The limits in force: ``configure``/``override`` values, else the environment's, else the defaults."""
    global _current
    if _current is None:
        _current = _from_environment()
    return _current


def configure(**values: float) -> Limits:
    """Change limits for the rest of the process (e.g. a server that accepts larger photos)."""
    global _current
    _current = dataclasses.replace(current(), **values)
    return _current


@contextmanager
def override(**values: float) -> Iterator[Limits]:
    """Change limits inside a ``with`` block only."""
    global _current
    before = current()
    _current = dataclasses.replace(before, **values)
    try:
        yield _current
    finally:
        _current = before


class LimitError(InputError):
    """An input over one of the limits: names the source, the figure, the limit and how to raise it."""


def check(name: str, value: float, source: str | Path | None, what: str) -> None:
    """Raise ``LimitError`` when ``value`` (``what`` of ``source``) is over limit ``name``."""
    limit = getattr(current(), name)
    if value > limit:
        raise LimitError(source, f"{what} {value:,} is over the limit of {limit:,} ({name}; raise it with "
                                 f"{ENV_PREFIX}{name.upper()}=N if you mean it)")


def check_file(path: Path, limit: str = "file_bytes") -> int:
    """The size of a file about to be read whole, checked against ``limit``."""
    try:
        size = path.stat().st_size
    except OSError as err:
        raise InputError(path, f"cannot read it: {err.strerror or err}") from err
    check(limit, size, path, "file size in bytes")
    return size


def check_image(width: int, height: int, source: str | Path | None) -> None:
    """An image's pixel count and aspect ratio, from its header, before it is decoded."""
    if width < 1 or height < 1:
        raise InputError(source, f"the image has no pixels ({width} x {height})")
    check("image_pixels", width * height, source, f"image of {width} x {height}: pixels")
    check("image_aspect", round(max(width, height) / min(width, height), 2), source,
          f"image of {width} x {height}: aspect ratio")


def check_canvas(canvas: int, source: str | Path | None = None, what: str = "canvas") -> int:
    """A canvas (or photo side) in pixels: a positive int at most ``canvas``."""
    if isinstance(canvas, bool) or not isinstance(canvas, int) or canvas < 1:
        raise InputError(source, f"{what} must be a positive whole number of pixels, got {canvas!r}")
    check("canvas", canvas, source, what)
    return canvas
