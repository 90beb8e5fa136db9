"""The hostile-input findings, one regression test each: tiny files that asked for gigabytes or minutes, inputs that
ended in a raw traceback, and silent wrong answers. Each must end in a result or the project's one-line error."""

from __future__ import annotations

import json
import pickle
import struct
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sketchdown import limits
from sketchdown.cli import main
from sketchdown.data import io as sio
from sketchdown.data.render import render_strokes, shrink_raster
from sketchdown.data.sketch import Sketch
from sketchdown.errors import InputError, SketchdownError
from sketchdown.files import write_atomic, write_json
from sketchdown.limits import LimitError

# ----------------------------------------------------------------------------------------------- crafted files


def png(width: int, height: int, depth: int = 8) -> bytes:
    """A PNG whose header announces width x height and whose data is a few bytes (what a bomb looks like)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def ndarray_call(shape: tuple[int, ...]) -> bytes:
    """Pickle opcodes calling numpy.ndarray(shape) directly: uninitialised memory of any size from a few bytes."""
    ints = b"".join(b"J" + struct.pack("<i", n) for n in shape)
    return b"cnumpy\nndarray\n" + ints + {1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(shape)] + b"\x85R"


def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def npz(tmp_path: Path, member: bytes, name: str = "test.npy", compress: bool = False) -> Path:
    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        zf.writestr(name, member)
    return path


# ----------------------------------------------------------------------------------------------- memory


@pytest.mark.parametrize("size", [(30000, 2), (64, 65535), (2, 30000)])
def test_a_tiny_png_of_extreme_aspect_is_refused_from_its_header(tmp_path, size):
    path = tmp_path / "s.png"
    path.write_bytes(png(*size))
    assert path.stat().st_size < 200
    with pytest.raises(LimitError, match="aspect ratio"):
        sio.read_sketch(path)


def test_a_photo_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    path = tmp_path / "p.png"
    path.write_bytes(png(13000, 13000))
    with pytest.raises(LimitError, match=r"13000 x 13000.*image_pixels"):
        sio.read_image(path)


def test_a_limit_can_be_raised_by_a_user_who_means_it(tmp_path, monkeypatch):
    path = tmp_path / "p.png"
    path.write_bytes(png(9000, 9000))
    with pytest.raises(LimitError):
        sio.read_image(path)
    with limits.override(image_pixels=100_000_000), pytest.raises(InputError) as err:
        sio.read_image(path)  # now the (truncated) data is decoded, and fails as such
    assert not isinstance(err.value, LimitError)
    monkeypatch.setenv("SKETCHDOWN_LIMIT_IMAGE_PIXELS", "oops")
    monkeypatch.setattr(limits, "_current", None)
    with pytest.raises(InputError, match="SKETCHDOWN_LIMIT_IMAGE_PIXELS: must be a number"):
        limits.current()


def test_shrinking_a_long_raster_costs_its_own_size_not_a_square():
    raster = np.full((2, 30000), 255, np.uint8)
    raster[:, ::7] = 0
    out = shrink_raster(raster, 64)
    assert out.shape == (64, 64) and out.min() < 255  # drawn in the middle row, on white paper
    wide = np.full((256, 512), 255, np.uint8)
    wide[100:150, 200:300] = 0
    assert (shrink_raster(wide, 128)[:32] == 255).all()  # padded top and bottom, aspect kept


def test_a_pickle_announcing_a_huge_array_is_refused_before_allocation(tmp_path):
    data = b"\x80\x02}X\x01\x00\x00\x00a" + ndarray_call((160_000_000, 3)) + b"s."
    assert len(data) < 100
    (tmp_path / "X_Coordinate").write_bytes(data)
    with pytest.raises(LimitError, match="array_bytes"):
        sio.read_sketchx_pickle(tmp_path / "X_Coordinate")


def test_a_pickle_rebuilding_a_huge_array_through_setstate_is_refused(tmp_path):
    small = pickle.dumps({"a": np.zeros((2, 3))}, protocol=2)
    big = small.replace(b"K\x02K\x03\x86", b"J" + struct.pack("<i", 160_000_000) + b"K\x03\x86")
    assert big != small
    with pytest.raises(LimitError, match="array_bytes"):
        sio.safe_load_pickle(big)


def test_an_npz_announcing_a_huge_array_is_refused_from_its_header(tmp_path):
    with pytest.raises(LimitError, match="array_bytes"):  # a zip bomb: the header promises 11 GB
        sio.read_stroke3_npz(npz(tmp_path, npy_header("<f8", (1_400_000_000,)) + b"\0" * 4096, compress=True), "test")
    payload = npy_header("|O", (160_000_000, 3)) + b"\x80\x02" + ndarray_call((160_000_000, 3)) + b"."
    with pytest.raises(LimitError, match="array_bytes"):
        sio.read_stroke3_npz(npz(tmp_path, payload), "test")


def test_an_npz_of_many_references_to_one_array_is_bounded(tmp_path):
    one = np.array([[1, 2, 0], [3, 4, 1]], np.int16)
    arr = np.empty(300_000, dtype=object)
    arr[:] = [one] * 300_000
    member = npy_header("|O", arr.shape) + pickle.dumps(arr, protocol=2)
    with pytest.raises(LimitError, match="arrays"):
        sio.read_stroke3_npz(npz(tmp_path, member), "test")
    member = npy_header("|O", (3,)) + pickle.dumps(arr, protocol=2)  # a header that understates the count
    with pytest.raises(LimitError, match="arrays"):
        sio.read_stroke3_npz(npz(tmp_path, member), "test")


def test_one_sketch_of_a_large_npz_does_not_convert_all_of_them(tmp_path, monkeypatch):
    arr = np.empty(5000, dtype=object)
    arr[:] = [np.array([[i, 2, 0], [3, 4, 1]], np.int16) for i in range(5000)]
    path = tmp_path / "many.npz"
    np.savez(path, test=arr, allow_pickle=True)
    calls = []
    real = Sketch.from_stroke3
    monkeypatch.setattr(Sketch, "from_stroke3", classmethod(lambda cls, *a, **k: calls.append(1) or real(*a, **k)))
    sio.read_sketch_item(path, "4999")
    assert len(calls) == 1


@pytest.mark.parametrize("argv", [["render", "{s}", "--canvas", "20000"], ["flops", "--canvas", "3000"],
                                  ["render", "{s}", "--canvas", "0"], ["render", "{s}", "--canvas", "-5"]])
def test_canvas_arguments_are_bounded_by_the_parser(tmp_path, argv, capsys):
    sketch = tmp_path / "s.json"
    sketch.write_text('{"strokes": [[[0, 0], [10, 10]]]}')
    with pytest.raises(SystemExit) as ex:
        main([a.format(s=sketch) for a in argv])
    assert ex.value.code == 2 and "canvas" in capsys.readouterr().err


def test_rendering_from_python_is_bounded_too():
    sketch = Sketch(strokes=(np.array([[0, 0], [10, 10.0]]),))
    with pytest.raises(LimitError, match="canvas"):
        render_strokes(sketch, 20000)
    with pytest.raises(InputError, match="positive"):
        render_strokes(sketch, 0)


# ----------------------------------------------------------------------------------------------- CPU


def test_an_svg_with_a_million_segments_is_refused_before_parsing(tmp_path):
    path = tmp_path / "s.svg"
    path.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256"><path d="M0 0'
                    + " L1 2" * 1_000_000 + '" stroke="black"/></svg>')
    with pytest.raises(LimitError, match="sketch_points"):
        sio.read_svg(path)


def test_an_svg_whose_curves_flatten_to_millions_of_points_is_stopped(tmp_path):
    path = tmp_path / "s.svg"
    curves = "".join(f" C {i % 200} 0 {i % 200} 256 256 {i % 250}" for i in range(20_000))
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256"><path d="M0 0{curves}" '
                    'stroke="black"/></svg>')
    with limits.override(sketch_points=100_000), pytest.raises(LimitError, match="sketch_points"):
        sio.read_svg(path)


def test_use_fan_out_is_counted_before_svgelements_expands_it(tmp_path):
    levels = ['<path id="l0" d="M0 0 L10 10" stroke="black"/>']
    for k in range(1, 7):
        levels.append(f'<g id="l{k}">' + f'<use href="#l{k - 1}"/>' * 10 + "</g>")
    path = tmp_path / "s.svg"
    path.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256"><defs>' + "".join(levels)
                    + '</defs><use href="#l6"/></svg>')
    with pytest.raises(LimitError, match="svg_elements"):
        sio.read_svg(path)


def test_a_stroke_json_of_ten_million_points_is_refused(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"strokes": [[' + ",".join(["[1,2]"] * 2_000_000) + "]]}")
    with pytest.raises(LimitError):
        sio.read_stroke_json(path)
    with limits.override(sketch_points=1000), pytest.raises(LimitError, match="sketch_points"):
        sio.read_stroke_json(json.loads('{"strokes": [' + ",".join(["[[1,2],[3,4]]"] * 600) + "]}"))


# ----------------------------------------------------------------------------------------------- one clear error


@pytest.mark.parametrize("text", [
    '{"strokes": [[[NaN, 1], [2, 3]]]}', '{"strokes": [[[Infinity, 1], [2, 3]]]}', '{"strokes": [[[1e400, 1]]]}',
    '{"strokes": [[[1e308, 1], [1.7e308, 3]]]}', '{"drawing": [[[1, Infinity], [2, 3]]]}',
    '{"width": Infinity, "strokes": [[[1, 1], [2, 3]]]}', '{"width": NaN, "strokes": [[[1, 1], [2, 3]]]}',
    '{"width": 1e-320, "strokes": [[[1, 1], [2, 3]]]}'])
def test_non_finite_stroke_json_is_one_input_error(tmp_path, text):
    path = tmp_path / "s.json"
    path.write_text(text)
    with pytest.raises(InputError):
        sketch = sio.read_stroke_json(path)
        render_strokes(sketch, 64)  # a sketch that reads must also draw


@pytest.mark.parametrize("svg", [
    '<svg xmlns="http://www.w3.org/2000/svg"><path d="M 0 0 C nan 1 2 3 4 5" stroke="black"/></svg>',
    '<svg xmlns="http://www.w3.org/2000/svg"><path d="M 0 0 L inf 1" stroke="black"/></svg>',
    '<svg xmlns="http://www.w3.org/2000/svg"><a:path d="M 0 0 L 1 1" stroke="black"/></svg>',
    '<!DOCTYPE svg SYSTEM "http://example.com/svg.dtd"><svg xmlns="http://www.w3.org/2000/svg">&ext;</svg>',
    '<svg xmlns="http://www.w3.org/2000/svg">' + "<g>" * 1000 + '<path d="M0 0 L1 1" stroke="black"/>'
    + "</g>" * 1000 + "</svg>",
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"><g id="a">'
    '<use xlink:href="#a"/></g></svg>',
    '<svg xmlns="http://www.w3.org/2000/svg"><g id="a"><use href="#b"/></g><g id="b"><use href="#a"/></g></svg>',
    '<svg xmlns="http://www.w3.org/2000/svg" width="1e999" height="10"><path d="M0 0 L1 1" stroke="black"/></svg>'])
def test_hostile_svg_is_one_input_error(svg):
    with pytest.raises(InputError):
        sio.read_svg(svg.encode())


@pytest.mark.parametrize("value", [np.array(["a", "b", "c"]), np.array([[1, 2, 0]], dtype=object),
                                   np.zeros(2, dtype=[("x", "f4"), ("y", "f4"), ("p", "f4")]), np.array(3.0),
                                   np.array([["1", "2", "0"]]), np.array([[1 + 2j, 2, 0]]),
                                   np.array([[np.nan, 1, 0]])])
def test_pickled_arrays_of_the_wrong_kind_are_input_errors(tmp_path, value):
    (tmp_path / "X_Coordinate").write_bytes(pickle.dumps({"/test/a_1": value}, protocol=2))
    with pytest.raises(InputError):
        sio.read_sketchx_pickle(tmp_path / "X_Coordinate")
    arr = np.empty(1, dtype=object)
    arr[0] = value
    np.savez(tmp_path / "v.npz", test=arr, allow_pickle=True)
    with pytest.raises(InputError):
        sio.read_stroke3_npz(tmp_path / "v.npz", "test")


def test_a_bad_npy_header_or_deflate_stream_is_an_input_error(tmp_path):
    bad = b"\x93NUMPY\x01\x00" + struct.pack("<H", 54) + b"{'descr': '<f8', 'fortran_order': False, 'shape': (3," \
        + b" " * 0 + b"\n"
    with pytest.raises(InputError):
        sio.read_stroke3_npz(npz(tmp_path, bad), "test")
    good = npz(tmp_path, npy_header("<f8", (100, 3)) + np.zeros((100, 3)).tobytes(), compress=True)
    raw = bytearray(good.read_bytes())
    start = raw.index(b"test.npy") + len(b"test.npy")
    raw[start + 20:start + 60] = b"\xff" * 40  # corrupt the deflate stream, not the zip directory
    good.write_bytes(bytes(raw))
    with pytest.raises(InputError):
        sio.read_stroke3_npz(good, "test")


@pytest.mark.parametrize("row", ["test,a\0b.png,p.jpg", "test," + "a" * 300 + ".png,p.jpg"])
def test_unusable_paths_in_pairs_csv_are_input_errors(tmp_path, row):
    (tmp_path / "pairs.csv").write_text("split,sketch,photo\n" + row + "\n")
    with pytest.raises(InputError):
        sio.read_pairs_csv(tmp_path / "pairs.csv")


def test_a_long_file_name_is_an_input_error_not_an_oserror(tmp_path):
    with pytest.raises(InputError):
        sio.read_sketch(tmp_path / ("a" * 300 + ".png"))
    with pytest.raises(InputError):
        sio.read_sketch(str(tmp_path / "a\0.png"))


def test_write_atomic_reports_its_own_error_and_leaves_no_temporary(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot write"):
        write_json({}, tmp_path / "file" / "out.json")  # a parent that is a file
    with pytest.raises(InputError, match="cannot write"):
        write_json({}, tmp_path)  # a folder
    with pytest.raises(InputError, match="cannot write"):
        write_json({}, "/proc/sketchdown-test.json")  # a read-only place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_stale_temporary_of_a_killed_write_is_removed_by_the_next_write(tmp_path):
    stale = tmp_path / ".out.json.999999999.tmp"  # no such process
    stale.write_text("half")
    write_json({"a": 1}, tmp_path / "out.json")
    assert not stale.exists() and json.loads((tmp_path / "out.json").read_text()) == {"a": 1}


def test_a_failing_writer_keeps_the_old_file(tmp_path):
    (tmp_path / "out").write_text("old")

    def boom(f):
        f.write(b"new")
        raise InputError(None, "stop")
    with pytest.raises(InputError, match="stop"):
        write_atomic(tmp_path / "out", boom)
    assert (tmp_path / "out").read_text() == "old" and len(list(tmp_path.iterdir())) == 1


# ----------------------------------------------------------------------------------------------- silent answers


def test_a_16_bit_png_sketch_and_photo_keep_their_ink(tmp_path):
    a = np.full((64, 64), 65535, np.uint16)
    a[20:40, 30] = 0
    a[5:10, 5:10] = 30000
    Image.fromarray(a).save(tmp_path / "s16.png")
    assert Image.open(tmp_path / "s16.png").mode.startswith("I")
    s = sio.read_sketch(tmp_path / "s16.png")
    assert s.raster[30, 30] == 0 and s.raster[0, 0] == 255 and 110 < s.raster[7, 7] < 125
    photo = np.asarray(sio.read_image(tmp_path / "s16.png"))
    assert photo[30, 30].tolist() == [0, 0, 0] and photo[0, 0].tolist() == [255, 255, 255]


def test_resume_refuses_flags_it_would_ignore(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("epochs: 2\ntrain_sets: [shoes-v1]\n")
    assert main(["train", "--resume", str(run), "--epochs", "9"]) == 2
    assert "--epochs" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train", "--epochs", "0"], ["train", "--batch-size", "0"],
                                  ["train", "--batch-size", "-1"], ["train", "--lr", "-1"],
                                  ["flops", "--latency", "--repeats", "0"], ["bench", "--queries", "0"],
                                  ["index", "x", "-o", "y", "--model", "m", "--batch-size", "0"],
                                  ["evaluate", "--photo-size", "0"], ["search", "i", "s", "-k", "0"]])
def test_out_of_range_arguments_are_parser_errors(argv, capsys):
    with pytest.raises(SystemExit) as ex:
        main(argv + (["--out", "x"] if argv[0] == "train" else []))
    assert ex.value.code == 2 and "must be" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- index integrity


def small_index(tmp_path: Path):
    from sketchdown.retrieval import Index

    for i in range(3):
        Image.new("RGB", (8, 8), (i * 60, 0, 0)).save(tmp_path / f"{i}.png")
    vectors = np.eye(3, 4, dtype=np.float32)
    info = {"identity": "x" * 64, "source": None, "backbone": "synthetic", "dim": 4, "photo_size": 8, "canvas": 8,
            "raster_method": "area", "selector": None}
    return Index(tmp_path, [f"{i}.png" for i in range(3)], vectors, np.ones((3, 2)), info, "exact")


def tamper(path: Path, out: Path, **changes) -> Path:
    """A copy of the index file with some arrays (or meta keys, given as meta=dict) replaced."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    if "meta" in changes:
        meta = changes.pop("meta")(meta)
    arrays.update(changes)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(out, **arrays)
    return out


