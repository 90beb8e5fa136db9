"""Short triplet runs on a handful of real Chair-V1 files: the loss falls, resume is exact, checkpoints round-trip."""

import dataclasses
import json

import pytest
import torch

from sketchdown.config import from_sources, write_yaml
from sketchdown.errors import InputError, SketchdownError
from sketchdown.losses import triplet_loss
from sketchdown.models.embed import load_model, read_checkpoint
from sketchdown.train.loop import lr_at
from sketchdown.train.triplet import TrainConfig, train

TINY = TrainConfig(train_sets=("chairs-v1",), limit=16, photo_size=64, canvases=(64,), eval_canvas=64,
                   batch_size=8, steps_per_epoch=2, lr=1e-3, warmup_epochs=0.5, epochs=2, val_fraction=0.05)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny steps run fastest on one thread


def test_triplet_loss_hand_made_case():
    s = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[0.6, 0.8]])  # d(s, p) = sqrt(0.16 + 0.64) = 0.894
    n = torch.tensor([[0.0, 1.0]])  # d(s, n) = sqrt(2) = 1.414
    t, tn = torch.tensor([0]), torch.tensor([1])
    expected = max(0.0, 0.2 + 0.8 ** 0.5 - 2 ** 0.5)
    assert triplet_loss(s, p, n, t, tn, margin=0.2).item() == pytest.approx(expected, abs=1e-6)
    assert triplet_loss(s, p, n, t, tn, margin=1.0).item() == pytest.approx(1.0 + 0.8 ** 0.5 - 2 ** 0.5, abs=1e-6)


def test_mining_picks_the_right_negative():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # perfect positives
    n = torch.tensor([[0.9, 0.1], [-1.0, 0.0]])
    t, tn = torch.tensor([0, 1]), torch.tensor([2, 3])
    # sketch 0: hardest negative is n[0] (close), which violates the margin; random uses it too
    hard = triplet_loss(s, p, n, t, tn, mining="hard").item()
    assert hard > 0
    # the same photo identity is never a negative, even when it appears in another slot
    assert triplet_loss(s, p, p.flip(0), t, t.flip(0), mining="hard").item() == pytest.approx(
        max(0, 0.2 - 2 ** 0.5), abs=1e-6)


