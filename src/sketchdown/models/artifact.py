"""The one artifact format the product loads: a folder of safetensors files + ``manifest.json``. No pickle.

The manifest holds the format version, the artifact's kind, its parts and everything needed to use them::

    {"format": 2, "kind": "retriever",
     "parts": {"model": {"file": "model.safetensors", "kind": "untied", "config": {...}, "dtype": "float16",
                         "sha256": "..."},
               "selector": {"file": "selector.safetensors", "kind": "selector", "config": {...}, ...}},
     "settings": {"canvas": 256, "photo_size": 256, "raster_method": "area", "precision": "auto", ...},
     "info": {"name": "teacher-chairs", "dataset": "chairs-v1", "test": {...}, ...}}

Kinds: ``retriever`` (an embedding model, i.e. one shared tower, untied sketch and photo towers or an ensemble,
plus an optional canvas selector, with the inference settings) and ``selector`` (a canvas policy alone). A part's
file is hashed in the manifest, so a truncated or tampered file is refused before it is parsed, and the tensors
must match the part's config exactly (no missing, no extra). Weights may be stored as fp16 and load as fp32; a
tensor that fp16 holds exactly is always stored as fp16 (lossless).

This module reads and writes the format and rebuilds the model part; the selector part is rebuilt by
``select.policy`` and the retriever by ``retrieval`` (the layers above).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from .. import limits, pretrained
from ..data.render import RASTER_METHODS
from ..errors import InputError
from ..files import checkpoint_path, digest, write_atomic, write_json
from .embed import (EnsembleNet, Model, TwinNet, _build, config_dict, create_model,
                    load_model as load_checkpoint_model, read_checkpoint)
from .registry import list_backbones

FORMAT = 2
KINDS = ("retriever", "selector")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    """A read and checked manifest; ``tensors(part)`` loads a part's weights (hash checked first)."""

    folder: Path
    kind: str
    parts: dict[str, dict]
    settings: dict
    info: dict

    def tensors(self, part: str) -> dict[str, torch.Tensor]:
        entry = self.parts[part]
        path = self.folder / entry["file"]
        if not path.is_file():
            raise InputError(path, f"the {part} weights file is missing")
        limits.check("array_bytes", path.stat().st_size, path, "weights file size in bytes")
        data = path.read_bytes()
        if digest([data]) != entry["sha256"]:
            raise InputError(path, "sha256 does not match the manifest: the file is truncated or was changed")
        try:
            state = load_bytes(data)
        except (SafetensorError, OSError, ValueError) as err:
            raise InputError(path, f"not a readable safetensors file ({err})") from None
        return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def model_kind(model: Model) -> str:
    return "ensemble" if isinstance(model, EnsembleNet) else "untied" if isinstance(model, TwinNet) else "shared"


def model_config(model: Model) -> dict:
    """The config that rebuilds ``model`` (an ensemble: its members')."""
    if isinstance(model, EnsembleNet):
        return {"members": [model_config(m) for m in model.members]}
    return config_dict(model.config)


def save(folder: str | Path, kind: str, parts: dict[str, tuple[str, dict, dict[str, torch.Tensor]]],
         settings: dict, info: dict | None = None, half: bool = False) -> Path:
    """Write an artifact: ``parts`` maps a name to (part kind, config, state dict); fp16 storage if ``half``.

    Each weights file is written atomically before the manifest, and the manifest last, so a reader never sees
    a manifest whose files are not complete.
    """
    if kind not in KINDS:
        raise ValueError(f"artifact kind must be one of {KINDS}")
    folder = Path(folder)
    entries = {}
    for name, (part_kind, config, state) in parts.items():
        tensors = {k: _stored(v, half).detach().cpu().contiguous() for k, v in state.items()}
        dtypes = {str(v.dtype).removeprefix("torch.") for v in tensors.values() if v.is_floating_point()}
        data = save_bytes(tensors)
        path = write_atomic(folder / f"{name}.safetensors", lambda f: f.write(data))
        entries[name] = {"file": path.name, "kind": part_kind, "config": config,
                         "dtype": dtypes.pop() if len(dtypes) == 1 else "float32, float16 where exact",
                         "sha256": digest([data])}
    write_json({"format": FORMAT, "kind": kind, "parts": entries, "settings": settings, "info": info or {}},
               folder / MANIFEST)
    return folder


def _stored(t: torch.Tensor, half: bool) -> torch.Tensor:
    """How a tensor is stored: fp16 if ``half``; else fp16 where that is lossless (every value an fp16 number,
    e.g. a frozen tower copied from an fp16 artifact), fp32 otherwise. Loading makes every float fp32 again."""
    if not t.is_floating_point():
        return t
    low = t.to(torch.float16)
    return low if half or torch.equal(low.to(t.dtype), t) else t.to(torch.float32)


