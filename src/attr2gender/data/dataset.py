"""Torch dataset over a CelebA split: (image, 39 attributes, Male) per item.

A corrupt or unreadable image is skipped with a warning naming it (or raises with ``strict=True``);
:func:`collate_skipping_corrupt` counts skipped items into each batch, so the count is reported by
the training loop even when decoding runs in worker processes.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from ..progress import progress as tqdm
from .celeba import CelebA
from .groups import TRAINING_GROUPING, group_ids
from .images import ImageLoadError, load_image
from .transforms import resize_size


class CelebADataset(Dataset):
    """Items are dicts: ``image`` (3xHxW float), ``attributes`` (39 float), ``male`` (float), ``group``
    (0..3, the Male x ``grouping`` group of :mod:`attr2gender.data.groups`) and ``index``."""

    def __init__(
        self,
        celeba: CelebA,
        image_ids,
        transform=None,
        strict: bool = False,
        cache=None,
        grouping: str = TRAINING_GROUPING,
    ):
        self.celeba = celeba
        self.image_ids = list(image_ids)
        missing = [i for i in self.image_ids if i not in celeba.attributes.index]
        if missing:
            raise KeyError(f"image ids not in {celeba.root / 'list_attr_celeba.txt'}: {missing[:5]}")
        self.attributes = torch.from_numpy(celeba.stage_one_targets(self.image_ids).copy())
        self.male = torch.from_numpy(celeba.male(self.image_ids).astype(np.float32))
        self.groups = torch.from_numpy(group_ids(celeba.attributes.loc[self.image_ids], grouping=grouping))
        self.transform = transform
        self.strict = strict
        self.cache = cache

    def __len__(self) -> int:
        return len(self.image_ids)

    def load(self, index: int) -> Image.Image:
        if self.cache is not None:
            return Image.fromarray(self.cache.array[index])
        return load_image(self.celeba.image_path(self.image_ids[index]))

    def __getitem__(self, index: int):
        try:
            image = self.load(index)
        except ImageLoadError as exc:
            if self.strict:
                raise
            warnings.warn(f"skipping unreadable image {exc}", stacklevel=2)
            return None
        tensor = self.transform(image) if self.transform is not None else image
        return {
            "image": tensor,
            "attributes": self.attributes[index],
            "male": self.male[index],
            "group": self.groups[index],
            "index": index,
        }


def collate_skipping_corrupt(batch: list) -> dict:
    """Default collation of the readable items; ``skipped`` counts the unreadable ones."""
    good = [item for item in batch if item is not None]
    skipped = len(batch) - len(good)
    if not good:
        return {
            "image": torch.empty(0),
            "attributes": torch.empty(0),
            "male": torch.empty(0),
            "group": torch.empty(0, dtype=torch.long),
            "index": torch.empty(0, dtype=torch.long),
            "skipped": skipped,
        }
    out = default_collate(good)
    out["skipped"] = skipped
    return out


class DecodedImageCache:
    """Decode-once cache: every image resized (short side) and center-cropped to a square uint8 array,
    stored in one memory-mapped ``.npy`` file so worker processes share it through the page cache.

    Worth it when JPEG decoding is the bottleneck (fast GPUs); ``benchmarks/bench_training.py``
    measures whether it helps on CPU. Unreadable images are stored as black and listed in ``bad``.
    """

    def __init__(
        self, celeba: CelebA, image_ids, image_size: int, cache_dir: str | Path, progress: bool = True
    ):
        self.image_ids = list(image_ids)
        side = resize_size(image_size)
        key = hashlib.sha256(
            ("\n".join(self.image_ids) + f"|{side}|{celeba.root.resolve()}").encode()
        ).hexdigest()
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.path = cache_dir / f"decoded_{side}px_{key[:16]}.npy"
        bad_path = self.path.with_suffix(".bad.txt")
        shape = (len(self.image_ids), side, side, 3)
        self.array = self._open(shape) if self.path.is_file() else None
        if self.array is None:
            self._build(celeba, side, bad_path, progress)
            self.array = self._open(shape)
        self.bad = [b for b in bad_path.read_text().splitlines() if b] if bad_path.is_file() else []

    def _open(self, shape: tuple[int, ...]):
        """The cache file memory-mapped, or None (with a warning) when it is not the uint8 array of
        ``shape`` this cache writes: a pickle, an object array or another shape planted under its name is
        rebuilt, never read or trusted (np.load never unpickles)."""
        try:
            array = np.load(self.path, mmap_mode="r", allow_pickle=False)
            if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.shape != shape:
                raise ValueError(
                    f"{getattr(array, 'dtype', type(array).__name__)} {getattr(array, 'shape', '')}"
                )
        except (OSError, ValueError) as exc:
            warnings.warn(
                f"rebuilding the decode cache {self.path}: it is not the expected array ({exc})", stacklevel=3
            )
            return None
        return array

    def _build(self, celeba: CelebA, side: int, bad_path: Path, progress: bool) -> None:
        tmp = self.path.with_suffix(".partial.npy")
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(self.image_ids), side, side, 3)
        )
        bad = []
        for i, image_id in enumerate(tqdm(self.image_ids, desc="decode cache", disable=not progress)):
            try:
                im = load_image(celeba.image_path(image_id))
            except ImageLoadError as exc:
                warnings.warn(f"skipping unreadable image {exc}", stacklevel=2)
                bad.append(image_id)
                continue
            w, h = im.size
            scale = side / min(w, h)
            im = im.resize((max(side, round(w * scale)), max(side, round(h * scale))), Image.BILINEAR)
            left, top = (im.size[0] - side) // 2, (im.size[1] - side) // 2
            out[i] = np.asarray(im.crop((left, top, left + side, top + side)))
        out.flush()
        del out
        bad_path.write_text("\n".join(bad))
        tmp.replace(self.path)


class CachedCelebADataset(CelebADataset):
    """:class:`CelebADataset` reading from a :class:`DecodedImageCache`; unreadable images stay skipped."""

    def __init__(
        self,
        celeba: CelebA,
        image_ids,
        transform,
        cache: DecodedImageCache,
        strict: bool = False,
        grouping: str = TRAINING_GROUPING,
    ):
        super().__init__(celeba, image_ids, transform, strict=strict, cache=cache, grouping=grouping)
        self._bad = set(cache.bad)

    def load(self, index: int) -> Image.Image:
        image_id = self.image_ids[index]
        if image_id in self._bad:
            raise ImageLoadError(
                str(self.celeba.image_path(image_id)), "cannot decode image (cached as unreadable)"
            )
        return super().load(index)
