"""Photo-like test images built from aligned face crops: the face somewhere in a larger picture.

A user's photos are not CelebA crops: the face is smaller, off-centre, tilted, and sometimes has someone
behind it. No photos of other people can ship with this project, so these are built from crops that do:
each composite pastes one crop (the *main* face) into a canvas 2-4 times its size, at a random position near
the centre, a random scale and an in-plane rotation (+-25 degrees), on a background mosaic cut from the
borders of other crops; some get a second, smaller face farther from the centre. Where every face went is
recorded, so a detector's recall and the face the pipeline picks can be checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .images import load_image


@dataclass
class PastedFace:
    """Where a crop went: its source, the canvas position of the crop's centre, its side and rotation."""

    source: str
    center: tuple[float, float]  # canvas pixels
    side: float  # the pasted crop's side in canvas pixels (before rotation)
    angle: float  # degrees, counter-clockwise

    def contains(self, point, fraction: float = 0.3) -> bool:
        """Whether ``point`` lies within ``fraction`` of the crop's side from its centre."""
        return float(np.hypot(point[0] - self.center[0], point[1] - self.center[1])) <= fraction * self.side


@dataclass
class Composite:
    image: Image.Image
    main: PastedFace  # the face the pipeline should pick (nearest the centre, and the largest)
    others: list[PastedFace]  # smaller faces, farther from the centre


def _mosaic(crops: list[Image.Image], size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A background of patches cut from the borders of crops (hair, clothes, studio walls: no faces)."""
    tiles = 4
    out = Image.new("RGB", size)
    tw, th = -(-size[0] // tiles), -(-size[1] // tiles)
    for row in range(tiles):
        for col in range(tiles):
            crop = crops[rng.integers(len(crops))]
            w, h = crop.size
            patch = max(8, min(w, h) // 5)
            corner = rng.integers(4)
            x = 0 if corner % 2 == 0 else w - patch
            y = 0 if corner < 2 else h - patch
            piece = crop.crop((x, y, x + patch, y + patch)).resize((tw, th), Image.BILINEAR)
            out.paste(piece, (col * tw, row * th))
    return out.filter(ImageFilter.GaussianBlur(2))


def _paste(canvas: Image.Image, crop: Image.Image, center, side: float, angle: float) -> None:
    """Paste ``crop`` scaled to ``side`` px and rotated by ``angle`` with a feathered elliptical edge."""
    side = max(8, int(round(side)))
    face = crop.resize((side, side), Image.BILINEAR)
    mask = Image.new("L", (side, side), 0)
    inset = side * 0.04
    ImageDraw.Draw(mask).ellipse((inset, inset, side - inset, side - inset), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(side * 0.03))
    face = face.rotate(angle, resample=Image.BILINEAR, expand=True)
    mask = mask.rotate(angle, resample=Image.BILINEAR, expand=True)
    canvas.paste(
        face, (int(round(center[0] - face.width / 2)), int(round(center[1] - face.height / 2))), mask
    )


def make_composites(
    paths,
    n: int,
    seed: int = 0,
    canvas_factor: tuple[float, float] = (2.0, 4.0),
    max_angle: float = 25.0,
    second_face: float = 0.3,
) -> list[Composite]:
    """``n`` composites whose main faces are ``paths[0 .. n-1]`` (cycled when fewer); backgrounds and second
    faces come from the other paths. Deterministic for a seed."""
    paths = list(paths)
    if len(paths) < 2:
        raise ValueError("make_composites needs at least 2 crops (faces and backgrounds come from others)")
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        main_path = paths[k % len(paths)]
        crop = load_image(main_path)
        donors = [load_image(paths[i]) for i in rng.choice(len(paths), 3, replace=False)]
        side = float(min(crop.size)) * rng.uniform(0.7, 1.3)
        canvas_side = int(round(side * rng.uniform(*canvas_factor)))
        canvas = _mosaic(donors, (canvas_side, canvas_side), rng)
        # The main face: near the centre (at most a quarter of the free room away), whole inside the canvas.
        room = max(0.0, (canvas_side - side * 1.2) / 2)
        center = tuple(canvas_side / 2 + rng.uniform(-0.25, 0.25) * room for _ in range(2))
        angle = float(rng.uniform(-max_angle, max_angle))
        others = []
        if rng.random() < second_face and room > side * 0.3:
            small = side * rng.uniform(0.4, 0.7)
            # In a corner: farther from the centre than the main face, and not overlapping it.
            corner = [
                canvas_side / 2 + s * (canvas_side / 2 - small * 0.6) for s in rng.choice([-1, 1], size=2)
            ]
            if np.hypot(corner[0] - center[0], corner[1] - center[1]) > (side + small) * 0.55:
                second = donors[0]
                second_angle = float(rng.uniform(-max_angle, max_angle))
                _paste(canvas, second, corner, small, second_angle)
                others.append(PastedFace("donor", (corner[0], corner[1]), small, second_angle))
        _paste(canvas, crop, center, side, angle)
        out.append(Composite(canvas, PastedFace(str(main_path), center, side, angle), others))
    return out
