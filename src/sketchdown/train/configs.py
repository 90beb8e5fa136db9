"""The configs of ``sketchdown train``, ``distill`` and ``ensemble`` runs, in a torch-free module.

The command line builds its flags (and ``--help``) from these dataclasses' fields, so importing this module must
not import torch; the checks that need the models' constants import them when a config is made. The training
modules (``triplet``, ``distill``, ``ensemble``) import their config from here.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import add_dataclass_args, build, from_sources, validate
from ..data.render import CANVASES, DEFAULT_RASTER_METHOD, RASTER_METHODS
from ..errors import InputError
from ..files import checkpoint_path
from ..pretrained import resolve

if TYPE_CHECKING:
    from ..models.embed import Model


@dataclass(frozen=True)
class TrainConfig:
    """Everything a triplet run depends on; written to the run folder as config.yaml."""

    backbone: str = field(default="mobilenet_v2", metadata={"help": "registered backbone"})
    weights: str = field(default="auto", metadata={"help": "initial weights: auto, none, a source name or a file"})
    branches: str = field(default="untied", metadata={"help": "shared (one network for sketches and photos) or "
                                                              "untied (a sketch and a photo network)"})
    sketch_backbone: str | None = field(default=None, metadata={"help": "backbone of the untied sketch tower "
                                                                        "(default: the same as the photo tower)"})
    canvas_stats: bool = field(default=True, metadata={"help": "untied sketch tower trained at several canvases: "
                                                                "batch-norm statistics per canvas"})
    canvas_affine: bool = field(default=False, metadata={"help": "with canvas_stats: a batch-norm scale and shift "
                                                                  "per canvas too (no FLOPs; 2 x channels "
                                                                  "parameters per canvas and batch norm)"})
    canvas_affine_residual: bool = field(default=False, metadata={"help": "with canvas_affine: the per-canvas scales "
                                                                           "and shifts are offsets (from zero) on "
                                                                           "shared ones that every canvas trains"})
    canvas_unstride: tuple[int, ...] = field(default=(), metadata={"help": "with canvas_stats: canvases (of "
                                                                            "canvases) at which the sketch tower's "
                                                                            "last downsampling runs at stride 1 (a "
                                                                            "2x2 final map at 32 px; the FLOPs "
                                                                            "are counted so)"})
    canvas_affine_lr: float = field(default=1.0, metadata={"help": "a multi-canvas sketch tower's batch-norm "
                                                                    "scales and shifts (per canvas with "
                                                                    "canvas_affine) learn at this multiple of the "
                                                                    "rate"})
    embed_dim: int | None = field(default=None, metadata={"help": "projection size (None: pooled features)"})
    pool: str = field(default="avg", metadata={"help": "global pooling: avg or max"})
    train_sets: tuple[str, ...] = field(default=("shoes-v1",), metadata={"help": "sets whose train split is used"})
    test_set: str | None = field(default=None, metadata={"help": "test split evaluated at the end (default: the "
                                                                  "first train set)"})
    data: str | None = field(default=None, metadata={"help": "data root (default ../shared/data)"})
    val_fraction: float = field(default=0.15, metadata={"help": "photos held out of train for model selection"})
    canvases: tuple[int, ...] = field(default=(256,), metadata={"help": "sketch canvases per step (loss averaged)"})
    eval_canvas: int = field(default=256, metadata={"help": "sketch canvas for validation"})
    test_canvases: tuple[int, ...] = field(default=(), metadata={"help": "extra sketch canvases evaluated on the "
                                                                          "test split (besides the training ones)"})
    photo_size: int = field(default=256, metadata={"help": "photo side in pixels"})
    epochs: int = field(default=20, metadata={"help": "epochs"})
    batch_size: int = field(default=16, metadata={"help": "triplets per step"})
    lr: float = field(default=1e-4, metadata={"help": "peak AdamW learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    warmup_epochs: float = field(default=1.0, metadata={"help": "linear warm-up, then cosine decay"})
    margin: float = field(default=0.2, metadata={"help": "triplet margin"})
    mining: str = field(default="random", metadata={"help": "negatives: random (the sampled one), or the batch's "
                                                            "hard (closest) or semihard (closest beyond the "
                                                            "positive) photo"})
    freeze_blocks: int = field(default=0, metadata={"help": "freeze this many leading backbone blocks"})
    cache_views: int = field(default=0, metadata={"help": "precompute the frozen blocks' output for this many "
                                                          "views per image (0: no cache, fresh augmentation)"})
    augment: bool = field(default=True, metadata={"help": "sketch and photo augmentation"})
    sketch_augment: str = field(default="standard", metadata={"help": "training sketches' augmentation strength: "
                                                                     "standard or strong (wider jitter, more strokes "
                                                                     "dropped, each stroke shifted on its own)"})
    raster_method: str = field(default=DEFAULT_RASTER_METHOD, metadata={"help": "raster sketch downscaling: "
                                                                               + ", ".join(RASTER_METHODS)})
    precision: str = field(default="auto", metadata={"help": "fp32, bf16 (autocast) or auto (per backbone and "
                                                              "use, from the measured table)"})
    memory_format: str = field(default="auto", metadata={"help": "contiguous, channels_last or auto"})
    seed: int = field(default=0, metadata={"help": "seed for sampling, augmentation and init"})
    workers: int = field(default=0, metadata={"help": "data-loader worker processes"})
    folds: int = field(default=0, metadata={"help": "cross-fitting: cut the training photos (after the validation "
                                                    "hold-out) into this many folds and leave --fold out (0: off)"})
    fold: int = field(default=0, metadata={"help": "the fold left out of training when --folds is set; its "
                                                   "sketches are scored by this run for a selector's rewards"})
    limit: int | None = field(default=None, metadata={"help": "use only the first N training sketches (smoke runs)"})
    steps_per_epoch: int | None = field(default=None, metadata={"help": "cap on steps per epoch (smoke runs)"})

    def __post_init__(self) -> None:
        # The values are checked against torch modules' constants, imported only when a config is made: reading
        # the fields (the command line's flags and --help) stays torch-free.
        from ..data.transforms import SKETCH_AUGMENTS
        from ..losses import MINING
        from ..models.embed import BRANCHES
        from ..models.precision import resolve

        validate(self)

        if self.mining not in MINING:
            raise ValueError(f"mining must be one of {MINING}")
        if not self.train_sets:
            raise ValueError("train_sets is empty")
        if self.raster_method not in RASTER_METHODS:
            raise ValueError(f"raster_method must be one of {RASTER_METHODS}")
        if self.sketch_augment not in SKETCH_AUGMENTS:
            raise ValueError(f"sketch_augment must be one of {tuple(SKETCH_AUGMENTS)}")
        if self.cache_views and not self.freeze_blocks:
            raise ValueError("cache_views needs freeze_blocks > 0 (only frozen blocks can be cached)")
        if self.cache_views and self.branches != "shared":
            raise ValueError("the frozen-trunk cache serves shared towers only; use branches=shared or no cache")
        if self.branches not in BRANCHES:
            raise ValueError(f"branches must be one of {BRANCHES}")
        if self.folds == 1 or (self.folds and not 0 <= self.fold < self.folds):
            raise ValueError(f"folds must be 0 (off) or at least 2, with fold in [0, folds); got fold {self.fold} of "
                             f"{self.folds}")
        if self.sketch_backbone and self.branches != "untied":
            raise ValueError("sketch_backbone needs branches=untied")
        if self.canvas_affine and not (self.canvas_stats and self.branches == "untied" and len(self.canvases) > 1):
            raise ValueError("canvas_affine needs canvas_stats, branches=untied and several canvases")
        if self.canvas_affine_residual and not self.canvas_affine:
            raise ValueError("canvas_affine_residual needs canvas_affine")
        if self.canvas_unstride and not (self.canvas_stats and self.branches == "untied" and len(self.canvases) > 1
                                         and set(self.canvas_unstride) <= set(self.canvases)):
            raise ValueError("canvas_unstride needs canvas_stats, branches=untied and several canvases, and names "
                             "canvases trained at")
        if not self.canvas_affine_lr > 0:
            raise ValueError("canvas_affine_lr must be positive")
        resolve(self.precision, self.memory_format)  # raises on an unknown value

    def build_model(self) -> Model:
        from ..models.embed import create_model

        per_canvas = self.canvas_stats and self.branches == "untied" and len(self.canvases) > 1
        return create_model(self.backbone, self.embed_dim, self.pool, self.weights, self.branches,
                            self.sketch_backbone, tuple(self.canvases) if per_canvas else (), self.canvas_affine,
                            self.canvas_affine_residual, tuple(self.canvas_unstride) if per_canvas else ())


RELATIONS = ("triplet", "batch")
PHOTO_TOWERS = ("own", "teacher")
UNPAIRED_TARGETS = ("teacher", "self")
UNPAIRED_BN = ("batch", "running")
FOLD_GALLERIES = ("pool", "unseen")  # what a cross-fitting run's held-out sketches are ranked among (held_out_fold)


@dataclass(frozen=True)
class DistillConfig(TrainConfig):
    """A triplet run's fields (the student's) plus the teacher and the distillation knobs."""

    canvases: tuple[int, ...] = field(default=CANVASES, metadata={"help": "sketch canvases per step (loss averaged)"})
    canvas_weights: tuple[float, ...] = field(default=(), metadata={"help": "a weight per --canvases entry, in its "
                                                                            "order, for the average of the triplet "
                                                                            "and L_RKD terms over the canvases "
                                                                            "(default: equal)"})
    teacher: str | None = field(default=None, metadata={"help": "teacher run folder or checkpoint (required)"})
    lam: float = field(default=0.5, metadata={"help": "lambda: weight of the triplet loss; 1 - lambda on L_RKD"})
    beta: float = field(default=0.1, metadata={"help": "Huber threshold of L_RKD"})
    relation: str = field(default="triplet", metadata={"help": "distilled distances: triplet (the paper's 3 per "
                                                                "triplet) or batch (every pair of the batch)"})
    unlabelled: str | None = field(default=None, metadata={"help": "folder of photos without sketches for "
                                                                   "photo-photo distillation into the student's "
                                                                   "photo tower (e.g. shoe-v2-photos/photos)"})
    unlabelled_weight: float = field(default=1.0, metadata={"help": "weight of the unpaired-photo L_RKD"})
    photo_tower: str = field(default="own", metadata={"help": "own (the student's photo tower, trained jointly) or "
                                                              "teacher (the frozen teacher's photo tower embeds the "
                                                              "gallery; the student learns its space)"})
    student_init: str = field(default="weights", metadata={"help": "student towers start from --weights, or as "
                                                                   "copies of the teacher's (teacher; with "
                                                                   "--photo-tower own both towers then train)"})
    direct: float = field(default=1.0, metadata={"help": "with --photo-tower teacher: weight of the squared "
                                                         "distance between the student's sketch embedding and the "
                                                         "teacher's, inside L_RKD's share"})
    unpaired: str | None = field(default=None, metadata={"help": "sketches without photos (a folder of sketch "
                                                                 "files, or a SketchX stroke pickle's train "
                                                                 "sketches), each drawn at the canvases below the "
                                                                 "teacher's and pulled onto an embedding of it at "
                                                                 "the teacher's canvas (--unpaired-target)"})
    unpaired_target: str = field(default="teacher", metadata={"help": "what the unpaired sketches are pulled onto: "
                                                                      "teacher (the teacher's embedding; needs "
                                                                      "--photo-tower teacher, where the spaces are "
                                                                      "one) or self (the student's own embedding at "
                                                                      "the teacher's canvas, without its gradient: "
                                                                      "the canvases agree in any design)"})
    unpaired_bn: str = field(default="batch", metadata={"help": "how the unpaired sketches pass the student's batch "
                                                                "norms: batch (train mode: normalised by their own "
                                                                "batch, which also moves the running statistics the "
                                                                "student is tested with) or running (eval mode: by "
                                                                "the running statistics, which then only the paired "
                                                                "sketches move)"})
    unpaired_weight: float = field(default=1.0, metadata={"help": "weight of the unpaired sketches' squared "
                                                                  "distance (added to the loss)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.teacher is None:
            raise ValueError("teacher is required (a run folder or checkpoint)")
        if self.relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError("lam must be in [0, 1]")
        if self.canvas_weights and (len(self.canvas_weights) != len(self.canvases) or not sum(self.canvas_weights)):
            raise ValueError(f"canvas_weights needs one weight per canvas ({len(self.canvases)}: "
                             f"{list(self.canvases)}), not all zero; got {list(self.canvas_weights)}")
        if self.unlabelled and self.photo_tower != "own":
            raise ValueError("unlabelled photos need photo_tower=own: they teach the student's photo tower, and the "
                             "teacher's is frozen")
        if self.student_init == "teacher" and (self.branches != "untied" or self.cache_views):
            raise ValueError("student_init=teacher needs branches=untied and no cached views (the copied towers "
                             "train whole)")
        if self.photo_tower not in PHOTO_TOWERS or self.student_init not in ("weights", "teacher"):
            raise ValueError(f"photo_tower must be one of {PHOTO_TOWERS} and student_init weights or teacher")
        if self.unpaired_target not in UNPAIRED_TARGETS:
            raise ValueError(f"unpaired_target must be one of {UNPAIRED_TARGETS}")
        if self.unpaired_bn not in UNPAIRED_BN:
            raise ValueError(f"unpaired_bn must be one of {UNPAIRED_BN}")
        if self.unpaired and self.unpaired_target == "teacher" and self.photo_tower != "teacher":
            raise ValueError("unpaired sketches pulled onto the teacher's embedding need photo_tower=teacher, where "
                             "the teacher's space is the student's; with photo_tower=own use unpaired_target=self")
        if self.photo_tower == "teacher" and (self.branches != "untied" or self.cache_views):
            raise ValueError("photo_tower=teacher needs branches=untied (a sketch tower of the student's own) and no "
                             "cached views")


@dataclass(frozen=True)
class EnsembleConfig:
    members: tuple[str, ...] = field(default=(), metadata={"help": "run folders (or checkpoints) to combine"})
    data: str | None = field(default=None, metadata={"help": "data root (default ../shared/data)"})
    precision: str = field(default="auto", metadata={"help": "fp32, bf16 or auto, for scoring"})
    memory_format: str = field(default="auto", metadata={"help": "contiguous, channels_last or auto"})

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise ValueError("an ensemble needs at least two members")


COMMANDS = {"train": TrainConfig, "distill": DistillConfig}  # the `sketchdown` commands whose runs a config records


def config_from_values(values: object, source: str | Path) -> TrainConfig:
    """A checkpoint's recorded config (a mapping; an ensemble's: its first member's) as a ``TrainConfig``, or a
    ``DistillConfig`` where it names a teacher."""
    if isinstance(values, dict) and values.get("members"):
        values = values["members"][0]
    if not isinstance(values, dict):
        raise InputError(source, "records no training config")
    cls = DistillConfig if values.get("teacher") else TrainConfig
    names = {f.name for f in fields(cls)}
    return build(cls, {k: v for k, v in values.items() if k in names}, str(source))


def config_from_command(command: str, source: str | Path) -> TrainConfig:
    """The config a recorded ``sketchdown train|distill ...`` command line made: its flags over the defaults.

    For artifacts exported before they stored their config; a default changed since would be read as today's, so
    callers check what they rebuild against what the artifact recorded (``retrieval.export``)."""
    words = shlex.split(command)
    at = next((i for i, w in enumerate(words) if w in COMMANDS), None)
    if at is None or {"--config", "--resume"} & set(words):
        raise InputError(source, f"its recorded command is not a `sketchdown train` or `distill` run given by flags "
                                 f"alone: {command[:120]!r}")
    parser = argparse.ArgumentParser(prog=f"sketchdown {words[at]}", add_help=False, exit_on_error=False)
    add_dataclass_args(parser, COMMANDS[words[at]])
    parser.add_argument("--out")
    try:
        args = parser.parse_args(words[at + 1:])
    except (argparse.ArgumentError, SystemExit) as err:
        raise InputError(source, f"its recorded command does not parse ({err})") from None
    return from_sources(COMMANDS[words[at]], None, args, source=str(source))


def recorded_config(spec: str | Path) -> TrainConfig:
    """The training config a run folder, checkpoint, exported artifact or shipped model name records: what rebuilds
    its data splits (its validation photos held out exactly as in training). An artifact stores its run's config
    (``info["config"]``); one exported before that gives the training command it records."""
    from ..models import artifact
    from ..models.embed import read_checkpoint

    folder, _ = resolve(spec)
    if artifact.is_artifact(folder):
        return config_from_info(artifact.read(folder).info, folder)
    path = checkpoint_path(folder)
    return config_from_values(read_checkpoint(path).get("config"), path)


def config_from_info(info: dict, source: str | Path) -> TrainConfig:
    """The training config an artifact's manifest info records: its ``config``, else its training ``command``."""
    if "config" in info:
        return config_from_values(info["config"], source)
    if not isinstance(info.get("command"), str):
        raise InputError(source, "records neither its training config nor its training command")
    return config_from_command(info["command"], source)
