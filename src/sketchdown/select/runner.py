"""``sketchdown select``: banks for train/validation/test, REINFORCE on train, selection on validation, test once.

The policy never sees the test split while training: train and validation are the student's own split of the
train set (``split_by_photo(val_fraction, seed=0)``, as ``train.triplet.build_sets`` holds it out).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from ..data.datasets import RetrievalSet, load_set
from ..errors import SketchdownError
from ..files import write_json
from ..models.artifact import load_model
from ..models.embed import Model
from ..train.loop import Run
from .bank import Bank, cached_bank
from .policy import CanvasPolicy, create_policy, save_policy
from .reinforce import SelectConfig, report, train_policy


def head(rset: RetrievalSet, n: int) -> RetrievalSet:
    """The first ``n`` sketches with only their photos as the gallery (smoke runs)."""
    keep = sorted(set(rset.targets[:n]))
    new = {old: i for i, old in enumerate(keep)}
    cats = [rset.categories[i] for i in keep] if rset.categories else []
    return RetrievalSet(rset.name, rset.sketches[:n], [new[t] for t in rset.targets[:n]],
                        [rset.photos[i] for i in keep], cats)


def split_sets(cfg: SelectConfig) -> dict[str, RetrievalSet]:
    """train / val (held out of train by photo, as the student's) / test."""
    train, val = load_set(cfg.set, "train", cfg.data).split_by_photo(cfg.val_fraction, seed=0)
    sets = {"train": train, "val": val, "test": load_set(cfg.set, "test", cfg.data)}
    return {k: head(v, cfg.limit) for k, v in sets.items()} if cfg.limit else sets


def banks_for(cfg: SelectConfig, student: Model, folder: str | Path,
              progress: bool = True) -> dict[str, Bank]:
    """The student's bank of each split, reused from ``folder`` when it was made from the same student and data."""
    return {name: cached_bank(Path(folder) / f"{name}.pt", student, rset, tuple(cfg.canvases), cfg.photo_size,
                              cfg.raster_method, progress)
            for name, rset in split_sets(cfg).items()}


def fit_policy(cfg: SelectConfig, banks: dict[str, Bank],
               log: Callable[[dict], None] | None = None) -> tuple[CanvasPolicy, dict]:
    """A fresh policy (seeded by ``cfg.seed``) trained on the train bank, selected on the validation bank."""
    torch.manual_seed(cfg.seed)
    policy = create_policy(cfg.policy_config())
    return policy, train_policy(policy, banks["train"], banks["val"], cfg, log=log)


def select(cfg: SelectConfig, out: str | Path, banks: str | Path | None = None, progress: bool = True) -> dict:
    """Train a policy into the run folder ``out``: config.yaml, metrics.jsonl, best.pt (the policy), test.json."""
    run = Run(out)
    if (run.path / "best.pt").exists():
        raise SketchdownError(f"{run.path} already holds a selector run; choose another --out")
    run.start(cfg)
    student = load_model(cfg.student)
    bank = banks_for(cfg, student, banks or run.path / "banks", progress)
    policy, best = fit_policy(cfg, bank, log=run.log)
    save_policy(run.path / "best.pt", policy, config=asdict(cfg), best=best)
    test = {"set": bank["test"].name, "student": cfg.student, **report(policy, bank["test"])}
    write_json(test, run.path / "test.json")
    return {"best": best, "test": test}
