"""The training loop every trainer shares: run folder, AdamW with warm-up + cosine, validation-based model
selection, best/last checkpoints and exact resume.

Under ``torchrun`` the same loop trains data-parallel (``distributed``): rank 0 owns the run folder.

A run folder holds ``config.yaml`` (the resolved config, seed included), ``command.txt``, ``metrics.jsonl`` (one
record per epoch), ``last.pt`` (everything needed to resume) and ``best.pt`` (the weights with the best validation
acc@1, ties broken by mean rank). Resume is exact: each epoch seeds its own randomness from (seed, epoch), and
``last.pt`` holds the optimiser state, so stopping after epoch k and resuming gives the same weights as never
stopping.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from ..config import write_yaml
from ..data.datasets import RetrievalSet, item_seed
from ..errors import SketchdownError
from ..eval.evaluate import evaluate_canvases
from ..files import make_folder, write_json
from ..models.canvas_norm import CanvasBatchNorm2d
from ..models.embed import Model, read_checkpoint, save_checkpoint
from ..models.precision import evaluation, resolve
from . import distributed

StepFn = Callable[[Model, dict], tuple[torch.Tensor, dict[str, float]]]
ValidateFn = Callable[[Model], dict]


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up to ``base``, then cosine decay to zero."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def freeze_leading(model: Model, k: int) -> list[nn.Module]:
    """Freeze the first ``k`` backbone blocks of every tower (weights and batch-norm statistics); returns them."""
    blocks = [b for tower in model.towers.values() for b in tower.backbone.blocks()[:k]]
    for block in blocks:
        block.requires_grad_(False)
    return blocks


class Run:
    """A run folder and its files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def start(self, config, overwrite: bool = False) -> None:
        if (self.path / "last.pt").exists() and not overwrite:
            raise SketchdownError(f"{self.path} already holds a run; pass --resume to continue it or choose "
                                  "another --out")
        make_folder(self.path)
        write_yaml(config, self.path / "config.yaml")
        (self.path / "command.txt").write_text(shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) + "\n")
        (self.path / "metrics.jsonl").write_text("")

    def log(self, record: dict) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate(self, epochs: int) -> None:
        kept = [r for r in self.history() if r["epoch"] < epochs]
        (self.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))

    def history(self) -> list[dict]:
        path = self.path / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def start_run(config, out: str | Path, resume: bool) -> Run:
    """The run folder of a new or resumed run; under torchrun, rank 0 makes it and every rank joins the process
    group first."""
    distributed.init()
    run = Run(out)
    if not resume and distributed.is_main():
        run.start(config)
    distributed.barrier()
    return run


