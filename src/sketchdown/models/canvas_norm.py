"""Batch-norm statistics per sketch canvas: one sketch tower that serves 32 to 256 px without mixing them.

A sketch tower trained at several canvases normalises each canvas's batch with that batch's own statistics, but
a plain ``BatchNorm2d`` keeps ONE running average over all of them, so at inference every canvas is normalised
with a blend that fits none (on Chair-V1 a multi-canvas MobileNetV2 sketch tower fell to 24 acc@1 at 256, and
re-estimating its statistics at 256 alone brought it back to 70). ``CanvasBatchNorm2d`` keeps running statistics
per canvas (the weights and biases stay shared, so the parameter count and FLOPs do not change) and normalises
with those of the canvas the input was drawn at (the nearest one, in log scale, for other sizes). With
``affine=True`` each canvas also has its own scale and shift (the private batch norms of resolution-switchable
networks): 2 x channels parameters per canvas and layer, no FLOPs, since a batch norm folds into its convolution.
With ``residual=True`` those are offsets (starting at zero) on a shared scale and shift that every canvas trains:
a canvas whose own gradient is weak or noisy (32 px) still moves with what all canvases agree on.

``last_downsample`` finds the convolution a tower runs at stride 1 for the canvases its config names in
``canvas_unstride``: MobileNetV2 shrinks a 32 px sketch to a 1 x 1 map, on which the last blocks' 3 x 3 depthwise
filters see one pixel; without its last stride the map is 2 x 2 (0.022 GFLOPs instead of 0.012; 64 px costs
0.049). The weights stay one set; only that canvas's graph changes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CanvasBatchNorm2d(nn.Module):
    """A batch norm (plus the dropout/activation a timm ``BatchNormAct2d`` fuses) with running statistics per canvas.

    ``slot`` (set by the tower's ``forward`` from the input's size) picks the statistics row (and, with ``affine``,
    the scale and shift row); training updates only that row (and, with ``residual``, the shared scale and shift).
    """

    def __init__(self, bn: nn.BatchNorm2d, canvases: tuple[int, ...], affine: bool = False,
                 residual: bool = False) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = bn.num_features, bn.eps, bn.momentum
        self.per_canvas_affine = affine and bn.weight is not None
        self.residual = self.per_canvas_affine and residual
        if self.per_canvas_affine:  # every canvas starts from the shared scale and shift (a zero offset on it)
            weight, bias = (torch.zeros_like(bn.weight), torch.zeros_like(bn.bias)) if self.residual else \
                (bn.weight, bn.bias)
            self.canvas_weight = nn.Parameter(weight.detach().clone().repeat(len(canvases), 1))
            self.canvas_bias = nn.Parameter(bias.detach().clone().repeat(len(canvases), 1))
        if not self.per_canvas_affine or self.residual:
            self.weight, self.bias = bn.weight, bn.bias
        self.drop = getattr(bn, "drop", nn.Identity())
        self.act = getattr(bn, "act", nn.Identity())
        self.register_buffer("canvases", torch.tensor(canvases))
        self.register_buffer("canvas_mean", bn.running_mean.detach().clone().repeat(len(canvases), 1))
        self.register_buffer("canvas_var", bn.running_var.detach().clone().repeat(len(canvases), 1))
        self.slot = len(canvases) - 1

    def scale_shift(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The scale and shift the current canvas is normalised with."""
        if self.residual:
            return self.weight + self.canvas_weight[self.slot], self.bias + self.canvas_bias[self.slot]
        if self.per_canvas_affine:
            return self.canvas_weight[self.slot], self.canvas_bias[self.slot]
        return self.weight, self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # rows of a contiguous K x C buffer are contiguous views: batch_norm updates them in place
        x = F.batch_norm(x, self.canvas_mean[self.slot], self.canvas_var[self.slot], *self.scale_shift(),
                         self.training, 0.1 if self.momentum is None else self.momentum, self.eps)
        return self.act(self.drop(x))


def add_canvas_stats(module: nn.Module, canvases: tuple[int, ...], affine: bool = False,
                     residual: bool = False) -> list[CanvasBatchNorm2d]:
    """Replace every batch norm inside ``module`` with a ``CanvasBatchNorm2d`` (same weights; every canvas starts
    from its running statistics, and with ``affine`` from its scale and shift, as offsets with ``residual``);
    returns the new layers, in order."""
    out = []
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            new = CanvasBatchNorm2d(child, canvases, affine, residual)
            setattr(module, name, new)
            out.append(new)
        else:
            out.extend(add_canvas_stats(child, canvases, affine, residual))
    return out


def last_downsample(module: nn.Module) -> nn.Conv2d:
    """The last convolution of ``module`` (in definition order) that downsamples by 2, checked to keep its map's
    size at stride 1 (its padding is half its dilated kernel), so running it at stride 1 doubles the map's side."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d) and tuple(m.stride) == (2, 2)]
    if not convs:
        raise ValueError(f"{type(module).__name__} has no stride-2 convolution to run at stride 1")
    conv = convs[-1]
    same = all(isinstance(p, int) and 2 * p == d * (k - 1)
               for p, d, k in zip(conv.padding, conv.dilation, conv.kernel_size))
    if not same:
        raise ValueError(f"the last stride-2 convolution of {type(module).__name__} (padding {conv.padding}, "
                         f"kernel {conv.kernel_size}) would not keep its map's size at stride 1")
    return conv


def nearest_slot(canvases: tuple[int, ...], side: int) -> int:
    """Index of the canvas nearest to ``side`` in log scale (ties: the larger canvas)."""
    return min(range(len(canvases)), key=lambda i: (abs(math.log(canvases[i] / side)), -canvases[i]))


def traced_slot(canvases: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``nearest_slot`` as tensor operations on ``x``'s shape, for an ONNX export: a Python int would be traced as
    a constant, and every canvas would be normalised with the statistics of the canvas the model was exported at.
    """
    side = torch._shape_as_tensor(x)[-2:].max().float()
    sizes = canvases.float()
    return torch.argmin((sizes.log() - side.log()).abs() - sizes * 1e-7)  # the tiny term: ties go to the larger