def test_lr_schedule_warms_up_then_decays():
    lrs = [lr_at(i, 100, 10, 1.0) for i in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 0.01


def test_short_run_lowers_the_loss_and_writes_the_run_folder(tmp_path, data):
    cfg = dataclasses.replace(TINY, epochs=4, augment=False, data=str(data))
    result = train(cfg, tmp_path / "run", progress=False)
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 4
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for name in ("config.yaml", "command.txt", "best.pt", "last.pt", "test.json"):
        assert (tmp_path / "run" / name).is_file()
    assert from_sources(TrainConfig, tmp_path / "run" / "config.yaml") == cfg
    assert result["test"][0]["queries"] == 97  # Chair-V1 test, evaluated once at the end


def test_resume_continues_exactly(tmp_path, data):
    cfg = dataclasses.replace(TINY, data=str(data))
    train(cfg, tmp_path / "straight", progress=False)
    train(dataclasses.replace(cfg, epochs=1), tmp_path / "cut", progress=False)  # "interrupted" after epoch 1
    write_yaml(cfg, tmp_path / "cut" / "config.yaml")  # the full run's config, as the CLI's --resume reads it
    train(cfg, tmp_path / "cut", resume=True, progress=False)
    a = read_checkpoint(tmp_path / "straight" / "last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "cut" / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SketchdownError, match="--resume"):
        train(cfg, tmp_path / "straight", progress=False)  # never silently overwrite a run


def test_checkpoint_carries_its_config(tmp_path, data):
    cfg = dataclasses.replace(TINY, epochs=1, embed_dim=32, data=str(data))
    train(cfg, tmp_path / "run", progress=False)
    ckpt = read_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt["config"]["embed_dim"] == 32 and ckpt["model_config"]["sketch"]["backbone"] == "mobilenet_v2"
    model = load_model(tmp_path / "run" / "best.pt")
    assert model.encode_sketch(torch.rand(1, 3, 64, 64)).shape == model.encode_photo(torch.rand(1, 3, 64, 64)).shape == (1, 32)
    with pytest.raises(SketchdownError, match="encode_sketch"):
        model(torch.rand(1, 3, 64, 64))


def test_config_errors_are_clear(tmp_path):
    (tmp_path / "bad.yaml").write_text("backbone: mobilenet_v2\nlearning_rate: 3\n")
    with pytest.raises(InputError, match="unknown config keys"):
        from_sources(TrainConfig, tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text("mining: hardest\n")
    with pytest.raises(InputError, match="mining"):
        from_sources(TrainConfig, tmp_path / "bad2.yaml")
    (tmp_path / "bad3.yaml").write_text("sketch_augment: wild\n")
    with pytest.raises(InputError, match="sketch_augment must be one of"):
        from_sources(TrainConfig, tmp_path / "bad3.yaml")


@pytest.mark.parametrize("backbone,k", [("mobilenet_v2", 7), ("efficientnet_lite0", 4), ("vgg16", 28)])
def test_trunk_then_rest_equals_the_whole_network(backbone, k):
    from sketchdown.models.embed import create_model

    model = create_model(backbone, weights="none").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.forward_from(model.trunk(x, k), k), model(x), atol=1e-5)


def test_cached_run_validates_like_the_full_model_and_resumes_exactly(tmp_path, data, monkeypatch):
    from sketchdown.data.datasets import TripletDataset
    from sketchdown.eval.evaluate import evaluate
    from sketchdown.train.cache import trunk_views, validate_cached
    from sketchdown.train.triplet import build_sets

    monkeypatch.setenv("SKETCHDOWN_HOME", str(tmp_path / "home"))
    cfg = dataclasses.replace(TINY, data=str(data), branches="shared", freeze_blocks=14, cache_views=2)
    train(cfg, tmp_path / "straight", progress=False)
    assert len(list((tmp_path / "home" / "features").glob("*.pt"))) == 2  # train views + validation view
    train(dataclasses.replace(cfg, epochs=1), tmp_path / "cut", progress=False)
    write_yaml(cfg, tmp_path / "cut" / "config.yaml")
    train(cfg, tmp_path / "cut", resume=True, progress=False)
    a = read_checkpoint(tmp_path / "straight" / "last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "cut" / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    model = load_model(tmp_path / "straight" / "best.pt")
    _, val, _ = build_sets(cfg)
    views = trunk_views(model, 14, TripletDataset(val, (64,), 64, augment=False), 1, progress=False)
    cached = validate_cached(model, views, val, 64)
    full = evaluate(model, val, 64, 64, progress=False)
    assert cached["acc1"] == full["acc1"] and cached["mean_rank"] == pytest.approx(full["mean_rank"], abs=0.05)


def test_per_canvas_scales_and_shifts_get_their_own_rate():
    """``canvas_affine_lr``: a multi-canvas sketch tower's batch-norm scales and shifts (per canvas, or shared)
    form their own AdamW group at that multiple of the rate; every other trainable parameter stays in the first
    group, each parameter in one group."""
    from sketchdown.models.embed import create_model
    from sketchdown.train.loop import param_groups

    model = create_model(weights="none", branches="untied", canvas_stats=(32, 64), canvas_affine=True)
    groups = param_groups(model, 100.0)
    assert [g["lr_scale"] for g in groups] == [1.0, 100.0]
    assert all(n.endswith(("canvas_weight", "canvas_bias")) for n, p in model.named_parameters()
               if any(p is q for q in groups[1]["params"]))
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert len(param_groups(create_model(weights="none"), 100.0)) == 1  # no multi-canvas tower: one group
    assert len(param_groups(model, 1.0)) == 1  # at 1, one group: runs made before the option resume
    shared = create_model(weights="none", branches="untied", canvas_stats=(32, 64))  # shared scales and shifts
    names = {id(p): n for n, p in shared.named_parameters()}
    fast = param_groups(shared, 100.0)[1]["params"]
    assert fast and all(names[id(p)].startswith("sketch.") and names[id(p)].endswith((".weight", ".bias"))
                        and p.dim() == 1 for p in fast)
    residual = create_model(weights="none", branches="untied", canvas_stats=(32, 64), canvas_affine=True,
                            canvas_affine_residual=True)  # the offsets and the shared rows they offset, both fast
    names = {id(p): n for n, p in residual.named_parameters()}
    fast = {names[id(p)].rsplit(".", 1)[1] for p in param_groups(residual, 100.0)[1]["params"]}
    assert fast == {"weight", "bias", "canvas_weight", "canvas_bias"}
    with pytest.raises(ValueError, match="canvas_affine_lr"):
        dataclasses.replace(TINY, canvas_affine_lr=0.0)
    with pytest.raises(ValueError, match="canvas_affine_residual needs canvas_affine"):
        dataclasses.replace(TINY, canvas_affine_residual=True)
    with pytest.raises(ValueError, match="canvas_unstride needs"):  # TINY trains at 64 only
        dataclasses.replace(TINY, canvas_unstride=(64,))
    with pytest.raises(ValueError, match="canvas_unstride needs"):  # a canvas not trained at
        dataclasses.replace(TINY, canvases=(64, 128), canvas_unstride=(32,))
    assert dataclasses.replace(TINY, canvases=(32, 64), branches="untied", weights="none",
                               canvas_unstride=(32,)).build_model().sketch.config.canvas_unstride == (32,)
