"""Artifacts (safetensors + manifest): round trip of every model kind and of a retriever with its selector and
settings, fp16 storage, the export of a run, and clear refusals of tampered, foreign and mismatched folders."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import sketchdown
from sketchdown.errors import InputError
from sketchdown.files import sha256_file
from sketchdown.models import artifact
from sketchdown.models.embed import EnsembleNet, TwinNet, create_model
from sketchdown.retrieval import Retriever
from sketchdown.select.policy import PolicyConfig, create_policy

X = torch.rand(2, 3, 64, 64)


def _model(kind: str):
    torch.manual_seed(0)
    if kind == "ensemble":
        return EnsembleNet([create_model(weights="none", embed_dim=8, branches="untied"),
                            create_model(weights="none", embed_dim=4)]).eval()
    return create_model(weights="none", embed_dim=16, branches=kind).eval()


@pytest.mark.parametrize("kind", ["shared", "untied", "ensemble"])
def test_round_trip_of_every_model_kind(tmp_path, kind):
    model = _model(kind)
    Retriever(model, 64, 96, raster_method="maxink").save(tmp_path / "w")
    loaded = sketchdown.load(tmp_path / "w")
    assert type(loaded.model) is type(model) and loaded.canvas == 64 and loaded.photo_size == 96
    assert loaded.raster_method == "maxink" and loaded.selector is None
    assert artifact.read(tmp_path / "w").parts["model"]["kind"] == kind
    with torch.no_grad():
        assert torch.allclose(loaded.model.encode_sketch(X), model.encode_sketch(X), atol=1e-6)
        assert torch.allclose(loaded.model.encode_photo(X), model.encode_photo(X), atol=1e-6)


def test_a_retriever_keeps_its_selector_and_it_can_be_dropped(tmp_path):
    torch.manual_seed(0)
    policy = create_policy(PolicyConfig(kind="raster"))
    Retriever(_model("untied"), 64, 64, policy).save(tmp_path / "v2", info={"name": "test-v2"})
    loaded = sketchdown.load(tmp_path / "v2")
    assert torch.equal(loaded.selector.head.weight, policy.head.weight)
    assert loaded.info["name"] == "test-v2" and loaded.selector.source == str((tmp_path / "v2").resolve())
    assert sketchdown.load(tmp_path / "v2", selector=False).selector is None


def test_fp16_storage_is_half_the_size_and_close(tmp_path):
    model = _model("untied")
    Retriever(model).save(tmp_path / "full")
    Retriever(model).save(tmp_path / "half", half=True)
    full, half = (tmp_path / d / "model.safetensors" for d in ("full", "half"))
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = artifact.load_model(tmp_path / "half")
    assert isinstance(loaded, TwinNet) and all(p.dtype == torch.float32 for p in loaded.parameters())
    with torch.no_grad():
        assert (loaded.encode_sketch(X) - model.encode_sketch(X)).abs().max() < 1e-2


def test_tampered_truncated_foreign_and_mismatched_folders_are_refused(tmp_path):
    folder = Retriever(_model("shared")).save(tmp_path / "w", half=True)
    weights, manifest = folder / "model.safetensors", folder / artifact.MANIFEST
    data, meta = weights.read_bytes(), json.loads(manifest.read_text())

    def refused(match: str, spec=folder) -> None:
        with pytest.raises(InputError, match=match):
            sketchdown.load(spec)

    weights.write_bytes(data[: len(data) // 2])
    refused("sha256")
    weights.unlink()
    refused("missing")
    weights.write_bytes(data)
    for bad, match in (({**meta, "format": 1}, "format 1.*export"), ({**meta, "format": 99}, "format 99"),
                       ({**meta, "kind": "pickle"}, "unknown artifact kind"), ({**meta, "kind": "selector"}, "not a retriever"),
                       ({**meta, "parts": {"model": {**meta["parts"]["model"], "file": "../x"}}}, "outside")):
        manifest.write_text(json.dumps(bad))
        refused(match)
    manifest.write_text("{not json")
    refused("JSON")
    other = _model("untied")  # a config that does not fit the weights
    manifest.write_text(json.dumps({**meta, "parts": {"model": {**meta["parts"]["model"], "kind": "untied",
                                                                 "config": artifact.model_config(other)}}}))
    refused("do not fit")
    state = load_file(weights)  # missing and extra tensors, with a matching hash: refused by the config
    for tensors in ({k: v for k, v in list(state.items())[1:]}, {**state, "extra.weight": torch.zeros(1)}):
        save_file(tensors, weights)
        entry = {**meta["parts"]["model"], "sha256": sha256_file(weights)}
        manifest.write_text(json.dumps({**meta, "parts": {"model": entry}}))
        refused("do not fit")
    refused("not a shipped model", "no-such-model")
    refused("not a shipped model.*artifact or run folder", tmp_path / "nowhere")


@pytest.mark.usefixtures("one_thread")
def test_a_run_exports_with_its_settings_and_fp16_only_where_it_ranks_alike(tmp_path, data):
    from sketchdown.retrieval.export import export_run
    from sketchdown.train.triplet import TrainConfig, train

    cfg = TrainConfig(train_sets=("chairs-v1",), limit=16, photo_size=64, canvases=(32, 64), eval_canvas=64,
                      batch_size=8, steps_per_epoch=1, epochs=1, val_fraction=0.05, data=str(data))
    train(cfg, tmp_path / "run", progress=False)
    report = export_run(tmp_path / "run", tmp_path / "w")
    loaded = sketchdown.load(tmp_path / "w")
    assert loaded.canvas == 64 and loaded.photo_size == 64 and loaded.raster_method == cfg.raster_method
    assert loaded.model.sketch.config.canvas_stats == (32, 64)  # per-canvas statistics travel with the weights
    assert loaded.info["trained"]["canvases"] == [32, 64] and loaded.info["test"][0]["set"].startswith("chairs-v1")
    art = artifact.read(tmp_path / "w")
    assert art.parts["model"]["dtype"] == report["dtype"]
    full, low = report["val_fp32"], report["val_fp16"]
    same = all(full[k] == low[k] for k in ("acc1", "acc5", "acc10")) and \
        abs(full["mean_rank"] - low["mean_rank"]) <= 1 / full["queries"] + 1e-9
    assert (report["dtype"] == "float16") == same
    ref = sketchdown.load(tmp_path / "run")  # the artifact embeds like the run it came from
    sketch = np.full((64, 64), 255, np.uint8)
    sketch[20:40, 30] = 0
    assert np.abs(ref.encode_sketch(sketch) - loaded.encode_sketch(sketch)).max() < 2e-2

    # exported again with a selector (a shipped model given a new policy): the run's record and config travel
    from sketchdown.select.policy import save_policy

    save_policy(tmp_path / "sel" / "best.pt", create_policy(PolicyConfig(kind="raster", canvases=(32, 64))))
    export_run(tmp_path / "w", tmp_path / "w2", selector=tmp_path / "sel", half=False)
    again = sketchdown.load(tmp_path / "w2")
    assert again.selector is not None and again.info["run"] == loaded.info["run"] == str(tmp_path / "run")
    assert again.info["config"] == loaded.info["config"] and again.info["config"]["val_fraction"] == 0.05
    assert np.allclose(again.info["calibration_fixed"]["top1_quantiles"], loaded.info["calibration"]["top1_quantiles"],
                       atol=5e-3)  # the same validation split (w may be stored in fp16)
    fixed = sketchdown.load(tmp_path / "w2", selector=False)  # the same weights, at the canvas the run fixed
    assert np.abs(fixed.encode_sketch(sketch) - loaded.encode_sketch(sketch)).max() < 1e-6
    # an artifact exported before artifacts stored their config: rebuilt from its command, and recorded from then on
    command = (f"sketchdown train --train-sets chairs-v1 --limit 16 --photo-size 64 --canvases 32 64 --eval-canvas 64 "
               f"--batch-size 8 --steps-per-epoch 1 --epochs 1 --val-fraction 0.05 --data {data} --out {tmp_path}/run")
    artifact.set_info(tmp_path / "w", {**{k: v for k, v in loaded.info.items() if k != "config"}, "command": command})
    export_run(tmp_path / "w", tmp_path / "w4", half=False)
    rebuilt = sketchdown.load(tmp_path / "w4").info["config"]
    assert {k: rebuilt[k] for k in ("limit", "val_fraction", "train_sets", "canvases")} == \
        {k: loaded.info["config"][k] for k in ("limit", "val_fraction", "train_sets", "canvases")}
    # an artifact whose rebuilt validation split is not the one it was calibrated on is refused
    artifact.set_info(tmp_path / "w", {**loaded.info, "calibration": {
        **loaded.info["calibration"], "top1_quantiles": [q - 0.1 for q in loaded.info["calibration"]["top1_quantiles"]]}})
    with pytest.raises(InputError, match="validation split rebuilt"):
        export_run(tmp_path / "w", tmp_path / "w3", half=False)


def test_an_artifact_without_its_config_gives_it_by_its_recorded_command(tmp_path, data):
    from sketchdown.train.configs import DistillConfig, TrainConfig, config_from_command, recorded_config

    command = (f"sketchdown distill --train-sets shoes-v1 shoes-v1-extra --teacher runs/t --canvases 256 128 "
               f"--canvas-affine true --lr 1e-4 --seed 1 --data {data} --out runs/s")
    cfg = config_from_command(command, "m")
    assert isinstance(cfg, DistillConfig) and cfg.train_sets == ("shoes-v1", "shoes-v1-extra")
    assert cfg.canvases == (256, 128) and cfg.canvas_affine is True and cfg.seed == 1 and cfg.teacher == "runs/t"
    assert cfg.val_fraction == DistillConfig.val_fraction  # what the command left to the defaults
    assert type(config_from_command("python -m sketchdown train --epochs 2", "m")) is TrainConfig
    for bad, why in (("sketchdown distill --resume runs/s", "given by flags alone"),
                     ("sketchdown export runs/s -o w", "not a `sketchdown train`"),
                     ("sketchdown train --no-such-flag 1", "does not parse"),
                     ("sketchdown train --epochs zero", "does not parse"),
                     ("sketchdown distill --lr 1e-4", "invalid config")):
        with pytest.raises(InputError, match=why):
            config_from_command(bad, "m")
    Retriever(_model("untied")).save(tmp_path / "a", info={"command": command})
    assert recorded_config(tmp_path / "a") == cfg
    artifact.set_info(tmp_path / "a", {"command": command, "config": {"train_sets": ["chairs-v1"], "epochs": 3}})
    assert recorded_config(tmp_path / "a") == TrainConfig(train_sets=("chairs-v1",), epochs=3)
    artifact.set_info(tmp_path / "a", {})
    with pytest.raises(InputError, match="records neither"):
        recorded_config(tmp_path / "a")
