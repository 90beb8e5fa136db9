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


def _none_or(kind: type) -> typing.Callable[[str], Any]:
    return lambda s: None if s.lower() in ("none", "null") else kind(s)


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
            parser.add_argument(flag, type=_none_or(kind), nargs="+" if seq else None, default=None,
                                help=f"{help_text} (default {default})")


def from_sources(cls: type[T], yaml_path: str | Path | None, args: argparse.Namespace | None = None) -> T:
    """Build ``cls`` from its defaults, then a YAML file, then the command-line flags that were given."""
    values: dict[str, Any] = {}
    if yaml_path is not None:
        values.update(read_yaml(yaml_path))
    if args is not None:
        values.update({f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                       if getattr(args, f.name, None) is not None})
    return build(cls, values, str(yaml_path or "command line"))


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
