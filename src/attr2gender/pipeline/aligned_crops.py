"""``attr2gender align``: a folder's faces written as the model sees them, with ``faces.csv`` and a contact
sheet. It writes files (never through a link already there) and draws a figure, so it sits above the data
layer's detection and alignment (:mod:`attr2gender.data.faces`), which predicting uses without either."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import secrets
import stat
from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import MIN_EYE_DISTANCE
from ..data.faces import FaceAlignment, FaceDetector, FaceTemplate
from ..data.images import folder_images, load_image, shrunk
from ..errors import ImageLoadError, UsageError
from ..plots import contact_sheet
from ..progress import progress as tqdm

CONTACT_SHEET_FACES = 64  # faces on the contact sheet of align_folder
FACES_CSV, CONTACT_SHEET = "faces.csv", "contact_sheet.png"  # written next to the crops: no crop takes them
NAME_BYTES = 200  # a crop's stem is cut to this many bytes (a file name stops at 255)
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")  # the kernel's pseudo-filesystems (/dev/shm is a real one)


def check_output_folder(out_dir: str | Path, field: str = "out_dir") -> Path:
    """``out_dir`` made ready for :func:`align_folder` before any image is read: not a file, not in the
    kernel's ``/proc``, ``/sys`` or ``/dev``, created when missing, and writable (a file is created in it and
    removed). :class:`~attr2gender.errors.UsageError` naming ``field`` and the fix otherwise."""

    out_dir = Path(out_dir)
    shown = os.fsdecode(out_dir)
    resolved = out_dir.expanduser().resolve()
    system = next((f for f in SYSTEM_FOLDERS if resolved.is_relative_to(f)), None)
    if system is not None and not resolved.is_relative_to("/dev/shm"):
        raise UsageError(
            f"{field} {shown} is in {system}, which holds the system's own entries, not files; "
            "choose a folder of your own"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(
            f"{field} {shown} is a file, not a folder; give a new or existing folder for the crops"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".attr2gender-{secrets.token_hex(6)}.tmp"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(
            f"{field} {shown} cannot be created or written ({exc.strerror or exc}); choose a folder you can "
            "write to"
        ) from None
    for name in (FACES_CSV, CONTACT_SHEET):
        if _is_folder(out_dir / name):
            raise UsageError(
                f"{field} {shown} holds a folder named {name}; remove it or choose another folder"
            )
    return out_dir


def _is_folder(path: Path) -> bool:
    """Whether ``path`` is a folder itself (a link to one is not: writing replaces the link)."""

    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _write_file(folder: Path, name: str, write) -> None:
    """``write(binary_file)`` into ``folder / name`` without ever following a link: into a new file in
    ``folder`` (created exclusively: never through a link), then renamed onto ``name``, which replaces a
    link there, not its target."""

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    while True:
        temporary = folder / f".attr2gender-{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(temporary, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(temporary, folder / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


SHEET_SIDE = 320  # the contact sheet's originals, kept this small as they are met (it draws them at 160 px)


def _thumbnail(image, box, landmarks):
    """``image`` shrunk to :data:`SHEET_SIDE` px on its longer side, with its box and landmarks: the contact
    sheet keeps 64 of these, not 64 decoded photos (twelve 49 Mpx photos once held 3.6 GB)."""
    small, scale = shrunk(image, SHEET_SIDE)
    box = None if box is None else tuple(float(v) * scale for v in box)
    landmarks = None if landmarks is None else np.asarray(landmarks, dtype=float) * scale
    return small, box, landmarks


def _crop_name(path: Path, face_index: int | None, taken: set[str], out_dir: Path) -> str:
    """A crop's file name in ``out_dir``, unique among ``taken`` (case-folded, as a case-insensitive disk
    would see them; :data:`FACES_CSV` and :data:`CONTACT_SHEET` are in it) and never an existing folder:
    ``<stem>.png`` (``<stem>_face<k>.png`` for ``face_index`` k), else ``<stem>_<ext>.png``, else
    ``<stem>_<ext>_<n>.png``. The stem loses its leading dots (``..jpg`` would give ``..png``: hidden, and
    no format Pillow can name), is "image" when nothing is left, and is cut to :data:`NAME_BYTES` bytes."""

    stem = path.stem.lstrip(".")
    if not stem.strip():
        stem = "image"
    while len(os.fsencode(stem)) > NAME_BYTES:
        stem = stem[:-1]
    if face_index is not None:
        stem = f"{stem}_face{face_index}"
    tag = path.suffix.replace(".", "_")
    more = (f"{stem}{tag}_{n}.png" for n in itertools.count(2))
    for name in itertools.chain([f"{stem}.png", f"{stem}{tag}.png"], more):
        if name.casefold() not in taken and not _is_folder(out_dir / name):
            taken.add(name.casefold())
            return name
    raise AssertionError("unreachable")  # pragma: no cover


def align_folder(
    in_dir: str | Path,
    out_dir: str | Path,
    template: FaceTemplate | None = None,
    faces: str = "center",
    fallback: str = "error",
    min_eye_distance: float = MIN_EYE_DISTANCE,
    progress: bool = True,
):
    """Every image of ``in_dir`` aligned as ``predict(align="auto")`` would: one PNG per face in ``out_dir``
    (``<stem>.png``, or ``<stem>_face<k>.png`` with ``faces="all"``; see :func:`_crop_name` for clashes),
    ``faces.csv`` (one row per face or failed image: where the face was, how many there were, the file
    written, the error) and ``contact_sheet.png``: the first 64 originals with box and landmarks next to
    their aligned crops. An image that fails gets its row and the others go on. ``out_dir`` is checked
    before any image is read (:func:`check_output_folder`), and every file is written without following a
    link already there (a new file renamed onto the name). Non-UTF-8 file names keep their bytes in
    ``faces.csv`` (surrogateescape). Returns the ``faces.csv`` table (empty, and nothing written, when
    ``in_dir`` holds no image file)."""

    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise ImageLoadError(os.fsdecode(in_dir), "is not a folder; give the folder of photos to align")
    if out_dir.resolve() == in_dir.resolve():
        raise ValueError(f"the output folder must differ from the input folder ({in_dir})")
    alignment = FaceAlignment("auto", faces, fallback, min_eye_distance, template or FaceTemplate.celeba())
    check_output_folder(out_dir)
    columns = ["image", "face_index", "face_box", "n_faces", "file", "error"]
    paths = folder_images(in_dir)
    if not paths:
        return pd.DataFrame(columns=columns, dtype=object)
    FaceDetector.shared()  # a missing detector fails here, once
    rows, sheet, taken = [], [], {FACES_CSV.casefold(), CONTACT_SHEET.casefold()}
    if out_dir.is_dir():  # a file already there keeps its name: a crop of the same name gets another one
        taken |= {entry.name.casefold() for entry in out_dir.iterdir()}
    for path in tqdm(paths, desc="align", unit="img", disable=not progress):
        name, image = os.fsdecode(path), None
        try:
            image = load_image(path)
            aligned = alignment.apply(image, name)
        except Exception as exc:  # one bad image (unreadable, no face, a broken decoder) never stops the rest
            n_faces, box = getattr(exc, "n_faces", None), getattr(exc, "box", None)
            error = str(exc) if isinstance(exc, ImageLoadError) else f"{name}: {type(exc).__name__}: {exc}"
            error = error.replace("\r", " ").replace("\n", " ")  # one line
            rows.append(
                dict(image=name, face_index=None, face_box=box, n_faces=n_faces, file="", error=error)
            )
            if image is not None and len(sheet) < CONTACT_SHEET_FACES:  # shown too: a miss is worth seeing
                small, box, _ = _thumbnail(image, box, None)
                sheet.append((small, box, None, None, "too small" if box is not None else "no face"))
            continue
        for face in aligned:
            file, error = "", face.note  # faces="all" and too small to read: a row, no file
            if face.image is not None:
                file = _crop_name(path, None if faces == "center" else face.index, taken, out_dir)
                try:
                    _write_file(out_dir, file, functools.partial(face.image.save, format="PNG"))
                except OSError as exc:
                    error = f"{name}: cannot write {file} in {os.fsdecode(out_dir)}: {exc.strerror or exc}"
                    file = ""
            row = dict(image=name, face_index=face.index, face_box=face.face_box, n_faces=face.n_faces)
            rows.append(row | dict(file=file, error=error))
            if len(sheet) < CONTACT_SHEET_FACES:
                box, landmarks = (
                    (face.face.box, face.face.landmarks) if face.face is not None else (None, None)
                )
                why = "not written" if face.image is not None else "too small"
                small, box, landmarks = _thumbnail(image, box, landmarks)
                sheet.append((small, box, landmarks, face.image if file else None, why))
    # object columns: file names that are not UTF-8 (surrogate-escaped) cannot live in an Arrow string column
    table = pd.DataFrame(rows, columns=columns, dtype=object)
    table["face_index"] = table["face_index"].astype("Int64")
    table["n_faces"] = table["n_faces"].astype("Int64")
    text = table.to_csv(index=False).encode("utf-8", errors="surrogateescape")
    _write_file(out_dir, FACES_CSV, lambda handle: handle.write(text))
    _write_file(out_dir, CONTACT_SHEET, functools.partial(contact_sheet(sheet).save, format="PNG"))
    return table