def param_groups(model: Model, affine_lr: float = 1.0) -> list[dict]:
    """The trainable parameters as AdamW groups, each with its multiple of the scheduled rate (``lr_scale``): a
    multi-canvas tower's batch-norm scales and shifts (per canvas, shared, or both) at ``affine_lr``. Per-canvas copies
    start equal, and AdamW moves a parameter about the rate a step, so at 1e-4 for 120 steps they would hardly
    part. At 1 there is one group, as in runs made before the option (so they resume)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if affine_lr == 1.0:
        return [{"params": trainable, "lr_scale": 1.0}]
    own = {id(p) for m in model.modules() if isinstance(m, CanvasBatchNorm2d) for p in m.parameters(recurse=False)}
    groups = [{"params": [p for p in trainable if id(p) not in own], "lr_scale": 1.0},
              {"params": [p for p in trainable if id(p) in own], "lr_scale": affine_lr}]
    return [g for g in groups if g["params"]]


def fit(model: Model, step_fn: StepFn, train_ds: Dataset, validate: ValidateFn, config, run: Run,
        resume: bool = False, progress: bool = True) -> dict:
    """Train ``model`` with ``step_fn`` for ``config.epochs``; returns the best validation record.

    ``train_ds`` has ``set_epoch``; ``validate(model)`` returns retrieval metrics on held-out data. ``config``
    needs: epochs, batch_size, lr, weight_decay, warmup_epochs, seed, workers, freeze_blocks, steps_per_epoch,
    precision, memory_format, canvas_affine_lr. The step runs under the "train" precision (bf16 autocast keeps fp32
    master weights, and the losses are computed in fp32 by the step).
    """
    precision = resolve(config.precision, config.memory_format, config.backbone, "train")
    frozen = freeze_leading(model, config.freeze_blocks)
    frozen += [t for t in model.towers.values() if not any(p.requires_grad for p in t.parameters())]
    opt = torch.optim.AdamW(param_groups(model, config.canvas_affine_lr), lr=config.lr,
                            weight_decay=config.weight_decay)
    sampler = DistributedSampler(train_ds, num_replicas=distributed.world(), rank=distributed.rank(), shuffle=True,
                                 seed=item_seed(config.seed), drop_last=True)
    steps = len(sampler) // config.batch_size
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
    if steps == 0:
        raise SketchdownError(f"{len(train_ds)} training sketches do not fill one batch of {config.batch_size} "
                              f"on each of {distributed.world()} processes")
    precision.prepare(model)  # the memory format is set before DDP sees the parameters
    train_step = distributed.wrap(model, step_fn)
    total, warmup = steps * config.epochs, max(1, round(config.warmup_epochs * steps))
    start, best = 0, None
    if resume:
        ckpt = read_checkpoint(run.path / "last.pt")
        model.load_state_dict(ckpt["state_dict"])
        start, best = ckpt["epoch"] + 1, ckpt["best"]
        if start < config.epochs:  # a finished run only re-runs its test: no step needs the optimizer's state
            opt.load_state_dict(ckpt["optimizer"])
        if distributed.is_main():
            run.truncate(start)  # drop records of an epoch that was logged but never checkpointed
        distributed.barrier()
    for epoch in range(start, config.epochs):
        t0 = time.time()
        torch.manual_seed(item_seed(config.seed, epoch, -1))  # dropout etc.: same stream with or without resume
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch)  # one permutation per epoch, whatever the ranks; each rank takes its shard
        loader = DataLoader(train_ds, batch_size=config.batch_size, sampler=sampler, drop_last=True,
                            num_workers=config.workers)
        precision.prepare(model.train())  # validation may have put the weights in its own memory format
        for block in frozen:
            block.eval()
        losses: dict[str, float] = {}
        bar = tqdm(loader, total=steps, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                   disable=not progress or not distributed.is_main())
        for i, batch in enumerate(bar):
            if i == steps:
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch * steps + i, total, warmup, config.lr) * group.get("lr_scale", 1.0)
            with precision.autocast():
                loss, logs = train_step(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for k, v in {"loss": loss.item(), **logs}.items():
                losses[k] = losses.get(k, 0.0) + v / steps
            bar.set_postfix(loss=f"{loss.item():.4f}")
        losses = distributed.mean_over_ranks(losses)
        if not distributed.is_main():  # rank 0 validates, logs and checkpoints; the others wait for it
            distributed.barrier()
            continue
        val = validate(model)
        record = {"epoch": epoch, **{f"train_{k}": v for k, v in losses.items()},
                  **{f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float))},
                  "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t0, 1),
                  "precision": precision.name}
        run.log(record)
        if progress:
            print(f"epoch {epoch + 1}/{config.epochs}  loss {losses['loss']:.4f}  val acc@1 {val['acc1']:.2f}  "
                  f"acc@10 {val['acc10']:.2f}  ({record['seconds']} s)", flush=True)
        if best is None or (val["acc1"], -val["mean_rank"]) > (best["val_acc1"], -best["val_mean_rank"]):
            best = record
            save_checkpoint(run.path / "best.pt", model, config=asdict(config), epoch=epoch, val=val)
        save_checkpoint(run.path / "last.pt", model, config=asdict(config), epoch=epoch, best=best,
                        optimizer=opt.state_dict())
        distributed.barrier()
    return best


def test_best(run: Run, test_set: RetrievalSet, canvases: tuple[int, ...], config) -> list[dict]:
    """Evaluate the best checkpoint on the test split (once, after training; never used for selection)."""
    from ..models.embed import load_model

    model = load_model(run.path / "best.pt")
    precision = evaluation(config.precision, config.memory_format, config.backbone)
    results = evaluate_canvases(model, test_set, canvases, config.photo_size, raster_method=config.raster_method,
                                precision=precision)
    write_json(results, run.path / "test.json")
    return results