def _without(key):
    return lambda m: {k: v for k, v in m.items() if k != key}


def _set(key, value):
    return lambda m: {**m, key: value}


@pytest.mark.parametrize("change", [
    {"vectors": np.full((3, 4), np.nan, np.float32)}, {"vectors": np.array([[1, 0, 0, 0]] * 3, np.int64)},
    {"vectors": np.eye(3, 5, dtype=np.float32)}, {"vectors": np.zeros((0, 4), np.float32)},
    {"stamps": np.ones(5, np.int64)}, {"stamps": np.ones((3, 2), np.float64) * 0.5},
    {"meta": _set("paths", ["0.png", "1.png", "../../etc/passwd"])}, {"meta": _set("paths", ["/etc/passwd"] * 3)},
    {"meta": _set("paths", "abc")}, {"meta": _without("model")}, {"meta": _without("paths")},
    {"meta": _set("model", "x")}, {"meta": _set("model", {"dim": 4})}, {"meta": _set("kind", "hnsw")},
    {"meta": _set("root", 5)}, {"meta": _set("skipped", 3)}, {"meta": lambda m: [m]},
    {"meta": lambda m: {**m, "model": {**m["model"], "dim": "4"}}},
    {"meta": lambda m: {**m, "kind": "hnsw"}, "graph": np.frombuffer(b"IHNf" + b"\0" * 60, np.uint8)}])
