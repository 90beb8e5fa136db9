"""Data-parallel training over processes launched by ``torchrun``: gloo on the CPU, NCCL where CUDA exists.

Each rank trains on its shard of every epoch's one permutation (``DistributedSampler``, seeded by the run's seed
and set to the epoch, so an epoch's order does not depend on the ranks or on a resume), with ``batch_size``
triplets per rank: the effective batch is ``batch_size x world``. Three things make N ranks compute what one
process computes on the whole batch, up to float summation order:

- in-batch negatives: every rank mines (and relates) its sketches against the photos of ALL ranks, gathered with
  torch's functional collectives (differentiable: each photo's gradient flows back to the rank that embedded it);
- gradients: DDP averages them, and each rank's loss is a mean over its own sketches (terms computed alike on
  every rank from gathered photos count once after the averaging);
- batch norm: training batches are normalised with the statistics of the whole batch across ranks (torch's
  ``SyncBatchNorm`` runs on GPUs only, so ``sync_batch_norms`` does it with two all-reduces per layer).

Only rank 0 writes the run folder, validates and tests; the others wait for it at barriers. ``sketchdown select``
shares out its expensive part, the student's passes over every sketch at every canvas (``select.bank``), by
``block`` and ``gather_objects``; its policy (thousands of parameters, seconds per fit) then fits alike on every
rank from the same banks. Outside torchrun (``WORLD_SIZE`` unset or 1) everything here is a no-op and training is
the plain single-process loop.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
import torch.distributed._functional_collectives as fc  # the autograd-aware collectives torch recommends

from ..models.canvas_norm import CanvasBatchNorm2d


def init() -> None:
    """Join the process group when launched by torchrun with more than one process (idempotent)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world() > 1:
        dist.barrier()


def gather(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` concatenated along the batch, rank order; differentiable (identity on one process)."""
    if world() == 1:
        return x
    if not x.is_floating_point():  # ids: no gradient, and the autograd gather needs floats
        parts = [torch.empty_like(x) for _ in range(world())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)
    return fc.all_gather_tensor_autograd(x.contiguous(), gather_dim=0, group=dist.group.WORLD)


def block(n: int) -> slice:
    """This rank's contiguous share of ``n`` items (the shares in rank order make up 0..n-1; all of it on one
    process): work split this way and put back with ``gather_objects`` keeps the single-process order."""
    bounds = np.linspace(0, n, world() + 1).round().astype(int)
    return slice(int(bounds[rank()]), int(bounds[rank() + 1]))


def gather_objects(obj: object) -> list:
    """Every rank's ``obj`` (tensors, lists, numbers), in rank order; ``[obj]`` on one process."""
    if world() == 1:
        return [obj]
    out = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def all_agree(flag: bool) -> bool:
    """True only if ``flag`` is true on every rank: a decision that every rank must take the same way (a cache hit
    on one machine and a miss on another would leave one rank waiting in a collective forever)."""
    if world() == 1:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each logged number over the ranks (what one process on the whole batch would log)."""
    if world() == 1 or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(values, (t / world()).tolist()))


def _global_batch_norm(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor,
                       weight: torch.Tensor | None, bias: torch.Tensor | None, momentum: float,
                       eps: float) -> torch.Tensor:
    """Batch norm of a training batch with the mean and variance of the batch across all ranks."""
    dims = [0, *range(2, x.dim())]
    # Sums in fp64: E[x^2] - E[x]^2 cancels catastrophically in fp32 where a channel's mean dwarfs its spread (the
    # white paper of a sketch), and it must match a one-process batch norm to a few ulps.
    x64 = x.double()
    n = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float64)
    stats = fc.all_reduce(torch.cat([x64.sum(dims), (x64 * x64).sum(dims), n]), "sum", dist.group.WORLD)
    c = x.shape[1]
    total = stats[-1]
    mean, var = stats[:c] / total, (stats[c:2 * c] / total - (stats[:c] / total) ** 2).clamp_min(0)
    with torch.no_grad():
        running_mean.mul_(1 - momentum).add_(momentum * mean.detach().to(running_mean.dtype))
        unbiased = var.detach() * total / max(float(total) - 1, 1)
        running_var.mul_(1 - momentum).add_(momentum * unbiased.to(running_var.dtype))
    shape = [1, c] + [1] * (x.dim() - 2)
    scale = torch.rsqrt(var + eps).to(x.dtype)
    y = (x - mean.to(x.dtype).view(shape)) * scale.view(shape)
    if weight is not None:
        y = y * weight.view(shape) + bias.view(shape)
    return y


def sync_batch_norms(model: nn.Module) -> int:
    """Make every batch norm of ``model`` (plain, timm's fused BatchNormAct2d, or per-canvas) normalise training
    batches with cross-rank statistics; eval mode and the state dict are untouched. Returns how many."""
    count = 0
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, CanvasBatchNorm2d)):
            module.forward = types.MethodType(_synced_forward(module.forward), module)
            count += 1
    return count


def _synced_forward(plain: Callable[[torch.Tensor], torch.Tensor]):
    def forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world() == 1:
            return plain(x)
        if isinstance(self, CanvasBatchNorm2d):
            mean, var = self.canvas_mean[self.slot], self.canvas_var[self.slot]
            weight, bias = self.scale_shift()
        else:
            mean, var, weight, bias = self.running_mean, self.running_var, self.weight, self.bias
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)  # as BatchNorm2d.forward counts
        y = _global_batch_norm(x, mean, var, weight, bias, 0.1 if self.momentum is None else self.momentum, self.eps)
        return self.act(self.drop(y)) if hasattr(self, "act") else y
    return forward


class StepModule(nn.Module):
    """A training step as a module, so DDP sees the forward that computes the loss: ``forward(batch)`` runs
    ``step(model, batch)``, however many towers and canvases the step uses."""

    def __init__(self, model: nn.Module, step: Callable[[nn.Module, dict], tuple[torch.Tensor, dict]]) -> None:
        super().__init__()
        self.model, self.step = model, step

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        return self.step(self.model, batch)


def wrap(model: nn.Module, step: Callable[[nn.Module, dict], tuple[torch.Tensor, dict]]) -> nn.Module:
    """The module whose call is one training step: DDP over ``StepModule`` on several ranks, else the step."""
    module = StepModule(model, step)
    if world() == 1:
        return module
    sync_batch_norms(model)
    return nn.parallel.DistributedDataParallel(module)

