"""What the command line accepts, checked before any work: argument types (a positive int, a seed, a side in
pixels), an output path that can be written, a device that is there, and which path of ``predict`` is a
bundle. Each failure is a :class:`~attr2gender.errors.UsageError` (exit 2, one ``error:`` line) or an
``argparse`` type error; :mod:`attr2gender.cli` builds the commands from these."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .errors import UsageError
from .files import check_writable, nearest_existing

MIN_SIDE, MAX_SIDE = 16, 1024  # synthetic faces: below 16 px nothing is drawn; above 1024, gigabytes


def check_output_path(out: Path, flag: str = "--out") -> None:
    """Before any work: ``out`` can be written. Its folder exists and is writable, and the file itself can
    be created (a name too long, or a place like /proc, is found now, not after minutes of predicting)."""
    folder = out.expanduser().resolve().parent
    if not folder.is_dir():
        raise UsageError(f"{flag} {out}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {out}: the folder {folder} is not writable; choose another path")
    try:
        if out.is_dir():
            raise UsageError(f"{flag} {out} is a folder; give a file path such as {out / 'predictions.csv'}")
        if out.exists():
            if not os.access(out, os.W_OK):
                raise UsageError(f"{flag} {out} exists and is not writable; choose another path")
            return
        os.close(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except OSError as exc:  # a name too long, a place like /proc
        raise UsageError(f"{flag} {out}: cannot create it ({exc.strerror}); choose another path") from None
    os.unlink(out)


def shown(name) -> str:
    """A file name as a terminal can print it: bytes that are not UTF-8 as \\xNN escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace") if isinstance(name, str) else f"#{name}"


def check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is visible here; use --device auto or cpu")
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise UsageError(f"--device {device!r} is not valid; choose auto, cpu or cuda (cuda:N)")


def bundle_and_images(paths: list[Path], pretrained: str | None) -> tuple[Path | None, list[Path]]:
    """(bundle folder or None for the shipped model, the images): the first path is a bundle when it is a
    folder holding a bundle's files; otherwise every path is an image or a folder of them."""
    # lazy: --help stays instant (images imports Pillow, numpy; the bundle module its checks)
    from .data.images import IMAGE_EXTENSIONS
    from .pipeline.bundle import looks_like_bundle

    first = paths[0]
    try:
        is_bundle = looks_like_bundle(first)
        missing = not first.exists()
    except OSError:  # a name the file system refuses (too long): a photo that gets its error row
        is_bundle, missing = False, False
    if pretrained is not None:
        if is_bundle:
            raise UsageError(
                f"{first} is a bundle and --pretrained {pretrained} names the shipped one; give one"
            )
        return None, paths
    if is_bundle:
        if len(paths) == 1:
            raise UsageError(f"{first} is a bundle; give the images to predict after it")
        return first, paths[1:]
    if missing and len(paths) > 1 and first.suffix.lower() not in IMAGE_EXTENSIONS:
        raise UsageError(
            f"{first}: no such bundle folder or image; give a folder written by pipeline.save(), or only "
            "images to use the shipped model"
        )
    return None, paths


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of pixels >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of pixels >= 0, got {text}")
    return value


MAX_SYNTH = 1_000_000  # synthetic images a command makes: more is hours of drawing and gigabytes of files


def synth_count(text: str) -> int:
    value = positive_int(text)
    if value > MAX_SYNTH:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_SYNTH:,}, got {value:,}")
    return value


def penalty_c(text: str):
    """``adapt --C``: ``auto`` or a number (its range is checked with the rest of adapt's arguments)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be auto or a number, got {text!r}") from None


def seed_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        hint = " (put key=value overrides before --seeds)" if "=" in text else ""
        raise argparse.ArgumentTypeError(f"must be a seed (an integer >= 0), got {text!r}{hint}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a seed (an integer >= 0), got {value}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1 to 65535), got {value}")
    return value


def image_side(text: str) -> int:
    value = positive_int(text)
    if not MIN_SIDE <= value <= MAX_SIDE:
        raise argparse.ArgumentTypeError(f"must be from {MIN_SIDE} to {MAX_SIDE} px, got {value}")
    return value


def check_folder_target(path: Path, flag: str, must_be_empty: bool = False) -> None:
    """Before any work: ``path`` can be the output folder (it is one, or its nearest existing parent takes a
    new entry), and is not a dangling link; with ``must_be_empty``, it holds nothing yet. A name the file
    system refuses (too long), /proc, a file, an unwritable place: a :class:`UsageError` naming ``flag``."""
    try:
        if path.is_symlink() and not path.exists():
            raise UsageError(f"{flag} {path} is a link to nothing; give a real folder")
        if path.exists():
            if not path.is_dir():
                raise UsageError(f"{flag} {path} is a file; give a folder")
            if must_be_empty and any(path.iterdir()):
                raise UsageError(f"{flag} {path} exists and is not an empty folder; name a new one")
            check_writable(path)
            return
        existing = nearest_existing(path)
        if not existing.is_dir():
            raise UsageError(f"{flag} {path}: {existing} is a file; give a folder path")
        check_writable(existing)
        longest = os.pathconf(existing, "PC_NAME_MAX")  # what exists() on a name too long may not say
        if any(len(os.fsencode(part)) > longest for part in path.parts):
            raise UsageError(
                f"{flag} {path}: a name in it is too long for the file system; choose a shorter one"
            )
    except OSError as exc:
        raise UsageError(
            f"{flag} {path}: cannot write there ({exc.strerror}); choose another folder"
        ) from None
