"""The trained retrievers that ship with sketchdown, by name (like timm's pretrained tags).

Each name is an artifact folder (``models.artifact``) under the weights root: ``$SKETCHDOWN_WEIGHTS`` if set, else
the ``weights/`` folder of the source checkout. What a model is (dataset, row, test figures, how it was made)
is in its manifest's ``info``; this table only says which folders are the shipped ones. Torch-free, so
``sketchdown models`` answers at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import InputError

MODELS: dict[str, str] = {  # name -> folder under the weights root
    "teacher-chairs": "chairs-v1/teacher",
    "direct-chairs": "chairs-v1/direct",
    "sketchynet-v1-chairs": "chairs-v1/sketchynet-v1",
    "sketchynet-v1-shoes": "shoes-v1/sketchynet-v1",
}


def weights_root() -> Path:
    env = os.environ.get("SKETCHDOWN_WEIGHTS")
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "weights"


def locate(name: str) -> Path:
    """The folder of the shipped model ``name``; an unknown name or a missing folder is a clear error."""
    if name not in MODELS:
        raise InputError(name, f"not a shipped model; the shipped ones are {', '.join(sorted(MODELS))}")
    folder = weights_root() / MODELS[name]
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


def describe() -> list[dict]:
    """Name, folder, size in MB and the manifest's info of every shipped model (``present`` False if missing)."""
    rows = []
    for name, rel in MODELS.items():
        folder = weights_root() / rel
        manifest = folder / "manifest.json"
        row: dict = {"name": name, "folder": str(folder), "present": manifest.is_file()}
        if row["present"]:
            try:
                meta = json.loads(manifest.read_text())
                info, canvas = meta.get("info", {}), meta.get("settings", {}).get("canvas")
                test = {t["canvas"]: t["acc1"] for t in info.get("test", [])}
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError):
                info, canvas, test = {}, None, {}
            row.update({k: info[k] for k in ("dataset", "row", "description") if k in info},
                       canvas=canvas, test_acc1=round(test[canvas], 2) if canvas in test else None,
                       size_mb=round(sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 1e6, 1))
        rows.append(row)
    return rows
