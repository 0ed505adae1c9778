"""What ``predict(images)`` accepts, expanded to one (name, source) per image, and streamed in batches
(aligned to the template first, with ``align="auto"``: one image gives one row, or one per face).

Accepted: a path, a folder (its image files, sorted), a list of paths, PIL images, HxWx3 uint8 arrays,
CHW tensors, NxHxWx3 arrays and NCHW tensors (one row per image), encoded bytes and
:class:`~attr2gender.data.images.EncodedImage`, or any mix in a list.

Only one batch is decoded at a time: each source is read when its batch is, reduced to a small uint8 crop,
and the decoded image is freed; sources that are not decoded yet (paths, encoded bytes) cost only their
bytes. An image over the pixel cap (``max_pixels``) is refused from its header, before it is decoded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..data.faces import FaceAlignment, single_threaded_detector
from ..data.images import ImageLoadError, clean_message, describe, folder_images, load_image, pixel_cap
from ..data.transforms import EvalPreprocessing
from ..errors import FaceNotUsableError


def expand_images(images) -> list[tuple[object, object]]:
    """One ``(name, source)`` per image, in input order. Paths are named by themselves, other inputs by
    their position among the inputs given (``predict(["a.jpg", "photos/", pil])`` names the PIL image 2,
    however many files the folder held); an image inside a batch or a nested list by its position there
    too (``"3[1]"``: the second image of input 3)."""
    out: list[tuple[object, object]] = []

    def add(item, label):
        if isinstance(item, str | os.PathLike):
            path = Path(item)
            try:
                is_folder = path.is_dir()
            except OSError:  # a name too long for the file system, or one it refuses: an error row, below
                is_folder = False
            if is_folder:
                out.extend((os.fsdecode(p), p) for p in folder_images(path))
            else:
                out.append((os.fsdecode(path), path))  # a missing file becomes an error row, not an exception
        elif isinstance(item, Image.Image):
            out.append((label, item))
        elif isinstance(item, torch.Tensor | np.ndarray) and item.ndim == 4:
            out.extend((f"{label}[{k}]", t) for k, t in enumerate(item))
        elif isinstance(item, torch.Tensor | np.ndarray):
            out.append((label, item))
        elif isinstance(item, list | tuple):
            for k, sub in enumerate(item):
                add(sub, f"{label}[{k}]")
        else:
            out.append((label, item))  # unsupported types become error rows naming the type

    if isinstance(images, list | tuple):
        for position, item in enumerate(images):
            add(item, position)
    elif isinstance(images, torch.Tensor | np.ndarray) and images.ndim == 4:
        out.extend(enumerate(images))  # one batch given alone: its images are the inputs
    else:
        add(images, 0)
    return out


@dataclass(frozen=True)
class FaceInfo:
    """Where a row's face came from (``align="auto"``); ``note`` goes to the row's ``error`` column."""

    box: tuple[int, int, int, int] | None  # x0, y0, x1, y1 in the input image; None: the whole image
    n_faces: int
    index: int  # among the image's faces, nearest the centre first
    note: str = ""


class _SourceDataset(Dataset):
    """Decodes one source, aligns its face(s) when asked, and resizes/crops each to uint8; a failure becomes
    an error string, never an exception. ``max_pixels``: the cap per image, fixed when the dataset is made
    (default: the one in force then, see :func:`~attr2gender.data.images.pixel_limit`), so worker threads
    and processes apply the caller's."""

    def __init__(
        self,
        sources: list,
        preprocessing: EvalPreprocessing,
        alignment: FaceAlignment | None = None,
        max_pixels: int | None = None,
    ):
        self.sources, self.preprocessing = sources, preprocessing
        self.alignment = alignment if alignment is not None and alignment.enabled else None
        self.unaligned = alignment if alignment is not None and not alignment.enabled else None
        self.max_pixels = pixel_cap(max_pixels)

    def __len__(self):
        return len(self.sources)

    def __getitem__(self, i):
        try:
            image = load_image(self.sources[i], max_pixels=self.max_pixels)
            if self.alignment is None:
                if self.unaligned is not None:  # align="none": a face bundle refuses what is not a chip
                    self.unaligned.check_unaligned(image, describe(self.sources[i]))
                return i, [(self.preprocessing.image(image), None)], []
            crops, failed = [], []
            # Warped straight to the size the preprocessing resizes to: one resampling, not two.
            short_side = int(self.preprocessing.spec["resize"])
            for face in self.alignment.apply(image, describe(self.sources[i]), short_side):
                info = FaceInfo(face.face_box, face.n_faces, face.index, face.note)
                if face.image is None:  # faces="all": a face too small to read gets its own error row
                    failed.append((face.note, info))
                else:
                    crops.append((self.preprocessing.image(face.image), info))
            return i, crops, failed
        except FaceNotUsableError as exc:
            return i, [], [(str(exc), FaceInfo(exc.box, exc.n_faces, 0))]
        except ImageLoadError as exc:
            return i, [], [(str(exc), None)]
        except Exception as exc:  # a broken decoder must not lose the other images
            return i, [], [(f"{describe(self.sources[i])}: {type(exc).__name__}: {clean_message(exc)}", None)]


