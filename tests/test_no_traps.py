"""What a careful user reads must be true: photos read the way they were taken, crops read right or refused,
in-memory images named by where they were given, cost verdicts only where their interval allows them, an
adapted model that says it was adapted, disk sizes as they are."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attr2gender.data.faces import FaceAlignment, FaceTemplate
from attr2gender.data.images import load_image
from attr2gender.errors import ConfigError, FaceNotUsableError
from attr2gender.experiments.comparison_report import ratio_verdict
from attr2gender.pipeline.bundle import disk_bytes, share_identical
from attr2gender.pipeline.inputs import expand_images
from attr2gender.tracking.measure import MeasureSpec, paired_latency, ratio_interval
from conftest import SHARED_CELEBA

WILD_DEV = SHARED_CELEBA.parent / "wild_dev"
# How each EXIF orientation stores an upright photo: the transpose that undoes what exif_transpose applies.
STORED_AS = {
    1: [],
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_90],
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_270],
}


def _a_real_photo() -> Image.Image:
    photos = sorted((WILD_DEV / "lfw").glob("*.jpg")) if WILD_DEV.is_dir() else []
    if not photos:
        photos = sorted((SHARED_CELEBA / "img_align_celeba").glob("*.jpg"))
    if not photos:
        pytest.skip("no real photo (../shared/wild_dev or ../shared/celeba)")
    return Image.open(photos[0]).convert("RGB")


def _stored(photo: Image.Image, orientation: int, path: Path, fmt: str = "PNG") -> Path:
    stored = photo
    for op in STORED_AS[orientation]:
        stored = stored.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    return path


# --- 1b. a phone photo reads the same whichever way it was stored ---


def test_all_eight_exif_orientations_of_one_real_photo_decode_to_the_same_pixels(tmp_path):
    photo = _a_real_photo()
    upright = np.asarray(photo)
    for orientation in STORED_AS:
        path = _stored(photo, orientation, tmp_path / f"o{orientation}.png")
        assert np.array_equal(np.asarray(load_image(path)), upright), orientation
        # an image already opened by the caller is turned the same way
        with Image.open(path) as opened:
            assert np.array_equal(np.asarray(load_image(opened)), upright), orientation


def test_the_face_is_found_and_aligned_the_same_in_every_orientation(tmp_path):
    """What predict, align, training, adapt and the served model all read: the aligned face."""
    photo = _a_real_photo()
    alignment = FaceAlignment("auto", template=FaceTemplate.dlib_chip())
    faces = []
    for orientation in STORED_AS:
        path = _stored(photo, orientation, tmp_path / f"o{orientation}.jpg", fmt="JPEG")
        faces.append(np.asarray(alignment.apply(load_image(path), path.name)[0].image, dtype=float))
    for face in faces[1:]:
        assert np.abs(face - faces[0]).mean() < 4.0  # JPEG noise only: one face, one way up


# --- 1. crops read right, or refused ---


def test_a_face_bundle_refuses_a_crop_read_as_a_chip_and_names_what_to_pass():
    chip = FaceTemplate.dlib_chip()
    crop = Image.new("RGB", (178, 218), (128, 100, 90))
    with pytest.raises(FaceNotUsableError, match="align='crops'.*align='auto'"):
        FaceAlignment("none", template=chip).apply(crop, "000001.jpg")
    same = FaceAlignment("none", template=chip).apply(Image.new("RGB", chip.size), "chip.png")
    assert same[0].image.size == chip.size  # a real chip passes as it is
    # an image CNN's bundle reads CelebA's crops as they are (that is what it was trained on)
    assert FaceAlignment("none", template=FaceTemplate.celeba()).apply(crop)[0].image is crop


@pytest.mark.parametrize("layout", [None, "measured"])
def test_crops_map_onto_the_bundle_template_by_a_fixed_warp(layout):
    """A crop's landmarks sit where the training crops' layout puts them (CelebA's published one when none was
    recorded): warped, they land on the chip's, at any scale of the crop."""
    chip = FaceTemplate.dlib_chip()
    crop_layout = (
        None
        if layout is None
        else FaceTemplate(
            ((0.38, 0.43), (0.61, 0.43), (0.50, 0.57), (0.40, 0.66), (0.60, 0.66)),
            (200, 205),
            "measured",
            2000,
        )
    )
    source = crop_layout or FaceTemplate.celeba()
    pixels = np.zeros((source.size[1], source.size[0], 3), dtype=np.uint8)
    for x, y in source.pixels().round().astype(int):
        pixels[y - 1 : y + 2, x - 1 : x + 2] = 255  # a white dot on each landmark
    for scale in (1, 2):
        image = Image.fromarray(pixels).resize((source.size[0] * scale, source.size[1] * scale))
        (face,) = FaceAlignment("crops", template=chip, crop_layout=crop_layout).apply(image)
        warped = np.asarray(face.image).max(axis=2)
        assert face.image.size == chip.size
        for x, y in chip.pixels():
            assert (
                warped[int(round(y)) - 2 : int(round(y)) + 3, int(round(x)) - 2 : int(round(x)) + 3].max()
                > 100
            )