def test_a_tampered_index_is_refused_whole(tmp_path, change):
    from sketchdown.retrieval import Index

    small_index(tmp_path).save(tmp_path / "a.idx")
    bad = tamper(tmp_path / "a.idx", tmp_path / "b.idx", **change)
    with pytest.raises(InputError, match="b.idx"):
        Index.load(bad)


def test_an_hnsw_graph_of_other_vectors_is_refused(tmp_path):
    import faiss

    from sketchdown.retrieval import Index

    small_index(tmp_path).save(tmp_path / "a.idx")
    for graph in (faiss.IndexHNSWFlat(4, 8), faiss.IndexHNSWFlat(6, 8)):
        if graph.d == 6:
            graph.add(np.zeros((3, 6), np.float32))
        bad = tamper(tmp_path / "a.idx", tmp_path / "b.idx", meta=_set("kind", "hnsw"),
                     graph=faiss.serialize_index(graph))
        with pytest.raises(InputError, match="b.idx"):
            Index.load(bad)


def test_an_index_refuses_non_finite_vectors_at_build(tmp_path):
    from sketchdown.retrieval import Index

    ok = small_index(tmp_path)
    with pytest.raises(SketchdownError, match="finite"):
        Index(tmp_path, ok.paths, np.full((3, 4), np.inf, np.float32), ok.stamps, ok.model)


