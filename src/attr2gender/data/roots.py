"""Where the data comes from when the user names no root: their ``data/celeba``, else a synthetic one."""

from __future__ import annotations

import os
from pathlib import Path

from .celeba import ATTR_FILE, EXPECTED_LAYOUT, CelebANotFoundError

USER_ROOT = Path("data/celeba")  # a real CelebA placed in the working folder is used by default
SYNTHETIC_ROOT = Path("data/synthetic-celeba")  # made on first use, so a fresh machine runs end to end
SYNTHETIC_SIZE = {"n": 2000, "image_size": 128, "seed": 0}  # ~seconds to draw, enough to learn from


def resolve_data_root(data_root: str | os.PathLike | None, announce=print) -> Path:
    """An explicit root must exist; none means ``data/celeba`` or the synthetic dataset (made if needed)."""
    if data_root:
        root = Path(data_root).expanduser()
        if not (root / ATTR_FILE).is_file():
            raise CelebANotFoundError(
                f"--data-root {root} is not a CelebA root ({root / ATTR_FILE} not found).\n{EXPECTED_LAYOUT}"
            )
        return root.resolve()
    if (USER_ROOT / ATTR_FILE).is_file():
        return USER_ROOT.resolve()
    if not (SYNTHETIC_ROOT / ATTR_FILE).is_file():
        from .synth import make_synthetic_celeba

        announce(
            f"No --data-root and no {USER_ROOT}/: making a synthetic CelebA ({SYNTHETIC_SIZE['n']:,} images) "
            f"in {SYNTHETIC_ROOT}/ and running on it."
        )
        make_synthetic_celeba(SYNTHETIC_ROOT, n=SYNTHETIC_SIZE["n"], seed=SYNTHETIC_SIZE["seed"],
                              image_size=SYNTHETIC_SIZE["image_size"])  # fmt: skip
    else:
        announce(f"No --data-root and no {USER_ROOT}/: using the synthetic CelebA in {SYNTHETIC_ROOT}/.")
    return SYNTHETIC_ROOT.resolve()
