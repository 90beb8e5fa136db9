"""Make the torchvision 0.28.0 wheel importable next to the CPU-only torch 2.13.0 wheel.

That torchvision wheel is a CUDA build whose C++ ops are missing on CPU torch, so ``import torchvision`` fails
with ``operator torchvision::nms does not exist`` while registering fake kernels. Defining the two op schemas it
needs lets the pure-Python parts (models, transforms) import. This runs only when the plain import fails, so a
normal install is left untouched. The modules that use torchvision or timm import this first themselves, so
``import sketchdown`` (reading and drawing sketches) does not load torch.
"""

from __future__ import annotations

import importlib
import sys


def import_torchvision():
    """Import torchvision, defining the missing op schemas only if the plain import fails."""
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    import torch.library

    global _LIB  # the Library object must stay alive for the schemas to stay defined
    _LIB = torch.library.Library("torchvision", "DEF")
    _LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    return importlib.import_module("torchvision")


torchvision = import_torchvision()
