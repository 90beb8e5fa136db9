"""ONNX export: dynamic batch and canvas, parity with torch, the same ranking, and refusal of another model's file."""

import numpy as np
import pytest
import torch

import sketchdown
from sketchdown.errors import InputError, SketchdownError
from sketchdown.retrieval import Index
from sketchdown.retrieval.onnx import TOLERANCE, OnnxEngine, export_onnx, verify_onnx

SIDE = 64


@pytest.fixture(scope="module")
def model():
    return sketchdown.load("mobilenet_v2", canvas=SIDE, photo_size=SIDE, precision="fp32")  # parity is fp32 vs fp32


@pytest.fixture(scope="module")
def exported(model):
    return export_onnx(model)


def test_onnxruntime_matches_torch_at_two_sizes_and_any_batch(model, exported):
    rows = verify_onnx(model, exported, shapes=((1, 32), (3, 128)))
    assert [(r["batch"], r["side"]) for r in rows] == [(1, 32), (3, 128)]
    assert all(r["max_abs_diff"] < TOLERANCE for r in rows)
    engine = OnnxEngine(exported)
    x = np.random.default_rng(1).random((5, 3, 48, 80), dtype=np.float32)  # another batch, a non-square canvas
    out = engine(x)
    assert out.shape == (5, model.dim) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.abs(out - model.engine(x, "sketch")).max() < TOLERANCE
    with pytest.raises(SketchdownError, match="differs from torch"):
        verify_onnx(model, exported, shapes=((1, 32),), tolerance=1e-12)


def test_both_engines_rank_the_test_photos_alike(model, exported, data):
    folder = data / "qmul-v1" / "shoes" / "test"
    photos = sorted((folder / "images").glob("*.jpg"))[:12]
    index = Index.build(model, photos)
    onnx_index = Index(index.root, index.paths, index.vectors, index.stamps, index.model).attach(
        model.with_engine("onnx", exported))
    for p in photos:
        sketch = folder / "sketches" / f"{p.stem}.png"
        assert [h.path for h in index.search(sketch)] == [h.path for h in onnx_index.search(sketch)]


def test_a_photo_folder_is_indexed_and_searched_on_the_engine_asked_for(data, tmp_path):
    """What ``sketchdown serve`` does with a photo folder by default: both on onnxruntime, ranking as torch does."""
    from sketchdown.retrieval.index import open_catalogue

    folder = data / "qmul-v1" / "shoes" / "test"
    for p in sorted((folder / "images").glob("*.jpg"))[:4]:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    sketch = folder / "sketches" / f"{sorted(tmp_path.glob('*.jpg'))[0].stem}.png"
    on_torch = open_catalogue(tmp_path, "mobilenet_v2", canvas=SIDE)
    on_onnx = open_catalogue(tmp_path, "mobilenet_v2", canvas=SIDE, engine="onnx")
    assert (on_torch.encoder.engine.name, on_onnx.encoder.engine.name) == ("torch", "onnx")
    assert [h.path for h in on_torch.search(sketch)] == [h.path for h in on_onnx.search(sketch)]


def test_onnxruntime_threads_sleep_between_runs(exported):
    """Spinning pool threads took the cores from the Python work between a query's network calls (34 vs 20 ms)."""
    options = OnnxEngine(exported).session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_an_onnx_file_of_another_model_is_refused(tmp_path, model):
    other = sketchdown.load("mobilenet_v2", canvas=SIDE, photo_size=SIDE + 32)  # other photo size: other identity
    export_onnx(other, tmp_path / "other.onnx")
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(SketchdownError, match="exported from another model"):
        model.with_engine("onnx", tmp_path / "other.onnx")
    assert other.with_engine("onnx", tmp_path / "other.onnx").engine.name == "onnx"
    (tmp_path / "fake.onnx").write_bytes(b"not a model")
    for bad in (tmp_path / "fake.onnx", tmp_path / "missing.onnx"):
        with pytest.raises(InputError):
            model.with_engine("onnx", bad)
    with pytest.raises(SketchdownError, match="unknown engine"):
        model.with_engine("tensorrt")


@pytest.mark.parametrize("branches", ["untied", "ensemble"])
def test_two_tower_models_export_both_towers_in_one_file(branches):
    from sketchdown.models.embed import EnsembleNet, create_model
    from sketchdown.retrieval.encoder import Retriever

    torch.manual_seed(0)
    twin = create_model("mobilenet_v2", weights="none", branches="untied")
    net = twin if branches == "untied" else EnsembleNet([twin, create_model("mobilenet_v2", weights="none")])
    retriever = Retriever(net, SIDE, SIDE)
    exported = export_onnx(retriever)
    rows = verify_onnx(retriever, exported, shapes=((1, 32), (2, 64)))
    assert {r["branch"] for r in rows} == {"sketch", "photo"}
    x = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
    engine = OnnxEngine(exported)
    assert np.abs(engine(x, "sketch") - engine(x, "photo")).max() > 1e-3  # two towers, not one served twice


