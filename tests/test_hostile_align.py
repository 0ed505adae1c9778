"""``attr2gender align`` against hostile folders, and the size rule against turned faces.

Each row of :data:`HOSTILE` is one hostile input (names in IN_DIR, what is already in OUT_DIR, or OUT_DIR
itself) and its one expected outcome: the exit status, the one ``error:`` line, and what must hold on disk.
The photos are real CelebA crops (178 x 218 px) when ``../shared/celeba`` is present, else synthetic faces
the detector finds; the tests skip when the detector is not installed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attr2gender.cli import main as cli_main
from attr2gender.data import faces as faces_module
from attr2gender.data import images as images_module
from attr2gender.data.faces import Face, FaceAlignment, FaceDetector, FaceTemplate, align_image
from attr2gender.errors import DetectorUnavailableError, FaceNotUsableError
from attr2gender.pipeline import aligned_crops

SHARED_CROPS = Path(__file__).resolve().parents[1].parent / "shared" / "celeba" / "img_align_celeba"
OUTSIDE = b"outside OUT_DIR: keep me"


@pytest.fixture(scope="module")
def detector():
    try:
        return FaceDetector.shared()
    except DetectorUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def photo(detector) -> Image.Image:
    """A small photo with one face the detector finds: a real CelebA crop, else a synthetic face."""
    crops = sorted(SHARED_CROPS.glob("*.jpg"))[:20] if SHARED_CROPS.is_dir() else []
    for path in crops:
        image = Image.open(path).convert("RGB")
        if len(detector.detect_central(image)) == 1:
            return image
    from attr2gender.data import synth

    rng = np.random.default_rng(0)
    for _ in range(50):
        identity = synth._sample_identity(rng)
        face = synth.render_face(synth._sample_labels(identity, rng), identity, rng, size=160)
        if len(detector.detect_central(face)) == 1:
            return face
    pytest.skip("no photo with a face the detector finds")


# --- the hostile inputs ---------------------------------------------------------------------------------


def links_to_outside(out: Path, tmp: Path) -> None:
    """OUT_DIR holds links named like its outputs, pointing at files outside it."""
    out.mkdir()
    for name in ("photo.png", "faces.csv", "contact_sheet.png"):
        (tmp / f"outside_{name}").write_bytes(OUTSIDE)
        os.symlink(tmp / f"outside_{name}", out / name)


def outside_kept(out: Path, tmp: Path, table: pd.DataFrame) -> None:
    for name in ("photo.png", "faces.csv", "contact_sheet.png"):
        assert (tmp / f"outside_{name}").read_bytes() == OUTSIDE, f"the link {name} was followed"
    for name in ("faces.csv", "contact_sheet.png"):  # align's own outputs: replaced, never followed
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 0
    # A file already there under a crop's name is left alone (issue 33): the crop takes another name.
    assert (out / "photo.png").is_symlink() and table["file"].tolist() == ["photo_jpg.png"]


def names_never_collide(out: Path, tmp: Path, table: pd.DataFrame) -> None:
    files = table["file"].tolist()
    assert len(set(files)) == 3 and not {"contact_sheet.png", "faces.csv"} & set(files)
    for file in files:  # each row's file is its own crop (the template's size), not the contact sheet
        assert Image.open(out / file).size == FaceTemplate.celeba().size
    assert Image.open(out / "contact_sheet.png").width > 600


def every_photo_written(out: Path, tmp: Path, table: pd.DataFrame) -> None:
    assert len(table) == 2 and (table["error"].fillna("") == "").all()
    for file in table["file"]:
        assert not file.startswith(".") and (out / file).is_file()


def non_utf8_name_kept(out: Path, tmp: Path, table: pd.DataFrame) -> None:
    every_photo_written(out, tmp, table)
    raw = (out / "faces.csv").read_bytes()
    assert b"caf\xe9.jpg" in raw and b"caf\xe9.png" in raw  # the name's own bytes (surrogateescape)


def file_untouched(out: Path, tmp: Path, table) -> None:
    assert out.read_bytes() == OUTSIDE


def nothing_written(out: Path, tmp: Path, table) -> None:
    """OUT_DIR holds what it held before the run (a folder named faces.csv, or nothing)."""
    entries = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert table is None and entries in ([], ["faces.csv"])


@dataclass(frozen=True)
class Hostile:
    name: str
    photos: tuple = ("photo.jpg",)  # files in IN_DIR (bytes: a name that is not UTF-8; .txt: text)
    out: str = "out"  # OUT_DIR, under the test's folder unless absolute
    prepare: object = None  # prepare(OUT_DIR, test folder) before the run
    status: int = 0
    error: str = ""  # what the one error: line says ("" = no error line)
    check: object = None  # check(OUT_DIR, test folder, faces.csv table or None)


HOSTILE = [
    Hostile("links in OUT_DIR are replaced, never followed", prepare=links_to_outside, check=outside_kept),
    Hostile(
        "a photo named contact_sheet.jpg, a.jpg and a.png: three crops, no clash",
        photos=("contact_sheet.jpg", "a.jpg", "a.png"),
        check=names_never_collide,
    ),
    Hostile("a photo named ..jpg: aligned like the others", ("..jpg", "ok.jpg"), check=every_photo_written),
    Hostile(
        "a name that is not UTF-8: kept in faces.csv", (b"caf\xe9.jpg", "ok.jpg"), check=non_utf8_name_kept
    ),
    Hostile(
        "OUT_DIR is a file",
        prepare=lambda out, tmp: out.write_bytes(OUTSIDE),
        status=2,
        error="OUT_DIR {out} is a file, not a folder",
        check=file_untouched,
    ),
    Hostile("OUT_DIR under /proc", out="/proc/attr2gender-align-test", status=2, error="is in /proc"),
    Hostile(
        "OUT_DIR holds a folder named faces.csv",
        prepare=lambda out, tmp: (out / "faces.csv").mkdir(parents=True),
        status=2,
        error="holds a folder named faces.csv",
        check=nothing_written,
    ),
    Hostile("an empty IN_DIR", photos=(), status=3, error="holds no image files", check=nothing_written),
    Hostile("an IN_DIR without images", photos=("notes.txt",), status=3, error="holds no image files"),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c.name for c in HOSTILE])
def test_hostile_folder(case, photo, tmp_path, monkeypatch):
    in_dir, out = tmp_path / "in", Path(case.out) if case.out.startswith("/") else tmp_path / case.out
    in_dir.mkdir()
    for name in case.photos:
        path = os.fsencode(in_dir) + b"/" + name if isinstance(name, bytes) else os.fsencode(in_dir / name)
        if isinstance(name, bytes) and sys.platform != "linux":
            pytest.skip("file names that are not UTF-8 are a Linux case")
        kind = {".jpg": "JPEG", ".png": "PNG"}.get(Path(os.fsdecode(path)).suffix)
        with open(path, "wb") as handle:
            if kind:
                photo.save(handle, format=kind)
            else:
                handle.write(b"not an image")
    if case.prepare is not None:
        case.prepare(out, tmp_path)
    read = []
    original = images_module.load_image

    def spy(*a, **k):
        read.append(a)
        return original(*a, **k)

    monkeypatch.setattr(images_module, "load_image", spy)
    monkeypatch.setattr(faces_module, "load_image", spy)
    monkeypatch.setattr(aligned_crops, "load_image", spy)  # the name align_folder reads with
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        status = cli_main(["align", str(in_dir), str(out), "--quiet"])
    errors = [line for line in stderr.getvalue().splitlines() if line.startswith("error:")]
    assert status == case.status, stderr.getvalue()
    if case.error:
        assert len(errors) == 1 and case.error.format(out=out) in errors[0], stderr.getvalue()
        assert "Traceback" not in stderr.getvalue()
    else:
        assert not errors, stderr.getvalue()
    if case.status == 2:
        assert not read, "an image was read before OUT_DIR was checked"
    table = None
    if (out / "faces.csv").is_file():
        # read with the csv module: pandas' parser refuses the surrogates of a name that is not UTF-8
        text = (out / "faces.csv").read_bytes().decode("utf-8", errors="surrogateescape")
        table = pd.DataFrame(list(csv.DictReader(io.StringIO(text))), dtype=object)
    if case.check is not None:
        case.check(out, tmp_path, table)


def test_a_folder_where_a_crop_would_go_gives_the_crop_another_name(photo, tmp_path):
    """A folder in OUT_DIR named like a crop: the crop takes another name (a write there would fail)."""
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    (out / "a.png").mkdir(parents=True)
    photo.save(in_dir / "a.jpg")
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["align", str(in_dir), str(out), "--quiet"]) == 0
    assert pd.read_csv(out / "faces.csv")["file"].tolist() == ["a_jpg.png"]


# --- turned faces: the box says how large a face is, not the eyes alone -----------------------------------


class OneFace:
    """A detector that finds one given face (the rule is tested on the detector's output)."""

    def __init__(self, face: Face):
        self.face = face

    def detect_central(self, image):
        return [Face(self.face.box, self.face.score, self.face.landmarks.copy())]

    def detect(self, image, max_side=None):
        return self.detect_central(image)


def face_at(eye_distance: float, box_width: float, centre=(224.0, 224.0)) -> Face:
    """A face ``box_width`` px wide (1.25 x as tall) whose eyes are ``eye_distance`` px apart: turned when
    that is well under 0.45 x the width (the eyes bunch up on one side, the nose beyond them)."""
    cx, cy = centre
    half = box_width / 2
    eyes_x = cx + 0.1 * box_width if eye_distance < 0.3 * box_width else cx
    points = [
        (eyes_x - eye_distance / 2, cy - 0.15 * box_width),
        (eyes_x + eye_distance / 2, cy - 0.15 * box_width),
        (cx + 0.25 * box_width if eyes_x != cx else cx, cy + 0.05 * box_width),
        (eyes_x - 0.35 * max(eye_distance, 4), cy + 0.3 * box_width),
        (eyes_x + 0.35 * max(eye_distance, 4), cy + 0.3 * box_width),
    ]
    box = (cx - half, cy - 0.625 * box_width, cx + half, cy + 0.625 * box_width)
    return Face(box, 0.99, np.asarray(points, dtype=np.float64))


SIZES = [  # (what the face is, eye distance px, box width px, the outcome at min_eye_distance=24)
    ("turned, in a 448 px photo (the reported case)", 9, 160, "aligned"),
    ("turned, in an LFW photo", 10, 64, "aligned"),
    ("turned, just wide enough", 12, 54, "aligned"),
    ("frontal, large", 40, 90, "aligned"),
    ("frontal, just large enough", 24, 53, "aligned"),
    ("frontal, small", 17, 38, "too small: 17 px between the eyes, under min_eye_distance=24 px; use a"),
    ("turned and small", 8, 30, "too small: 8 px between the eyes, under min_eye_distance=24 px, and turned"),
    ("turned and small: its box", 8, 30, "turned away, 30 px wide, under the 53 px that stands for"),
]


@pytest.mark.parametrize("what, eyes, width, outcome", SIZES, ids=[s[0] for s in SIZES])
def test_a_turned_face_is_judged_by_its_box_not_by_its_eyes(what, eyes, width, outcome):
    photo = Image.new("RGB", (448, 448), (120, 110, 100))
    face = face_at(eyes, width)
    if outcome == "aligned":
        [aligned] = align_image(photo, FaceTemplate.celeba(), detector=OneFace(face))
        assert aligned.image is not None and aligned.image.size == (178, 218)
    else:
        with pytest.raises(FaceNotUsableError) as caught:
            align_image(photo, FaceTemplate.celeba(), detector=OneFace(face))
        assert outcome in str(caught.value)


def test_predict_and_align_share_the_rule_for_a_turned_face(tmp_path, monkeypatch):
    """The reported case through ``predict``'s alignment (FaceAlignment) and through ``attr2gender align``:
    read, not called too small."""
    turned = OneFace(face_at(9, 160))
    monkeypatch.setattr(faces_module.FaceDetector, "shared", classmethod(lambda cls: turned))
    photo = Image.new("RGB", (448, 448), (120, 110, 100))
    [aligned] = FaceAlignment().apply(photo, "turned.jpg", short_side=150)
    assert aligned.image is not None and min(aligned.image.size) == 150 and aligned.note == ""
    in_dir, out = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    photo.save(in_dir / "turned.jpg")
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["align", str(in_dir), str(out), "--quiet"]) == 0
    table = pd.read_csv(out / "faces.csv", keep_default_na=False)
    assert table["file"].tolist() == ["turned.png"] and table["error"].tolist() == [""]


