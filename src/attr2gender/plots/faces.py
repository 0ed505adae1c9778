"""Face-alignment figures: what the model sees next to what it was given. Used by ``data.faces``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def contact_sheet(
    pairs: Sequence[tuple[Any, Any, Any, Any]],
    path: str | Path | None = None,
    cell: int = 160,
    columns: int = 4,
):
    """What the model sees, next to what it was given: per entry (original image, face box, 5 landmarks,
    aligned crop[, why not]), the original with its box (green) and landmarks (red), then the aligned crop.
    Without an aligned crop the box (if any) is red and the last element says why ("no face", "too small").
    Returns a PIL image (PNG at ``path``). Drawn with Pillow, not matplotlib: 64 photos at full detail would
    make a slow, huge figure."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=16)
    n = max(1, len(pairs))
    rows = math.ceil(n / columns)
    pad = 6
    width = columns * (2 * cell + 3 * pad)
    sheet = Image.new("RGB", (width, rows * (cell + 2 * pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (original, box, landmarks, aligned, *why) in enumerate(pairs):
        r, c = divmod(k, columns)
        x0, y0 = c * (2 * cell + 3 * pad) + pad, r * (cell + 2 * pad) + pad
        shown = original.convert("RGB").copy()
        scale = cell / max(shown.size)
        shown = shown.resize((max(1, round(shown.width * scale)), max(1, round(shown.height * scale))))
        marks = ImageDraw.Draw(shown)
        if box is not None:
            colour = (0, 220, 0) if aligned is not None else (230, 0, 0)
            marks.rectangle([v * scale for v in box], outline=colour, width=2)
        if landmarks is not None:
            for x, y in np.asarray(landmarks, dtype=float) * scale:
                marks.ellipse((x - 2.5, y - 2.5, x + 2.5, y + 2.5), fill=(255, 40, 40))
        sheet.paste(shown, (x0 + (cell - shown.width) // 2, y0 + (cell - shown.height) // 2))
        if aligned is not None:
            crop = aligned.convert("RGB")
            crop_scale = cell / max(crop.size)
            crop = crop.resize(
                (max(1, round(crop.width * crop_scale)), max(1, round(crop.height * crop_scale)))
            )
            sheet.paste(crop, (x0 + cell + pad + (cell - crop.width) // 2, y0 + (cell - crop.height) // 2))
        else:
            label = why[0] if why else "no face"
            draw.text((x0 + cell + pad + 8, y0 + cell // 2 - 8), label, fill=(200, 0, 0), font=font)
    if path is not None:
        sheet.save(path)
    return sheet
