"""The hostile-input harness: every reader and loader the product exposes, fed mutated and handcrafted files.

Each case must end in a result or the project's error (``SketchdownError``), within ``SECONDS`` and with the
process's address space capped at ``MEMORY`` above where it started, and must not run code (an audit hook counts
process spawns; hostile pickles try ``os.system`` and ``eval``). ``tests/test_fuzz.py`` runs a few dozen cases
per target in CI; ``benchmarks/fuzz.py`` runs thousands and commits the summary. Needs ``hypothesis`` (the test
extra): its strategies generate the cases, and shrink nothing (a case is recorded, never raised).
"""

from __future__ import annotations

import io
import json
import pickle
import resource
import signal
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from PIL import Image

from .data import io as sio
from .data.render import to_canvas
from .errors import SketchdownError

SECONDS = 10.0
MEMORY = 2 << 30  # bytes of address space a case may add
SPAWNS = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen", "os.fork")
_spawned: list[str] = []
_hooked = False


def _audit(event: str, args: tuple) -> None:
    if event.startswith(SPAWNS):
        _spawned.append(event)


class CaseTimeout(BaseException):
    """Raised by the alarm inside a case that ran past SECONDS (a BaseException: no reader may swallow it)."""


# ----------------------------------------------------------------------------------------------- seeds


def _png(folder: Path) -> bytes:
    img = np.full((48, 40), 255, np.uint8)
    img[10:38, 20] = 0
    img[24, 5:35] = 60
    Image.fromarray(img).save(folder / "seed.png")
    return (folder / "seed.png").read_bytes()


def _jpeg(folder: Path) -> bytes:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), np.uint8)).save(folder / "seed.jpg")
    return (folder / "seed.jpg").read_bytes()


SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="256" '
       b'height="256" viewBox="0 0 256 256"><defs><path id="p" d="M10 10 C 40 80 90 20 120 120"/></defs>'
       b'<g transform="rotate(10 128 128)"><path d="M20 200 L 200 200 Q 220 100 30 40 Z" stroke="black" '
       b'fill="none"/><use xlink:href="#p" stroke="black"/><circle cx="128" cy="128" r="40" stroke="#222"/>'
       b'<polyline points="1,2 30,40 50,10" stroke="black"/></g></svg>')
SVG_FRAGMENTS = [b'<use href="#p"/>', b"<g>" * 40, b"</g>" * 40, b'<!DOCTYPE svg SYSTEM "http://x/y.dtd">',
                 b"&ext;", b' d="M 0 0 L nan 1"', b' width="1e999"', b"<![CDATA[x]]>", b'<a:b c="d"/>',
                 b' transform="scale(1e300)"', b' points="1e308,1e308 -1e308,0"', b'<g id="p"><use href="#p"/></g>',
                 b'<!ENTITY a "aaaa">', b"C 1 2 3 4 5 6 " * 50, b' viewBox="0 0 0 0"', b"\x00", b"\xff\xfe"]
STROKES = {"width": 256, "height": 256, "strokes": [[[10, 10], [50, 80], [90, 40]], [[5, 200, 0.5], [250, 3, 1]]]}
QUICKDRAW = {"word": "cat", "key_id": "1", "drawing": [[[0, 40, 80], [10, 90, 20]], [[5, 5], [200, 220], [0, 9]]]}


def _pickle_seed() -> bytes:
    points = np.array([[10, 10, 0], [50, 80, 0], [90, 40, 1], [5, 5, 0], [200, 9, 1]], np.float64)
    return pickle.dumps({"/test/a_1": points, "/train/b_2": points[:3].astype(np.int32)}, protocol=2)


class _Spawn:
    """A pickle payload that would run a shell command: must be refused, never called."""

    def __reduce__(self) -> tuple:
        import os

        return os.system, ("touch /tmp/sketchdown-fuzz-canary",)


class _Eval:
    def __reduce__(self) -> tuple:
        return eval, ("__import__('os').system('touch /tmp/sketchdown-fuzz-canary')",)


HOSTILE_PICKLES = [pickle.dumps({"a": _Spawn()}), pickle.dumps([_Eval()], protocol=0), pickle.dumps(_Spawn(), 5)]


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _stroke3() -> np.ndarray:
    arr = np.empty(3, dtype=object)
    arr[:] = [np.array([[5, 0, 0], [0, 5, 1], [-5, 0, 1]], np.int16)] * 2 + [np.array([[1, 1, 1]], np.int16)]
    return arr


