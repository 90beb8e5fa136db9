"""Backbone -> embedding: global pooling, optional projection, L2 normalisation; and self-describing checkpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .registry import Backbone, create_backbone


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild an embedding network (stored in every checkpoint)."""

    backbone: str = "mobilenet_v2"
    embed_dim: int | None = None  # None: the pooled backbone features, no projection
    pool: str = "avg"  # "avg" or "max" global pooling
    weights: str = "auto"  # initial backbone weights; a checkpoint overrides them

    def __post_init__(self) -> None:
        if self.pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {self.pool!r}")


class EmbeddingNet(nn.Module):
    """Shared sketch/photo encoder: RGB in [0, 1] of any size -> unit-length embedding."""

    def __init__(self, config: ModelConfig, backbone: Backbone | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone if backbone is not None else create_backbone(config.backbone, config.weights)
        c = self.backbone.out_channels
        self.head = nn.Linear(c, config.embed_dim) if config.embed_dim else nn.Identity()
        self.dim = config.embed_dim or c

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap.amax(dim=(2, 3)) if self.config.pool == "max" else fmap.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.pool(self.backbone(x))), dim=1)

    def trunk(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Input normalisation + the first ``k`` backbone blocks: what a frozen-trunk cache stores."""
        h = self.backbone.normalize(x)
        for block in self.backbone.blocks()[:k]:
            h = block(h)
        return h

    def forward_from(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """The rest of ``forward`` after ``trunk(x, k)``: ``forward_from(trunk(x, k), k) == forward(x)``."""
        for block in self.backbone.blocks()[k:]:
            h = block(h)
        return F.normalize(self.head(self.pool(h)), dim=1)


def create_model(backbone: str = "mobilenet_v2", embed_dim: int | None = None, pool: str = "avg",
                 weights: str = "auto") -> EmbeddingNet:
    return EmbeddingNet(ModelConfig(backbone=backbone, embed_dim=embed_dim, pool=pool, weights=weights))


def save_checkpoint(path: str | Path, model: EmbeddingNet, **extra) -> None:
    """Write weights + the config that rebuilds them (+ any extra plain data), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"model_config": asdict(model.config), "state_dict": model.state_dict(),
                "backbone_weights": model.backbone.weights, **extra}, tmp)
    tmp.replace(path)


def read_checkpoint(path: str | Path, required: tuple[str, ...] = ("model_config", "state_dict")) -> dict:
    """Load a checkpoint dict with ``weights_only=True`` (never unpickles code); ``required`` keys must be there."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint file does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise InputError(path, f"not a readable sketchdown checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in required):
        raise InputError(path, f"not a sketchdown checkpoint (no {'/'.join(required)})")
    return ckpt


def load_model(path: str | Path) -> EmbeddingNet:
    """Rebuild an ``EmbeddingNet`` from a checkpoint; the backbone starts empty, then takes the saved weights."""
    ckpt = read_checkpoint(path)
    known = {f.name for f in fields(ModelConfig)}
    config = ModelConfig(**{k: v for k, v in ckpt["model_config"].items() if k in known})
    model = EmbeddingNet(config, create_backbone(config.backbone, "none"))
    model.load_state_dict(ckpt["state_dict"])
    model.backbone.weights = f"checkpoint:{path}"
    return model.eval()
