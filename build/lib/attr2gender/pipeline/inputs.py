"""What ``predict(images)`` accepts, expanded to one (name, source) per image, and streamed in batches.

Accepted: a path, a folder (its image files, sorted), a list of paths, PIL images, HxWx3 uint8 arrays,
CHW tensors, NxHxWx3 arrays and NCHW tensors (one row per image), or any mix in a list.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..data.images import IMAGE_EXTENSIONS, ImageLoadError, clean_message, describe, load_image
from ..data.transforms import EvalPreprocessing


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


def expand_images(images) -> list[tuple[object, object]]:
    """One ``(name, source)`` per image, in input order. Paths are named by themselves, other inputs
    by their position in the output."""
    out: list[tuple[object, object]] = []

    def add(item):
        if isinstance(item, str | os.PathLike):
            path = Path(item)
            if path.is_dir():
                out.extend((os.fsdecode(p), p) for p in folder_images(path))
            else:
                out.append((os.fsdecode(path), path))  # a missing file becomes an error row, not an exception
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
            return i, None, f"{describe(self.sources[i])}: {type(exc).__name__}: {clean_message(exc)}"


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


def stream_batches(
    sources: list, preprocessing: EvalPreprocessing, batch_size: int, num_workers: int
) -> Iterator[Batch]:
    """Decode in worker processes with prefetch when every source is a file path, so memory stays
    flat however many images there are; in-memory images are preprocessed in this process. Workers
    send uint8 crops; the batch is normalised here in one vectorised step."""
    all_paths = all(isinstance(s, Path) for s in sources)
    workers = num_workers if all_paths and len(sources) > batch_size else 0
    dataset = _SourceDataset(sources, preprocessing)
    if workers:
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=_collate,
            prefetch_factor=4,
        )
    else:  # in this process: no DataLoader machinery, which costs milliseconds per call at batch 1
        loader = (
            _collate([dataset[i] for i in range(start, min(start + batch_size, len(sources)))])
            for start in range(0, len(sources), batch_size)
        )
    for positions, arrays, errors in loader:
        yield Batch(positions, preprocessing.batch(arrays.numpy()) if arrays is not None else None, errors)
