"""Turning anything a user calls an image into an RGB ``PIL.Image``: the one conversion every entry point
(paths, encoded bytes, base64 in the served model, PIL images, arrays, tensors) goes through.

Accepts paths, encoded image bytes, PIL images of any mode (grayscale, RGBA, CMYK, palette, 16-bit),
HxW / HxWx3 / HxWx4 arrays and CHW tensors, and :class:`EncodedImage` (encoded bytes decoded only when
read, as the served model passes its base64 rows). Failures raise :class:`ImageLoadError` naming the image
and the fix. Images are refused *before* they are decoded, from the sizes their headers declare, when
decoding would cost unbounded memory: a side over :data:`MAX_SIDE` px, an aspect ratio over
:data:`MAX_ASPECT`, more pixels than the cap ``max_pixels`` (default :data:`MAX_PIXELS`, 50 Mpx; raise it
per call, or with :func:`pixel_limit`), or more than Pillow's decompression-bomb limit (a 177-byte PNG can
declare 100,000 x 1 px). The frames inside an ICO or ICNS file are checked too: an icon can declare 256 px
and hold a 13,300 x 13,300 PNG. Float images (mode ``F``) with NaN or infinite pixels are refused, never
scored.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageLoadError

# A few CelebA-sized images are truncated JPEGs in the wild; decoding them is an error, never a guess.
Image.LOAD_TRUNCATED_IMAGES = False

ORIENTATION_TAG = 0x0112  # EXIF "Orientation": how a camera says to turn the stored pixels
MAX_SIDE = 20_000  # px; no face photo needs more, and decoding one costs gigabytes
MAX_ASPECT = 20.0  # longer side / shorter side; strips and 1-px lines are not photos
# Pixels per image (the default of ``max_pixels``): a 50-Mpx photo decodes to 150 MB of RGB. Independent of
# (and below) Pillow's own limit, which only warns at 89 Mpx and refuses at 179 Mpx.
MAX_PIXELS = 50_000_000

_max_pixels: ContextVar[int | None] = ContextVar("attr2gender_max_pixels", default=None)

# Every file extension Pillow can open here (.jpg, .png, .gif, .tif, .webp, .avif where supported, ...).
IMAGE_EXTENSIONS = tuple(
    sorted({ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN})
)


def checked_max_pixels(value, key: str = "max_pixels") -> int:
    """``value`` as a pixel cap (a whole number above 0), or ``ValueError`` naming ``key``."""
    if isinstance(value, bool):
        raise ValueError(f"{key} must be a whole number of pixels above 0, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a whole number of pixels above 0, got {value!r}") from None
    if not (number.is_integer() and number >= 1):
        raise ValueError(f"{key} must be a whole number of pixels above 0, got {value!r}")
    return int(number)


def pixel_cap(value: int | None = None) -> int:
    """The pixel cap per image in force: ``value`` when given, else the one :func:`pixel_limit` set, else
    :data:`MAX_PIXELS`."""
    if value is not None:
        return checked_max_pixels(value)
    current = _max_pixels.get()
    return MAX_PIXELS if current is None else current


@contextmanager
def pixel_limit(value: int | None) -> Iterator[int]:
    """``with pixel_limit(100_000_000): pipeline.predict(...)``: images up to ``value`` pixels are read in
    this block (this thread or task; ``None``: the default). A predict call keeps the cap in force when it
    starts, in its worker threads and processes too."""
    token = _max_pixels.set(None if value is None else checked_max_pixels(value))
    try:
        yield pixel_cap()
    finally:
        _max_pixels.reset(token)


class EncodedImage:
    """Encoded image bytes (JPEG, PNG, ...) named for messages, decoded only when read (by
    :func:`load_image`, or ``np.asarray``), never held decoded: a request's rows decode one batch at a time.
    """

    __slots__ = ("data", "name")

    def __init__(self, data: bytes | bytearray | memoryview, name: str | None = None):
        self.data = bytes(data)
        self.name = name or f"<{len(self.data):,} bytes>"

    def __repr__(self) -> str:
        return f"EncodedImage({self.name})"

    def __array__(self, dtype=None, copy=None):
        return np.asarray(load_image(self), dtype=dtype)


def describe(source) -> str:
    """A short name for an image source, for messages and prediction rows (never the data itself)."""
    if isinstance(source, EncodedImage):
        return source.name
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


def shrunk(image: Image.Image, side: int) -> tuple[Image.Image, float]:
    """``image`` at most ``side`` px on its longer side (never enlarged), and the scale it was drawn at."""
    scale = min(1.0, side / max(image.size))
    if scale == 1.0:
        return image, scale
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale)))), scale


_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def clean_message(exc: BaseException) -> str:
    """An exception's text without Python object addresses (``<_io.BytesIO object at 0x...>``)."""
    return _OBJECT_REPR.sub("the image data", str(exc)).strip() or type(exc).__name__


