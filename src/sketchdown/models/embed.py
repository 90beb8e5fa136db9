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


def _atomic_save(obj: dict, path: str | Path) -> None:
    """``torch.save`` through a temporary file, so a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def save_checkpoint(path: str | Path, model: EmbeddingNet, **extra) -> None:
    """Write weights + the config that rebuilds them (+ any extra plain data), atomically."""
    _atomic_save({"model_config": asdict(model.config), "state_dict": model.state_dict(),
                  "backbone_weights": model.backbone.weights, **extra}, path)


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


class EnsembleNet(nn.Module):
    """Several trained embedding nets used as one: unit embeddings concatenated and renormalised, which ranks by
    the mean of the members' cosine similarities. A teacher candidate; each member keeps its own normalisation."""

    def __init__(self, members: list[EmbeddingNet]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.dim = sum(m.dim for m in members)
        self.config = ModelConfig(backbone="+".join(m.config.backbone for m in members), embed_dim=self.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(torch.cat([m(x) for m in self.members], dim=1), dim=1)


def _build(ckpt: dict, path: str | Path) -> EmbeddingNet:
    known = {f.name for f in fields(ModelConfig)}
    config = ModelConfig(**{k: v for k, v in ckpt["model_config"].items() if k in known})
    model = EmbeddingNet(config, create_backbone(config.backbone, "none"))
    model.load_state_dict(ckpt["state_dict"])
    model.backbone.weights = f"checkpoint:{path}"
    return model.eval()


def load_model(path: str | Path) -> EmbeddingNet | EnsembleNet:
    """Rebuild a model from a checkpoint; backbones start empty, then take the saved weights."""
    ckpt = read_checkpoint(path)
    if "members" in ckpt:
        return EnsembleNet([_build(m, path) for m in ckpt["members"]]).eval()
    return _build(ckpt, path)


def save_ensemble(path: str | Path, members: list[str | Path], **extra) -> None:
    """One self-contained checkpoint holding every member's config and weights."""
    kept = ("model_config", "state_dict", "backbone_weights", "config")
    parts = [{k: v for k, v in read_checkpoint(m).items() if k in kept} for m in members]
    _atomic_save({"model_config": {"backbone": "+".join(p["model_config"]["backbone"] for p in parts)},
                  "state_dict": {}, "members": parts, **extra}, path)
