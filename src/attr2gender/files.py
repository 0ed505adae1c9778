"""Small file-system facts the layers above share: whether a folder takes a new file, asked without ever
following a link someone planted there."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def check_writable(folder: str | os.PathLike) -> None:
    """Raise ``OSError`` unless a new file can be created in ``folder``. The probe is created exclusively
    under a random name and never through a link (``O_EXCL | O_NOFOLLOW``), then removed: a planted
    ``.attr2gender-write-test`` link cannot make it create or truncate a file elsewhere."""
    probe = Path(folder) / f".attr2gender-write-test-{os.getpid()}-{secrets.token_hex(8)}"
    descriptor = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    os.close(descriptor)
    probe.unlink()


def nearest_existing(path: str | os.PathLike) -> Path:
    """``path`` if it exists, else the nearest folder above it that does (where it would be created)."""
    existing = Path(path).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing
