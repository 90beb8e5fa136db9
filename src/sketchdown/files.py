"""The three file jobs every layer needs, done once: atomic writes, content hashes and run-folder resolution.

Torch-free on purpose (the data layer and the CLI use it); a torch object is written with
``write_atomic(path, lambda f: torch.save(obj, f))``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from .errors import InputError

CHECKPOINT = "best.pt"  # what a training run folder stands for: its best validation checkpoint


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write through a temporary file in the same folder, then rename: readers never see half a file, and a
    killed or failed write leaves the old file (if any) and no temporary behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(21, "it is a folder")
        _remove_stale(path)
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as err:
        raise InputError(path, f"cannot write it: {err.strerror or err}") from err
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # the folder itself is unusable; the error above already says so
            pass
    return path


def _remove_stale(path: Path) -> None:
    """Delete the temporaries of earlier writes of ``path`` whose process is gone (killed mid-write)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:-len(".tmp")]
        if pid.isdecimal() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process (or a number no process can have)
        return False
    except PermissionError:  # another user's process
        return True
    return True


def make_folder(path: str | Path) -> Path:
    """Create an output folder (and its parents) or say in one line why it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(path, f"cannot create the folder: {err.strerror or err}") from None
    return path


def _nearest_folder(path: Path) -> Path:
    """The closest existing ancestor of ``path``, which must be a folder that takes new files."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(path, f"cannot write it: {folder} is a file, not a folder")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise InputError(path, f"cannot write it: {err.strerror or err}") from None
    return folder


def writable_file(path: str | Path) -> Path:
    """An output file checked BEFORE the work that fills it (nothing is created): not a folder, and its nearest
    existing folder takes new files."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "cannot write it: it is a folder; give a file name")
    _nearest_folder(path)
    return path


def writable_folder(path: str | Path) -> Path:
    """An output folder checked before the work (nothing is created): a folder, or a path one can be made at."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(path, "is a file; give a folder to write into")
    _nearest_folder(path / "x")
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda f: f.write(text.encode()))


def write_json(data: dict | list, path: str | Path) -> Path:
    return write_text(path, json.dumps(data, indent=2) + "\n")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest(parts: Iterable[bytes | str], length: int = 64) -> str:
    """sha256 (hex, first ``length`` characters) of a sequence of byte or text parts: the key of caches and the
    identity of models."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
    return h.hexdigest()[:length]


def checkpoint_path(path: str | Path, name: str = CHECKPOINT) -> Path:
    """A run folder means its ``name`` (best.pt); a file means itself; anything else is refused."""
    p = Path(path)
    if p.is_dir():
        if not (p / name).is_file():
            raise InputError(p, f"is a folder without {name}; give a training run folder or a checkpoint file")
        return p / name
    if not p.is_file():
        raise InputError(p, "no such run folder or checkpoint file")
    return p
