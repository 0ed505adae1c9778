"""Turning anything a user calls an image into an RGB ``PIL.Image``: the one conversion every entry point
(paths, encoded bytes, base64 in the served model, PIL images, arrays, tensors) goes through.

Accepts paths, encoded image bytes, PIL images of any mode (grayscale, RGBA, CMYK, palette, 16-bit),
HxW / HxWx3 / HxWx4 arrays and CHW tensors. Failures raise :class:`ImageLoadError` naming the image and
the fix. Images are refused *before* they are decoded when their size would cost unbounded memory: a side
over :data:`MAX_SIDE` px, an aspect ratio over :data:`MAX_ASPECT`, or more pixels than Pillow's
decompression-bomb limit (a 177-byte PNG can declare 100,000 x 1 px).
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageLoadError

# A few CelebA-sized images are truncated JPEGs in the wild; decoding them is an error, never a guess.
Image.LOAD_TRUNCATED_IMAGES = False

MAX_SIDE = 20_000  # px; no face photo needs more, and decoding one costs gigabytes
MAX_ASPECT = 20.0  # longer side / shorter side; strips and 1-px lines are not photos

# Every file extension Pillow can open here (.jpg, .png, .gif, .tif, .webp, .avif where supported, ...).
IMAGE_EXTENSIONS = tuple(
    sorted({ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN})
)


def describe(source) -> str:
    """A short name for an image source, for messages and prediction rows (never the data itself)."""
    if isinstance(source, str | os.PathLike):
        return os.fsdecode(source)
    if isinstance(source, Image.Image):
        return f"<PIL {source.mode} {source.size[0]}x{source.size[1]}>"
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source):,} bytes>"
    shape = getattr(source, "shape", None)
    dtype = getattr(source, "dtype", None)
    if shape is not None:
        return f"<{type(source).__name__} {tuple(shape)} {dtype}>"
    return f"<{type(source).__name__}>"


_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def clean_message(exc: BaseException) -> str:
    """An exception's text without Python object addresses (``<_io.BytesIO object at 0x...>``)."""
    return _OBJECT_REPR.sub("the image data", str(exc)).strip() or type(exc).__name__


def check_size(size: tuple[int, int], name: str) -> None:
    """Refuse image dimensions that no photo has and that would cost unbounded memory to decode."""
    w, h = size
    if w < 1 or h < 1:
        raise ImageLoadError(name, f"image has no pixels ({w}x{h})")
    if max(w, h) > MAX_SIDE:
        raise ImageLoadError(
            name, f"image is {w}x{h} px; sides over {MAX_SIDE:,} px are refused (resize it first)"
        )
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise ImageLoadError(
            name,
            f"image is {w}x{h} px, an aspect ratio over {MAX_ASPECT:g}:1; that is not a "
            "photo of a face (crop it first)",
        )
    limit = Image.MAX_IMAGE_PIXELS
    if limit and w * h > limit:
        raise ImageLoadError(
            name,
            f"image is {w}x{h} px, over Pillow's limit of {limit:,} pixels (a "
            "decompression bomb, or a photo to downscale first)",
        )


def _open_checked(fp, name: str) -> Image.Image:
    """Open lazily, check the declared size, then decode: a bomb is refused before any pixel exists."""
    try:
        with warnings.catch_warnings():  # Pillow warns about large images at open; check_size decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp)
        with im:
            check_size(im.size, name)
            im.load()
            return to_rgb(im)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(
            name, "not a readable image (unknown format or damaged data); re-export or remove it"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(
            name, f"cannot decode image ({clean_message(exc)}); re-export or remove the file"
        ) from None


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
            raise ImageLoadError(
                name, f"tensor of shape {tuple(tensor.shape)} is not CHW with 1, 3 or 4 channels"
            )
        arr = tensor.permute(1, 2, 0).numpy()
        if arr.dtype != np.uint8:
            if not np.isfinite(arr).all():
                raise ImageLoadError(
                    name, "tensor has NaN or infinite values; pass finite pixels in [0, 1] or uint8"
                )
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
    check_size((arr.shape[1], arr.shape[0]), name)
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ImageLoadError(name, "array has NaN or infinite values; pass finite pixels in [0, 1] or uint8")
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.float64) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
    elif arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and 0 <= arr.min() and arr.max() <= 1:
            arr = (arr * 255.0 + 0.5).astype(np.uint8)
        else:
            raise ImageLoadError(
                name,
                f"array dtype {arr.dtype} is not accepted; pass uint8 (0-255), uint16, or float in [0, 1]",
            )
    return to_rgb(Image.fromarray(np.ascontiguousarray(arr)))


def load_image(source, name: str | None = None) -> Image.Image:
    """Read one image source as RGB. Raises :class:`ImageLoadError` for missing, corrupt or oversized input."""
    name = name or describe(source)
    if isinstance(source, Image.Image):
        check_size(source.size, name)
        return to_rgb(source)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            raise ImageLoadError(name, "is a folder, not an image file")
        if not path.is_file():
            raise ImageLoadError(name, "file does not exist")
        return _open_checked(path, name)
    if isinstance(source, bytes | bytearray | memoryview):
        return _open_checked(io.BytesIO(bytes(source)), name)
    if hasattr(source, "shape"):
        return array_to_pil(source, name)
    raise ImageLoadError(
        name,
        f"unsupported image type {type(source).__name__}; pass a path, encoded bytes, a PIL "
        "image, an array or a tensor",
    )


def folder_images(folder: Path) -> list[Path]:
    """The folder's files that Pillow can open (by extension), sorted; says in one line what it skipped."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    others = [p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    if others:
        kinds = sorted({p.suffix.lower() or "(no extension)" for p in others})
        warnings.warn(
            f"{os.fsdecode(folder)}: {len(others)} file(s) are not images and were skipped "
            f"({', '.join(kinds[:5])}{', ...' if len(kinds) > 5 else ''})",
            stacklevel=3,
        )
    return images