def test_concurrent_first_searches_load_the_model_once(tmp_path, monkeypatch):
    from sketchdown.retrieval import index as index_module

    ix = small_index(tmp_path)
    ix.model = {**ix.model, "source": "somewhere"}
    loads = []

    class Fake:
        identity, info = "x" * 64, {}

        def query(self, sketch, search=None):
            from sketchdown.retrieval.encoder import Query
            from sketchdown.select.probe import Probe

            vector = np.eye(1, 4, dtype=np.float32)[0]
            return Query(Probe(8, vector, *search(vector)), (8,), 0.001)

    def slow_load(*a, **k):
        loads.append(1)
        threading.Event().wait(0.2)
        return Fake()
    monkeypatch.setattr(index_module, "load", slow_load)
    monkeypatch.setattr(index_module, "Retriever", Fake)
    out = []
    threads = [threading.Thread(target=lambda: out.append(ix.search(np.zeros((8, 8), np.uint8) + 255, 1)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len(out) == 8


def test_photos_linked_from_outside_the_folder_are_indexed_under_their_link(tmp_path):
    from sketchdown.retrieval import Index

    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (8, 8), "red").save(outside / "real.png")
    cat = tmp_path / "cat"
    cat.mkdir()
    Image.new("RGB", (8, 8), "blue").save(cat / "own.png")
    (cat / "link.png").symlink_to(outside / "real.png")

    class Enc:
        identity, info, dim = "e" * 64, {}, 4

        def encode_photos(self, paths, batch_size, skip_bad, on_batch):
            on_batch(len(paths))
            return np.eye(len(paths), 4, dtype=np.float32), []

        def describe(self):
            return {"identity": self.identity, "source": None, "backbone": "x", "dim": 4, "photo_size": 8,
                    "canvas": 8, "raster_method": "area", "selector": None}
    from sketchdown.retrieval import index as index_module

    original = index_module.Retriever
    index_module.Retriever = Enc
    try:
        ix = Index.build(Enc(), cat)
    finally:
        index_module.Retriever = original
    assert sorted(ix.paths) == ["link.png", "own.png"]


# ----------------------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("change", [
    {"model_config": "mobilenet_v2"}, {"model_config": {"backbone": "mobilenet_v2", "pool": "median"}},
    {"model_config": {"backbone": "no_such_net"}}, {"state_dict": {"w": "x"}}, {"state_dict": []},
    {"config": {"eval_canvas": "big"}}, {"config": "x"}, {"members": "abc"}, {"members": [{"a": 1}]}])
