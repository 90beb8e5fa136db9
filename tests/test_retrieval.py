"""The retrieval API: load a model, index real photos, search with every kind of sketch, and refuse what is wrong."""

import copy
import shutil

import numpy as np
import pytest
from PIL import Image

import sketchdown
from sketchdown.data.sketch import Sketch
from sketchdown.errors import InputError, SketchdownError
from sketchdown.retrieval import Index, ModelMismatchError, Retriever, as_sketch, recall_at_k, structures
from sketchdown.retrieval import index as index_module
from sketchdown.retrieval.index import build_file

SIDE = 64  # small canvas and photo side keep every test well under a few seconds on one core


@pytest.fixture(scope="module")
def model():
    return sketchdown.load("mobilenet_v2", canvas=SIDE, photo_size=SIDE)


@pytest.fixture(scope="module")
def shoes(data):
    """Ten Shoe-V1 test photos and their sketches (same ids)."""
    photos = sorted((data / "qmul-v1" / "shoes" / "test" / "images").glob("*.jpg"))[:10]
    return photos, [data / "qmul-v1" / "shoes" / "test" / "sketches" / f"{p.stem}.png" for p in photos]


@pytest.fixture(scope="module")
def index(model, shoes):
    return Index.build(model, shoes[0])


@pytest.fixture
def folder(tmp_path, shoes):
    """Four photos in a catalogue folder with a subfolder (paths are stored relative to it)."""
    (tmp_path / "cat" / "sub").mkdir(parents=True)
    for i, p in enumerate(shoes[0][:4]):
        shutil.copy(p, tmp_path / "cat" / ("sub" if i % 2 else "") / p.name)
    return tmp_path / "cat"


def test_search_takes_every_sketch_form(index, shoes):
    path = shoes[1][3]
    hits = index.search(path, k=5)
    assert len(hits) == 5 and all(isinstance(h.path, type(path)) and h.path in shoes[0] for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    photo, score = hits[0]  # a hit is a (photo path, score) pair
    assert -1.0 <= score <= 1.0
    grey = np.asarray(Image.open(path).convert("L"))
    for same in (Image.open(path), grey, np.asarray(Image.open(path).convert("RGB")), as_sketch(path)):
        assert [h.path for h in index.search(same, k=5)] == [h.path for h in hits]
    strokes = [[[40, 40], [200, 60], [210, 180]], [[50, 190], [200, 200]]]
    for form in (strokes, {"strokes": strokes}, [np.array(s, float) for s in strokes],
                 np.array([[40, 40, 0], [200, 60, 0], [210, 180, 1], [50, 190, 0], [200, 200, 1]], float)):
        assert len(index.search(form, k=3)) == 3
    assert len(index.search(path, k=50)) == len(index)  # k larger than the catalogue: every photo once


def test_search_ranks_by_cosine_similarity_to_the_photo_vectors(model, index, shoes):
    photos, _ = model.encode_photos(shoes[0])
    assert np.allclose(index.vectors, photos, atol=1e-6)
    assert np.allclose(np.linalg.norm(photos, axis=1), 1.0, atol=1e-5)
    for sketch in shoes[1][:3]:
        scores = photos @ model.encode_sketch(sketch)
        hits = index.search(sketch, k=10)
        assert [h.path for h in hits] == [shoes[0][i] for i in np.argsort(-scores)]
        assert np.allclose([h.score for h in hits], np.sort(scores)[::-1], atol=2e-4)  # the fp16 scan's rounding


def test_save_load_round_trip(tmp_path, model, folder):
    built = Index.build(model, folder)
    assert built.paths == ["305.jpg", "307.jpg", "sub/306.jpg", "sub/308.jpg"]
    built.save(tmp_path / "cat.idx")
    loaded = Index.load(tmp_path / "cat.idx")  # no model: the recorded one is loaded at the first search
    assert loaded.paths == built.paths and loaded.root == built.root and np.array_equal(loaded.vectors, built.vectors)
    sketch = folder.parent / "q.json"
    sketch.write_text("[[[30, 30], [220, 220]], [[30, 220], [220, 30]]]")
    assert loaded.search(sketch, k=4) == built.search(sketch, k=4)
    assert loaded.model["identity"] == model.identity and loaded.model["canvas"] == SIDE
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temporary file


def test_another_model_is_refused(tmp_path, model, index):
    index.save(tmp_path / "cat.idx")
    other_size = sketchdown.load("mobilenet_v2", canvas=SIDE, photo_size=SIDE + 32)
    nudged = copy.deepcopy(model.model)
    next(nudged.parameters()).data.add_(1e-3)
    for other in (other_size, Retriever(nudged, SIDE, SIDE)):
        with pytest.raises(ModelMismatchError, match="search with a model of the photo encoder it was built with"):
            Index.load(tmp_path / "cat.idx", model=other)
    with pytest.raises(ModelMismatchError):
        Index.load(tmp_path / "cat.idx").attach("mobilenet_v2").attach(Retriever(nudged, SIDE, SIDE))


def test_bad_sketches_are_input_errors(tmp_path, index):
    (tmp_path / "notes.txt").write_text("a shoe")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "empty.json").write_text("[]")
    for bad in (tmp_path / "notes.txt", tmp_path / "broken.png", tmp_path / "empty.json", tmp_path / "missing.svg",
                np.full((64, 64), 255, np.uint8), np.zeros((5, 5), np.float32), [], 42):
        with pytest.raises(InputError):
            index.search(bad)
    with pytest.raises(SketchdownError, match="k must be"):
        index.search(np.eye(64, dtype=np.uint8) * 255, k=0)


