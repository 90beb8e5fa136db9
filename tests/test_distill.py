"""Relational distillation: the loss on hand-made cases, and a short cached run on real Chair-V1 files."""

import dataclasses
import json
import shutil

import pytest
import torch

from sketchdown.errors import SketchdownError
from sketchdown.losses import rkd_batch_loss, rkd_photo_loss, rkd_triplet_loss
from sketchdown.models.embed import load_model
from sketchdown.train.distill import DistillConfig, distill
from sketchdown.train.triplet import TrainConfig, train


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny steps run fastest on one thread
TINY = dict(train_sets=("chairs-v1",), limit=16, photo_size=64, batch_size=8, steps_per_epoch=2, lr=1e-3,
            val_fraction=0.05, augment=False, precision="fp32", memory_format="contiguous")  # + data


def test_rkd_known_value():
    # student: d_sp = 1, d_sn = 1, d_pn = sqrt(2); teacher: d_sp = 0.5, d_sn = 2, d_pn = 1
    s, p, n = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    ts, tp, tn = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.5, 0.0]]), torch.tensor([[0.5, 1.0]])
    # teacher d_sn = sqrt(0.25 + 1) = 1.118, d_pn = 1
    beta = 0.1

    def huber(x: float) -> float:
        x = abs(x)
        return 0.5 * x * x / beta if x < beta else x - 0.5 * beta

    expected = huber(1 - 0.5) + huber(1 - 1.25 ** 0.5) + huber(2 ** 0.5 - 1)
    assert rkd_triplet_loss(s, p, n, ts, tp, tn, beta).item() == pytest.approx(expected, abs=1e-6)


def test_rkd_is_zero_when_student_equals_teacher_even_across_sizes():
    torch.manual_seed(0)
    s, p, n = (torch.nn.functional.normalize(torch.randn(6, 16), dim=1) for _ in range(3))
    assert rkd_triplet_loss(s, p, n, s, p, n).item() == 0.0
    assert rkd_batch_loss(s, torch.cat([p, n]), s, torch.cat([p, n])).item() == 0.0
    # distances, not features: a rotated, zero-padded copy in a larger space has the same geometry
    q, _ = torch.linalg.qr(torch.randn(32, 32))
    lift = lambda x: torch.cat([x, torch.zeros(len(x), 16)], dim=1) @ q  # noqa: E731
    assert rkd_triplet_loss(s, p, n, lift(s), lift(p), lift(n)).item() == pytest.approx(0.0, abs=1e-6)
    assert rkd_photo_loss(p, lift(p)).item() == pytest.approx(0.0, abs=1e-6)
    assert rkd_triplet_loss(s, p, n, s, p, -n).item() > 0