def test_an_image_cnn_reads_its_training_crops_as_they_are_with_crops_too():
    template = FaceTemplate.celeba()
    crop = Image.new("RGB", template.size)
    assert FaceAlignment("crops", template=template).apply(crop)[0].image is crop


@pytest.mark.parametrize("mode", ["crops", "none"])
def test_faces_and_fallback_apply_to_detected_faces_only(mode):
    with pytest.raises(ConfigError, match=f"align='{mode}'"):
        FaceAlignment(mode, faces="all")


# --- 2. in-memory images are named by where they were given ---


def test_inputs_are_named_by_their_position_among_the_inputs(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("b.png", "c.png"):
        Image.new("RGB", (8, 8)).save(folder / name)
    pil = Image.new("RGB", (8, 8))
    uint8 = np.zeros((8, 8, 3), dtype=np.uint8)
    batch = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    names = [name for name, _ in expand_images(["a.jpg", str(folder), pil, uint8, batch, [pil, pil]])]
    assert names[:3] == ["a.jpg", os.fsdecode(folder / "b.png"), os.fsdecode(folder / "c.png")]
    assert names[3:] == [2, 3, "4[0]", "4[1]", "5[0]", "5[1]"]
    assert [name for name, _ in expand_images(batch)] == [0, 1]  # one batch alone: its images are the inputs


# --- 3. cost verdicts only where the interval allows them ---


@pytest.mark.parametrize(
    "ratio, low, high, verdict",
    [
        (1.9, 1.8, 2.2, "reproduced"),
        (1.5, 1.3, 1.6, "partly"),
        (1.6, 1.48, 1.97, "undecided"),  # the three comparisons: x1.48 to x1.97
        (0.8, 0.61, 0.92, "not reproduced"),
        (1.6, None, None, "no verdict"),  # one timing each
    ],
)
def test_a_ratio_gets_a_verdict_only_when_its_interval_allows_one(ratio, low, high, verdict):
    assert verdict in ratio_verdict(ratio, low, high)


class _Timed:
    """A stand-in pipeline whose predict takes ``seconds``: paired_latency's bookkeeping, not the clock."""

    def __init__(self, seconds: float):
        self.seconds, self.calls = seconds, []

    def predict(self, images, **kw):
        import time

        self.calls.append(kw["batch_size"])
        time.sleep(self.seconds)


def test_both_routes_are_timed_in_turn_round_after_round():
    slow, fast = _Timed(0.004), _Timed(0.002)
    spec = MeasureSpec(images={1: 2, 4: 4}, repeats=1)
    rounds = paired_latency({"two_stage": slow, "direct": fast}, [Image.new("RGB", (8, 8))], spec, rounds=5)
    assert set(rounds["two_stage"]) == {1, 4} and all(len(v) == 5 for v in rounds["direct"].values())
    assert len(slow.calls) == len(fast.calls) == 2 * (1 + 5)  # a warm-up and 5 rounds per batch size
    median, low, high = ratio_interval(rounds["two_stage"][4], rounds["direct"][4])
    assert low <= median <= high and median > 1


# --- 5. disk: the size said is the size there ---


def test_identical_weights_are_held_once_and_counted_once(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "bundle").mkdir()
    data = os.urandom(50_000)
    (tmp_path / "model" / "w.safetensors").write_bytes(data)
    (tmp_path / "bundle" / "w.safetensors").write_bytes(data)
    assert disk_bytes(tmp_path) == 100_000
    assert share_identical(tmp_path / "model" / "w.safetensors", tmp_path / "bundle" / "w.safetensors")
    assert disk_bytes(tmp_path) == 50_000 and (tmp_path / "model" / "w.safetensors").read_bytes() == data
    (tmp_path / "other.bin").write_bytes(b"x" * 10)
    assert not share_identical(tmp_path / "other.bin", tmp_path / "bundle" / "w.safetensors")


def test_a_run_refused_before_it_starts_leaves_no_empty_output_folder(tmp_path, monkeypatch):
    from attr2gender.training import train_direct
    from conftest import tiny_config, write_fake_celeba

    root, _ = write_fake_celeba(tmp_path / "celeba", n=12)
    monkeypatch.chdir(tmp_path)
    config = tiny_config(root, tmp_path / "runs-new", max_train_images=1)  # one class: refused at the split
    with pytest.raises(ConfigError, match="only"):
        train_direct(config)
    assert not (tmp_path / "runs-new").exists()


# --- 6. an adapted pipeline says so ---


def test_an_adapt_record_says_when_the_head_did_not_change():
    from attr2gender.pipeline.adapt import AdaptRecord

    kept = AdaptRecord(48, 12, "x", 0.75, 0.75, 0.0, 0.0)
    assert kept.unchanged and "unchanged" in kept.describe()
    moved = AdaptRecord(48, 12, "x", 0.75, 0.9, 0.0, 0.1)
    assert not moved.unchanged and "0.750 before, 0.900 after (n=12)" in moved.describe()


def test_a_face_route_on_mostly_faceless_images_says_so_loudly():
    from attr2gender.training.face_heads import _warn_unusable

    parts = [(np.zeros((81, 4)), None, "celeba", None, 1519)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _warn_unusable("train", parts, type("C", (), {"progress": False})())
    assert any("only 81 of 1,600 celeba train images had a usable face" in str(w.message) for w in caught)


def test_comparing_two_runs_on_different_data_is_refused_and_leaves_no_folder(tmp_path, monkeypatch):
    from attr2gender.experiments import comparison_run
    from attr2gender.experiments.comparison_metrics import RouteResult

    def read_back(tracker, run_id, kind, folder):
        folder.mkdir(parents=True, exist_ok=True)  # as the download does
        ids = ["a.jpg", "b.jpg"] if kind == "two_stage" else ["c.jpg", "d.jpg"]
        return RouteResult(kind, ids, np.array([0, 1]), np.array([0.2, 0.8]))

    class Tracker:
        def use_experiment_of(self, run_id):
            pass

    monkeypatch.setattr(comparison_run, "route_from_run", read_back)
    with pytest.raises(ConfigError, match="share no test image: they were run on different data"):
        comparison_run.compare_logged_runs(Tracker(), "r1", "r2", output_dir=tmp_path, stamp="s")
    assert not any(tmp_path.iterdir())  # no compare-*/downloads left behind


def test_an_explained_line_says_which_face_of_a_photo_it_is():
    import pandas as pd

    from attr2gender.cli import _face_of

    frame = pd.DataFrame(
        {
            "n_faces": pd.array([1, 2, 2], dtype="Int64"),
            "face_index": pd.array([None, None, 1], dtype="Int64"),
        }
    )
    assert _face_of(frame, 0) == ""  # one face: nothing to say
    assert "nearest the centre of 2; --faces all explains each" in _face_of(frame, 1)
    assert _face_of(frame, 2) == " (face 2 of 2)"
