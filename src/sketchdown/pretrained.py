"""The trained retrievers that ship with sketchdown, by name (like timm's pretrained tags).

Each name is an artifact folder (``models.artifact``) under the weights root: ``$SKETCHDOWN_WEIGHTS`` if set, else
the ``weights/`` folder of the source checkout, and how the name uses it (``Shipped``: with or without the
artifact's canvas selector). What a model is (dataset, row, test figures, how it was made) is in its manifest's
``info``; this table only says which folders are the shipped ones. Torch-free, so ``sketchdown models`` answers at
once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

@dataclass(frozen=True)
class Shipped:
    """A shipped name: an artifact folder under the weights root, and how the name uses it. One SketchyNetV2
    artifact (student + canvas selector) also ships its SketchyNetV1 (the same student at a fixed canvas, no
    selector) under a second name, as timm's pretrained tags share weights between configs."""

    folder: str
    selector: bool = True  # False: the artifact's canvas selector is left out
    canvas: int | None = None  # the fixed canvas the name searches at (None: the artifact's)


MODELS: dict[str, Shipped] = {
    "teacher-chairs": Shipped("chairs-v1/direct"),  # the teacher of the v1b students is the direct run
    "direct-chairs": Shipped("chairs-v1/direct"),
    "sketchynet-v2-chairs": Shipped("chairs-v1/sketchynet"),
    "sketchynet-v1-chairs": Shipped("chairs-v1/sketchynet", selector=False, canvas=256),
    "teacher-shoes": Shipped("shoes-v1/direct"),  # likewise on Shoe-V1 (row v1b-teacher)
    "direct-shoes": Shipped("shoes-v1/direct"),
    "sketchynet-v2-shoes": Shipped("shoes-v1/sketchynet"),
    "sketchynet-v1-shoes": Shipped("shoes-v1/sketchynet", selector=False, canvas=256),
}


def weights_root() -> Path:
    env = os.environ.get("SKETCHDOWN_WEIGHTS")
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "weights"


def locate(name: str) -> Path:
    """The folder of the shipped model ``name``; an unknown name or a missing folder is a clear error."""
    if name not in MODELS:
        raise InputError(name, f"not a shipped model; the shipped ones are {', '.join(sorted(MODELS))}")
    folder = weights_root() / MODELS[name].folder
    if not (folder / "manifest.json").is_file():
        raise InputError(name, f"its files are not at {folder} (set SKETCHDOWN_WEIGHTS to the folder holding "
                               "the project's weights/)")
    return folder


def resolve(spec: str | Path) -> tuple[Path, str]:
    """(the path ``spec`` stands for, how to name it as a source): a shipped name's folder and the name, or the
    path itself and its absolute form."""
    if str(spec) in MODELS:
        return locate(str(spec)), str(spec)
    return Path(spec), str(Path(spec).resolve())


def test_figures(name: str, info: dict, canvas: int | None) -> dict | None:
    """The test figures a shipped name stands for: its selector's (``info["test_selector"]``) when it uses one,
    else those at its canvas."""
    if MODELS[name].selector and info.get("test_selector"):
        return info["test_selector"]
    return next((t for t in info.get("test", []) if t.get("canvas") == canvas), None)


def describe() -> list[dict]:
    """Name, folder, size in MB and the manifest's info of every shipped model (``present`` False if missing)."""
    rows = []
    for name, shipped in MODELS.items():
        folder = weights_root() / shipped.folder
        manifest = folder / "manifest.json"
        row: dict = {"name": name, "folder": str(folder), "present": manifest.is_file()}
        if row["present"]:
            try:
                meta = json.loads(manifest.read_text())
                info, settings = meta.get("info", {}), meta.get("settings", {})
                selector = shipped.selector and "selector" in meta.get("parts", {})
                canvas = "selector" if selector else shipped.canvas or settings.get("canvas")
                test = test_figures(name, info, None if selector else canvas) or {}
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError):
                info, canvas, test = {}, None, {}
            row.update({k: info[k] for k in ("dataset", "description") if k in info},
                       row=info.get("row") if selector else info.get("fixed_row", info.get("row")), canvas=canvas,
                       test_acc1=round(test["acc1"], 2) if "acc1" in test else None,
                       size_mb=round(sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 1e6, 1))
        rows.append(row)
    return rows
