"""The source study's transforms, with the image size as a parameter.

Source: train Resize(256) / RandomResizedCrop(224) / RandomHorizontalFlip / ToTensor / Normalize,
eval Resize(256) / CenterCrop(224). At other sizes the 256:224 resize ratio is kept.
"""

from __future__ import annotations

from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_RATIO = 256 / 224  # the source resizes to 256 before cropping 224


def resize_size(image_size: int) -> int:
    return int(round(image_size * RESIZE_RATIO))


def preprocessing_spec(image_size: int) -> dict:
    """What evaluation preprocessing does, as JSON; saved in bundles so predict uses the same."""
    return {
        "resize": resize_size(image_size),
        "crop": image_size,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "interpolation": "bilinear",
    }


def build_transforms(image_size: int = 224, train: bool = False) -> T.Compose:
    """Train-time augmentation or the deterministic eval pipeline, as in the source study."""
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 px, got {image_size}")
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if train:
        return T.Compose([
            T.Resize(resize_size(image_size)),
            T.RandomResizedCrop(image_size),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            normalize,
        ])  # fmt: skip
    return eval_transform_from_spec(preprocessing_spec(image_size))


def eval_transform_from_spec(spec: dict) -> T.Compose:
    """Rebuild the eval pipeline from :func:`preprocessing_spec` output (e.g. read from a bundle)."""
    return T.Compose([
        T.Resize(int(spec["resize"])),
        T.CenterCrop(int(spec["crop"])),
        T.ToTensor(),
        T.Normalize(spec["mean"], spec["std"]),
    ])  # fmt: skip
