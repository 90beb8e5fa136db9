"""Backbone registry: one decorated function per backbone family, looked up by name.

A registered function takes the requested weights (``"auto"``, ``"none"``, a named source, or a path to a
state dict) and returns a ``Backbone``: the convolutional feature extractor the paper counts, plus the input
normalisation its weights were trained with. Adding a backbone is one ``@register_backbone`` function.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError, SketchdownError


@dataclass(frozen=True)
class InputStats:
    """How an RGB tensor in [0, 1] is turned into what the weights expect."""

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    bgr: bool = False


IMAGENET = InputStats()


class Backbone(nn.Module):
    """Input normalisation + conv features. Takes RGB in [0, 1]; returns a B x C x h x w feature map.

    Normalising inside the model means every caller (training, evaluation, ONNX export) feeds the same thing,
    and a backbone's weights can never be paired with the wrong statistics.
    """

    def __init__(self, features: nn.Module, out_channels: int, stats: InputStats, weights: str) -> None:
        super().__init__()
        self.features = features
        self.out_channels = out_channels
        self.weights = weights  # where the weights came from, for logs and results tables
        # Persistent buffers: a checkpoint restores the statistics its weights were trained with.
        self.register_buffer("mean", torch.tensor(stats.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(stats.std).view(1, 3, 1, 1))
        self.register_buffer("channels", torch.tensor([2, 1, 0] if stats.bgr else [0, 1, 2]))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x.index_select(1, self.channels) - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalize(x))

    def blocks(self) -> list[nn.Module]:
        """The feature extractor's blocks in execution order (running them in turn equals ``features``).

        Plain ``nn.Sequential`` containers inside a model (timm's ``blocks``) are opened one level, so "freeze
        the first k blocks" means the same granularity for torchvision and timm families.
        """
        out: list[nn.Module] = []
        for child in self.features.children():
            out.extend(child.children() if type(child) is nn.Sequential and not isinstance(self.features, nn.Sequential)
                       else [child])
        return out


BackboneFn = Callable[[str], Backbone]
# Named weight requests; anything else must be a state-dict file. Each family says which names it honours.
WEIGHT_SOURCES = ("auto", "none", "imagenet", "torchvision", "tumor")
_REGISTRY: dict[str, BackboneFn] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_backbone(name: str, description: str) -> Callable[[BackboneFn], BackboneFn]:
    """Register ``fn(weights) -> Backbone`` under ``name``."""

    def deco(fn: BackboneFn) -> BackboneFn:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = fn
        _DESCRIPTIONS[name] = description
        return fn

    return deco


def list_backbones() -> dict[str, str]:
    """Registered names with a one-line description each."""
    from . import backbones  # noqa: F401  (registers the built-in families)

    return dict(sorted(_DESCRIPTIONS.items()))


def create_backbone(name: str, weights: str = "auto") -> Backbone:
    """Build a registered backbone. ``weights``: "auto" (best available here), "none", a source name, or a path."""
    known = list_backbones()
    if name not in known:
        raise SketchdownError(f"unknown backbone {name!r}; registered: {', '.join(known)}")
    if weights not in WEIGHT_SOURCES and not Path(weights).is_file():
        raise SketchdownError(f"weights {weights!r} is neither one of {', '.join(WEIGHT_SOURCES)} nor an existing file")
    return _REGISTRY[name](weights)


def load_state_file(module: nn.Module, path: str) -> str:
    """Load a user's state dict (``weights_only``) into ``module``; returns the description for ``Backbone.weights``."""
    if path in WEIGHT_SOURCES:  # a named source this backbone family does not offer
        raise SketchdownError(f"this backbone has no {path!r} weights; use auto, none or a state-dict file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    except Exception as err:  # torch raises many types for a foreign or mismatched file
        raise InputError(path, f"cannot load it as backbone weights ({type(err).__name__}: {err})") from None
    return f"file:{path}"


def random_init_warning(name: str, why: str) -> str:
    """Warn loudly that a backbone starts from random weights; returns the description."""
    warnings.warn(f"{name}: no pretrained weights available ({why}); starting from RANDOM initialisation",
                  stacklevel=3)
    return "random"
