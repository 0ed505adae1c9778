"""CelebA-C: deterministic corruptions of test images, a stand-in for photos that are not studio shots.

Each corruption maps an RGB image to an RGB image of the same size. The two with a random part (the
rotation's direction, the brightness direction) draw it from ``(seed, index)``, so a corrupted test set is
the same on every run and machine.

    grayscale    luminance only (old photos, surveillance cameras)
    jpeg_q20     JPEG quality 20 (web re-uploads)
    blur_2       Gaussian blur, sigma 2 px at 178 px (out of focus)
    downscale_48 down to 48 px on the short side and back (small faces, thumbnails)
    brightness   brightness x1.4 or x0.6 (over/under exposure)
    rotate_15    15 degrees either way, borders filled by reflection (tilted heads, selfies)
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from .images import load_image

CORRUPTIONS = ("grayscale", "jpeg_q20", "blur_2", "downscale_48", "brightness", "rotate_15")
REFERENCE_SIDE = 178  # CelebA's aligned width: blur sigma is stated at this size and scaled with the image


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def _grayscale(image: Image.Image, rng) -> Image.Image:
    return ImageOps.grayscale(image).convert("RGB")


def _jpeg(image: Image.Image, rng, quality: int = 20) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def _blur(image: Image.Image, rng, sigma: float = 2.0) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(sigma * min(image.size) / REFERENCE_SIDE))


def _downscale(image: Image.Image, rng, side: int = 48) -> Image.Image:
    w, h = image.size
    scale = side / min(w, h)
    small = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    return small.resize((w, h), Image.BILINEAR)


def _brightness(image: Image.Image, rng, amount: float = 0.4) -> Image.Image:
    factor = 1 + amount if rng.random() < 0.5 else 1 - amount
    return ImageEnhance.Brightness(image).enhance(factor)


def _rotate(image: Image.Image, rng, degrees: float = 15.0) -> Image.Image:
    angle = degrees if rng.random() < 0.5 else -degrees
    # Reflect-pad first so the rotated corners show image content, not black wedges a model could key on.
    w, h = image.size
    pad = int(np.ceil(0.3 * max(w, h)))
    padded = Image.fromarray(np.pad(np.asarray(image), ((pad, pad), (pad, pad), (0, 0)), mode="reflect"))
    rotated = padded.rotate(angle, resample=Image.BILINEAR)
    return rotated.crop((pad, pad, pad + w, pad + h))


_FUNCTIONS = {
    "grayscale": _grayscale,
    "jpeg_q20": _jpeg,
    "blur_2": _blur,
    "downscale_48": _downscale,
    "brightness": _brightness,
    "rotate_15": _rotate,
}


def corrupt(image: Image.Image, name: str, seed: int = 0, index: int = 0) -> Image.Image:
    """``image`` (any PIL mode) under corruption ``name``; deterministic for ``(seed, index)``."""
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose one of {CORRUPTIONS}")
    return _FUNCTIONS[name](image.convert("RGB"), _rng(seed, index))


def corrupted_versions(
    images, corruptions: Sequence[str] = CORRUPTIONS, seed: int = 0
) -> Iterator[tuple[str, list[Image.Image]]]:
    """``("clean", decoded)`` then ``(name, corrupted)`` per corruption: CelebA-C of ``images`` (paths or
    images, decoded once). Image ``i`` is corrupted with ``(seed, i)``, so every caller sees the same pixels.
    One corrupted set is built at a time; ``dict(corrupted_versions(...))`` keeps them all (to reuse them)."""
    decoded = [load_image(image) for image in images]
    yield "clean", decoded
    for name in corruptions:
        yield name, [corrupt(im, name, seed, i) for i, im in enumerate(decoded)]
