"""An ensemble of trained runs as one teacher candidate: no training, just one checkpoint and its evaluation.

The members' unit embeddings are concatenated and renormalised (``models.embed.EnsembleNet``). The run folder
looks like a training run (config.yaml, command.txt, metrics.jsonl with one validation record, best.pt,
test.json), so tables and ``sketchdown distill --teacher`` take it like any other run.
"""

from __future__ import annotations

from pathlib import Path

from ..config import build
from ..errors import InputError
from ..eval.evaluate import evaluate
from ..files import checkpoint_path
from ..models.embed import load_model, read_checkpoint, save_ensemble
from ..models.precision import evaluation
from .configs import EnsembleConfig
from .loop import Run, test_best
from .triplet import TrainConfig, build_sets


def build_ensemble(cfg: EnsembleConfig, out: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Write the ensemble checkpoint into ``out`` and score it on the first member's validation and test splits."""
    paths = [checkpoint_path(m) for m in cfg.members]
    configs = [read_checkpoint(p).get("config") for p in paths]
    if any(c is None for c in configs):
        raise InputError(paths[configs.index(None)], "not a training run checkpoint (no config)")
    values = {k: v for k, v in configs[0].items() if k in TrainConfig.__dataclass_fields__}
    first = build(TrainConfig, {**values, "data": cfg.data or values.get("data"), "precision": cfg.precision,
                                "memory_format": cfg.memory_format}, str(paths[0]))
    run = Run(out)
    run.start(cfg, overwrite=resume)
    summary = {"backbone": "+".join(c["backbone"] for c in configs), "members": configs,
               "eval_canvas": first.eval_canvas, "photo_size": first.photo_size, "weights": "ensemble"}
    save_ensemble(run.path / "best.pt", paths, config=summary)
    _, val_set, test_set = build_sets(first)
    model = load_model(run.path / "best.pt")
    precision = evaluation(cfg.precision, cfg.memory_format, first.backbone)
    val = evaluate(model, val_set, first.eval_canvas, first.photo_size, raster_method=first.raster_method,
                   precision=precision, progress=progress)
    record = {"epoch": 0, **{f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float))}}
    run.log(record)
    test = test_best(run, test_set, (first.eval_canvas,), first) if test_set else []
    return {"best": record, "test": test}
