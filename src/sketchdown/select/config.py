"""The config of a ``sketchdown select`` run, in a torch-free module: the command line builds its flags (and
``--help``) from its fields, so only making a config imports the policies (torch) to check it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import validate
from ..data.render import CANVASES, DEFAULT_RASTER_METHOD, RASTER_METHODS
from ..train.configs import FOLD_GALLERIES

if TYPE_CHECKING:
    from .cascade import CascadeConfig
    from .policy import PolicyConfig

BASELINES = ("batch", "ema")


@dataclass(frozen=True)
class SelectConfig:
    """Everything a selector run depends on; written to the run folder as config.yaml."""

    student: str = field(default="mobilenet_v2", metadata={"help": "the frozen student: a checkpoint, a run folder "
                                                                  "(its best.pt) or a backbone name (zero-shot)"})
    set: str = field(default="shoes-v1", metadata={"help": "set whose train split trains and test split tests"})
    data: str | None = field(default=None, metadata={"help": "data root (default ../shared/data)"})
    policy: str = field(default="raster", metadata={"help": "selector: raster (a tiny CNN on the smallest canvas), "
                                                            "vector (a GRU on the strokes, traced from images) or "
                                                            "cascade (stop heads on each canvas's search)"})
    crossfit: tuple[str, ...] = field(default=(), metadata={"help": "cross-fitting runs (trained with --folds K "
                                                                    "--fold I): each scores the training sketches "
                                                                    "it left out, and together they are the train "
                                                                    "bank (default: the student's own training "
                                                                    "sketches)"})
    crossfit_gallery: str = field(default="pool", metadata={"help": "the photos each cross-fitting run ranks its "
                                                                    "held-out sketches among: pool (every training "
                                                                    "photo, most of which it trained on) or unseen "
                                                                    "(only those it never trained on: the fold's and "
                                                                    "the validation's)"})
    val_gallery: str = field(default="pool", metadata={"help": "the photos the validation sketches (which choose "
                                                               "lambda_F and the selector) are ranked among: pool "
                                                               "(every training photo, most of which the student "
                                                               "trained on) or unseen (the validation photos alone)"})
    val_rewards: bool = field(default=False, metadata={"help": "without cross-fitting runs: fit the selector on "
                                                               "the sketches of half the validation photos (never "
                                                               "trained on by the student) and choose on the other "
                                                               "half"})
    lambda_flops: float = field(default=0.5, metadata={"help": "lambda_F: weight of cost against accuracy"})
    lambda_triplet: float = field(default=0.0, metadata={"help": "weight of the triplet loss in R_acc"})
    baseline: str = field(default="batch", metadata={"help": "reward baseline: batch (leave-one-out mean) or ema"})
    ema_decay: float = field(default=0.9, metadata={"help": "moving-average decay of the ema baseline"})
    entropy: float = field(default=0.01, metadata={"help": "entropy bonus weight"})
    epochs: int = field(default=200, metadata={"help": "passes over the training bank"})
    batch_size: int = field(default=64, metadata={"help": "sketches per policy-gradient step"})
    lr: float = field(default=3e-3, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    canvases: tuple[int, ...] = field(default=CANVASES, metadata={"help": "the canvases to choose from"})
    channels: tuple[int, ...] = field(default=(8, 16, 32), metadata={"help": "raster policy conv widths"})
    hidden: int = field(default=128, metadata={"help": "vector policy GRU width"})
    rdp_epsilon: float = field(default=0.01, metadata={"help": "RDP tolerance, share of the sketch's longer side"})
    max_points: int = field(default=128, metadata={"help": "cap on the simplified stroke sequence"})
    val_fraction: float = field(default=0.15, metadata={"help": "photos held out of train for a student "
                                                                      "that records none (else its own)"})
    photo_size: int = field(default=256, metadata={"help": "photo side in pixels"})
    raster_method: str | None = field(default=None, metadata={"help": "raster sketch downscaling (default: the "
                                                                       "student's): " + ", ".join(RASTER_METHODS)})
    seed: int = field(default=0, metadata={"help": "seed for init and sampling"})
    limit: int | None = field(default=None, metadata={"help": "only the first N sketches of each split (smoke runs)"})

    def __post_init__(self) -> None:
        validate(self)
        if self.val_rewards and self.crossfit:
            raise ValueError("val_rewards and crossfit are two sources of the train bank: give one")
        if self.crossfit_gallery not in FOLD_GALLERIES or self.val_gallery not in FOLD_GALLERIES:
            raise ValueError(f"crossfit_gallery and val_gallery must be one of {FOLD_GALLERIES}")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}")
        if self.raster_method not in (None, *RASTER_METHODS):
            raise ValueError(f"raster_method must be one of {RASTER_METHODS}")
        if not 0.0 <= self.lambda_flops <= 1.0:
            raise ValueError(f"lambda_flops must be in [0, 1], got {self.lambda_flops}")
        self.policy_config()  # validates policy kind and canvases (imports torch: only when a config is made)

    def policy_config(self) -> PolicyConfig | CascadeConfig:
        from .cascade import CascadeConfig
        from .policy import PolicyConfig

        if self.policy == "cascade":
            return CascadeConfig(canvases=tuple(self.canvases))
        return PolicyConfig(kind=self.policy, canvases=tuple(self.canvases), raster_canvas=min(self.canvases),
                            channels=tuple(self.channels), raster_method=self.raster_method or DEFAULT_RASTER_METHOD,
                            hidden=self.hidden,
                            rdp_epsilon=self.rdp_epsilon, max_points=self.max_points)