def test_short_distillation_lowers_the_loss(tmp_path, data, monkeypatch):
    monkeypatch.setenv("SKETCHDOWN_HOME", str(tmp_path / "home"))  # the trunk caches go here, not the user's
    teacher_cfg = TrainConfig(train_sets=("chairs-v1",), limit=16, photo_size=64, canvases=(64,), eval_canvas=64,
                              batch_size=8, epochs=2, lr=1e-3, val_fraction=0.05, branches="shared", freeze_blocks=14, cache_views=2,
                              data=str(data), precision="fp32", memory_format="contiguous")
    train(teacher_cfg, tmp_path / "teacher", progress=False)
    unpaired = tmp_path / "unpaired"
    unpaired.mkdir()
    for photo in sorted((data / "qmul-v1" / "chairs" / "test" / "images").glob("*.jpg"))[:6]:
        shutil.copy(photo, unpaired / photo.name)
    cfg = DistillConfig(train_sets=("chairs-v1",), limit=16, photo_size=64, canvases=(32, 64), eval_canvas=64,
                        batch_size=8, epochs=4, lr=1e-3, warmup_epochs=0.5, val_fraction=0.05, freeze_blocks=7, branches="shared",
                        cache_views=2, data=str(data), teacher=str(tmp_path / "teacher"), lam=0.0,
                        embed_dim=32, relation="batch", unlabelled=str(unpaired))
    result = distill(cfg, tmp_path / "student", progress=False)
    history = [json.loads(line) for line in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["train_rkd"] < history[0]["train_rkd"]
    assert "val_acc1@32" in history[0] and history[0]["train_rkd_unlabelled"] > 0
    assert [m["canvas"] for m in result["test"]] == [32, 64]
    assert load_model(tmp_path / "student" / "best.pt").dim == 32  # student size differs from the teacher's


def test_distill_config_refuses_nonsense():
    with pytest.raises(ValueError, match="teacher"):
        DistillConfig()
    with pytest.raises(ValueError, match="relation"):
        DistillConfig(teacher="x", relation="all")
    with pytest.raises(ValueError, match="photo_tower=own"):
        DistillConfig(teacher="x", photo_tower="teacher", unlabelled="photos")
    with pytest.raises(ValueError, match="untied"):
        DistillConfig(teacher="x", branches="shared", freeze_blocks=7, cache_views=1, student_init="teacher")


def test_ensemble_run_scores_and_teaches(tmp_path, data, monkeypatch):
    from sketchdown.models.embed import EnsembleNet
    from sketchdown.train.ensemble import EnsembleConfig, build_ensemble

    monkeypatch.setenv("SKETCHDOWN_HOME", str(tmp_path / "home"))
    base = TrainConfig(train_sets=("chairs-v1",), limit=16, photo_size=64, canvases=(64,), eval_canvas=64,
                       batch_size=8, epochs=1, lr=1e-3, val_fraction=0.05, branches="shared", freeze_blocks=14, cache_views=1,
                       data=str(data))
    train(base, tmp_path / "a", progress=False)
    train(dataclasses.replace(base, backbone="efficientnet_lite0", freeze_blocks=7, embed_dim=16), tmp_path / "b",
          progress=False)
    result = build_ensemble(EnsembleConfig(members=(str(tmp_path / "a"), str(tmp_path / "b"))), tmp_path / "ens",
                            progress=False)
    assert result["test"][0]["queries"] == 97
    model = load_model(tmp_path / "ens" / "best.pt")
    assert isinstance(model, EnsembleNet) and model.dim == 1280 + 16
    cfg = DistillConfig(train_sets=("chairs-v1",), limit=16, photo_size=64, canvases=(32, 64), eval_canvas=64,
                        batch_size=8, epochs=1, val_fraction=0.05, branches="shared", freeze_blocks=14, cache_views=1,
                        data=str(data), teacher=str(tmp_path / "ens"))
    assert distill(cfg, tmp_path / "student", progress=False)["test"]


def test_full_fine_tuning_distillation_needs_no_cache(tmp_path, data, monkeypatch):
    """Every student layer trains on fresh images; the untied teacher embeds each batch itself; nothing is cached.
    (fp32 + channels_last: bf16 steps are tested in test_precision, and emulated bf16 on a CPU without it takes a
    minute here.)"""
    from sketchdown.models.embed import TwinNet

    monkeypatch.setenv("SKETCHDOWN_HOME", str(tmp_path / "home"))
    tiny = dict(TINY, data=str(data), memory_format="channels_last")
    train(TrainConfig(canvases=(64,), eval_canvas=64, epochs=1, embed_dim=16, **tiny), tmp_path / "teacher",
          progress=False)
    cfg = DistillConfig(canvases=(32, 64), eval_canvas=64, epochs=4, warmup_epochs=0.5, lam=0.0, relation="batch",
                        teacher=str(tmp_path / "teacher"), **tiny)
    result = distill(cfg, tmp_path / "student", progress=False)
    history = [json.loads(line) for line in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["train_rkd"] < history[0]["train_rkd"]
    assert history[0]["precision"] == "fp32+channels_last" and "val_acc1@32" in history[0]
    assert [m["canvas"] for m in result["test"]] == [32, 64]
    assert isinstance(load_model(tmp_path / "student" / "best.pt"), TwinNet)
    assert not (tmp_path / "home" / "features").exists()
    with pytest.raises(SketchdownError, match="canvas 64"):  # the teacher must see the sketch at its own canvas
        distill(dataclasses.replace(cfg, canvases=(32,), eval_canvas=32), tmp_path / "other", progress=False)


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory, data):
    """One tiny untied teacher (64 px, one epoch) for the students below, trained once."""
    folder = tmp_path_factory.mktemp("teacher")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKETCHDOWN_HOME", str(folder / "home"))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            train(TrainConfig(canvases=(64,), eval_canvas=64, epochs=1, data=str(data), **TINY), folder / "run",
                  progress=False)
        finally:
            torch.set_num_threads(threads)
    return folder / "run"