def set_info(folder: str | Path, info: dict) -> None:
    """Replace the manifest's ``info`` (what the artifact is and scored); weights and settings stay."""
    path = Path(folder) / MANIFEST
    manifest = json.loads(path.read_text())
    write_json({**manifest, "info": info}, path)


def model_part(model: Model) -> tuple[str, dict, dict[str, torch.Tensor]]:
    return model_kind(model), model_config(model), model.state_dict()


def is_artifact(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read(folder: str | Path, kind: str | None = None) -> Artifact:
    """The checked manifest of ``folder``; ``kind``: the kind the caller needs (another one is refused)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(folder, f"no {MANIFEST}: not a sketchdown artifact folder")
    limits.check_file(path)
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise InputError(path, f"not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise InputError(path, "the manifest is not a JSON object")
    if manifest.get("format") != FORMAT:
        hint = " (format 1 folders: export the run again with `sketchdown export`)" if manifest.get("format") == 1 \
            else ""
        raise InputError(path, f"artifact format {manifest.get('format')!r}; this sketchdown reads format {FORMAT}"
                               + hint)
    if manifest.get("kind") not in KINDS:
        raise InputError(path, f"unknown artifact kind {manifest.get('kind')!r} (known: {', '.join(KINDS)})")
    if kind is not None and manifest["kind"] != kind:
        raise InputError(path, f"is a {manifest['kind']} artifact, not a {kind}")
    parts, settings, info = manifest.get("parts"), manifest.get("settings"), manifest.get("info", {})
    if not isinstance(parts, dict) or not isinstance(settings, dict) or not isinstance(info, dict):
        raise InputError(path, "the manifest needs 'parts' and 'settings' objects")
    for name, entry in parts.items():
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("file", "kind", "sha256")) \
                or not isinstance(entry.get("config"), dict):
            raise InputError(path, f"part {name!r} needs file, kind, config and sha256")
        if Path(entry["file"]).name != entry["file"]:
            raise InputError(path, f"part {name!r} names a file outside the artifact folder: {entry['file']!r}")
    if manifest["kind"] == "retriever" and "model" not in parts:
        raise InputError(path, "a retriever artifact needs a 'model' part")
    return Artifact(folder, manifest["kind"], parts, settings, info)


def build_model(art: Artifact, part: str = "model") -> Model:
    """The fp32 model (eval mode) of an artifact's model part; its tensors must fit the config exactly."""
    entry, state = art.parts[part], art.tensors(part)
    where = art.folder / entry["file"]
    if entry["kind"] == "ensemble":
        members = entry["config"].get("members")
        if not isinstance(members, list) or not members:
            raise InputError(where, "an ensemble part needs a list of member configs")
        prefixes = {f"members.{i}." for i in range(len(members))}
        stray = sorted(k for k in state if not any(k.startswith(p) for p in prefixes))
        if stray:
            raise InputError(where, f"tensors that belong to no member: {', '.join(stray[:3])}")
        return EnsembleNet([_build({"model_config": c, "state_dict": _prefixed(state, f"members.{i}.")}, where)
                            for i, c in enumerate(members)]).eval()
    return _build({"model_config": entry["config"], "state_dict": state}, where)


def load_model(spec: str | Path) -> Model:
    """An embedding model from a shipped model name, an artifact folder, a training run folder (its best.pt), a
    checkpoint file, or a registered backbone name (zero-shot ImageNet weights)."""
    folder, _ = pretrained.resolve(spec)
    if is_artifact(folder):
        return build_model(read(folder, "retriever"))
    if not folder.exists() and str(spec) in list_backbones():
        return create_model(str(spec))
    return load_checkpoint_model(checkpoint_path(folder))


def _prefixed(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def checkpoint_settings(config: object, path: Path) -> dict:
    """The inference settings a training run's checkpoint records (its config), checked: a damaged one is an
    InputError naming the checkpoint, never a TypeError at the first search."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise InputError(path, f"the checkpoint's training config is not a mapping: {config!r:.80}")
    stored = {"canvas": config.get("eval_canvas"), "photo_size": config.get("photo_size"),
              "raster_method": config.get("raster_method")}
    for key in ("canvas", "photo_size"):
        if stored[key] is not None:
            limits.check_canvas(stored[key], path, f"the recorded {key}")
    if stored["raster_method"] not in (None, *RASTER_METHODS):
        raise InputError(path, f"the recorded raster method {stored['raster_method']!r} is not one of "
                               f"{', '.join(RASTER_METHODS)}")
    return stored


def stored_settings(spec: str | Path) -> dict:
    """The inference settings a model spec records (as ``load_model`` resolves it): an artifact's settings, a run's
    checkpoint config (canvas, photo size, raster method), nothing for a backbone name."""
    folder, _ = pretrained.resolve(spec)
    if is_artifact(folder):
        return read(folder, "retriever").settings
    if folder.exists():
        path = checkpoint_path(folder)
        return checkpoint_settings(read_checkpoint(path).get("config"), path)
    return {}
