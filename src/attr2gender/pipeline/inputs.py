"""What ``predict(images)`` accepts, expanded to one (name, source) per image, and streamed in batches.

Accepted: a path, a folder (its image files, sorted), a list of paths, PIL images, HxWx3 uint8 arrays,
CHW tensors, NxHxWx3 arrays and NCHW tensors (one row per image), or any mix in a list.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..data.celeba import IMAGE_SUFFIXES
from ..data.images import ImageLoadError, load_image
from ..data.transforms import EvalPreprocessing


def folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))


def expand_images(images) -> list[tuple[object, object]]:
    """One ``(name, source)`` per image, in input order. Paths are named by themselves, other inputs
    by their position in the output."""
    out: list[tuple[object, object]] = []

    def add(item):
        if isinstance(item, str | os.PathLike):
            path = Path(item)
            if path.is_dir():
                out.extend((str(p), p) for p in folder_images(path))
            else:
                out.append((str(path), path))  # a missing file becomes an error row, not an exception
        elif isinstance(item, Image.Image):
            out.append((len(out), item))
        elif isinstance(item, torch.Tensor) and item.ndim == 4:
            out.extend((len(out), t) for t in item)
        elif isinstance(item, np.ndarray) and item.ndim == 4:
            out.extend((len(out), a) for a in item)
        elif isinstance(item, torch.Tensor | np.ndarray):
            out.append((len(out), item))
        elif isinstance(item, list | tuple):
            for sub in item:
                add(sub)
        else:
            out.append((len(out), item))  # unsupported types become error rows naming the type

    add(images)
    return out


class _SourceDataset(Dataset):
    """Decodes one source and resizes/crops it to uint8; failures become an error string, never an exception."""

    def __init__(self, sources: list, preprocessing: EvalPreprocessing):
        self.sources, self.preprocessing = sources, preprocessing

    def __len__(self):
        return len(self.sources)

    def __getitem__(self, i):
        try:
            return i, self.preprocessing.image(load_image(self.sources[i])), ""
        except ImageLoadError as exc:
            return i, None, str(exc)
        except Exception as exc:  # a broken decoder must not lose the other images
            return i, None, f"{self.sources[i]}: {type(exc).__name__}: {exc}"


def _collate(items):
    good = [(i, a) for i, a, _ in items if a is not None]
    bad = [(i, e) for i, _, e in items if e]
    arrays = torch.from_numpy(np.stack([a for _, a in good])) if good else None  # uint8 (B, H, W, 3)
    return [i for i, _ in good], arrays, bad


@dataclass
class Batch:
    positions: list[int]  # rows of the input these tensors belong to
    images: torch.Tensor | None  # preprocessed, (len(positions), 3, H, W)
    errors: list[tuple[int, str]]  # rows that could not be read, with why


def stream_batches(sources: list, preprocessing: EvalPreprocessing, batch_size: int,
                   num_workers: int) -> Iterator[Batch]:  # fmt: skip
    """Decode in worker processes with prefetch when every source is a file path, so memory stays
    flat however many images there are; in-memory images are preprocessed in this process. Workers
    send uint8 crops; the batch is normalised here in one vectorised step."""
    all_paths = all(isinstance(s, Path) for s in sources)
    workers = num_workers if all_paths and len(sources) > batch_size else 0
    loader = DataLoader(_SourceDataset(sources, preprocessing), batch_size=batch_size, shuffle=False,
                        num_workers=workers, collate_fn=_collate, prefetch_factor=4 if workers else None)  # fmt: skip
    for positions, arrays, errors in loader:
        yield Batch(positions, preprocessing.batch(arrays.numpy()) if arrays is not None else None, errors)
