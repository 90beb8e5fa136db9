"""SketchyNetV2 at inference: a sketch in, its canvas chosen, the student's embedding at that canvas, photos ranked.

A trained policy is a ``retrieval.CanvasSelector`` (``choose(sketch) -> canvas``), so SketchyNetV2 is the
retrieval package's ``SketchEncoder`` with the policy as its selector, and ``Index.search`` ranks the photos:

    encoder = load_sketchynet_v2("runs/distill-shoes", "runs/select-shoes")
    hits = Index.build(encoder, "catalogue/").search("my_sketch.png")

A raster policy serves both kinds of sketch (strokes are drawn at its canvas); a vector policy refuses images
with a one-line error.
"""

from __future__ import annotations

from pathlib import Path

from ..retrieval.encoder import SketchEncoder, load


def load_sketchynet_v2(student: str | Path, policy: str | Path, photo_size: int | None = None) -> SketchEncoder:
    """The student (run folder, checkpoint or backbone name) with a trained policy (run folder or checkpoint)."""
    return load(student, photo_size=photo_size, selector=policy)