def _index_seed(folder: Path) -> bytes:
    from .retrieval.index import Index

    photos = folder / "photos"
    photos.mkdir(exist_ok=True)
    for i in range(3):
        Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(photos / f"{i}.png")
    model = {"identity": "f" * 64, "source": None, "backbone": "fuzz", "dim": 4, "photo_size": 8, "canvas": 8,
             "raster_method": "area", "selector": None}
    Index(photos, [f"{i}.png" for i in range(3)], np.eye(3, 4, dtype=np.float32), np.ones((3, 2)), model,
          "hnsw").save(folder / "seed.idx")
    return (folder / "seed.idx").read_bytes()


# ----------------------------------------------------------------------------------------------- mutation

INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"NaN", b"Infinity", b"-1", b"1e999", b"99999999999", b"[",
               b"{", b'"', b"\\", b"\n", b"<", b">", b"&", b"%", b"\x00" * 8, b"\xff" * 8]


@st.composite
def mutated(draw: Callable, seed: bytes, extra: list[bytes] = ()) -> bytes:
    """``seed`` with a few byte-level edits: flips, deletions, insertions (random or interesting), truncation,
    duplication."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "duplicate", "token"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 32))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "truncate":
            del data[at:]
        elif op == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 256))] * draw(st.integers(1, 8))
        else:
            data[at:at] = draw(st.sampled_from(INTERESTING + list(extra)))
    return bytes(data)


NUMBERS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, -0.0, 1e308, -1e308, 5e-324, 2**63, 10**400]))
SANE = st.one_of(st.integers(-20, 300), st.floats(-20, 300))
JSON = st.recursive(st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=8)),
                    lambda kids: st.one_of(st.lists(kids, max_size=6), st.dictionaries(
                        st.sampled_from(["strokes", "drawing", "width", "height", "word", "x"]), kids, max_size=4)),
                    max_leaves=40)


@st.composite
def stroke_json(draw: Callable) -> bytes:
    """Stroke JSON: random JSON, the seeds with edited values, or numbers in every layout."""
    kind = draw(st.sampled_from(["random", "points", "quickdraw", "bytes"]))
    if kind == "random":
        return json.dumps(draw(JSON)).encode()
    if kind == "bytes":
        return draw(mutated(json.dumps(draw(st.sampled_from([STROKES, QUICKDRAW]))).encode()))
    numbers = NUMBERS if draw(st.booleans()) else SANE  # half the cases hostile, half ordinary drawings
    stroke = st.lists(st.lists(numbers, min_size=2, max_size=3), min_size=1, max_size=8)
    if kind == "points":
        obj = {"strokes": draw(st.lists(stroke, min_size=1, max_size=5))}
    else:
        length = draw(st.integers(0, 6))
        obj = {"drawing": draw(st.lists(st.lists(st.lists(numbers, min_size=length, max_size=length + 1),
                                                 min_size=2, max_size=3), min_size=1, max_size=5))}
    for key in ("width", "height"):
        if draw(st.booleans()):
            obj[key] = draw(numbers)
    return json.dumps(obj).encode()


COORD = st.one_of(st.integers(-300, 300).map(str), st.sampled_from(["nan", "inf", "1e999", "-1e308", "1e-320", "",
                                                                     "1e5", "0.5.5", "--1"]))


@st.composite
def svg_document(draw: Callable) -> bytes:
    """An SVG built from random shapes, groups, ``<use>`` references and transforms, with hostile numbers."""
    def coords(n: int) -> str:
        return " ".join(draw(COORD) for _ in range(n))

    def shape(depth: int) -> str:
        kind = draw(st.sampled_from(["path", "line", "polyline", "circle", "rect", "g", "use", "ellipse"]))
        ident = f' id="e{draw(st.integers(0, 5))}"' if draw(st.booleans()) else ""
        paint = draw(st.sampled_from([' stroke="black"', ' fill="#000"', ' stroke="white"', "", ' stroke="none"']))
        transform = draw(st.sampled_from(["", f' transform="scale({draw(COORD)})"',
                                          f' transform="rotate({draw(COORD)})"', ' transform="matrix(1 0 0 1 0"']))
        if kind == "g" and depth < 4:
            inner = "".join(shape(depth + 1) for _ in range(draw(st.integers(0, 3))))
            return f"<g{ident}{transform}>{inner}</g>"
        if kind == "use":
            return f'<use href="#e{draw(st.integers(0, 5))}"{transform}/>'
        if kind == "path":
            cmds = "".join(f" {draw(st.sampled_from('MLCQAZHVmlcqazhvST'))} {coords(draw(st.integers(0, 7)))}"
                           for _ in range(draw(st.integers(1, 6))))
            return f'<path{ident} d="{cmds}"{paint}{transform}/>'
        if kind == "polyline":
            return f'<polyline{ident} points="{coords(draw(st.integers(0, 9)))}"{paint}/>'
        if kind == "line":
            return f'<line{ident} x1="{draw(COORD)}" y1="{draw(COORD)}" x2="{draw(COORD)}" y2="{draw(COORD)}"{paint}/>'
        return f'<{kind}{ident} cx="{draw(COORD)}" cy="{draw(COORD)}" r="{draw(COORD)}" rx="{draw(COORD)}" ' \
               f'width="{draw(COORD)}" height="{draw(COORD)}"{paint}{transform}/>'

    size = draw(st.sampled_from(["", ' width="256" height="256"', f' viewBox="{coords(4)}"',
                                 f' width="{draw(COORD)}" height="{draw(COORD)}"']))
    body = "".join(shape(0) for _ in range(draw(st.integers(0, 6))))
    return f'<svg xmlns="http://www.w3.org/2000/svg"{size}>{body}</svg>'.encode()


@st.composite
def npz_bytes(draw: Callable, folder: Path) -> bytes:
    """An npz whose member is a mutated .npy (the zip around it stays valid, so the .npy reader is reached), a
    hostile pickle payload behind an object header, or a mutated archive."""
    kind = draw(st.sampled_from(["member", "pickle", "archive"]))
    member = _npy(_stroke3())
    if kind == "member":
        member = draw(mutated(member))
    elif kind == "pickle":
        header = _npy(np.empty(draw(st.integers(0, 4)), dtype=object))
        payload = draw(st.sampled_from(HOSTILE_PICKLES + [_pickle_seed()]))
        member = header[:header.index(b"\n") + 1] + draw(st.one_of(st.just(payload), mutated(payload)))
    path = folder / "case-build.npz"
    with zipfile.ZipFile(path, "w", draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))) as zf:
        zf.writestr(draw(st.sampled_from(["test.npy", "train.npy"])), member)
    data = path.read_bytes()
    return draw(mutated(data)) if kind == "archive" else data


@st.composite
def index_bytes(draw: Callable, seed: bytes, folder: Path) -> bytes:
    """An index with one array replaced (random dtype and shape), its metadata edited, or bytes mutated."""
    kind = draw(st.sampled_from(["array", "meta", "bytes"]))
    if kind == "bytes":
        return draw(mutated(seed))
    src = folder / "seed.idx"
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    if kind == "array":
        key = draw(st.sampled_from(["vectors", "stamps", "graph"]))
        dtype = draw(st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_, np.complex64]))
        shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=3)))
        arrays[key] = draw(st.sampled_from([np.zeros, np.ones]))(shape, dtype)
        if draw(st.booleans()) and arrays[key].dtype.kind == "f" and arrays[key].size:
            arrays[key].flat[0] = draw(st.sampled_from([np.nan, np.inf, 1e38]))
    else:
        target = draw(st.sampled_from(["top", "model"]))
        obj = meta if target == "top" else meta["model"]
        key = draw(st.sampled_from(sorted(obj) + ["extra"]))
        if draw(st.booleans()):
            obj.pop(key, None)
        else:
            obj[key] = draw(st.one_of(JSON, st.sampled_from([["../../etc/passwd"] * 3, ["/etc/passwd"] * 3,
                                                             ["a\x00b"] * 3, "hnsw", "exact", 4, [1, 2, 3]])))
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@st.composite
def pairs_csv(draw: Callable) -> bytes:
    cell = st.one_of(st.sampled_from(["seed.png", "../seed.png", "/etc/passwd", "a\x00b.png", "x" * 300 + ".png",
                                      "", "photos/0.png", "seed.jpg"]), st.text(max_size=12))
    header = draw(st.sampled_from(["split,sketch,photo", "split,sketch,photo,category", "sketch,photo", "\ufeffsplit,"
                                   "sketch,photo", draw(st.text(max_size=20))]))
    rows = draw(st.lists(st.lists(cell, min_size=1, max_size=4), max_size=5))
    return (header + "\n" + "\n".join(",".join(r) for r in rows)).encode("utf-8", "surrogatepass")


# ----------------------------------------------------------------------------------------------- targets


def _draw(sketch: sio.Sketch) -> None:
    to_canvas(sketch, 64)


def _read_index(path: Path) -> None:
    from .retrieval.index import Index

    Index.load(path).search_vectors(np.ones(4, np.float32), 3)


@dataclass
class Target:
    """One reader: the file suffix its cases are written with, the strategy, and what is done with a file."""

    suffix: str
    cases: st.SearchStrategy
    run: Callable[[Path], object]


def targets(folder: Path) -> dict[str, Target]:
    """Every reader and loader, with the strategies of its cases (seed files are written into ``folder``)."""
    png, jpeg, index = _png(folder), _jpeg(folder), _index_seed(folder)
    (folder / "seed.json").write_text(json.dumps(STROKES))
    return {
        "raster sketch": Target(".png", st.one_of(mutated(png), mutated(jpeg)), lambda p: _draw(sio.read_sketch(p))),
        "photo": Target(".jpg", st.one_of(mutated(jpeg), mutated(png)), sio.read_image),
        "svg": Target(".svg", st.one_of(mutated(SVG, SVG_FRAGMENTS), svg_document()),
                      lambda p: _draw(sio.read_svg(p))),
        "stroke json": Target(".json", stroke_json(), lambda p: _draw(sio.read_stroke_json(p))),
        "ndjson": Target(".ndjson", st.lists(stroke_json(), min_size=1, max_size=3).map(b"\n".join),
                         lambda p: [_draw(s) for s in sio.read_ndjson(p)]),
        "sketchx pickle": Target("", st.one_of(mutated(_pickle_seed()), st.sampled_from(HOSTILE_PICKLES)),
                                 lambda p: [_draw(s) for s in sio.read_sketchx_pickle(p).values()]),
        "stroke-3 npz": Target(".npz", npz_bytes(folder), lambda p: [_draw(s) for s in sio.read_stroke3_npz(p, "test")]),
        "pairs csv": Target(".csv", pairs_csv(), sio.read_pairs_csv),
        "index": Target(".idx", index_bytes(index, folder), _read_index),
    }


# ----------------------------------------------------------------------------------------------- runner


@dataclass
class Report:
    """Outcomes per target: ``result`` and ``error`` (the project's) are fine; anything else is a finding."""

    outcomes: dict[str, Counter] = field(default_factory=dict)
    findings: list[dict] = field(default_factory=list)
    slowest: float = 0.0

    def record(self, target: str, outcome: str, seconds: float, data: bytes, detail: str = "") -> None:
        self.outcomes.setdefault(target, Counter())[outcome] += 1
        self.slowest = max(self.slowest, seconds)
        if outcome not in ("result", "error"):
            self.findings.append({"target": target, "outcome": outcome, "seconds": round(seconds, 3),
                                  "detail": detail[:300], "case": data[:200].hex()})

    @property
    def cases(self) -> int:
        return sum(sum(c.values()) for c in self.outcomes.values())


def _on_alarm(_signum: int, _frame: object) -> None:
    raise CaseTimeout()


def run_case(target: Target, data: bytes, folder: Path) -> tuple[str, float, str]:
    """(outcome, seconds, detail) of one case: result, error (a SketchdownError), timeout, memory,
    code-executed, or exception:<type> (a bug)."""
    path = folder / f"case{target.suffix}"
    path.write_bytes(data)
    spawned = len(_spawned)
    started = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, SECONDS)
    try:
        target.run(path)
        outcome, detail = "result", ""
    except SketchdownError as err:
        outcome, detail = "error", str(err)
        if "\n" in detail:
            outcome = "multi-line-error"
    except CaseTimeout:
        outcome, detail = "timeout", ""
    except MemoryError as err:
        outcome, detail = "memory", repr(err)
    except Exception as err:  # the findings this harness exists for
        outcome, detail = f"exception:{type(err).__name__}", repr(err)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    seconds = time.perf_counter() - started
    if len(_spawned) > spawned or Path("/tmp/sketchdown-fuzz-canary").exists():
        outcome, detail = "code-executed", ", ".join(_spawned[spawned:])
    return outcome, seconds, detail


def fuzz(cases_per_target: int, only: list[str] | None = None, seed: int = 0,
         progress: Callable[[str, int], None] | None = None) -> Report:
    """Run ``cases_per_target`` generated cases against every target (or ``only`` some), bounded in time and
    address space; returns the outcome counts and every finding."""
    global _hooked
    if not _hooked:  # an audit hook cannot be removed: add it once per process
        sys.addaudithook(_audit)
        _hooked = True
    report = Report()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + MEMORY, hard))
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        with tempfile.TemporaryDirectory(prefix="sketchdown-fuzz-") as tmp:
            folder = Path(tmp)
            for name, target in targets(folder).items():
                if only and name not in only:
                    continue

                @settings(max_examples=cases_per_target, database=None, deadline=None, derandomize=False,
                          phases=[Phase.generate], suppress_health_check=list(HealthCheck))
                @given(target.cases)
                def one(data: bytes) -> None:
                    outcome, seconds, detail = run_case(target, data, folder)
                    report.record(name, outcome, seconds, data, detail)

                hypothesis_seed(seed)(one)()
                if progress is not None:
                    progress(name, sum(report.outcomes.get(name, Counter()).values()))
    finally:
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return report

