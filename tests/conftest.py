"""Shared fixtures: tiny fake CelebA roots written into a tmpdir, and the real sample when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attr2gender.data.attributes import ATTRIBUTE_NAMES

os.environ.setdefault("MPLBACKEND", "Agg")
# Tests never download weights, on a machine with internet too (tests of the download set their own).
os.environ.setdefault("ATTR2GENDER_OFFLINE", "1")

SHARED_CELEBA = Path(__file__).resolve().parents[1].parent / "shared" / "celeba"


def write_fake_celeba(
    root: Path,
    n: int = 12,
    partitions: list[int] | None = None,
    identities: list[int] | None = None,
    present: list[int] | None = None,
    size: tuple[int, int] = (40, 48),
    seed: int = 0,
) -> tuple[Path, np.ndarray]:
    """Write ``n`` annotated images (ids 000001.jpg ...) and the three annotation files.

    Returns the root and the (n, 40) 0/1 attribute matrix. ``present`` picks which images exist on disk.
    """
    rng = np.random.default_rng(seed)
    attrs = rng.integers(0, 2, size=(n, 40))
    attrs[: n // 2, ATTRIBUTE_NAMES.index("Male")] = 1
    attrs[n // 2 :, ATTRIBUTE_NAMES.index("Male")] = 0
    ids = [f"{i + 1:06d}.jpg" for i in range(n)]
    partitions = partitions if partitions is not None else [i % 3 for i in range(n)]
    identities = identities if identities is not None else [i // 2 + 1 for i in range(n)]
    (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    lines = [str(n), " ".join(ATTRIBUTE_NAMES)]
    lines += [f"{i} " + " ".join(f"{(1 if v else -1):2d}" for v in row) for i, row in zip(ids, attrs)]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text("".join(f"{i} {p}\n" for i, p in zip(ids, partitions)))
    (root / "identity_CelebA.txt").write_text("".join(f"{i} {p}\n" for i, p in zip(ids, identities)))
    for k in present if present is not None else range(n):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "img_align_celeba" / ids[k], quality=90)
    return root, attrs


@pytest.fixture
def fake_celeba(tmp_path):
    root, attrs = write_fake_celeba(tmp_path / "celeba")
    return root


@pytest.fixture
def shared_celeba():
    if not (SHARED_CELEBA / "list_attr_celeba.txt").is_file():
        pytest.skip(f"real CelebA sample not present at {SHARED_CELEBA}")
    return SHARED_CELEBA


TINY_RUN = dict(
    backbone="test_efficientnet",  # a few thousand parameters: a training step takes milliseconds
    weights="none",
    image_size=32,
    batch_size=16,
    epochs=1,
    max_steps=2,
    num_workers=0,
    progress=False,
    tracking="none",
    max_train_images=48,
    max_eval_images=16,
    task="direct",
    run_name="run",
)


# A whole stage one on a small synthetic root (every training image, more evaluation images).
STAGE_ONE_RUN = dict(batch_size=32, max_steps=-1, max_train_images=0, max_eval_images=64, task="attributes")


def tiny_config(root, out, **overrides):
    """A validated RunConfig that trains in about a second on a synthetic root: the tests' one recipe."""
    from attr2gender.config import RunConfig

    return RunConfig(**(TINY_RUN | dict(data_root=str(root), output_dir=str(out)) | overrides)).validate()


def train_small_face(train_route, tmp: Path, **overrides):
    """A face route on 160 real CelebA training faces (60 validation and test), quietly; ``overrides`` add to
    or replace the recipe (e.g. a second source)."""
    import warnings

    settings = dict(
        data_root=str(SHARED_CELEBA),
        labelled_faces="",
        max_train_images=160,
        max_eval_images=60,
        epochs=3,
        tracking="none",
        output_dir=str(tmp / "runs"),
        cache_dir=str(tmp / "cache"),
        progress=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_route("face", **(settings | overrides))
