"""Scale-out of the catalogue: shards (by independent jobs or torchrun ranks) merge into the index one build makes,
shards of another model or an incomplete set are refused, and a compressed IVF-PQ index keeps no raw vectors,
trades recall for speed with nprobe, and round-trips through its file safely."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sketchdown import cli
from sketchdown.errors import InputError
from sketchdown.retrieval import Index, ModelMismatchError, load, recall_at_k, structures
from sketchdown.retrieval.structures import Compression

SIDE = 32


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(11):
        sub = folder / ("a" if i % 3 else "b")
        sub.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(sub / f"p{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def model():
    return load("mobilenet_v2", canvas=SIDE, photo_size=SIDE)


def same(a: Index, b: Index) -> None:
    assert a.paths == b.paths and np.array_equal(a.stamps, b.stamps) and a.root == b.root
    assert np.allclose(a.vectors, b.vectors, atol=1e-5)


def test_shards_merge_into_the_index_one_build_makes(photos, model, tmp_path):
    whole = Index.build(model, photos)
    files = []
    for i in range(3):
        part = Index.build(model, photos, shard=(i, 3))
        assert part.shard == (i, 3) and len(part) in (3, 4)
        part.save(tmp_path / f"s{i}.idx")
        files.append(tmp_path / f"s{i}.idx")
    merged = Index.merge([Index.load(f) for f in reversed(files)])
    same(whole, merged)
    assert merged.shard is None and merged.kind == "fp16"  # auto, for a catalogue this size
    sketch = np.full((64, 64), 255, np.uint8)
    sketch[20:40, 10:50] = 0
    merged.attach(model)
    assert [h.path for h in merged.search(sketch, 5)] == [h.path for h in whole.search(sketch, 5)]


def test_incomplete_or_foreign_shards_are_refused(photos, model):
    parts = [Index.build(model, photos, shard=(i, 2)) for i in range(2)]
    with pytest.raises(InputError, match="exactly once"):
        Index.merge([parts[0], parts[0]])
    with pytest.raises(InputError, match="exactly once"):
        Index.merge([parts[1]])
    other = load("mobilenet_v2", canvas=SIDE, photo_size=SIDE + 8)  # another photo size: other vectors
    with pytest.raises(ModelMismatchError, match="photo encoder"):
        Index.merge([parts[0], Index.build(other, photos, shard=(1, 2))])
    with pytest.raises(InputError, match="not a shard"):
        Index.merge([Index.build(model, photos), parts[1]])


def test_shard_and_merge_from_the_command_line(photos, tmp_path, capsys):
    common = ["--model", "mobilenet_v2", "--photo-size", str(SIDE)]
    assert cli.main(["index", str(photos), "-o", str(tmp_path / "one.idx"), *common]) == 0
    for i in range(2):
        assert cli.main(["index", str(photos), "-o", str(tmp_path / f"s{i}.idx"), "--shard", f"{i}/2", *common]) == 0
    assert "shard 1 of 2" in capsys.readouterr().out
    assert cli.main(["index", "merge", str(tmp_path / "s0.idx"), str(tmp_path / "s1.idx"), "-o",
                     str(tmp_path / "all.idx")]) == 0
    same(Index.load(tmp_path / "one.idx"), Index.load(tmp_path / "all.idx"))
    assert cli.main(["index", "merge", str(tmp_path / "s0.idx"), "-o", str(tmp_path / "x.idx")]) == 2
    with pytest.raises(SystemExit):  # refused by the parser, before any work
        cli.main(["index", str(photos), "-o", str(tmp_path / "y.idx"), "--shard", "2/2", *common])
    assert cli.KIND_CHOICES == structures.KINDS  # the parser's copy (torch-free) of the kinds


@pytest.mark.slow
def test_torchrun_ranks_encode_their_shards_and_rank0_merges(photos, tmp_path):
    from sketchdown.serve.process import free_port

    out = tmp_path / "t.idx"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(free_port()), "-m", "sketchdown", "index", str(photos), "-o", str(out), "--model",
                           "mobilenet_v2", "--photo-size", str(SIDE)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "encoded by 2 processes" in done.stdout and not list(tmp_path.glob("t.idx.shard*"))
    assert cli.main(["index", str(photos), "-o", str(tmp_path / "one.idx"), "--model", "mobilenet_v2",
                     "--photo-size", str(SIDE)]) == 0
    same(Index.load(tmp_path / "one.idx"), Index.load(out))


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((32, d))
    x = centres[rng.integers(32, size=n)] + 0.3 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_ivfpq_keeps_codes_not_vectors_and_nprobe_trades_speed_for_recall(tmp_path):
    n, d = 4000, 64
    vectors, queries = clustered(n, d), clustered(200, d, seed=1)
    info = {"identity": "x" * 64, "source": None, "backbone": "x", "dim": d, "photo_size": 8, "canvas": 8}
    paths, stamps = [f"{i}.jpg" for i in range(n)], np.zeros((n, 2))
    exact = Index(tmp_path, paths, vectors, stamps, info, "exact")
    comp = Compression(nlist=32, pq_bytes=16, nprobe=1)
    ivf = Index(tmp_path, paths, None, stamps, info, "ivfpq",
                structure=structures.build(vectors, "ivfpq", comp), compression=comp)
    truth = exact.search_vectors(queries, 10)[1]
    recall = {}
    for nprobe in (1, 4, 32):
        ivf.nprobe = nprobe
        recall[nprobe] = recall_at_k(ivf.search_vectors(queries, 10)[1], truth)
    assert recall[1] < recall[4] <= recall[32] and recall[32] > 0.6  # all cells: only the codes' loss is left
    ivf.save(tmp_path / "c.idx")
    exact.save(tmp_path / "e.idx")
    assert structures.serialize(ivf._faiss).nbytes < vectors.nbytes / 4  # codes, cells and codebooks
    assert (tmp_path / "c.idx").stat().st_size < (tmp_path / "e.idx").stat().st_size / 3
    again = Index.load(tmp_path / "c.idx")
    assert again.vectors is None and again.kind == "ivfpq" and again.compression == comp
    again.nprobe = 4
    ivf.nprobe = 4
    assert np.array_equal(again.search_vectors(queries, 10)[1], ivf.search_vectors(queries, 10)[1])


def test_an_ivfpq_file_with_a_foreign_structure_is_refused(tmp_path):
    d = 16
    info = {"identity": "x" * 64, "source": None, "backbone": "x", "dim": d, "photo_size": 8, "canvas": 8}
    a, b = clustered(600, d), clustered(500, d, seed=2)
    comp = Compression(nlist=4, pq_bytes=4)
    ix = Index(tmp_path, [f"{i}" for i in range(600)], None, np.zeros((600, 2)), info, "ivfpq",
               structure=structures.build(a, "ivfpq", comp), compression=comp)
    ix._faiss = structures.build(b, "ivfpq", comp)  # 500 photos in the structure, 600 in the index
    ix.save(tmp_path / "bad.idx")
    with pytest.raises(InputError, match="does not hold"):
        Index.load(tmp_path / "bad.idx")


def test_a_small_catalogue_builds_as_ivfpq_end_to_end(photos, model, tmp_path):
    ix = Index.build(model, photos, kind="ivfpq", compression=Compression(nlist=1, pq_bytes=16))
    assert ix.vectors is None and len(ix) == 11
    ix.save(tmp_path / "s.idx")
    sketch = np.full((64, 64), 255, np.uint8)
    sketch[10:50, 30:34] = 0
    hits = Index.load(tmp_path / "s.idx", model=model).search(sketch, 3)
    assert len(hits) == 3 and hits.ids == sorted(set(hits.ids), key=hits.ids.index)