def test_asymmetric_student_learns_the_teachers_photo_space(tmp_path, data, monkeypatch, tiny_teacher):
    """Design (b): the teacher's photo tower, frozen, embeds the gallery; the student's own sketch tower (a copy of
    the teacher's with statistics per canvas) learns to place sketches there. An index of the teacher's photo
    tower serves the student; one of a student with its own photo tower (design a) is refused."""
    from sketchdown.models.canvas_norm import CanvasBatchNorm2d
    from sketchdown.models.embed import TwinNet
    from sketchdown.retrieval import Index, ModelMismatchError, load

    monkeypatch.setenv("SKETCHDOWN_HOME", str(tmp_path / "home"))
    tiny = dict(TINY, data=str(data))
    cfg = DistillConfig(canvases=(32, 64), eval_canvas=64, epochs=3, warmup_epochs=0.5, relation="batch",
                        teacher=str(tiny_teacher), photo_tower="teacher", student_init="teacher", **tiny)
    distill(cfg, tmp_path / "student", progress=False)
    history = [json.loads(line) for line in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["train_direct"] < history[0]["train_direct"]
    teacher, student = load_model(tiny_teacher / "best.pt"), load_model(tmp_path / "student" / "best.pt")
    assert isinstance(student, TwinNet) and student.sketch.config.canvas_stats == (32, 64)
    assert any(isinstance(m, CanvasBatchNorm2d) for m in student.sketch.modules())
    t_state, s_state = teacher.photo.state_dict(), student.photo.state_dict()
    assert all(torch.equal(t_state[k], s_state[k]) for k in t_state)  # frozen: weights and statistics alike
    photos = sorted((data / "qmul-v1" / "chairs" / "test" / "images").glob("*.jpg"))[:4]
    gallery = Index.build(load(tiny_teacher, photo_size=64), photos)
    searched = gallery.attach(load(tmp_path / "student", photo_size=64))
    assert len(searched.search(data / "qmul-v1" / "chairs" / "test" / "sketches" / f"{photos[0].stem}.png", 2)) == 2
    own = distill(dataclasses.replace(cfg, photo_tower="own", student_init="weights", epochs=1), tmp_path / "own",
                  progress=False)
    assert own["test"]
    with pytest.raises(ModelMismatchError, match="photo encoder"):
        gallery.attach(load(tmp_path / "own", photo_size=64))


def test_unpaired_sketches_pull_the_small_canvases_onto_the_teacher(tmp_path, data, chair_pickle, monkeypatch,
                                                                   tiny_teacher):
    """Sketches without photos (ChairV2 strokes, drawn as QMUL's 1 px pen) teach the canvases below the teacher's:
    the student's embedding of each at 32 px is pulled onto the teacher's of it at 64, and that distance falls."""
    from sketchdown.data.datasets import SketchViews, unpaired_sketches
    from sketchdown.train.distill import WithSampled

    monkeypatch.setenv("SKETCHDOWN_HOME", str(tmp_path / "home"))
    cfg, history = _distil_from(tiny_teacher, data, tmp_path / "student", photo_tower="teacher",
                                unpaired=str(chair_pickle))
    assert history[-1]["train_unpaired"] < history[0]["train_unpaired"]

    sketches = unpaired_sketches(chair_pickle)
    assert len(sketches) == 952 and all(not s.is_vector for s in sketches[:5])  # ChairV2's train split, as rasters
    assert sketches[0].raster.shape == (256, 256) and sketches[0].raster.min() < 128
    item = WithSampled(_triplets(data), "unpaired", SketchViews(sketches[:3], (32, 64), False, "trace"), 3)[0]
    assert sorted(item["unpaired"]) == [32, 64] and item["unpaired"][32].shape == (3, 32, 32)
    with pytest.raises(ValueError, match="unpaired_target=self"):
        dataclasses.replace(cfg, photo_tower="own", student_init="weights")


def test_unpaired_sketches_pulled_onto_the_students_own_largest_canvas(tmp_path, data, chair_pickle, tiny_teacher):
    """``unpaired_target="self"`` works with the student's own photo tower: each unpaired sketch's small canvas is
    pulled onto the student's embedding of it at the teacher's canvas (no gradient through that), not the
    teacher's; the step's logged pull is that distance, recomputed here by hand."""
    from torch.utils.data import default_collate

    from sketchdown.data.datasets import SketchViews, unpaired_sketches
    from sketchdown.train.distill import WithSampled, distill_step, student_from_teacher
    from sketchdown.train.triplet import embedders

    cfg = DistillConfig(canvases=(32, 64), eval_canvas=64, relation="batch", teacher=str(tiny_teacher),
                        student_init="teacher", photo_tower="own", unpaired=str(chair_pickle),
                        unpaired_target="self", unpaired_weight=0.5, **TINY, data=str(data))
    teacher = load_model(tiny_teacher / "best.pt").eval()
    student = student_from_teacher(cfg, teacher).train()
    ds = WithSampled(_triplets(data), "unpaired", SketchViews(unpaired_sketches(chair_pickle)[:6], (32, 64), False,
                                                              "trace"), 3)
    batch = default_collate([ds[i] for i in range(4)])
    torch.manual_seed(0)
    _, logs = distill_step(cfg, 0, teacher, 64)(student, batch)
    embed_sketch, _ = embedders(student, 0)
    with torch.no_grad():
        views = batch["unpaired"]
        mine = (embed_sketch(views[32]) - embed_sketch(views[64])).pow(2).sum(1).mean()
        theirs = (embed_sketch(views[32]) - teacher.encode_sketch(views[64])).pow(2).sum(1).mean()
    assert logs["unpaired"] == pytest.approx(0.5 * mine.item(), rel=1e-4)
    assert abs(mine - theirs) > 1e-3  # the two targets differ, so the check above tells them apart


@pytest.mark.parametrize("residual", [False, True])
def test_canvas_affine_student_starts_as_the_teacher_and_moves_each_canvas_apart(data, tiny_teacher, residual):
    """``canvas_affine``: every canvas's scale and shift start as the teacher's (with ``canvas_affine_residual``:
    the shared row is the teacher's, the offsets zero), the student embeds as the teacher does before training,
    and a step moves the canvases' rows apart."""
    from torch.utils.data import default_collate

    from sketchdown.models.canvas_norm import CanvasBatchNorm2d
    from sketchdown.train.distill import distill_step, student_from_teacher

    cfg = DistillConfig(canvases=(32, 64), eval_canvas=64, relation="batch", teacher=str(tiny_teacher),
                        student_init="teacher", photo_tower="own", canvas_affine=True,
                        canvas_affine_residual=residual, **TINY, data=str(data))
    teacher = load_model(tiny_teacher / "best.pt").eval()
    student = student_from_teacher(cfg, teacher)
    assert student.sketch.config.canvas_affine and student.sketch.config.canvas_affine_residual == residual
    norms = [m for m in student.sketch.modules() if isinstance(m, CanvasBatchNorm2d)]
    first = next(m for m in teacher.sketch.modules() if isinstance(m, torch.nn.BatchNorm2d))
    for slot in (0, 1):
        norms[0].slot = slot
        assert torch.equal(norms[0].scale_shift()[0], first.weight)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(student.eval().encode_sketch(x), teacher.encode_sketch(x), atol=1e-5)
    student.train()
    optimiser = torch.optim.SGD(student.parameters(), lr=0.5)
    loss, _ = distill_step(cfg, 0, teacher, 64)(student, default_collate([_triplets(data)[i] for i in range(4)]))
    loss.backward()
    optimiser.step()
    assert any(not torch.equal(n.canvas_weight[0], n.canvas_weight[1]) for n in norms)
    with pytest.raises(ValueError, match="canvas_affine needs"):
        DistillConfig(canvases=(64,), canvas_affine=True, teacher=str(tiny_teacher))


def test_an_unstrided_student_starts_from_the_teacher_and_keeps_the_stride_at_the_other_canvases(data, tiny_teacher):
    """``canvas_unstride``: the student copies the teacher's weights and embeds a 64 px sketch as the teacher does;
    at 32 px its last downsampling runs at stride 1, so it differs there."""
    from sketchdown.train.distill import student_from_teacher

    cfg = DistillConfig(canvases=(32, 64), eval_canvas=64, relation="batch", teacher=str(tiny_teacher),
                        student_init="teacher", photo_tower="own", canvas_unstride=(32,), **TINY, data=str(data))
    teacher = load_model(tiny_teacher / "best.pt").eval()
    student = student_from_teacher(cfg, teacher).eval()
    assert student.sketch.config.canvas_unstride == (32,)
    x64, x32 = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(student.encode_sketch(x64), teacher.encode_sketch(x64), atol=1e-5)
        assert not torch.allclose(student.encode_sketch(x32), teacher.encode_sketch(x32), atol=1e-3)


def test_unpaired_sketches_through_running_statistics_leave_them_to_the_paired(data, chair_pickle, tiny_teacher):
    """``unpaired_bn="running"``: the unpaired sketches pass the batch norms in eval mode, so a step moves the
    running statistics exactly as the same step without them does (with "batch" they move them too), and the
    logged pull is the distance between eval-mode embeddings."""
    from torch.utils.data import default_collate

    from sketchdown.data.datasets import SketchViews, unpaired_sketches
    from sketchdown.train.distill import WithSampled, distill_step, student_from_teacher
    from sketchdown.train.triplet import embedders

    teacher = load_model(tiny_teacher / "best.pt").eval()
    ds = WithSampled(_triplets(data), "unpaired", SketchViews(unpaired_sketches(chair_pickle)[:6], (32, 64), False,
                                                              "trace"), 3)
    batch = default_collate([ds[i] for i in range(4)])
    paired = {k: v for k, v in batch.items() if k != "unpaired"}

    def stats_after(bn: str, b: dict) -> tuple[list[torch.Tensor], dict, torch.nn.Module]:
        cfg = DistillConfig(canvases=(32, 64), eval_canvas=64, relation="batch", teacher=str(tiny_teacher),
                            student_init="teacher", photo_tower="own", unpaired=str(chair_pickle),
                            unpaired_target="self", unpaired_bn=bn, unpaired_weight=0.5, **TINY, data=str(data))
        torch.manual_seed(0)
        student = student_from_teacher(cfg, teacher).train()
        torch.manual_seed(0)
        _, logs = distill_step(cfg, 0, teacher, 64)(student, b)
        return [b.clone() for n, b in student.named_buffers() if "mean" in n], logs, \
            student

    alone, _, _ = stats_after("running", paired)
    running, logs, student = stats_after("running", batch)
    moved, _, _ = stats_after("batch", batch)
    assert all(torch.equal(a, b) for a, b in zip(alone, running))
    assert not all(torch.equal(a, b) for a, b in zip(alone, moved))
    embed_sketch, _ = embedders(student.eval(), 0)
    with torch.no_grad():
        views = batch["unpaired"]
        pull = (embed_sketch(views[32]) - embed_sketch(views[64])).pow(2).sum(1).mean()
    assert logs["unpaired"] == pytest.approx(0.5 * pull.item(), rel=1e-4)
    assert [m.training for m in student.train().modules()] == [True] * len(list(student.modules()))
    with pytest.raises(ValueError, match="unpaired_bn"):
        DistillConfig(teacher=str(tiny_teacher), unpaired_bn="frozen", **TINY, data=str(data))


def test_design_a_from_the_teacher_learns_from_photos_without_sketches(tmp_path, data, monkeypatch, tiny_teacher):
    """Design (a) with both towers starting as the teacher's: both train (the photo tower leaves the teacher's
    weights), and photos without sketches add the teacher's photo-photo distances, which the student learns."""
    from sketchdown.data.datasets import PhotoViews
    from sketchdown.train.distill import WithSampled

    monkeypatch.setenv("SKETCHDOWN_HOME", str(tmp_path / "home"))
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    photos = sorted((data / "qmul-v1" / "chairs" / "test" / "images").glob("*.jpg"))[:8]
    for photo in photos:
        shutil.copy(photo, unlabelled / photo.name)
    _, history = _distil_from(tiny_teacher, data, tmp_path / "student", photo_tower="own",
                              unlabelled=str(unlabelled))
    assert history[-1]["train_rkd_unlabelled"] < history[0]["train_rkd_unlabelled"]
    teacher, student = load_model(tiny_teacher / "best.pt"), load_model(tmp_path / "student" / "last.pt")
    t_state, s_state = teacher.photo.state_dict(), student.photo.state_dict()
    assert not all(torch.equal(t_state[k], s_state[k]) for k in t_state)  # the photo tower trained
    assert student.sketch.config.canvas_stats == (32, 64)
    item = WithSampled(_triplets(data), "unlabelled", PhotoViews(photos, 64, augment=False), 2)[0]
    assert item["unlabelled"].shape == (3, 64, 64)


def test_canvas_weights_weigh_the_per_canvas_terms(data, tiny_teacher):
    """--canvas-weights: a canvas of weight 0 leaves the loss as if it were not trained at; equal weights are the
    plain mean; a weight list that does not match the canvases is refused."""
    from torch.utils.data import default_collate

    from sketchdown.train.distill import distill_step

    model = load_model(tiny_teacher / "best.pt").eval()
    ds = _triplets(data)
    batch = default_collate([ds[i] for i in range(4)])

    def loss(canvases: tuple[int, ...], weights: tuple[float, ...] = ()) -> float:
        cfg = DistillConfig(teacher="x", canvases=canvases, canvas_weights=weights, relation="batch", **TINY)
        with torch.no_grad():
            return distill_step(cfg, 0, model, 64)(model, batch)[0].item()

    only_32, only_64 = loss((32,)), loss((64,))
    assert only_32 != pytest.approx(only_64)
    assert loss((32, 64), (1.0, 0.0)) == pytest.approx(only_32, rel=1e-5)
    assert loss((32, 64), (0.0, 2.0)) == pytest.approx(only_64, rel=1e-5)
    assert loss((32, 64), (3.0, 1.0)) == pytest.approx(0.75 * only_32 + 0.25 * only_64, rel=1e-5)
    assert loss((32, 64)) == pytest.approx(loss((32, 64), (1.0, 1.0)), rel=1e-6)
    for bad in ((1.0,), (0.0, 0.0)):
        with pytest.raises(ValueError, match="one weight per canvas"):
            DistillConfig(teacher="x", canvases=(32, 64), canvas_weights=bad)
    with pytest.raises(ValueError, match="canvas_weights must be"):
        DistillConfig(teacher="x", canvases=(32, 64), canvas_weights=(1.0, -1.0))


def _distil_from(teacher, data, out, **knobs) -> tuple[DistillConfig, list[dict]]:
    """A tiny student distilled from ``teacher`` whose towers start as its copies (4 epochs at 32 and 64 px): its
    config and its per-epoch records."""
    cfg = DistillConfig(canvases=(32, 64), eval_canvas=64, epochs=4, warmup_epochs=0.5, relation="batch",
                        teacher=str(teacher), student_init="teacher", **TINY, data=str(data), **knobs)
    distill(cfg, out, progress=False)
    return cfg, [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _triplets(data):
    from sketchdown.data.datasets import TripletDataset, load_set

    return TripletDataset(load_set("chairs-v1", "train", data), (32, 64), 64, augment=False)


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_unpaired_sketches_refuse_a_source_without_sketches(tmp_path, make):
    from sketchdown.data.datasets import unpaired_sketches
    from sketchdown.errors import InputError

    source = tmp_path / "sketches"
    if make == "empty":
        source.mkdir()
    with pytest.raises(InputError, match="no such|no sketches"):
        unpaired_sketches(source)
