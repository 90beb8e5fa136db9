"""sketchdown: efficient fine-grained sketch-based image retrieval."""

from .data.sketch import Sketch
from .errors import InputError, MissingWeightsError, SketchdownError

__version__ = "0.1.0"
__all__ = ["Sketch", "SketchdownError", "InputError", "MissingWeightsError", "Index", "Retriever", "load",
           "__version__"]
_RETRIEVAL = ("Index", "Retriever", "load")  # imported on first use: faiss and the models are not needed to read a sketch


def __getattr__(name: str):
    if name in _RETRIEVAL:
        from . import retrieval

        return getattr(retrieval, name)
    raise AttributeError(f"module 'sketchdown' has no attribute {name!r}")