def test_a_well_formed_but_wrong_checkpoint_is_one_input_error(tmp_path, change):
    import torch

    from sketchdown.models.embed import create_model
    from sketchdown.retrieval import load

    net = create_model("mobilenet_v2", weights="none")
    ckpt = {"model_config": {"backbone": "mobilenet_v2", "embed_dim": None, "pool": "avg", "weights": "none"},
            "state_dict": net.state_dict(), "config": {"eval_canvas": 64}}
    ckpt.update(change)
    torch.save(ckpt, tmp_path / "best.pt")
    with pytest.raises(InputError, match="best.pt"):
        load(tmp_path)


@pytest.mark.parametrize("argv", [["render", "{s}", "-o", "{file}"], ["render", "{s}", "-o", "{file}/sub"],
                                  ["render", "{s}", "-o", "/proc/sketchdown"],
                                  ["evaluate", "--set", "chairs-v1", "--out", "{folder}"],
                                  ["export-onnx", "--model", "mobilenet_v2", "-o", "{folder}"],
                                  ["export-onnx", "--model", "mobilenet_v2", "-o", "/proc/x.onnx"],
                                  ["index", "{folder}", "-o", "{file}/x.idx", "--model", "mobilenet_v2"],
                                  ["export", "{folder}", "-o", "{file}"],
                                  ["search", "{folder}", "{s}", "--model", "m", "--sheet", "{folder}"]])
def test_an_unusable_output_path_is_refused_before_any_work(tmp_path, argv, capsys):
    sketch = tmp_path / "s.json"
    sketch.write_text('{"strokes": [[[0, 0], [10, 10]]]}')
    (tmp_path / "afile").write_text("x")
    args = [a.format(s=sketch, file=tmp_path / "afile", folder=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as ex:
        main(args)
    err = capsys.readouterr().err
    assert ex.value.code == 2 and "cannot write" in err or "is a file" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "s.json"]
