"""Configs are dataclasses; this turns one into argparse flags and YAML, so a run's config is one object.

Precedence: dataclass defaults < ``--config file.yaml`` < explicit command-line flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from . import limits
from .errors import InputError
from .files import write_text

T = TypeVar("T")


def _parse_type(tp: Any) -> tuple[Any, bool]:
    """(element type, is_sequence) for the field types configs use: scalars, Optional, tuple[x, ...]."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        return args[0], True
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _parse_type(args[0])
    return tp, False


# Ranges by field name, shared by every config (train, distill, select): (low, high, low is exclusive); a high
# that is a string names a limit of ``sketchdown.limits``. The parser checks flags with them, ``validate`` the
# values from YAML files and from Python.
RANGES: dict[str, tuple[float | None, float | str | None, bool]] = {
    "epochs": (1, None, False), "batch_size": (1, "batch_size", False), "lr": (0, None, True),
    "weight_decay": (0, None, False), "warmup_epochs": (0, None, False), "margin": (0, None, False),
    "canvases": (1, "canvas", False), "eval_canvas": (1, "canvas", False), "test_canvases": (1, "canvas", False),
    "photo_size": (1, "canvas", False), "val_fraction": (0, 1, True), "workers": (0, None, False),
    "limit": (1, None, False), "steps_per_epoch": (1, None, False), "freeze_blocks": (0, None, False),
    "cache_views": (0, None, False), "embed_dim": (1, None, False), "lam": (0, 1, False), "beta": (0, None, True),
    "unlabelled_weight": (0, None, False), "lambda_flops": (0, 1, False), "lambda_triplet": (0, None, False),
    "ema_decay": (0, 1, False), "entropy": (0, None, False), "hidden": (1, None, False),
    "channels": (1, None, False), "rdp_epsilon": (0, None, False), "max_points": (2, None, False),
    "direct": (0, None, False), "folds": (0, None, False), "fold": (0, None, False),
    "canvas_weights": (0, None, False),
}


def out_of_range(name: str, value: Any) -> str | None:
    """Why ``value`` is outside field ``name``'s range (each element, for a sequence), or None when it is not."""
    if name not in RANGES or value is None:
        return None
    low, high, exclusive = RANGES[name]
    high = getattr(limits.current(), high) if isinstance(high, str) else high
    for v in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            return f"{name} must be a number, got {v!r}"
        if low is not None and (v <= low if exclusive else v < low) or high is not None and v > high:
            lo = f"{'above' if exclusive else 'at least'} {low}" if low is not None else ""
            return f"{name} must be {lo}{' and ' if lo and high is not None else ''}" \
                   f"{f'at most {high}' if high is not None else ''}, got {v}"
    return None


def validate(obj: Any) -> None:
    """ValueError naming the first field of a config dataclass that is out of its range."""
    for f in dataclasses.fields(obj):
        problem = out_of_range(f.name, getattr(obj, f.name))
        if problem:
            raise ValueError(problem)


def _none_or(kind: type, name: str = "") -> typing.Callable[[str], Any]:
    def parse(s: str) -> Any:
        if s.lower() in ("none", "null"):
            return None
        value = kind(s)
        problem = out_of_range(name, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value
    return parse


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--field-name`` flag per field, defaulting to ``None`` so unset flags can be told apart."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind, seq = _parse_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if kind is bool:
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=None,
                                metavar="BOOL", help=f"{help_text} (default {default})")
        else:
            parser.add_argument(flag, type=_none_or(kind, f.name), nargs="+" if seq else None, default=None,
                                help=f"{help_text} (default {default})")


def from_sources(cls: type[T], yaml_path: str | Path | None, args: argparse.Namespace | None = None,
                 source: str | None = None) -> T:
    """Build ``cls`` from its defaults, then a YAML file, then the command-line flags that were given; ``source``
    names where they came from in an error (default: the YAML file, else the command line)."""
    values: dict[str, Any] = {}
    if yaml_path is not None:
        values.update(read_yaml(yaml_path))
    if args is not None:
        values.update({f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                       if getattr(args, f.name, None) is not None})
    return build(cls, values, source or str(yaml_path or "command line"))


def build(cls: type[T], values: dict[str, Any], source: str) -> T:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise InputError(source, f"unknown config keys {sorted(unknown)}; known: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    clean = {k: tuple(v) if _parse_type(hints[k])[1] and v is not None else v for k, v in values.items()}
    try:
        return cls(**clean)
    except (TypeError, ValueError) as err:
        raise InputError(source, f"invalid config: {err}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "config file does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(path, f"not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise InputError(path, "a config file must be a mapping of field: value")
    return data


def write_yaml(obj: Any, path: str | Path) -> None:
    """A dataclass as YAML (tuples as lists), the way ``from_sources`` reads it back."""
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(obj).items()}
    write_text(path, yaml.safe_dump(data, sort_keys=False))
