"""sketchdown: efficient fine-grained sketch-based image retrieval."""

from . import _compat  # noqa: F401  (first: makes torchvision importable before timm imports it)

from .data.sketch import Sketch
from .errors import InputError, MissingWeightsError, SketchdownError

__version__ = "0.1.0"
__all__ = ["Sketch", "SketchdownError", "InputError", "MissingWeightsError", "__version__"]
