"""Weights folders (safetensors + manifest): round trip of every model kind, fp16 storage, and clear refusals."""

import json

import pytest
import torch

from sketchdown.errors import InputError
from sketchdown.models import artifact
from sketchdown.models.embed import EnsembleNet, TwinNet, create_model

X = torch.rand(2, 3, 64, 64)


@pytest.mark.parametrize("kind", ["shared", "untied", "ensemble"])
def test_round_trip_of_every_kind(tmp_path, kind):
    torch.manual_seed(0)
    if kind == "ensemble":
        model = EnsembleNet([create_model(weights="none", embed_dim=8, branches="untied"),
                             create_model(weights="none", embed_dim=4)]).eval()
    else:
        model = create_model(weights="none", embed_dim=16, branches=kind).eval()
    artifact.save(model, tmp_path / "w", {"eval_canvas": 256}, half=False)
    loaded, settings = artifact.load(tmp_path / "w")
    assert settings == {"eval_canvas": 256} and type(loaded) is type(model)
    with torch.no_grad():
        assert torch.allclose(loaded.encode_sketch(X), model.encode_sketch(X), atol=1e-6)
        assert torch.allclose(loaded.encode_photo(X), model.encode_photo(X), atol=1e-6)


def test_fp16_storage_is_half_the_size_and_close(tmp_path):
    model = create_model(weights="none", embed_dim=16, branches="untied").eval()
    artifact.save(model, tmp_path / "full", {}, half=False)
    artifact.save(model, tmp_path / "half", {}, half=True)
    full, half = (tmp_path / d / artifact.WEIGHTS for d in ("full", "half"))
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded, _ = artifact.load(tmp_path / "half")
    assert isinstance(loaded, TwinNet) and all(p.dtype == torch.float32 for p in loaded.parameters())
    with torch.no_grad():
        assert (loaded.encode_sketch(X) - model.encode_sketch(X)).abs().max() < 1e-2


def test_tampered_truncated_and_foreign_folders_are_refused(tmp_path):
    model = create_model(weights="none", embed_dim=8)
    folder = artifact.save(model, tmp_path / "w", {}, half=True)
    weights, manifest = folder / artifact.WEIGHTS, folder / artifact.MANIFEST
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="sha256"):
        artifact.load(folder)
    weights.write_bytes(data)
    meta = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(InputError, match="format"):
        artifact.load(folder)
    manifest.write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        artifact.load(folder)
    other = create_model(weights="none", embed_dim=4)  # a manifest whose config does not fit the weights
    manifest.write_text(json.dumps({**meta, "model_config": json.loads(json.dumps(other.config.__dict__))}))
    with pytest.raises(InputError, match="do not fit"):
        artifact.load(folder)
    with pytest.raises(InputError, match="not a sketchdown weights folder"):
        artifact.load(tmp_path)


@pytest.mark.usefixtures("one_thread")
def test_a_run_exports_with_its_settings_and_fp16_only_where_it_ranks_alike(tmp_path, data):
    from sketchdown.train.export import export_run
    from sketchdown.train.triplet import TrainConfig, train

    cfg = TrainConfig(train_sets=("chairs-v1",), limit=16, photo_size=64, canvases=(32, 64), eval_canvas=64,
                      batch_size=8, steps_per_epoch=1, epochs=1, val_fraction=0.05, data=str(data))
    train(cfg, tmp_path / "run", progress=False)
    report = export_run(tmp_path / "run", tmp_path / "w")
    model, settings = artifact.load(tmp_path / "w")
    assert settings["eval_canvas"] == 64 and settings["photo_size"] == 64 and settings["canvases"] == [32, 64]
    assert model.sketch.config.canvas_stats == (32, 64)  # per-canvas statistics travel with the weights
    meta = json.loads((tmp_path / "w" / artifact.MANIFEST).read_text())
    assert meta["dtype"] == report["dtype"]
    assert (report["dtype"] == "float16") == (report["val_acc1_fp16"] == report["val_acc1_fp32"]
                                              and report["val_mean_rank_fp16"] == report["val_mean_rank_fp32"])
