"""Data layer: CelebA reader, splits, images, transforms, torch datasets, synthetic CelebA."""

from ..errors import CelebAError, CelebAFormatError, CelebANotFoundError, ImageLoadError
from .attributes import ATTRIBUTE_NAMES, CONDITIONAL_RATES, MALE_RATE, STAGE_ONE_ATTRIBUTES, TARGET
from .celeba import (
    EXPECTED_LAYOUT,
    CelebA,
    export_target_table,
    load_celeba,
    read_attributes,
    read_identity,
    read_partition,
)
from .dataset import CachedCelebADataset, CelebADataset, DecodedImageCache, collate_skipping_corrupt
from .images import load_image, to_rgb
from .splits import Splits, balance_by_target, make_splits
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_transforms,
    eval_transform_from_spec,
    preprocessing_spec,
)

__all__ = [
    "ATTRIBUTE_NAMES",
    "CONDITIONAL_RATES",
    "MALE_RATE",
    "STAGE_ONE_ATTRIBUTES",
    "TARGET",
    "EXPECTED_LAYOUT",
    "CelebA",
    "CelebAError",
    "CelebAFormatError",
    "CelebANotFoundError",
    "export_target_table",
    "load_celeba",
    "read_attributes",
    "read_identity",
    "read_partition",
    "CachedCelebADataset",
    "CelebADataset",
    "DecodedImageCache",
    "collate_skipping_corrupt",
    "ImageLoadError",
    "load_image",
    "to_rgb",
    "Splits",
    "balance_by_target",
    "make_splits",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "build_transforms",
    "eval_transform_from_spec",
    "preprocessing_spec",
]