def _collate(items):
    good = [(i, array, info) for i, crops, _ in items for array, info in crops]
    bad = [(i, message, info) for i, _, failed in items for message, info in failed]
    arrays = torch.from_numpy(np.stack([a for _, a, _ in good])) if good else None  # uint8 (B, H, W, 3)
    return [i for i, _, _ in good], [info for _, _, info in good], arrays, bad


@dataclass
class Batch:
    positions: list[int]  # the input image of each row of ``images`` (repeated when one gave several faces)
    faces: list[FaceInfo | None]  # per row: where its face came from (None without alignment)
    images: torch.Tensor | None  # preprocessed, (len(positions), 3, H, W)
    errors: list[
        tuple[int, str, int | None]
    ]  # input images that gave no row: why, and faces found (if known)


def _aligned_batches(dataset: _SourceDataset, batch_size: int, workers: int) -> Iterator:
    """Batches of ``dataset`` decoded and aligned by ``workers`` threads, two batches ahead, in order.

    Threads, not processes: a worker process forked from this one inherits ONNX Runtime's internal locks in
    whatever state this process's sessions left them, and creating the detector there can wait forever.
    The detector (ONNX Runtime), the warp (OpenCV) and JPEG decoding (Pillow) release the GIL, so threads
    run in parallel, and ahead of the classifier's forward pass in the caller."""
    starts = range(0, len(dataset), batch_size)

    def load_range(a: int, b: int) -> list:
        with single_threaded_detector():  # each thread runs its own detection on one core
            return [dataset[i] for i in range(a, b)]

    def load_parallel(pool, start: int) -> list:
        """One batch, split across the threads."""
        end = min(start + batch_size, len(dataset))
        step = -(-(end - start) // workers)
        return [pool.submit(load_range, a, min(a + step, end)) for a in range(start, end, step)]

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="attr2gender-align") as pool:
        pending = [load_parallel(pool, start) for start in starts[:2]]
        for k in range(len(starts)):
            parts = pending.pop(0)
            if k + 2 < len(starts):
                pending.append(load_parallel(pool, starts[k + 2]))
            yield _collate([item for part in parts for item in part.result()])


def stream_batches(
    sources: list,
    preprocessing: EvalPreprocessing,
    batch_size: int,
    num_workers: int,
    alignment: FaceAlignment | None = None,
    max_pixels: int | None = None,
) -> Iterator[Batch]:
    """Decode (and align) in worker processes with prefetch when every source is a file path, so memory
    stays flat however many images there are; in-memory images are handled in this process, one at a time
    (each freed once cropped). Workers send uint8 crops; the batch is normalised here in one vectorised
    step. With ``faces="all"`` a batch holds every face of ``batch_size`` images. ``max_pixels``: the cap
    per image (default: :func:`~attr2gender.data.images.pixel_cap`); a bigger one is an error row, refused
    before decoding."""
    all_paths = all(isinstance(s, Path) for s in sources)
    workers = num_workers if all_paths and len(sources) > batch_size else 0
    dataset = _SourceDataset(sources, preprocessing, alignment, max_pixels)
    if workers and dataset.alignment is not None:
        loader = _aligned_batches(dataset, batch_size, workers)
    elif workers:
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
    for positions, faces, arrays, errors in loader:
        images = preprocessing.batch(arrays.numpy()) if arrays is not None else None
        yield Batch(positions, faces, images, errors)
