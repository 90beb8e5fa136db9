"""``sketchdown select``: banks for train/validation/test, a selector fitted on train (REINFORCE for the policies,
logistic heads for the cascade), selection on validation, test once.

The selector never sees the test split while training: train and validation are the student's own split of the train
set (``train.triplet.hold_out`` with the student's own fraction, as ``train.triplet.build_sets`` holds
it out). A student ranks its own training sketches first at nearly every canvas, so their rewards say little about
which canvas a new sketch needs; with ``crossfit`` the train bank comes from cross-fitting runs instead, each fold's
sketches scored by the run that did not train on them (a run whose teacher did is warned about: ``teacher_leak``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..data.datasets import RetrievalSet, load_set
from ..errors import InputError, SketchdownError
from ..files import write_json
from ..data.render import DEFAULT_RASTER_METHOD
from ..models.artifact import load_model, stored_settings
from ..models.embed import Model
from ..train import distributed
from ..train.loop import start_run
from ..train.configs import DistillConfig, TrainConfig, recorded_config
from ..train.triplet import held_out_fold, hold_out, train_pool
from .bank import Bank, cached_bank
from .cascade import CascadeConfig, fit_cascade
from .policy import Selector, create_policy, save_policy
from .reinforce import SelectConfig, decide, outcome, report, train_policy


def head(rset: RetrievalSet, n: int) -> RetrievalSet:
    """The first ``n`` sketches with only their photos as the gallery (smoke runs)."""
    keep = sorted(set(rset.targets[:n]))
    new = {old: i for i, old in enumerate(keep)}
    cats = [rset.categories[i] for i in keep] if rset.categories else []
    return RetrievalSet(rset.name, rset.sketches[:n], [new[t] for t in rset.targets[:n]],
                        [rset.photos[i] for i in keep], cats)


def student_pool(cfg: SelectConfig) -> tuple[RetrievalSet, float]:
    """The student's training pool (the union of its train sets, as ``train.triplet.train_pool`` makes it) and the
    share of its photos it held out, so its validation photos are held out here exactly as in its training; the
    set's train split and ``cfg.val_fraction`` for a student that records no training config (a backbone name)."""
    try:
        trained = recorded_config(cfg.student)
    except (InputError, SketchdownError, OSError):
        return load_set(cfg.set, "train", cfg.data), cfg.val_fraction
    return train_pool(replace(trained, data=cfg.data or trained.data)), trained.val_fraction


def split_sets(cfg: SelectConfig) -> dict[str, RetrievalSet]:
    """train / val (held out of the student's training pool by photo, as its own validation) / test. Validation
    sketches are ranked among every training photo (``val_gallery="pool"``), like the cross-fitted folds by default:
    a gallery of the held-out photos alone (``"unseen"``, 30 on Chair-V1) gives top-1 margins, and so cascade
    decisions and costs, unlike a larger catalogue's, but the photos the student trained on outrank a new sketch's
    own far more often than new photos do.
    With ``val_rewards`` the validation photos are halved: the sketches of one half are the train bank, the other
    half's the validation bank, each ranked among all the validation photos, which the student never saw (among
    its training photos, which it pulled onto their own sketches, a new sketch's photo is outranked far more often
    than in any catalogue of new photos: README, "SketchyNetV2")."""
    pool, val_fraction = student_pool(cfg)
    train, val = hold_out(pool, val_fraction)
    if cfg.val_rewards:
        fit, choose = val.split_by_photo(0.5, seed=1)
        train, val = fit.among(val, f"{val.name}:fit"), choose.among(val, f"{val.name}:choose")
    elif cfg.val_gallery == "pool":
        val = val.among(pool)
    sets = {"train": train, "val": val, "test": load_set(cfg.set, "test", cfg.data)}
    return {k: head(v, cfg.limit) for k, v in sets.items()} if cfg.limit else sets


def with_student_settings(cfg: SelectConfig) -> SelectConfig:
    """``cfg`` with the student's own raster method where it names none: a bank must draw sketches as the student
    was trained to see them (a student trained on traced strokes ranks area-shrunk sketches far worse)."""
    if cfg.raster_method is not None:
        return cfg
    return replace(cfg, raster_method=stored_settings(cfg.student).get("raster_method") or DEFAULT_RASTER_METHOD)


def fold_config(run: str | Path) -> TrainConfig:
    """The config a cross-fitting run was trained with; refused if it is not one."""
    cfg = recorded_config(run)
    if not cfg.folds:
        raise InputError(run, "not a cross-fitting run (train it with --folds K --fold I)")
    return cfg


