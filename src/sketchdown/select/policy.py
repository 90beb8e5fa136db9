"""Canvas policies: a sketch in, logits over the K canvases out (SketchyNetV2's selector), and the one selector
interface: ``select(sketch, probe)`` asks ``probe(canvas)`` for looks at the sketch (``probe.Probe``) and returns
the one whose retrieval counts, the canvases computed and its own FLOPs. A policy decides first and looks once; the
cascade (``cascade``) looks canvas after canvas. Selectors are saved and loaded here, whichever kind.

Two policy inputs, one interface. ``VectorPolicy`` is the paper's: the stroke sequence (x, y, pen), simplified with
Ramer-Douglas-Peucker and normalised to the sketch's bounds, read by a 1-layer GRU. ``RasterPolicy`` serves
sketches that arrive as images only (all of QMUL-V1 and Sketchy): a tiny CNN on the cheapest canvas. Both turn
one sketch into an input with ``features``, a list of inputs into a batch with ``collate``, a batch into logits
with ``forward``, and a sketch into a canvas with ``choose``; each counts its own FLOPs (2 per MAC, as the
student's are counted) so the selector is never free in a results table. The vector policy reads an image sketch
through ``data.strokes.trace`` (strokes without their drawing order); RDP is ``data.strokes.rdp_strokes``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence
from torch.utils.flop_counter import FlopCounterMode

from ..data.render import CANVASES, DEFAULT_RASTER_METHOD, to_canvas
from ..data.sketch import Sketch, stroke_points
from ..data.strokes import rdp_strokes, trace
from ..errors import InputError
from ..eval.flops import count_flops, count_params
from ..files import checkpoint_path, write_atomic
from ..models import artifact
from ..models.embed import read_checkpoint
from .cascade import CascadeConfig, CascadePolicy
from .probe import Probe

POLICIES = ("raster", "vector")  # the learned policies; ``cascade`` is the third selector


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
        return self._decide(self.features(sketch))

    def select(self, sketch: Sketch, probe: Callable[[int], Probe]) -> tuple[Probe, tuple[int, ...], int]:
        """The selector interface: pick the canvas first, then look there once. Returns the probe, the canvases
        computed and the policy's own FLOPs."""
        feat = self.features(sketch)
        canvas = self._decide(feat)
        return probe(canvas), (canvas,), self.flops(feat)

    @torch.inference_mode()
    def _decide(self, feat: torch.Tensor) -> int:
        self.eval()
        return self.config.canvases[int(self(*self.collate([feat])).argmax(1))]


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
        return self.ink(to_canvas(sketch, self.config.raster_canvas, self.config.raster_method))

    @staticmethod
    def ink(grey: np.ndarray) -> torch.Tensor:
        """A canvas already drawn (uint8, 255 paper) as the policy reads it: how a reward bank's canvases, drawn
        as a query draws them, are fed in training without being read again as an image (which would trace the
        32 px drawing anew and train the policy on other pictures than it sees at query time)."""
        return torch.from_numpy(255.0 - grey.astype(np.float32)).div_(255.0)[None]

    def collate(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return (torch.stack(feats),)

    def forward(self, ink: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(ink).mean(dim=(2, 3)))

    def flops(self, feat: torch.Tensor) -> int:
        if self._flops is None:  # the same for every sketch
            self._flops = count_flops(self, self.config.raster_canvas, channels=1)
        return self._flops


def stroke_sequence(sketch: Sketch, epsilon: float, max_points: int) -> np.ndarray:
    """(L, 3) float32 x, y, pen: centred and scaled by the ink's longer side, RDP-simplified, at most ``max_points``.

    pen is 1 at the last point of each stroke (the SketchX convention). Past the cap, evenly spaced points are
    kept and each carries a pen lift that happened among the points it stands for.
    """
    sketch = trace(sketch)  # an image is traced into strokes (their drawing order is unknown: data.strokes)
    x0, y0, x1, y1 = sketch.bounds()
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2], dtype=np.float32)
    span = max(x1 - x0, y1 - y0, 1e-6)
    strokes = rdp_strokes([(s - centre) / span for s in sketch.strokes], epsilon)
    seq = stroke_points(strokes)
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
        self._flops: tuple[int, int] | None = None  # (FLOPs of one step and the head, of each further step)

    def features(self, sketch: Sketch) -> torch.Tensor:
        return torch.from_numpy(stroke_sequence(sketch, self.config.rdp_epsilon, self.config.max_points))

    def collate(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Zero-padded B x T x 3 sequences and their lengths."""
        return pad_sequence(feats, batch_first=True), torch.tensor([len(f) for f in feats])

    def forward(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(seq, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)
        return self.head(last[0])

    def _counted(self, length: int) -> int:
        """torch's FLOP counter (it sees the GRU's matrix products) on one sequence of ``length`` steps."""
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            self(*self.collate([torch.zeros(length, 3)]))
        return counter.get_total_flops()

    def flops(self, feat: torch.Tensor) -> int:
        """Linear in the sequence length (the GRU's cost per step, then the head once), so counted on 1 and 2
        steps once. Counting each new length at query time took about 15 ms, more than the rest of the query,
        and the Shoe-V1 test sketches have dozens of lengths."""
        if self._flops is None:
            one = self._counted(1)
            self._flops = (one, self._counted(2) - one)
        first, step = self._flops
        return first + (len(feat) - 1) * step


Selector = Union["CanvasPolicy", CascadePolicy]  # what a retriever's selector part holds


def create_policy(config: PolicyConfig) -> CanvasPolicy:
    return RasterPolicy(config) if config.kind == "raster" else VectorPolicy(config)


def save_policy(path: str | Path, policy: Selector, **extra) -> None:
    """A training run's checkpoint: weights + the config that rebuilds them (+ plain extra data), atomically."""
    state = {"policy_config": asdict(policy.config), "state_dict": policy.state_dict(), **extra}
    write_atomic(path, lambda f: torch.save(state, f))


def policy_part(policy: Selector) -> tuple[str, dict, dict[str, torch.Tensor]]:
    """The selector part of an artifact (``models.artifact.save``)."""
    return "selector", asdict(policy.config), policy.state_dict()


def _rebuild(config: dict, state: dict, where: str | Path) -> Selector:
    cascade = config.get("kind") == "cascade"
    known = {f.name for f in fields(CascadeConfig if cascade else PolicyConfig)}
    try:
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in known}
        policy = CascadePolicy(CascadeConfig(**values)) if cascade else create_policy(PolicyConfig(**values))
        policy.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputError(where, f"not a valid canvas selector ({str(err).splitlines()[0]})") from None
    return policy.eval()


def build_policy(art: artifact.Artifact, part: str = "selector") -> Selector:
    """The policy of an artifact's selector part."""
    return _rebuild(art.parts[part]["config"], art.tensors(part), art.folder / art.parts[part]["file"])


def load_policy(path: str | Path) -> Selector:
    """A policy from an artifact folder (a selector, or a retriever's selector part), a ``select`` run folder
    (its best.pt) or its checkpoint (``weights_only=True``: no code is unpickled)."""
    if artifact.is_artifact(path):
        art = artifact.read(path)
        if "selector" not in art.parts:
            raise InputError(path, "this artifact has no canvas selector")
        return build_policy(art)
    ckpt_path = checkpoint_path(path)
    return policy_from_checkpoint(read_checkpoint(ckpt_path, required=("policy_config", "state_dict")), ckpt_path)


def policy_from_checkpoint(ckpt: dict, where: str | Path) -> Selector:
    """The policy of a checkpoint already read (``save_policy``'s layout), for a caller that reads its extra data
    too."""
    if not isinstance(ckpt["policy_config"], dict):
        raise InputError(where, "policy_config is not a mapping")
    return _rebuild(ckpt["policy_config"], ckpt["state_dict"], where)
