"""Import costs: reading and drawing a sketch must not load torch (seconds, and readers do not need it), while
every module that brings in torchvision or timm must still run the torchvision shim first on its own."""

import json
import subprocess
import sys

import pytest

READ_AND_DRAW = """
import sys, sketchdown
from sketchdown.data.io import read_sketch
from sketchdown.data.render import to_canvas
img = to_canvas(read_sketch(sys.argv[1]), 64)
assert img.shape == (64, 64) and img.min() < 128, img.min()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "timm"))
assert not loaded, loaded
"""


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


def test_reading_and_drawing_a_sketch_does_not_import_torch(tmp_path):
    f = tmp_path / "cat.ndjson"
    f.write_text(json.dumps({"word": "cat", "drawing": [[[10, 200, 120], [10, 30, 240]]]}) + "\n")
    run = _python("-c", READ_AND_DRAW, str(f))
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("module", ["sketchdown.models.backbones", "sketchdown.models.weights", "sketchdown.data.transforms"])
def test_model_modules_import_first_in_a_fresh_process(module):
    run = _python("-c", f"import {module}")  # timm or torchvision first, without the package having run the shim
    assert run.returncode == 0, run.stderr
