"""Turning anything a user calls an image into an RGB ``PIL.Image``.

Accepts paths, PIL images of any mode (grayscale, RGBA, CMYK, palette, 16-bit), HxW / HxWx3 /
HxWx4 arrays and CHW tensors. Failures raise :class:`ImageLoadError` naming the image and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# A few CelebA-sized images are truncated JPEGs in the wild; decoding them is an error, never a guess.
Image.LOAD_TRUNCATED_IMAGES = False


class ImageLoadError(ValueError):
    """An image could not be read or converted; ``source`` names it."""

    def __init__(self, source: str, reason: str):
        self.source, self.reason = source, reason
        super().__init__(f"{source}: {reason}")


def describe(source) -> str:
    """A short name for an image source, for messages and prediction rows."""
    if isinstance(source, str | os.PathLike):
        return str(source)
    if isinstance(source, Image.Image):
        return f"<PIL {source.mode} {source.size[0]}x{source.size[1]}>"
    shape = getattr(source, "shape", None)
    return f"<{type(source).__name__} {tuple(shape) if shape is not None else ''}>"


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB. Transparency is composited on white, 16-bit is scaled, not clipped."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr8 = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def array_to_pil(array, name: str = "array") -> Image.Image:
    """HxW, HxWx1/3/4 uint8 (or uint16) arrays and CHW / 1xCHW tensors to RGB."""
    if hasattr(array, "detach"):  # a torch tensor: CHW, float in [0, 1] or uint8
        tensor = array.detach().cpu()
        if tensor.ndim == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.ndim != 3 or tensor.shape[0] not in (1, 3, 4):
            raise ImageLoadError(name, f"tensor of shape {tuple(tensor.shape)} is not CHW with 1, 3 or 4 channels")
        arr = tensor.permute(1, 2, 0).numpy()
        if arr.dtype != np.uint8:
            if arr.min(initial=0) < 0 or arr.max(initial=0) > 1:
                raise ImageLoadError(
                    name, "float tensor values must lie in [0, 1] (un-normalise it, or pass uint8 0-255)"
                )
            arr = (arr * 255.0 + 0.5).astype(np.uint8)
    else:
        arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageLoadError(name, f"array of shape {arr.shape} is not HxW, HxWx3 or HxWx4")
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.float64) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
    elif arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and 0 <= arr.min() and arr.max() <= 1:
            arr = (arr * 255.0 + 0.5).astype(np.uint8)
        else:
            raise ImageLoadError(name, f"array dtype {arr.dtype} is not uint8, uint16 or float in [0, 1]")
    return to_rgb(Image.fromarray(np.ascontiguousarray(arr)))


def load_image(source) -> Image.Image:
    """Read one image source as RGB. Raises :class:`ImageLoadError` for missing/corrupt input."""
    name = describe(source)
    if isinstance(source, Image.Image):
        return to_rgb(source)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise ImageLoadError(name, "file does not exist")
        try:
            with Image.open(path) as im:
                im.load()
                return to_rgb(im)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageLoadError(name, f"cannot decode image ({exc}); re-export or remove the file") from None
    if hasattr(source, "shape"):
        return array_to_pil(source, name)
    raise ImageLoadError(name, f"unsupported image type {type(source).__name__}; pass a path, PIL image, array or tensor")
