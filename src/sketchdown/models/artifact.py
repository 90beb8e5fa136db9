"""Trained weights as a folder that loads without running code: ``model.safetensors`` + ``manifest.json``.

The manifest holds a format version, the model config that rebuilds the network (one tower, two untied towers or
an ensemble), the inference settings the model was trained and evaluated with (canvas, photo size, raster method),
the stored dtype and the sha256 of the weights file, so a truncated or tampered file is refused before loading.
Weights may be stored as fp16 (half the size); they are loaded back into fp32 modules.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import InputError
from .embed import EnsembleNet, Model, _build

FORMAT = 1
WEIGHTS, MANIFEST = "model.safetensors", "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _config(model: Model) -> dict:
    if isinstance(model, EnsembleNet):
        return {"members": [_config(m) for m in model.members]}
    return asdict(model.config)


def save(model: Model, folder: str | Path, settings: dict, half: bool = True) -> Path:
    """Write ``model`` (weights, fp16 if ``half``) and its settings into ``folder``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    tmp = folder / (WEIGHTS + ".tmp")
    save_file(state, tmp)
    tmp.replace(folder / WEIGHTS)
    manifest = {"format": FORMAT, "model_config": _config(model), "settings": settings,
                "dtype": "float16" if half else "float32", "sha256": _sha256(folder / WEIGHTS)}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise InputError(folder, f"no {MANIFEST}: not a sketchdown weights folder")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(path, f"format {manifest.get('format') if isinstance(manifest, dict) else None!r} is not "
                               f"the supported format {FORMAT}")
    for key in ("model_config", "settings", "sha256"):
        if key not in manifest:
            raise InputError(path, f"manifest has no {key!r}")
    return manifest


def load(folder: str | Path) -> tuple[Model, dict]:
    """(fp32 model in eval mode, settings) from a folder written by ``save``; checks the weights' hash first."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise InputError(weights, "weights file is missing")
    if _sha256(weights) != manifest["sha256"]:
        raise InputError(weights, "sha256 does not match the manifest: the file is truncated or was changed")
    try:
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(weights).items()}
    except (SafetensorError, OSError) as err:
        raise InputError(weights, f"not a readable safetensors file ({err})") from None
    config = manifest["model_config"]
    if isinstance(config, dict) and "members" in config:
        members = [_build({"model_config": c, "state_dict": _prefixed(state, f"members.{i}.")}, weights)
                   for i, c in enumerate(config["members"])]
        return EnsembleNet(members).eval(), manifest["settings"]
    return _build({"model_config": config, "state_dict": state}, weights), manifest["settings"]


def _prefixed(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
