"""Search a photo catalogue with a sketch: a retriever model (``load``), an index of photo vectors (``Index``),
ONNX export and an onnxruntime engine (``retrieval.onnx``), and the latency benchmark (``retrieval.bench``)."""

from .encoder import CanvasSelector, Retriever, as_sketch, load
from .index import Hit, Index, ModelMismatchError, Results, recall_at_k

__all__ = ["CanvasSelector", "Hit", "Index", "ModelMismatchError", "Results", "Retriever", "as_sketch", "load",
           "recall_at_k"]
