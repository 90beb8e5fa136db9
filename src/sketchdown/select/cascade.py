"""The cascade selector (beyond the paper): embed the sketch at the smallest canvas, search, and let the search
itself say whether to stop there or go on to the next canvas.

A policy picks a canvas before anything is retrieved; a cascade reads what the cheap canvas retrieved. At each
stage it sees the sorted top similarities of the sketch against the gallery and turns them into a few features
(the top-1 similarity and its margins over the 2nd, 3rd, 5th and 10th photo); one logistic head per stage (but the
last, which always stops) estimates the probability that the true photo already ranks as well as it would at the
largest canvas, and the cascade stops at the first stage where that probability reaches ``threshold``. Every
canvas it computed is paid for: its cost is the student's FLOPs at each of them, plus the heads'. (Each extra
stage also searches the gallery once more, a cost that grows with the catalogue and does not show in the paper's
FLOP accounting: the latency benchmark measures it.)

The heads are fitted by logistic regression on a bank whose sketches the student did not train on (cross-fitted
folds), and the threshold is the one with the best mean reward there, the reward trading accuracy against cost as
the policies' does (``lambda_flops``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..data.render import CANVASES
from ..data.sketch import Sketch
from .probe import Probe

FEATURES = 5  # top-1 similarity, and its margins over the 2nd, 3rd, 5th and 10th photo
_RANKS = (1, 2, 4, 9)  # 0-based positions of the photos the margins are taken to


def features(top: torch.Tensor) -> torch.Tensor:
    """... x T similarities, best first -> ... x FEATURES."""
    cols = [top[..., min(r, top.shape[-1] - 1)] for r in _RANKS]
    return torch.stack([top[..., 0], *(top[..., 0] - c for c in cols)], dim=-1)


@dataclass(frozen=True)
class CascadeConfig:
    """Everything needed to rebuild a cascade (stored in its checkpoint or artifact)."""

    kind: str = "cascade"
    canvases: tuple[int, ...] = CANVASES  # the stages, ascending
    threshold: float = 0.5  # stop at the first stage whose P(as good as the largest canvas) reaches this

    def __post_init__(self) -> None:
        if self.kind != "cascade":
            raise ValueError(f"a cascade config has kind 'cascade', got {self.kind!r}")
        if list(self.canvases) != sorted(set(self.canvases)) or len(self.canvases) < 2:
            raise ValueError(f"canvases must be at least two distinct sizes in ascending order, got {self.canvases}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")


class CascadePolicy(nn.Module):
    """Logistic stop heads on the search results of each canvas but the last (standardised features)."""

    def __init__(self, config: CascadeConfig) -> None:
        super().__init__()
        self.config = config
        stages = len(config.canvases) - 1
        self.weight = nn.Parameter(torch.zeros(stages, FEATURES))
        self.bias = nn.Parameter(torch.zeros(stages))
        self.register_buffer("mean", torch.zeros(stages, FEATURES))
        self.register_buffer("std", torch.ones(stages, FEATURES))

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def stop_probability(self, stage: int, top: torch.Tensor) -> torch.Tensor:
        """P(stopping at ``stage`` ranks the true photo as well as the largest canvas) from its ... x T scores."""
        x = (features(top) - self.mean[stage]) / self.std[stage]
        return torch.sigmoid(x @ self.weight[stage] + self.bias[stage])

    def stage_flops(self) -> int:
        """FLOPs of one stage's decision: standardise and dot FEATURES numbers (2 per multiply-add)."""
        return 2 * 2 * FEATURES

    @torch.inference_mode()
    def stops(self, top: torch.Tensor) -> torch.Tensor:
        """N x K x T scores of every canvas -> N, the stage each sketch stops at."""
        k = len(self.config.canvases)
        stop = torch.full((top.shape[0],), k - 1, dtype=torch.long)
        for stage in reversed(range(k - 1)):
            here = self.stop_probability(stage, top[:, stage]) >= self.config.threshold
            stop[here] = stage
        return stop

    def select(self, sketch: Sketch, probe: Callable[[int], Probe]) -> tuple[Probe, tuple[int, ...], int]:
        """Probe canvas after canvas until a head says stop; returns the last probe, the canvases computed and the
        heads' FLOPs. (The probes run outside any grad mode of ours: the student's engine picks its own.)"""
        last = len(self.config.canvases) - 1
        for stage, canvas in enumerate(self.config.canvases):
            result = probe(canvas)
            if stage == last:
                break
            with torch.no_grad():
                stop = float(self.stop_probability(stage, torch.as_tensor(result.top))) >= self.config.threshold
            if stop:
                return result, self.config.canvases[:stage + 1], (stage + 1) * self.stage_flops()
        return result, self.config.canvases, last * self.stage_flops()


def fit_heads(cascade: CascadePolicy, top: torch.Tensor, ranks: torch.Tensor, weight_decay: float = 1e-2,
              steps: int = 200) -> None:
    """Logistic regression per stage: the target is 1 where the stage ranks the true photo no worse than the
    largest canvas. ``top``: N x K x T scores; ``ranks``: N x K. Features are standardised on this data."""
    with torch.no_grad():
        for stage in range(len(cascade.config.canvases) - 1):
            x = features(top[:, stage])
            cascade.mean[stage] = x.mean(0)
            cascade.std[stage] = x.std(0).clamp_min(1e-6)
    for stage in range(len(cascade.config.canvases) - 1):
        x = ((features(top[:, stage]) - cascade.mean[stage]) / cascade.std[stage]).detach()
        y = (ranks[:, stage] <= ranks[:, -1]).float()
        w = torch.zeros(FEATURES, requires_grad=True)
        b = torch.zeros((), requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + weight_decay * w.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            cascade.weight[stage] = w.detach()
            cascade.bias[stage] = b.detach()


def stop_rewards(ranks: torch.Tensor, student_gflops: torch.Tensor, lambda_flops: float) -> torch.Tensor:
    """N x K reward of stopping at each stage: the policies' reward (``reinforce.rewards``), with the cost of every
    canvas up to the stop, normalised by the fixed canvases' range (so it may pass -1: looking at all of them
    costs more than the largest alone)."""
    g = student_gflops.double()
    comp = -(g.cumsum(0) - g.min()) / (g.max() - g.min())
    return lambda_flops * comp[None] + (1.0 - lambda_flops) / ranks.double()


def fit_cascade(config: CascadeConfig, top: torch.Tensor, ranks: torch.Tensor, student_gflops: torch.Tensor,
                lambda_flops: float, grid: int = 201) -> CascadePolicy:
    """Heads by logistic regression, then the threshold (of ``grid`` in [0, 1]) with the best mean reward, all on
    the same bank (a few parameters per stage; the bank must hold sketches the student did not train on)."""
    cascade = CascadePolicy(config)
    fit_heads(cascade, top, ranks)
    reward = stop_rewards(ranks, student_gflops, lambda_flops)
    best = None
    for t in torch.linspace(0, 1, grid).tolist():
        cascade.config = replace(config, threshold=t)
        mean = float(reward.gather(1, cascade.stops(top)[:, None]).mean())
        if best is None or mean > best[0] + 1e-12:
            best = (mean, t)
    cascade.config = replace(config, threshold=best[1])
    return cascade.eval()
