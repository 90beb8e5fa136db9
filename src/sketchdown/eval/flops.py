"""Cost in the paper's accounting, and real CPU latency.

Paper convention (method.md): FLOPs = 2 x multiply-accumulates of ONE sketch-branch forward pass of the
backbone's conv features (no pooling head, no classifier) at a given canvas, counted here by
``torch.utils.flop_counter`` (which already counts 2 per MAC); params = the backbone's parameters.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Cost:
    canvas: int
    gflops: float
    params_m: float

    def as_dict(self) -> dict:
        return asdict(self)


def count_flops(module: nn.Module, canvas: int, channels: int = 3) -> int:
    """FLOPs (2 per MAC) of one forward pass of ``module`` on a 1 x C x canvas x canvas input."""
    x = torch.zeros(1, channels, canvas, canvas)
    counter = FlopCounterMode(display=False)
    was_training = module.training
    module.eval()  # inference cost; also lets batch-norm see a 1x1 map with batch 1
    try:
        with torch.no_grad(), counter:
            module(x)
    finally:
        module.train(was_training)
    return counter.get_total_flops()


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def backbone_cost(backbone: nn.Module, canvas: int) -> Cost:
    """The paper's figures for one backbone (its conv features) at one canvas."""
    features = getattr(backbone, "features", backbone)
    return Cost(canvas=canvas, gflops=count_flops(features, canvas) / 1e9, params_m=count_params(features) / 1e6)


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p95_ms: float
    repeats: int
    threads: int

    def as_dict(self) -> dict:
        return asdict(self)


def measure_latency(module: nn.Module, canvas: int, repeats: int = 50, warmup: int = 10,
                    threads: int | None = None) -> Latency:
    """Wall-clock of one batch-1 forward pass on this CPU: median and p95 over ``repeats``, warm-up excluded."""
    if threads is not None:
        torch.set_num_threads(threads)
    module = module.eval()
    x = torch.rand(1, 3, canvas, canvas)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            module(x)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return Latency(median_ms=statistics.median(times), p95_ms=times[min(len(times) - 1, int(0.95 * len(times)))],
                   repeats=repeats, threads=torch.get_num_threads())
