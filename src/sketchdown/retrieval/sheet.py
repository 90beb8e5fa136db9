"""Contact sheets: a query sketch beside its top photos, each captioned with its rank and score, as one image.

For judging a search by eye (``sketchdown search --sheet``, the web app). Only PIL's default font is used, so a
sheet draws the same with no font files or network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont, ImageOps

from ..data.io import read_image
from ..data.render import to_canvas
from ..data.sketch import Sketch
from ..errors import InputError

if TYPE_CHECKING:
    from .index import Hit

CELL = 256  # side of the sketch's canvas and of each photo's thumbnail box
PAD = 8  # white space around and between cells
CAPTION = 20  # height of the caption strip under each cell


def contact_sheet(sketch: Sketch, hits: Sequence[Hit], cell: int = CELL) -> Image.Image:
    """One RGB row: the sketch at ``cell`` x ``cell``, then each hit's photo fitted into a ``cell`` box (aspect
    kept) with ``#rank  score`` under it. A photo that no longer reads (moved since indexing) gets a grey box
    instead of failing the whole sheet."""
    font = ImageFont.load_default()
    sheet = Image.new("RGB", (PAD + (len(hits) + 1) * (cell + PAD), 2 * PAD + cell + CAPTION), "white")
    draw = ImageDraw.Draw(sheet)
    cells = [(Image.fromarray(to_canvas(sketch, cell)).convert("RGB"), "sketch")]
    for rank, hit in enumerate(hits, 1):
        photo = _thumbnail(hit.path, cell)
        caption = f"#{rank}  {hit.score:.4f}"
        cells.append((photo, caption) if photo else (Image.new("RGB", (cell, cell), "lightgrey"),
                                                     f"{caption} (unreadable)"))
    for i, (image, caption) in enumerate(cells):
        x = PAD + i * (cell + PAD)
        sheet.paste(image, (x + (cell - image.width) // 2, PAD + (cell - image.height) // 2))
        width = draw.textlength(caption, font=font)
        draw.text((x + (cell - width) / 2, PAD + cell + 4), caption, fill="black", font=font)
    return sheet


def _thumbnail(path: Path, cell: int) -> Image.Image | None:
    try:
        return ImageOps.contain(read_image(path), (cell, cell))
    except InputError:
        return None