@pytest.mark.parametrize("canvas_stats,affine,residual,unstride", [
    ((32, 64, 128), False, False, ()), ((64,), False, False, ()), ((32, 64, 128), True, False, ()),
    ((32, 64, 128), True, True, ()), ((32, 64, 128), True, False, (32,))])
def test_per_canvas_statistics_follow_the_canvas_in_onnx_too(canvas_stats, affine, residual, unstride):
    """The canvas slot is computed from the input's shape inside the graph, not baked in at the export size (so is
    the stride of the downsampling ``canvas_unstride`` skips at 32 px)."""
    from sketchdown.models.canvas_norm import CanvasBatchNorm2d
    from sketchdown.models.embed import create_model
    from sketchdown.retrieval.encoder import Retriever

    torch.manual_seed(0)
    twin = create_model("mobilenet_v2", weights="none", branches="untied", canvas_stats=canvas_stats,
                        canvas_affine=affine, canvas_affine_residual=residual, canvas_unstride=unstride)
    for norm in (m for m in twin.sketch.modules() if isinstance(m, CanvasBatchNorm2d)):
        norm.canvas_mean[0] += 0.5  # make the first canvas's statistics differ from the others
        norm.canvas_var[-1] *= 2.0
        if affine:  # and its scale and shift (or their offsets)
            with torch.no_grad():
                norm.canvas_weight[0] += 0.5 * norm.scale_shift()[0]
                norm.canvas_bias[-1] += 0.2
    retriever = Retriever(twin.eval(), 64, 64)
    rows = verify_onnx(retriever, export_onnx(retriever))  # raises beyond the tolerance
    assert {r["side"] for r in rows if r["branch"] == "sketch"} >= set(canvas_stats)  # every canvas with statistics


@pytest.mark.parametrize("affine", [False, True])
def test_per_canvas_statistics_fold_into_the_convolutions_and_the_weights_are_stored_once(tmp_path, affine):
    """One graph per canvas, its statistics (and scale and shift) constants: onnxruntime's optimised graph has no
    batch norm left, and the file is not one copy of the sketch tower per canvas."""
    import onnx
    import onnxruntime as ort

    from sketchdown.models.embed import create_model
    from sketchdown.retrieval.encoder import Retriever
    from sketchdown.retrieval.onnx import session_options

    def export(canvas_stats: tuple[int, ...]) -> bytes:
        torch.manual_seed(0)
        twin = create_model("mobilenet_v2", weights="none", branches="untied", canvas_stats=canvas_stats,
                            canvas_affine=affine and bool(canvas_stats))
        return export_onnx(Retriever(twin.eval(), 64, 64))

    plain, per_canvas = export(()), export((32, 64, 128, 256))
    assert len(per_canvas) < 1.1 * len(plain)
    options = session_options(1)
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(per_canvas, options, providers=["CPUExecutionProvider"])

    def ops(graph) -> list[str]:
        return [op for n in graph.node for op in [n.op_type] + [o for a in n.attribute if a.HasField("g")
                                                                 for o in ops(a.g)]]

    optimised = ops(onnx.load(tmp_path / "optimised.onnx").graph)
    assert optimised.count("If") == 1 + 3  # photo or sketch, then the sketch's four canvases
    assert "BatchNormalization" not in optimised


def test_learned_policies_move_to_onnxruntime_with_their_student(data, chair_pickle):
    import torch

    from sketchdown.data import io
    from sketchdown.data.datasets import load_set
    from sketchdown.retrieval import load
    from sketchdown.retrieval.onnx import OnnxPolicy
    from sketchdown.select.policy import PolicyConfig, create_policy

    sketches = [io.read_sketch(p) for p in load_set("chairs-v1", "test", data).sketches[:3]]
    sketches += list(io.read_sketchx_pickle(chair_pickle).values())[:3]
    for kind in ("raster", "vector"):
        torch.manual_seed(0)
        policy = create_policy(PolicyConfig(kind=kind))
        fast = OnnxPolicy(policy)
        for s in sketches:
            feat = policy.features(s)
            with torch.inference_mode():
                expected = policy(*policy.collate([feat]))[0].numpy()
            assert abs(fast.logits(feat)[0] - expected).max() < 1e-5
        student = load("mobilenet_v2", canvas=64, photo_size=64, selector=policy)
        moved = student.with_engine("onnx")
        assert isinstance(moved.selector, OnnxPolicy)
        for s in sketches:
            assert moved.query(s).canvas == student.query(s).canvas
        assert moved.with_engine("torch").selector is policy