def test_bad_catalogues_are_input_errors(tmp_path, model, folder):
    with pytest.raises(InputError, match="no such index"):
        Index.load(tmp_path / "missing.idx")
    (tmp_path / "junk.idx").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(InputError, match="not a readable sketchdown index"):
        Index.load(tmp_path / "junk.idx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no photos"):
        Index.build(model, tmp_path / "empty")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(InputError, match="corrupt.jpg"):
        Index.build(model, folder)
    built = Index.build(model, folder, skip_bad=True)
    assert len(built) == 4 and built.skipped == [str(folder / "corrupt.jpg")]


def test_rebuild_reuses_unchanged_photos_and_resumes(tmp_path, model, folder, monkeypatch):
    out = tmp_path / "cat.idx"
    assert build_file(model, folder, out).reused == 0
    assert build_file(model, folder, out).reused == 4  # re-run: nothing to encode
    shutil.copy(folder / "305.jpg", folder / "999.jpg")
    assert build_file(model, folder, out).reused == 4 and len(Index.load(out)) == 5

    # An interrupted build leaves the old index untouched and its progress in out.partial/ for the next run.
    monkeypatch.setattr(index_module, "CHECKPOINT_EVERY", 2)
    calls = []
    encode = Retriever.encode_photos

    def crash_on_second_chunk(self, *args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return encode(self, *args, **kw)

    fresh = tmp_path / "fresh.idx"
    monkeypatch.setattr(Retriever, "encode_photos", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        build_file(model, folder, fresh)
    assert not fresh.exists() and len(list((tmp_path / "fresh.idx.partial").glob("*.idx"))) == 1
    monkeypatch.setattr(Retriever, "encode_photos", encode)
    resumed = build_file(model, folder, fresh)
    assert resumed.reused == 2 and len(resumed) == 5 and not (tmp_path / "fresh.idx.partial").exists()


def test_an_existing_file_that_is_not_an_index_is_not_overwritten(tmp_path, model, folder):
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    with pytest.raises(InputError, match="refusing to overwrite"):
        build_file(model, folder, precious)
    assert precious.read_text() == "keep me"


def _synthetic(root, vectors: np.ndarray, kind: str) -> Index:
    """An index of ``kind`` over made-up photo vectors (no model, no files)."""
    n, dim = vectors.shape
    info = {"identity": "x", "source": None, "backbone": "synthetic", "dim": dim, "photo_size": 1, "canvas": 1,
            "selector": None}
    return Index(root, [f"{i}.jpg" for i in range(n)], vectors, np.zeros((n, 2)), info, kind)


def test_hnsw_finds_what_exact_search_finds(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, 32)).astype(np.float32)
    vectors = centres[rng.integers(50, size=3000)] + 0.3 * rng.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact, hnsw = _synthetic(tmp_path, vectors, "exact"), _synthetic(tmp_path, vectors, "hnsw")
    queries = vectors[:100] + 0.1 * rng.standard_normal((100, 32)).astype(np.float32)
    exact_ids, hnsw_ids = exact.search_vectors(queries, 10)[1], hnsw.search_vectors(queries, 10)[1]
    assert recall_at_k(exact_ids, exact_ids) == 1.0 and recall_at_k(hnsw_ids, exact_ids) >= 0.95
    hnsw.save(tmp_path / "h.idx")
    again = Index.load(tmp_path / "h.idx")
    assert again.kind == "hnsw" and np.array_equal(again.search_vectors(queries, 10)[1], hnsw_ids)


def test_the_fp16_scan_ranks_as_exact_search_does(tmp_path):
    """The half-precision scan keeps exact search's neighbours, its scores within fp16 rounding; its file holds
    the fp32 vectors only (the scan is rebuilt from them) and reads back to the same answers."""
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((2000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact, half = _synthetic(tmp_path, vectors, "exact"), _synthetic(tmp_path, vectors, "fp16")
    queries = vectors[:50] + 0.2 * rng.standard_normal((50, 64)).astype(np.float32)
    (s_exact, i_exact), (s_half, i_half) = exact.search_vectors(queries, 10), half.search_vectors(queries, 10)
    assert recall_at_k(i_half, i_exact) >= 0.99 and np.array_equal(i_half[:, 0], i_exact[:, 0])
    assert np.abs(s_half - s_exact).max() < 2e-3 and not np.array_equal(s_half, s_exact)  # rounded, not exact
    half.save(tmp_path / "f.idx")
    with np.load(tmp_path / "f.idx") as stored:
        assert "graph" not in stored.files and stored["vectors"].dtype == np.float32
    again = Index.load(tmp_path / "f.idx")
    assert again.kind == "fp16" and np.array_equal(again.search_vectors(queries, 10)[1], i_half)


def test_catalogues_get_the_fp16_scan_then_hnsw_automatically(model, shoes, monkeypatch):
    assert Index.build(model, shoes[0][:6]).kind == "fp16"
    monkeypatch.setattr(structures, "HNSW_THRESHOLD", 5)
    assert Index.build(model, shoes[0][:6]).kind == "hnsw"
    assert Index.build(model, shoes[0][:6], kind="exact").kind == "exact"


def test_a_canvas_selector_picks_each_sketch_canvas(model, shoes):
    class BySize:
        def select(self, sketch: Sketch, probe):
            canvas = 32 if sketch.is_vector else 96
            return probe(canvas), (canvas,), 0

    chosen = Retriever(model.model, SIDE, SIDE, BySize())
    assert chosen.query(as_sketch(shoes[1][0])).canvas == 96 and chosen.describe()["selector"] == "BySize"
    assert chosen.identity == model.identity  # the photo vectors do not depend on the sketch canvas
    assert chosen.encode_sketch([[[10, 10], [200, 200]]]).shape == (model.dim,)


def _always(canvas: int):
    """A raster canvas policy that always picks ``canvas`` (its head's bias decides)."""
    import torch

    from sketchdown.select.policy import PolicyConfig, create_policy

    policy = create_policy(PolicyConfig(kind="raster"))
    with torch.no_grad():
        policy.head.weight.zero_()
        policy.head.bias.copy_(torch.tensor([10.0 if c == canvas else 0.0 for c in policy.config.canvases]))
    return policy


def test_the_latency_benchmark_times_each_step_of_a_query_at_its_own_canvas(model, shoes):
    """What a query spends on tracing, the selector, drawing, the network and the search, at the selector's pick."""
    from sketchdown.retrieval.bench import stage_times

    v2 = model.replace(selector=_always(32), raster_method="trace")
    sketches = [as_sketch(p) for p in shoes[1][:3]]
    shapes = []
    real = v2.engine

    def engine(images, branch):
        shapes.append(images.shape[-1])
        return real(images, branch)

    stages = stage_times(v2.replace(engine=engine), Index.build(v2, shoes[0][:4]), sketches, warmup=1)
    assert list(stages) == ["trace", "selector", "draw", "network", "search"]
    assert all(s["n"] == 3 and s["median_ms"] > 0 for s in stages.values()) and set(shapes) == {32}
    assert "selector" not in stage_times(model, Index.build(model, shoes[0][:4]), sketches, warmup=0)


def test_an_index_searches_with_its_selector_and_never_drops_it_silently(tmp_path, model, shoes, monkeypatch):
    """The selector travels with the retriever artifact into the index and back, from Python and the CLI."""
    from sketchdown import cli

    model.replace(selector=_always(32)).save(tmp_path / "v2")
    v2 = sketchdown.load(tmp_path / "v2")
    build_file(v2, shoes[0][:3], tmp_path / "cat.idx")
    seen = []
    real = Retriever.query

    def spy(self, sketch, search=None):
        query = real(self, sketch, search)
        seen.append(query.canvas)
        return query

    monkeypatch.setattr(Retriever, "query", spy)
    again = Index.load(tmp_path / "cat.idx")
    again.search(shoes[1][0])
    assert again.encoder.selector is not None and seen == [32]
    assert cli.main(["search", str(tmp_path / "cat.idx"), str(shoes[1][0]), "-k", "2"]) == 0 and seen[-1] == 32
    # a selector given as its own file (a select run's checkpoint) that has moved: an error, not a fixed canvas
    from sketchdown.select.policy import save_policy

    save_policy(tmp_path / "policy.pt", _always(128))
    build_file(model.replace(selector=sketchdown.retrieval.encoder.load_selector(tmp_path / "policy.pt")),
               shoes[0][:3], tmp_path / "moved.idx")
    (tmp_path / "policy.pt").unlink()
    with pytest.raises(InputError, match="canvas selector"):
        Index.load(tmp_path / "moved.idx").search(shoes[1][0])
    assert cli.main(["search", str(tmp_path / "moved.idx"), str(shoes[1][0])]) == 2