def teacher_leak(fold: TrainConfig) -> str | None:
    """Why a cross-fitting run's scores are not free of its held-out fold, or None: a run distilled from (or started
    as) a teacher that trained on every training sketch has seen the held-out ones through it. Cross-fitting free of
    them needs a teacher per fold (trained with the same ``--folds K --fold I``)."""
    if not isinstance(fold, DistillConfig):
        return None
    try:
        teacher = recorded_config(fold.teacher)
    except (InputError, SketchdownError, OSError):
        return f"its teacher {fold.teacher} records no cross-fitting split, so it may have trained on the held-out fold"
    if (teacher.folds, teacher.fold) != (fold.folds, fold.fold):
        return (f"its teacher {fold.teacher} trained on the held-out fold (it is not a run of fold {fold.fold} of "
                f"{fold.folds})")
    return None


def banks_for(cfg: SelectConfig, student: Model, folder: str | Path,
              progress: bool = True) -> dict[str, Bank]:
    """The student's bank of each split, reused from ``folder`` when it was made from the same student and data.

    With ``cfg.crossfit`` the train bank is made of the fold runs' banks instead: each fold's sketches scored by the
    run that left them out, so no reward comes from a sketch its student trained on.
    """
    folder, cfg = Path(folder), with_student_settings(cfg)
    halves = {"train", "val"} if cfg.val_rewards else set()  # other sketches than the full validation: own files

    def file(name: str) -> Path:
        return folder / f"{name}{'-halves' if name in halves else ''}.pt"

    banks = {name: cached_bank(file(name), student, rset, tuple(cfg.canvases), cfg.photo_size, cfg.raster_method,
                               progress)
             for name, rset in split_sets(cfg).items() if not (cfg.crossfit and name == "train")}
    if cfg.crossfit:
        folds = []
        for run in cfg.crossfit:
            fold_cfg = fold_config(run)
            if (leak := teacher_leak(fold_cfg)) is not None:
                warnings.warn(f"{run}: {leak}; its rewards are optimistic for the held-out sketches", stacklevel=2)
            rset = held_out_fold(fold_cfg, cfg.crossfit_gallery)
            if cfg.limit:
                rset = head(rset, cfg.limit)
            if fold_cfg.raster_method != cfg.raster_method:
                raise InputError(run, f"draws raster sketches with {fold_cfg.raster_method!r}, the student with "
                                      f"{cfg.raster_method!r}: cross-fitting runs must follow the student's recipe")
            folds.append(cached_bank(folder / f"fold{fold_cfg.fold}of{fold_cfg.folds}.pt", load_model(run), rset,
                                     tuple(cfg.canvases), cfg.photo_size, cfg.raster_method, progress))
        banks["train"] = Bank.concat(folds, f"{folds[0].name.split(':fold')[0]}:crossfit")
    return banks


def fit_policy(cfg: SelectConfig, banks: dict[str, Bank],
               log: Callable[[dict], None] | None = None) -> tuple[Selector, dict]:
    """A fresh selector (seeded by ``cfg.seed``) fitted on the train bank and, for the learned policies, selected
    on the validation bank (REINFORCE); a cascade's heads and threshold come from the train bank alone."""
    torch.manual_seed(cfg.seed)
    config = cfg.policy_config()
    if isinstance(config, CascadeConfig):
        train = banks["train"]
        cascade = fit_cascade(config, train.top_scores, train.ranks, train.student_gflops, cfg.lambda_flops)
        val = outcome(banks["val"], decide(cascade, banks["val"]))
        best = {"threshold": cascade.config.threshold, **{f"val_{k}": val[k] for k in ("acc1", "acc10", "gflops")}}
        if log is not None:
            log(best)
        return cascade, best
    policy = create_policy(config)
    return policy, train_policy(policy, banks["train"], banks["val"], cfg, log=log)


def select(cfg: SelectConfig, out: str | Path, banks: str | Path | None = None, progress: bool = True) -> dict:
    """Train a selector into the run folder ``out``: config.yaml, metrics.jsonl, best.pt (the selector),
    test.json."""
    if (Path(out) / "best.pt").exists():
        raise SketchdownError(f"{out} already holds a selector run; choose another --out")
    cfg = with_student_settings(cfg)
    run = start_run(cfg, out, resume=False)  # under torchrun: rank 0 writes, every rank shares the banks' work
    main = distributed.is_main()
    student = load_model(cfg.student)
    bank = banks_for(cfg, student, banks or run.path / "banks", progress and main)
    policy, best = fit_policy(cfg, bank, log=run.log if main else None)
    test = {"set": bank["test"].name, "student": cfg.student, "train_bank": bank["train"].name,
            **report(policy, bank["test"])}
    if main:
        save_policy(run.path / "best.pt", policy, config=asdict(cfg), best=best)
        write_json(test, run.path / "test.json")
    distributed.barrier()
    return {"best": best, "test": test}
