"""Canvas policies: a sketch in, logits over the K canvases out (SketchyNetV2's selector).

Two inputs, one interface. ``VectorPolicy`` is the paper's: the stroke sequence (x, y, pen), simplified with
Ramer-Douglas-Peucker and normalised to the sketch's bounds, read by a 1-layer GRU. ``RasterPolicy`` serves
sketches that arrive as images only (all of QMUL-V1 and Sketchy): a tiny CNN on the cheapest canvas. Both turn
one sketch into an input with ``features``, a list of inputs into a batch with ``collate``, a batch into logits
with ``forward``, and a sketch into a canvas with ``choose``; each counts its own FLOPs (2 per MAC, as the
student's are counted) so the selector is never free in a results table.

RDP runs in GEOS through shapely (Douglas-Peucker, ``preserve_topology=False``): the ``rdp`` package is
unmaintained since 2016 and took 14 ms per ChairV2 sketch on this CPU, as long as the student at 32x32, where
shapely takes 0.2 ms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import shapely
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence
from torch.utils.flop_counter import FlopCounterMode

from ..data.render import CANVASES, DEFAULT_RASTER_METHOD, to_canvas
from ..data.sketch import Sketch
from ..errors import InputError
from ..eval.flops import count_flops, count_params
from ..files import checkpoint_path, write_atomic
from ..models import artifact
from ..models.embed import read_checkpoint

POLICIES = ("raster", "vector")


@dataclass(frozen=True)
class PolicyConfig:
    """Everything needed to rebuild a policy (stored in its checkpoint)."""

    kind: str = "raster"  # "raster" (tiny CNN on the smallest canvas) or "vector" (GRU on strokes)
    canvases: tuple[int, ...] = CANVASES  # the actions, ascending
    raster_canvas: int = 32  # raster policy input side
    channels: tuple[int, ...] = (8, 16, 32)  # raster policy conv widths (stride 2 each)
    raster_method: str = DEFAULT_RASTER_METHOD
    hidden: int = 128  # vector policy GRU width (the paper's ~0.05M params)
    rdp_epsilon: float = 0.01  # RDP tolerance as a share of the sketch's longer side
    max_points: int = 128  # cap on the simplified sequence (GRU cost grows with it)

    def __post_init__(self) -> None:
        if self.kind not in POLICIES:
            raise ValueError(f"policy kind must be one of {POLICIES}, got {self.kind!r}")
        if list(self.canvases) != sorted(set(self.canvases)) or len(self.canvases) < 2:
            raise ValueError(f"canvases must be at least two distinct sizes in ascending order, got {self.canvases}")


class CanvasPolicy(nn.Module):
    """Sketch -> logits over ``config.canvases``; subclasses define the input and the network."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config

    def features(self, sketch: Sketch) -> torch.Tensor:
        raise NotImplementedError

    def collate(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Inputs of several sketches -> the positional arguments of ``forward``."""
        raise NotImplementedError

    def flops(self, feat: torch.Tensor) -> int:
        """FLOPs (2 per MAC) of choosing for the sketch whose input is ``feat``."""
        raise NotImplementedError

    @property
    def params(self) -> int:
        return count_params(self)

    @torch.inference_mode()
    def choose(self, sketch: Sketch) -> int:
        """The canvas the policy picks for ``sketch`` (greedy), as a side length in pixels."""
        self.eval()
        logits = self(*self.collate([self.features(sketch)]))
        return self.config.canvases[int(logits.argmax(1))]


class RasterPolicy(CanvasPolicy):
    """Tiny CNN on the sketch's ink at the smallest canvas: stride-2 3x3 convs, global pooling, linear."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__(config)
        layers: list[nn.Module] = []
        width = 1
        for c in config.channels:
            layers += [nn.Conv2d(width, c, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            width = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, len(config.canvases))
        self._flops: int | None = None

    def features(self, sketch: Sketch) -> torch.Tensor:
        """1 x S x S ink in [0, 1] (1 = black) of the sketch at the policy's canvas."""
        grey = to_canvas(sketch, self.config.raster_canvas, self.config.raster_method)
        return torch.from_numpy(255.0 - grey.astype(np.float32)).div_(255.0)[None]

    def collate(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return (torch.stack(feats),)

    def forward(self, ink: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(ink).mean(dim=(2, 3)))

    def flops(self, feat: torch.Tensor) -> int:
        if self._flops is None:  # the same for every sketch
            self._flops = count_flops(self, self.config.raster_canvas, channels=1)
        return self._flops


def rdp_strokes(strokes: list[np.ndarray], epsilon: float) -> list[np.ndarray]:
    """Douglas-Peucker on every stroke at once (GEOS); a stroke keeps its end points, a single point stays."""
    lines = [s for s in strokes if len(s) > 1]
    if not lines:
        return strokes
    geoms = shapely.linestrings(np.concatenate(lines).astype(np.float64),
                                indices=np.repeat(np.arange(len(lines)), [len(s) for s in lines]))
    simple = iter(shapely.get_coordinates(g) for g in shapely.simplify(geoms, epsilon, preserve_topology=False))
    return [next(simple).astype(np.float32) if len(s) > 1 else s for s in strokes]


def stroke_sequence(sketch: Sketch, epsilon: float, max_points: int) -> np.ndarray:
    """(L, 3) float32 x, y, pen: centred and scaled by the ink's longer side, RDP-simplified, at most ``max_points``.

    pen is 1 at the last point of each stroke (the SketchX convention). Past the cap, evenly spaced points are
    kept and each carries a pen lift that happened among the points it stands for.
    """
    if not sketch.is_vector:
        raise InputError(sketch.source, "the vector policy needs strokes; use the raster policy for image sketches")
    x0, y0, x1, y1 = sketch.bounds()
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2], dtype=np.float32)
    span = max(x1 - x0, y1 - y0, 1e-6)
    strokes = rdp_strokes([(s - centre) / span for s in sketch.strokes], epsilon)
    seq = Sketch(strokes=tuple(strokes), source=sketch.source).to_points()
    if len(seq) > max_points:
        keep = np.unique(np.linspace(0, len(seq) - 1, max_points).round().astype(int))
        pen = np.maximum.reduceat(seq[:, 2], keep)
        seq = np.concatenate([seq[keep, :2], pen[:, None]], axis=1)
    return seq.astype(np.float32)


class VectorPolicy(CanvasPolicy):
    """The paper's policy: 1-layer GRU over the simplified (x, y, pen) sequence -> linear on the last state."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__(config)
        self.gru = nn.GRU(3, config.hidden, batch_first=True)
        self.head = nn.Linear(config.hidden, len(config.canvases))
        self._flops: dict[int, int] = {}

    def features(self, sketch: Sketch) -> torch.Tensor:
        return torch.from_numpy(stroke_sequence(sketch, self.config.rdp_epsilon, self.config.max_points))

    def collate(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Zero-padded B x T x 3 sequences and their lengths."""
        return pad_sequence(feats, batch_first=True), torch.tensor([len(f) for f in feats])

    def forward(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(seq, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)
        return self.head(last[0])

    def flops(self, feat: torch.Tensor) -> int:
        """Counted by torch's FLOP counter (it sees the GRU's matrix products) once per sequence length."""
        n = len(feat)
        if n not in self._flops:
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                self(*self.collate([torch.zeros(n, 3)]))
            self._flops[n] = counter.get_total_flops()
        return self._flops[n]


def create_policy(config: PolicyConfig) -> CanvasPolicy:
    return RasterPolicy(config) if config.kind == "raster" else VectorPolicy(config)


def save_policy(path: str | Path, policy: CanvasPolicy, **extra) -> None:
    """A training run's checkpoint: weights + the config that rebuilds them (+ plain extra data), atomically."""
    state = {"policy_config": asdict(policy.config), "state_dict": policy.state_dict(), **extra}
    write_atomic(path, lambda f: torch.save(state, f))


def policy_part(policy: CanvasPolicy) -> tuple[str, dict, dict[str, torch.Tensor]]:
    """The selector part of an artifact (``models.artifact.save``)."""
    return "selector", asdict(policy.config), policy.state_dict()


def _rebuild(config: dict, state: dict, where: str | Path) -> CanvasPolicy:
    known = {f.name for f in fields(PolicyConfig)}
    try:
        policy = create_policy(PolicyConfig(**{k: tuple(v) if isinstance(v, list) else v
                                               for k, v in config.items() if k in known}))
        policy.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputError(where, f"not a valid canvas policy ({str(err).splitlines()[0]})") from None
    return policy.eval()


def build_policy(art: artifact.Artifact, part: str = "selector") -> CanvasPolicy:
    """The policy of an artifact's selector part."""
    return _rebuild(art.parts[part]["config"], art.tensors(part), art.folder / art.parts[part]["file"])


def load_policy(path: str | Path) -> CanvasPolicy:
    """A policy from an artifact folder (a selector, or a retriever's selector part), a ``select`` run folder
    (its best.pt) or its checkpoint (``weights_only=True``: no code is unpickled)."""
    if artifact.is_artifact(path):
        art = artifact.read(path)
        if "selector" not in art.parts:
            raise InputError(path, "this artifact has no canvas selector")
        return build_policy(art)
    ckpt_path = checkpoint_path(path)
    ckpt = read_checkpoint(ckpt_path, required=("policy_config", "state_dict"))
    if not isinstance(ckpt["policy_config"], dict):
        raise InputError(ckpt_path, "policy_config is not a mapping")
    return _rebuild(ckpt["policy_config"], ckpt["state_dict"], ckpt_path)
