"""What a canvas selector asks for: a look at the sketch at one canvas, with the gallery searched if there is one.

A policy (``policy``) decides before looking and looks once; a cascade (``cascade``) looks canvas after canvas. The
retriever and the index make the probes, so a selector never needs to know how a sketch is embedded or searched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOP = 10  # similarities a search keeps for a selector, best first (the cascade reads margins down to the 10th)


@dataclass(frozen=True)
class Probe:
    """One look at one canvas: the sketch's vector there and, when a gallery is searched, the best similarities
    (descending) and their photo indices. A selector asks for probes; the retriever and the index make them."""

    canvas: int
    vector: np.ndarray
    top: np.ndarray
    ids: np.ndarray
