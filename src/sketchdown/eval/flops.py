"""Cost in the paper's accounting, and real CPU latency.

Paper convention (method.md): FLOPs = 2 x multiply-accumulates of ONE sketch-branch forward pass of the
backbone's conv features (no pooling head, no classifier) at a given canvas, counted here by
``torch.utils.flop_counter`` (which already counts 2 per MAC); params = the backbone's parameters.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..models.precision import Precision


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


def tower_cost(tower: nn.Module, canvas: int) -> Cost:
    """``backbone_cost`` of a tower's backbone as the tower runs it at ``canvas`` (a multi-canvas tower may run a
    convolution at another stride there: ``EmbeddingNet.use_canvas``)."""
    tower.use_canvas(canvas)
    return backbone_cost(tower.backbone, canvas)


def query_gflops(model: nn.Module, canvas: int) -> float:
    """What one query pays at ``canvas``: the sketch tower's backbone (every member's, for an ensemble)."""
    return sum(tower_cost(m.sketch_tower, canvas).gflops for m in getattr(model, "members", [model]))


BUSY_SPREAD = 0.25  # (p90 - p10) / median above this: the repeats disagree, something else was running
BUSY_OTHERS = 0.2  # cores' worth of CPU used by other processes during the timing above this: not quiet


def _busy_jiffies() -> int:
    """Non-idle CPU time of the whole machine so far (``/proc/stat``, clock ticks); 0 where it does not exist."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0
    return sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle and iowait


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


@dataclass(frozen=True)
class Latency:
    """Batch-1 wall-clock over ``repeats`` passes. ``spread`` is (p90 - p10) / median; ``busy`` says the spread or
    the load average before the measurement shows another process competing for the cores."""

    median_ms: float
    p95_ms: float
    spread: float
    repeats: int
    threads: int
    precision: str
    busy: bool
    others: float  # cores' worth of CPU that other processes used while this was timed

    def as_dict(self) -> dict:
        return asdict(self)


def _quantile(sorted_times: list[float], q: float) -> float:
    return sorted_times[min(len(sorted_times) - 1, int(q * len(sorted_times)))]


def _time_once(module: nn.Module, canvas: int, repeats: int, warmup: int, precision: Precision) -> list[float]:
    x = precision.inputs(torch.rand(1, 3, canvas, canvas))
    times = []
    with torch.inference_mode(), precision.autocast():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            module(x)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)


def measure_latency(module: nn.Module, canvas: int, repeats: int = 50, warmup: int = 10,
                    threads: int | None = None, precision: Precision | None = None, tries: int = 3) -> Latency:
    """Wall-clock of one batch-1 forward pass on this CPU (median, p95, spread), warm-up excluded.

    A measurement whose spread or load average says the machine was busy is repeated, up to ``tries`` times;
    the last one is returned with ``busy`` set if it still was, so tables can flag it instead of trusting it.
    "Busy" is measured, not guessed: the machine's non-idle CPU time during the timing minus this process's own.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    precision = precision or Precision()
    module = precision.prepare(module.eval())
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for _ in range(tries):
        wall0, jiffies0, own0 = time.perf_counter(), _busy_jiffies(), _own_seconds()
        times = _time_once(module, canvas, repeats, warmup, precision)
        wall = time.perf_counter() - wall0
        others = max(0.0, (_busy_jiffies() - jiffies0) / tick - (_own_seconds() - own0)) / wall
        median = statistics.median(times)
        spread = (_quantile(times, 0.9) - _quantile(times, 0.1)) / median
        busy = spread > BUSY_SPREAD or others > BUSY_OTHERS
        if not busy:
            break
    return Latency(median_ms=median, p95_ms=_quantile(times, 0.95), spread=round(spread, 3), repeats=repeats,
                   threads=torch.get_num_threads(), precision=precision.name, busy=busy, others=round(others, 2))
