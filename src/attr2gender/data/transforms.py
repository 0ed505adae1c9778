"""The source study's transforms, with the image size as a parameter, and a strong train-time variant.

Source: train Resize(256) / RandomResizedCrop(224) / RandomHorizontalFlip / ToTensor / Normalize,
eval Resize(256) / CenterCrop(224). At other sizes the 256:224 resize ratio is kept.

``augment="strong"`` (train only) adds what separates a user's photos from CelebA's studio shots: colour
jitter, random grayscale, Gaussian blur, JPEG-quality jitter and random scale/rotation. Every random draw
comes from torch's generator, which Lightning seeds per worker, so runs stay reproducible.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from ..constants import IMAGENET_MEAN, IMAGENET_STD

AUGMENTS = ("standard", "strong")


class RandomJPEG:
    """Re-encode as JPEG at a random quality in ``quality`` with probability ``p`` (web re-uploads)."""

    def __init__(self, quality: tuple[int, int] = (20, 95), p: float = 0.3):
        self.quality, self.p = quality, p

    def __call__(self, image: Image.Image) -> Image.Image:
        if torch.rand(()) >= self.p:
            return image
        quality = int(torch.randint(self.quality[0], self.quality[1] + 1, ()))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return decoded.convert("RGB")

    def __repr__(self) -> str:
        return f"RandomJPEG(quality={self.quality}, p={self.p})"


RESIZE_RATIO = 256 / 224  # the source resizes to 256 before cropping 224


def resize_size(image_size: int) -> int:
    return int(round(image_size * RESIZE_RATIO))


def preprocessing_spec(
    image_size: int, resize: int | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD
) -> dict:
    """What evaluation preprocessing does, as JSON; saved in bundles so predict uses the same.
    ``resize``: the shorter side before the centre crop (default: the source's 256:224 ratio); a face
    backbone's aligned faces are read whole (``resize == image_size``). ``mean`` / ``std``: the
    normalisation the network was trained with (ImageNet's for the image CNNs; a face network's own, from its
    record)."""
    return {
        "resize": resize_size(image_size) if resize is None else int(resize),
        "crop": image_size,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "interpolation": "bilinear",
    }


def build_transforms(image_size: int = 224, train: bool = False, augment: str = "standard") -> T.Compose:
    """Train-time augmentation (the source study's, or ``strong``) or the deterministic eval pipeline."""
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 px, got {image_size}")
    if augment not in AUGMENTS:
        raise ValueError(f"augment={augment!r} is not valid; choose one of {AUGMENTS}")
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if train and augment == "strong":
        blur_kernel = max(3, (image_size // 16) | 1)  # odd, ~6 % of the side
        return T.Compose(
            [
                T.Resize(resize_size(image_size)),
                T.RandomAffine(degrees=20, translate=(0.05, 0.05), scale=(0.85, 1.15)),
                T.RandomResizedCrop(image_size, scale=(0.5, 1.0), ratio=(0.85, 1.15)),
                T.RandomHorizontalFlip(),
                T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.05)], p=0.8),
                T.RandomGrayscale(p=0.2),
                T.RandomApply([T.GaussianBlur(blur_kernel, sigma=(0.1, 2.0))], p=0.3),
                RandomJPEG((20, 95), p=0.3),
                T.ToTensor(),
                normalize,
            ]
        )
    if train:
        return T.Compose(
            [
                T.Resize(resize_size(image_size)),
                T.RandomResizedCrop(image_size),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                normalize,
            ]
        )
    return eval_transform_from_spec(preprocessing_spec(image_size))


def eval_transform_from_spec(spec: dict) -> T.Compose:
    """Rebuild the eval pipeline from :func:`preprocessing_spec` output (e.g. read from a bundle)."""
    return T.Compose(
        [
            T.Resize(int(spec["resize"])),
            T.CenterCrop(int(spec["crop"])),
            T.ToTensor(),
            T.Normalize(spec["mean"], spec["std"]),
        ]
    )


class EvalPreprocessing:
    """:func:`eval_transform_from_spec` split in two, for prediction: per image, resize + centre crop to
    a uint8 HxWx3 array (cheap to send from decode workers); per batch, one vectorised conversion to the
    normalised float (B, 3, H, W) tensor, laid out channels-last (what the CPU convolutions want).

    Same numbers as the torchvision pipeline (to float rounding, ~1e-7) at about half the per-image cost:
    ``ToTensor`` copies every permuted uint8 image on its own. Calling the object on one image returns its
    normalised (3, H, W) tensor, like the torchvision pipeline."""

    def __init__(self, spec: dict):
        self.spec = dict(spec)
        self.geometry = T.Compose([T.Resize(int(spec["resize"])), T.CenterCrop(int(spec["crop"]))])
        # Normalised = (uint8 - 255 mean) / (255 std), per channel, computed on the last (channel) axis in numpy:
        # an order of magnitude cheaper than torch's kernels on a single small image.
        self.offset = np.asarray(spec["mean"], dtype=np.float32) * 255.0
        self.scale = 1.0 / (np.asarray(spec["std"], dtype=np.float32) * 255.0)

    def image(self, image: Image.Image) -> np.ndarray:
        """Resize and centre-crop an RGB image to a uint8 (crop, crop, 3) array."""
        return np.asarray(
            self.geometry(image.convert("RGB") if image.mode != "RGB" else image), dtype=np.uint8
        )

    def batch(self, arrays) -> torch.Tensor:
        """uint8 (H, W, 3) arrays (or one (B, H, W, 3) array) to a normalised float (B, 3, H, W) batch."""
        stacked = np.stack(arrays) if isinstance(arrays, list | tuple) else np.asarray(arrays)
        normalised = (stacked.astype(np.float32) - self.offset) * self.scale  # (B, H, W, 3)
        return torch.from_numpy(normalised).permute(0, 3, 1, 2)  # (B, 3, H, W), channels-last in memory

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.batch([self.image(image)])[0]
