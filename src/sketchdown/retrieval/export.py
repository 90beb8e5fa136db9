"""A finished run as a retriever artifact: its best weights, its canvas selector if any, its settings, what it
scored, and the calibration of its search confidence; stored fp16 where that ranks like fp32.

fp16 storage halves the size. It is kept only if the round-tripped model gives the same validation acc@1, acc@5
and acc@10 as the fp32 one and a mean rank of the true photo within one rank step (1 / queries, one validation
sketch moving one place); else fp32 is stored. Validation, never test: nothing is chosen on test.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..data.datasets import PhotoDataset, RetrievalSet, SketchCanvasDataset
from ..eval.evaluate import encode, evaluate, evaluate_canvases
from ..files import checkpoint_path
from ..models import artifact
from ..models.embed import read_checkpoint
from ..train.configs import config_from_info, config_from_values
from ..train.triplet import build_sets
from .encoder import Retriever, load


def run_info(run: Path) -> dict:
    """What the run folder says about how it was made and what it scored on test."""
    info: dict = {"run": str(run)}
    for key, name in (("command", "command.txt"), ("run_test", "test.json")):
        path = run / name
        if path.is_file():
            text = path.read_text()
            info[key] = shlex.join(shlex.split(text)) if key == "command" else json.loads(text)
    return info


PROVENANCE = ("run", "command", "run_test", "trained", "config")  # what an artifact exported again keeps


def export_run(run: str | Path, out: str | Path, selector: str | Path | None = None, half: bool = True,
               info: dict | None = None) -> dict:
    """Write ``run``'s best checkpoint (+ ``selector``, a ``select`` run) to the artifact folder ``out``; returns
    the fp16 parity figures and the stored dtype. ``run`` may be an artifact already exported (a shipped model's
    folder): its weights and the record of its run are written again, with ``selector`` in place of its own.

    The manifest's ``info["test"]`` is what the stored artifact itself scores on the test split, in fp32 (so it
    reproduces on any CPU), at its canvas and every canvas it was trained at; ``info["run_test"]`` is the run's
    own test.json (fp32 weights, the run's precision); ``info["config"]`` its training config, which rebuilds its
    validation split. Test is read after every choice is made, never for one.
    """
    again = artifact.is_artifact(run)
    if again:
        retriever = load(run, selector=selector or False)
        recorded = artifact.read(run).info
        trained, cfg = recorded.get("trained", {}), config_from_info(recorded, run)
        # an older artifact's config, rebuilt from its command (and checked below), is recorded from now on
        meta = {"config": asdict(cfg), **{k: recorded[k] for k in PROVENANCE if k in recorded}}
    else:
        ckpt_path = checkpoint_path(run)
        config = read_checkpoint(ckpt_path).get("config")
        if not config:
            raise InputError(ckpt_path, "not a training run checkpoint (no config)")
        retriever = load(ckpt_path, selector=selector or False)
        trained = {k: config[k] for k in ("backbone", "branches", "canvases", "train_sets", "epochs", "seed")
                   if k in config}
        meta = {**run_info(ckpt_path.parent), "trained": trained, "config": config}
        cfg = config_from_values(config, ckpt_path)
    meta.update(info or {})
    if selector:
        meta["selector"] = run_info(checkpoint_path(selector).parent)
    _, val, test = build_sets(cfg)
    meta["calibration"] = calibrate(retriever, val)
    if selector:  # the same student at its fixed canvas (a SketchyNetV1 name of the artifact) scores otherwise
        meta["calibration_fixed"] = calibrate(retriever.replace(selector=None), val)
    if again:
        _same_validation(run, recorded, meta)
    report: dict = {"run": meta.get("run", str(run)), "out": str(out), "canvas": retriever.canvas, "dtype": "float32"}
    if half:
        retriever.save(out, half=True, info=meta)
        low, full = _val_metrics(load(out, selector=False), val), _val_metrics(retriever, val)
        report.update(val_fp32=full, val_fp16=low)
        if all(low[k] == full[k] for k in ("acc1", "acc5", "acc10")) and \
                abs(low["mean_rank"] - full["mean_rank"]) <= 1 / full["queries"] + 1e-9:
            report["dtype"] = "float16"
    if report["dtype"] == "float32":
        retriever.save(out, half=False, info=meta)
    if test is not None:
        stored = load(out, selector=False)
        canvases = sorted({stored.canvas, *trained.get("canvases", ())})
        meta["test"] = evaluate_canvases(stored.model, test, canvases, stored.photo_size,
                                         raster_method=stored.raster_method)
        if selector:
            # fp32, as the figures above: under auto a CPU with native bf16 encodes the catalogue in bf16 batches
            meta["test_selector"] = report["test_selector"] = selector_test(load(out, precision="fp32"), test)
        artifact.set_info(out, meta)
        report["test"] = meta["test"]
    return report


def selector_test(retriever: Retriever, test: RetrievalSet) -> dict:
    """What a retriever with its canvas selector scores on the test split through the product's own path
    (``Index.search``: the selector, every canvas it computes, the search), with its mean GFLOPs a sketch."""
    from .index import Index

    index = Index.build(retriever, test.photos)
    results = [index.search(s, 10) for s in test.sketches]
    hits = [r.ids for r in results]
    return {"acc1": 100 * float(np.mean([t in h[:1] for t, h in zip(test.targets, hits)])),
            "acc5": 100 * float(np.mean([t in h[:5] for t, h in zip(test.targets, hits)])),
            "acc10": 100 * float(np.mean([t in h for t, h in zip(test.targets, hits)])),
            "gflops": float(np.mean([r.gflops for r in results])), "queries": len(results),
            "set": test.name, "canvas": "selector"}


def _val_metrics(retriever: Retriever, val: RetrievalSet) -> dict:
    """Metrics on the run's validation split (held out of its train sets by photo) at the retriever's canvas."""
    return evaluate(retriever.model, val, retriever.canvas, retriever.photo_size,
                    raster_method=retriever.raster_method, progress=False)


def _same_validation(source: str | Path, recorded: dict, meta: dict) -> None:
    """Refuse an export from an artifact whose validation split, rebuilt from its recorded training config (or
    command: ``train.configs.config_from_info``), is not the one it was calibrated on: the student alone ranks
    validation as it did, so its top-1 quantiles agree (to fp16 storage's rounding) unless the split (or a default
    behind it) differs. ``recorded``: the artifact's manifest info, ``meta`` the new one."""
    before = recorded.get("calibration_fixed", recorded.get("calibration"))
    now = meta.get("calibration_fixed", meta["calibration"])
    if before is None or before.get("canvas") != now["canvas"]:
        return
    if (before["queries"], before["gallery"]) != (now["queries"], now["gallery"]) or not np.allclose(
            before["top1_quantiles"], now["top1_quantiles"], atol=5e-3):
        raise InputError(source, "the validation split rebuilt from its recorded training config is not the one it "
                                 "was calibrated on; export it from its run folder instead")


def calibrate(retriever: Retriever, val: RetrievalSet) -> dict:
    """The top-1 cosine of every validation sketch against the validation photos, as 101 quantiles: what an
    in-domain query scores, which ``Index.search`` compares each query with (``confidence``). With a canvas
    selector, through the search itself: each sketch at the canvas the selector gives it."""
    if retriever.selector is not None:
        from .index import Index

        index = Index.build(retriever, val.photos)
        top1 = np.array([index.search(s, 1)[0].score for s in val.sketches])
        canvas: int | str = "selector"
    else:
        photos = encode(retriever.model, PhotoDataset(val.photos, retriever.photo_size), "photo", progress=False)
        sketches = encode(retriever.model, SketchCanvasDataset(val.sketches, retriever.canvas,
                                                               retriever.raster_method), "sketch", progress=False)
        top1, canvas = (sketches @ photos.T).amax(1).numpy(), retriever.canvas
    return {"split": "validation", "queries": len(top1), "gallery": len(val.photos), "canvas": canvas,
            "top1_quantiles": [round(float(q), 5) for q in np.quantile(top1, np.linspace(0, 1, 101))]}