def check_size(size: tuple[int, int], name: str, max_pixels: int | None = None, what: str = "image") -> None:
    """Refuse image dimensions that no photo has and that would cost unbounded memory to decode
    (``max_pixels``: the cap per image; default :func:`pixel_cap`). ``what`` names the part checked."""
    w, h = size
    if w < 1 or h < 1:
        raise ImageLoadError(name, f"{what} has no pixels ({w}x{h})")
    if max(w, h) > MAX_SIDE:
        raise ImageLoadError(
            name, f"{what} is {w}x{h} px; sides over {MAX_SIDE:,} px are refused (resize it first)"
        )
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise ImageLoadError(
            name,
            f"{what} is {w}x{h} px, an aspect ratio over {MAX_ASPECT:g}:1; that is not a "
            "photo of a face (crop it first)",
        )
    cap = pixel_cap(max_pixels)
    if w * h > cap:
        raise ImageLoadError(
            name,
            f"{what} is {w}x{h} px ({w * h / 1e6:.1f} Mpx), over the cap of {cap:,} pixels per image; "
            "downscale it, or raise max_pixels",
        )
    limit = Image.MAX_IMAGE_PIXELS
    if limit and w * h > limit:
        raise ImageLoadError(
            name,
            f"image is {w}x{h} px, over Pillow's limit of {limit:,} pixels (a "
            "decompression bomb, or a photo to downscale first)",
        )


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR (its first 24 bytes), or None when ``head`` is not a PNG."""
    if head[:8] != _PNG_MAGIC or len(head) < 24 or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def _ico_frames(fp) -> Iterator[tuple[str, tuple[int, int]]]:
    """(frame, its real size) of each image inside an ICO/CUR file, read from the ICONDIRENTRY table and
    each frame's own header (a PNG's IHDR, a BMP's info header), not from the table's sizes, which say at
    most 256 px whatever the frame holds."""
    fp.seek(0)
    head = fp.read(6)
    if len(head) < 6:
        return
    count = struct.unpack("<H", head[4:6])[0]
    table = fp.read(16 * count)
    for k in range(len(table) // 16):
        offset = struct.unpack("<I", table[16 * k + 12 : 16 * k + 16])[0]
        fp.seek(offset)
        frame = fp.read(24)
        size = _png_size(frame)
        if size is None and len(frame) >= 12:
            header = struct.unpack("<I", frame[:4])[0]
            if header == 12:  # BITMAPCOREHEADER: 16-bit sides
                w, h = struct.unpack("<HH", frame[4:8])
            else:  # BITMAPINFOHEADER and later
                w, h = struct.unpack("<ii", frame[4:12])
            size = (abs(w), max(1, abs(h) // 2))  # the height counts the colour image and its AND mask
        if size is not None:
            yield f"ICO frame {k}", size


def _icns_frames(fp) -> Iterator[tuple[str, tuple[int, int]]]:
    """(frame, its real size) of each PNG or JPEG 2000 image inside an ICNS file (its blocks' own headers)."""
    fp.seek(0)
    head = fp.read(8)
    if len(head) < 8 or head[:4] != b"icns":
        return
    end, position = struct.unpack(">I", head[4:8])[0], 8
    while position + 8 <= end:
        fp.seek(position)
        block = fp.read(8)
        if len(block) < 8:
            return
        kind, length = block[:4], struct.unpack(">I", block[4:8])[0]
        if length < 8:
            return
        data_head = fp.read(24)
        size = _png_size(data_head)
        if size is None and data_head.startswith((b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  ")):
            fp.seek(position + 8)
            try:  # JPEG 2000's header only: its size without decoding
                with Image.open(io.BytesIO(fp.read(length - 8))) as frame:
                    size = frame.size
            except Exception:  # Pillow refuses it on load too
                size = None
        if size is not None:
            yield f"ICNS frame {kind.decode('latin-1')!r}", size
        position += length


def _frame_reader(head: bytes):
    """The frame-table reader of a multi-size icon file, by its first bytes (None for other formats)."""
    if head[:4] in (b"\0\0\1\0", b"\0\0\2\0"):  # ICO, CUR
        return _ico_frames
    if head[:4] == b"icns":
        return _icns_frames
    return None


def _check_frames_in(fp, name: str, max_pixels: int | None) -> None:
    """Check the real size of every frame of an icon file (ICO, CUR, ICNS) that ``fp`` holds from its
    start, from the frames' own headers: the size an icon declares is only its table's (at most 256 px in
    an ICO), and Pillow decodes an ICO's largest frame as soon as it opens it."""
    position = fp.tell()
    try:
        fp.seek(0)
        reader = _frame_reader(fp.read(4))
        if reader is not None:
            for what, size in reader(fp):
                check_size(size, name, max_pixels, what)
    finally:
        fp.seek(position)


def check_frames(im: Image.Image, name: str, max_pixels: int | None = None) -> None:
    """:func:`_check_frames_in` for an icon Pillow opened and has not decoded yet (its file still open)."""
    fp = getattr(im, "fp", None)
    if fp is None or getattr(fp, "closed", False):  # nothing to read: decoded already, or built in memory
        return
    _check_frames_in(fp, name, max_pixels)


def _open_header(fp, name: str, max_pixels: int | None) -> Image.Image:
    """Check an icon's frames, open lazily (the header only) and check the declared size; the caller
    decodes, or not."""
    with warnings.catch_warnings():  # Pillow warns about large images at open; check_size decides
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if isinstance(fp, Path):
            with open(fp, "rb") as raw:
                _check_frames_in(raw, name, max_pixels)
        else:
            _check_frames_in(fp, name, max_pixels)
        im = Image.open(fp)
    try:
        check_size(im.size, name, max_pixels)
    except BaseException:
        im.close()
        raise
    return im


def _readable(fp, name: str, read):
    """``read(fp)`` with Pillow's failures as one-line :class:`ImageLoadError` naming ``name``."""
    try:
        return read(fp)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(
            name, "not a readable image (unknown format or damaged data); re-export or remove it"
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(
            name, f"{clean_message(exc)} (refused before decoding; downscale it first)"
        ) from None
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise ImageLoadError(
            name, f"cannot decode image ({clean_message(exc)}); re-export or remove the file"
        ) from None


def _open_checked(fp, name: str, max_pixels: int | None = None) -> Image.Image:
    """Open lazily, check the declared size, then decode: a bomb is refused before any pixel exists."""

    def read(fp):
        with _open_header(fp, name, max_pixels) as im:
            im.load()
            return to_rgb(upright(im), name)

    return _readable(fp, name, read)


def upright(image: Image.Image) -> Image.Image:
    """The image as it is meant to be seen: a phone stores a turned photo unturned, with an EXIF orientation
    tag (2-8) saying how to turn it; without this, predict, align and training would read it on its side.
    An image without the tag (or with 1) is returned as it is."""
    try:
        orientation = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - a malformed EXIF block: the pixels as stored
        return image
    if orientation not in range(2, 9):
        return image
    return ImageOps.exif_transpose(image)


def _source_file(source, name: str):
    """What Pillow opens for a path, bytes or :class:`EncodedImage` source (None for other sources)."""
    if isinstance(source, EncodedImage):
        return io.BytesIO(source.data)
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(source))
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            raise ImageLoadError(name, "is a folder, not an image file")
        if not path.is_file():
            raise ImageLoadError(name, "file does not exist")
        return path
    return None


def probe(source, name: str | None = None, max_pixels: int | None = None) -> tuple[int, int]:
    """The (width, height) an image's header declares, after every check :func:`load_image` makes before
    decoding (sizes, the pixel cap, icon frames); nothing is decoded. Raises :class:`ImageLoadError`."""
    name = name or describe(source)
    if isinstance(source, Image.Image):
        check_size(source.size, name, max_pixels)
        return source.size
    fp = _source_file(source, name)
    if fp is None:
        return load_image(source, name, max_pixels).size

    def read(fp):
        with _open_header(fp, name, max_pixels) as im:
            return im.size

    return _readable(fp, name, read)


def to_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """Any PIL mode to 8-bit RGB. Transparency is composited on white, 16-bit is scaled, not clipped.
    A float image (mode ``F``) with a NaN or infinite pixel raises :class:`ImageLoadError` naming ``name``:
    no scaling turns it into a photo."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ImageLoadError(
                name,
                f"image (mode {mode}) holds NaN or infinite values; save it with finite pixels "
                "(or as 8/16-bit)",
            )
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


def array_to_pil(array, name: str = "array", max_pixels: int | None = None) -> Image.Image:
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
    check_size((arr.shape[1], arr.shape[0]), name, max_pixels)
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
    return to_rgb(Image.fromarray(np.ascontiguousarray(arr)), name)


def load_image(source, name: str | None = None, max_pixels: int | None = None) -> Image.Image:
    """Read one image source as RGB. Raises :class:`ImageLoadError` for missing, corrupt or oversized input.

    ``max_pixels``: the cap per image (default: the one :func:`pixel_limit` set, else :data:`MAX_PIXELS`),
    checked on the header's sizes before anything is decoded."""
    name = name or describe(source)
    if isinstance(source, Image.Image):
        check_size(source.size, name, max_pixels)
        check_frames(source, name, max_pixels)  # an icon opened, not loaded yet
        return to_rgb(upright(source), name)
    fp = _source_file(source, name)
    if fp is not None:
        return _open_checked(fp, name, max_pixels)
    if hasattr(source, "shape"):
        return array_to_pil(source, name, max_pixels)
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