def test_a_real_turned_face_is_aligned(detector):
    """CelebA's 189385.jpg: a face turned away (eyes 22 px apart, box 88 px wide), once refused as small."""
    path = SHARED_CROPS / "189385.jpg"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    image = Image.open(path).convert("RGB")
    [aligned] = align_image(image, FaceTemplate.celeba())
    assert aligned.face.turned and aligned.face.eye_distance < 24 and aligned.image is not None


def test_the_contact_sheet_keeps_thumbnails_not_decoded_photos(photo, tmp_path, monkeypatch):
    """Issue 33: align kept every decoded photo for the contact sheet (twelve 49 Mpx photos: 3.57 GB at
    peak); it now keeps each one shrunk as it is met."""
    folder = tmp_path / "in"
    folder.mkdir()
    big = photo.resize((photo.width * 8, photo.height * 8))
    for k in range(3):
        big.save(folder / f"big{k}.png")
    kept = []
    real = aligned_crops.contact_sheet
    monkeypatch.setattr(aligned_crops, "contact_sheet", lambda sheet: kept.extend(sheet) or real(sheet))
    aligned_crops.align_folder(folder, tmp_path / "out", progress=False)
    assert len(kept) == 3 and all(max(entry[0].size) <= aligned_crops.SHEET_SIDE for entry in kept)
