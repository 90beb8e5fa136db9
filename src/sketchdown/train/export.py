"""A finished run's best weights as a safetensors folder (``models.artifact``), fp16 where it ranks like fp32.

fp16 storage halves the size; it is kept only if the round-tripped model gives the same validation acc@1 and mean
rank of the true photo as the fp32 one (validation, never test: nothing is chosen on test); else fp32 is stored.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import build
from ..data.datasets import PhotoDataset
from ..errors import InputError
from ..eval.evaluate import encode, evaluate
from ..models import artifact
from ..models.embed import load_model, read_checkpoint
from .triplet import TrainConfig, build_sets


def _settings(config: dict) -> dict:
    keys = ("eval_canvas", "canvases", "photo_size", "raster_method", "precision", "memory_format", "backbone",
            "branches", "train_sets")
    return {k: config[k] for k in keys if k in config}


def export_run(run: str | Path, out: str | Path, half: bool = True) -> dict:
    """Write ``run``'s best.pt to ``out``; returns what was written and the fp16 parity figures."""
    run = Path(run)
    ckpt_path = run / "best.pt" if run.is_dir() else run
    config = read_checkpoint(ckpt_path).get("config")
    if not config:
        raise InputError(ckpt_path, "not a training run checkpoint (no config)")
    model = load_model(ckpt_path)
    values = {k: v for k, v in (config.get("members") or [config])[0].items() if k in TrainConfig.__dataclass_fields__}
    values.update(cache_views=0, freeze_blocks=0)  # only the data and evaluation settings are used
    cfg = build(TrainConfig, values, str(ckpt_path))
    canvas = int(config.get("eval_canvas", cfg.eval_canvas))
    report: dict = {"run": str(run), "canvas": canvas}
    if half:
        _, val, _ = build_sets(cfg)
        artifact.save(model, out, _settings(config), half=True)
        low, _ = artifact.load(out)
        ref_m = evaluate(model, val, canvas, cfg.photo_size, raster_method=cfg.raster_method, progress=False)
        low_m = evaluate(low, val, canvas, cfg.photo_size, raster_method=cfg.raster_method, progress=False)
        with torch.inference_mode():
            photos = PhotoDataset(val.photos[:8], cfg.photo_size)
            diff = (encode(model, photos, "photo", progress=False) - encode(low, photos, "photo", progress=False))
        same = ref_m["acc1"] == low_m["acc1"] and abs(ref_m["mean_rank"] - low_m["mean_rank"]) < 1e-9
        report.update(val_acc1_fp32=ref_m["acc1"], val_acc1_fp16=low_m["acc1"], val_mean_rank_fp32=ref_m["mean_rank"],
                      val_mean_rank_fp16=low_m["mean_rank"], max_abs_diff=float(diff.abs().max()))
        if same:
            report["dtype"] = "float16"
            return report
    artifact.save(model, out, _settings(config), half=False)
    report["dtype"] = "float32"
    return report
