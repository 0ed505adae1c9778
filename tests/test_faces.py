"""Real photos in: face detection, the choice of face, alignment onto the template, and what predict,
the bundle, the command line and the served model make of it. Synthetic faces only (CI has no photos);
the real-crop composites are measured in benchmarks/bench_accuracy.py."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from attr2gender.cli import main as cli_main
from attr2gender.data import synth
from attr2gender.data.faces import (
    FaceAlignment,
    FaceDetector,
    FaceTemplate,
    align_image,
    choose,
    load_template,
    measure_template,
    save_template,
    similarity_transform,
)
from attr2gender.errors import ConfigError, FaceNotUsableError
from attr2gender.pipeline import Attr2GenderPipeline, DirectGenderClassifier, load_pipeline
from attr2gender.tabular import StageTwoClassifier
from attr2gender.training import AttributeModel, DirectModel, train_direct

TEMPLATE = FaceTemplate.celeba()


@pytest.fixture(scope="module")
def detector():
    return FaceDetector.shared()


@pytest.fixture(scope="module")
def faces(detector):
    """Synthetic 160 px faces that the detector finds once, with confidence (chosen, then fixed: the seed
    and the pinned weights make this list the same on every machine)."""
    rng = np.random.default_rng(0)
    out = []
    while len(out) < 4:
        identity = synth._sample_identity(rng)
        face = synth.render_face(synth._sample_labels(identity, rng), identity, rng, size=160)
        found = detector.detect(face)
        if len(found) == 1 and found[0].score > 0.95:
            out.append(face)
    return out


def canvas(size=(400, 320), colour=(90, 110, 95)) -> Image.Image:
    """A plain, slightly textured background with no face in it."""
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 6, size=(size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8))


def paste(background: Image.Image, face: Image.Image, centre, side: int, angle: float = 0.0) -> Image.Image:
    out = background.copy()
    shown = face.resize((side, side), Image.BILINEAR).rotate(angle, Image.BILINEAR, expand=True)
    mask = Image.new("L", (side, side), 255).rotate(angle, expand=True)
    out.paste(shown, (int(centre[0] - shown.width / 2), int(centre[1] - shown.height / 2)), mask)
    return out


def box_centre(box):
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def eye_angle(points) -> float:
    left, right = points[0], points[1]
    return float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))


# --- the geometry -------------------------------------------------------------------------------------


def test_similarity_transform_recovers_a_rotation_scale_and_shift():
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 100, size=(5, 2))
    theta, scale, shift = np.radians(20), 1.7, np.array([12.0, -5.0])
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    target = source @ (scale * rotation).T + shift
    matrix = similarity_transform(source, target)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_choose_prefers_the_central_face_then_the_larger_one():
    from attr2gender.data.faces import Face

    def face(box):
        return Face(box, 0.99, np.zeros((5, 2)))

    corner_big = face((0, 0, 150, 150))
    central_small = face((180, 180, 220, 220))
    assert choose([corner_big, central_small], (400, 400))[0] is central_small
    # Both centred within the tie distance: the larger one wins.
    small, large = face((190, 190, 210, 210)), face((160, 160, 240, 240))
    assert choose([small, large], (400, 400))[0] is large


# --- detection and alignment on synthetic photos ------------------------------------------------------


def test_face_in_a_larger_photo_is_found_and_warped_onto_the_template(faces, detector):
    photo = paste(canvas(), faces[0], (230, 150), 150)
    [aligned] = align_image(photo, TEMPLATE)
    assert aligned.n_faces == 1 and aligned.image.size == TEMPLATE.size
    x, y = box_centre(aligned.face_box)
    assert abs(x - 230) < 25 and abs(y - 150) < 25  # the box is where the face was pasted
    # The warped crop's landmarks sit on the template's (within a tenth of the eye distance).
    [again] = detector.detect(aligned.image)
    eye_distance = np.linalg.norm(TEMPLATE.pixels()[1] - TEMPLATE.pixels()[0])
    assert np.abs(again.landmarks - TEMPLATE.pixels()).max() < 0.1 * eye_distance * 2


def test_rotated_face_comes_out_upright(faces, detector):
    photo = paste(canvas(), faces[1], (200, 160), 150, angle=22)
    [found] = detector.detect(photo)
    assert abs(eye_angle(found.landmarks)) > 15  # tilted in the photo ...
    [aligned] = align_image(photo, TEMPLATE)
    [upright] = detector.detect(aligned.image)
    assert abs(eye_angle(upright.landmarks)) < 5  # ... level in what the model reads


def test_grayscale_and_other_modes_are_aligned(faces):
    photo = paste(canvas(), faces[2], (200, 160), 150)
    for mode in ("L", "RGBA", "P"):
        [aligned] = align_image(photo.convert(mode), TEMPLATE)
        assert aligned.image.mode == "RGB" and aligned.image.size == TEMPLATE.size


def test_no_face_is_an_error_unless_the_whole_image_is_wanted():
    empty = canvas()
    with pytest.raises(FaceNotUsableError, match="no face found") as caught:
        align_image(empty, TEMPLATE, name="empty.jpg")
    assert caught.value.n_faces == 0 and "fallback='whole_image'" in str(caught.value)
    [whole] = align_image(empty, TEMPLATE, fallback="whole_image")
    assert whole.face is None and whole.image is empty and "no face found" in whole.note


def test_tiny_face_is_refused_naming_its_size(faces):
    photo = paste(canvas((900, 700)), faces[0], (450, 350), 96)  # eyes ~17 px apart
    with pytest.raises(
        FaceNotUsableError, match=r"too small: \d+ px between the eyes, under min_eye_distance=24"
    ):
        align_image(photo, TEMPLATE)
    [aligned] = align_image(photo, TEMPLATE, min_eye_distance=5)
    assert aligned.face.eye_distance < 24


def two_faces(faces) -> Image.Image:
    """A large face near the centre and a smaller one in the corner."""
    return paste(paste(canvas((700, 500)), faces[0], (380, 270), 220), faces[1], (100, 100), 170)


def test_two_faces_the_central_one_is_picked_and_all_gives_both(faces):
    photo = two_faces(faces)
    [central] = align_image(photo, TEMPLATE)
    assert central.n_faces == 2 and abs(box_centre(central.face_box)[0] - 380) < 30
    both = align_image(photo, TEMPLATE, faces="all")
    assert [f.index for f in both] == [0, 1]
    assert np.allclose(box_centre(both[0].face_box), box_centre(central.face_box), atol=4)
    assert abs(box_centre(both[1].face_box)[0] - 100) < 30 and both[1].image.size == TEMPLATE.size
    # A face too small to read is its own entry, without an image, saying why.
    small_refused = align_image(photo, TEMPLATE, faces="all", min_eye_distance=37)
    assert small_refused[0].image is not None and small_refused[1].image is None
    assert "too small" in small_refused[1].note and small_refused[1].face_box == both[1].face_box


def test_alignment_settings_are_validated_naming_the_choices():
    with pytest.raises(
        ConfigError, match=r"align='faces' is not valid; choose one of \('auto', 'crops', 'none'\)"
    ):
        FaceAlignment("faces")
    with pytest.raises(ConfigError, match="fallback"):
        FaceAlignment("auto", fallback="crop")
    with pytest.raises(ConfigError, match="min_eye_distance"):
        FaceAlignment("auto", min_eye_distance=-1)
    with pytest.raises(ConfigError, match="align='none'"):
        FaceAlignment("none", faces="all")


# --- the template -------------------------------------------------------------------------------------


def test_template_is_measured_from_training_crops_and_round_trips(faces, tmp_path):
    paths = []
    for k, face in enumerate(faces):
        paths.append(tmp_path / f"{k}.png")
        face.save(paths[-1])
    template = measure_template(paths)
    assert template.source == "measured" and template.n_images == len(faces) and template.size == (160, 160)
    left_eye, right_eye = template.landmarks[0], template.landmarks[1]
    assert left_eye[0] < right_eye[0] and abs(left_eye[1] - right_eye[1]) < 0.05  # level eyes, left first
    assert load_template(save_template(template, tmp_path / "t.json")) == template
    (tmp_path / "bad.json").write_text(json.dumps({"landmarks": [[0.5, 0.5]] * 4, "size": [100, 100]}))
    with pytest.raises(ValueError, match="5 landmarks"):
        load_template(tmp_path / "bad.json")
    # No face in any training image: the published CelebA template.
    Image.new("RGB", (64, 64), "gray").save(tmp_path / "blank.png")
    assert measure_template([tmp_path / "blank.png"]).source == "celeba"


# --- predict, bundles, command line, served model -----------------------------------------------------


@pytest.fixture(scope="module")
def template():
    return FaceTemplate(TEMPLATE.landmarks, (120, 140), "measured", 10)


@pytest.fixture(scope="module")
def pipelines(template):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    stage_two = StageTwoClassifier().fit(rng.random((60, 39)), rng.integers(0, 2, 60))
    two = Attr2GenderPipeline(
        AttributeModel(backbone="test_efficientnet", weights="none"),
        stage_two,
        32,
        num_workers=0,
        face_template=template,
    )
    direct = DirectGenderClassifier(
        DirectModel(backbone="test_efficientnet", weights="none"), 32, num_workers=0, face_template=template
    )
    return two, direct


@pytest.fixture(scope="module")
def photos(faces):
    return {
        "one": paste(canvas(), faces[0], (200, 160), 150),
        "two": two_faces(faces),
        "none": canvas(),
        "tiny": paste(canvas((900, 700)), faces[3], (450, 350), 96),
    }


def test_predict_aligns_by_default_and_says_where_the_face_was(pipelines, photos):
    two, _ = pipelines
    frame = two.predict([photos["one"], photos["none"], photos["two"], photos["tiny"]])
    assert list(frame["image"]) == [0, 1, 2, 3]
    assert list(frame.columns[:3]) == ["image", "male_probability", "label"]
    assert list(frame.columns[-3:]) == ["face_box", "n_faces", "error"]
    assert frame["n_faces"].tolist() == [1, 0, 2, 1]
    assert frame["male_probability"].notna().tolist() == [True, False, True, False]
    assert "no face found" in frame["error"][1] and "too small" in frame["error"][3]
    assert len(frame["face_box"][0]) == 4 and frame["face_box"][1] is None
    # align="none": the old columns, the image read as it is.
    plain = two.predict([photos["one"], photos["none"]], align="none")
    assert "face_box" not in plain and plain["male_probability"].notna().all()


def test_aligned_prediction_is_the_prediction_on_the_aligned_crop(pipelines, photos, template):
    two, direct = pipelines
    # predict warps straight to the size its preprocessing resizes to (one resampling, not two)
    [aligned] = align_image(photos["one"], template, short_side=two.preprocessing["resize"])
    assert min(aligned.image.size) == two.preprocessing["resize"]
    for pipe in (two, direct):
        got = pipe.predict([photos["one"]])["male_probability"][0]
        expected = pipe.predict([aligned.image], align="none")["male_probability"][0]
        assert got == pytest.approx(expected, abs=1e-6)


def test_faces_all_gives_one_row_per_face_keyed_by_the_input(pipelines, photos):
    two, _ = pipelines
    frame = two.predict([photos["one"], photos["two"], photos["none"]], faces="all")
    assert list(frame["image"]) == [0, 1, 1, 2]
    assert list(frame.columns[:2]) == ["image", "face_index"]
    assert frame["face_index"].tolist()[:3] == [0, 0, 1] and pd.isna(frame["face_index"][3])
    assert frame["n_faces"].tolist() == [1, 2, 2, 0]
    assert frame["male_probability"].notna().tolist() == [True, True, True, False]
    # A face too small to read: its own error row, with its index and box.
    refused = two.predict([photos["two"]], faces="all", min_eye_distance=37)
    assert refused["face_index"].tolist() == [0, 1] and refused["male_probability"].notna().tolist() == [
        True,
        False,
    ]
    assert "too small" in refused["error"][1] and len(refused["face_box"][1]) == 4
    # predict_proba stays one row per image (the central face).
    assert two.predict_proba([photos["one"], photos["two"]]).shape == (2, 2)
    with pytest.raises(FaceNotUsableError):
        two.predict_proba([photos["none"]])


def test_fallback_predicts_on_the_whole_image_and_notes_it(pipelines, photos):
    _, direct = pipelines
    frame = direct.predict([photos["none"]], fallback="whole_image")
    assert frame["male_probability"].notna().all() and frame["n_faces"].tolist() == [0]
    assert frame["error"][0] == "no face found: predicted on the whole image"
    expected = direct.predict([photos["none"]], align="none")["male_probability"][0]
    assert frame["male_probability"][0] == pytest.approx(expected, abs=1e-6)


def test_bundle_keeps_its_template_and_old_bundles_fall_back_to_celeba(pipelines, photos, template, tmp_path):
    two, _ = pipelines
    path = two.save(tmp_path / "two", onnx=False)
    assert (path / "template.json").is_file()
    loaded = load_pipeline(path)
    assert loaded.face_template == template and loaded.align == "auto"
    pd.testing.assert_frame_equal(loaded.predict([photos["one"]]), two.predict([photos["one"]]))
    assert load_pipeline(path, align="none").predict([photos["one"]]).columns[-1] == "error"
    # A bundle from before templates: rewritten without template.json (and its manifest re-signed).
    from attr2gender.pipeline.bundle import read_manifest, write_manifest

    manifest = read_manifest(path)
    (path / "template.json").unlink()
    write_manifest(
        path,
        {
            k: v
            for k, v in manifest.items()
            if k not in ("files", "manifest_sha256", "format", "library_version")
        },
    )
    with pytest.warns(UserWarning, match="published aligned-crop template"):
        old = load_pipeline(path)
    assert old.face_template.source == "celeba"


def test_cli_predict_and_align_write_what_the_model_sees(pipelines, photos, tmp_path):
    two, _ = pipelines
    bundle = two.save(tmp_path / "bundle", onnx=False)
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, image in photos.items():
        image.save(folder / f"{name}.jpg", quality=95)
    out = tmp_path / "pred.csv"
    assert (
        cli_main(["predict", str(bundle), str(folder), "--out", str(out), "--quiet", "--faces", "all"]) == 0
    )
    frame = pd.read_csv(out)
    assert frame["image"].str.endswith(("none.jpg", "one.jpg", "tiny.jpg", "two.jpg")).all()
    assert (frame["image"].str.endswith("two.jpg")).sum() == 2 and "face_index" in frame
    aligned = tmp_path / "aligned"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli_main(["align", str(folder), str(aligned), "--bundle", str(bundle), "--quiet"]) == 0
    assert "aligned 2 face(s)" in stdout.getvalue() and "2 image(s) failed" in stdout.getvalue()
    assert sorted(p.name for p in aligned.glob("*.png")) == ["contact_sheet.png", "one.png", "two.png"]
    assert Image.open(aligned / "one.png").size == (120, 140)  # the bundle's template
    table = pd.read_csv(aligned / "faces.csv")
    assert table.set_index(table["image"].str.rsplit("/", n=1).str[-1])["n_faces"].to_dict() == {
        "none.jpg": 0,
        "one.jpg": 1,
        "tiny.jpg": 1,
        "two.jpg": 2,
    }
    sheet = Image.open(aligned / "contact_sheet.png")
    assert sheet.width > 600 and sheet.height > 100
    # Usage errors: exit 2, one error line.
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert cli_main(["align", str(folder), str(folder)]) == 2
        assert cli_main(["predict", str(bundle), str(folder), "--align", "none", "--faces", "all"]) == 2
    assert stderr.getvalue().count("error:") == 2


def test_served_model_rows_carry_the_face_columns(pipelines, photos):
    from attr2gender.tracking.pyfunc_model import OUTPUT_COLUMNS, predict_frame

    two, _ = pipelines
    encoded = []
    for key in ("one", "none", "two"):
        buffer = io.BytesIO()
        photos[key].save(buffer, format="PNG")
        import base64

        encoded.append(base64.b64encode(buffer.getvalue()).decode())
    frame = predict_frame(two, pd.DataFrame({"image_base64": encoded + ["not base64!"]}))
    assert list(frame.columns) == list(OUTPUT_COLUMNS) and len(frame) == 4
    assert frame["n_faces"].tolist()[:3] == [1, 0, 2] and pd.isna(frame["n_faces"][3])
    assert len(frame["face_box"][0]) == 4 and frame["face_box"][1] is None
    assert frame["male_probability"].notna().tolist() == [True, False, True, False]
    none = predict_frame(two, pd.DataFrame({"image_base64": encoded[:2]}), {"align": "none"})
    assert none["male_probability"].notna().all() and none["face_box"].isna().all()
    with pytest.raises(ValueError, match="unknown params"):
        predict_frame(two, pd.DataFrame({"image_base64": encoded[:1]}), {"faces": "all"})


def test_training_measures_the_template_of_its_own_crops(tmp_path):
    from attr2gender.data.synth import make_synthetic_celeba

    root = make_synthetic_celeba(tmp_path / "celeba", n=60, seed=0, image_size=128)
    tiny = dict(
        backbone="test_efficientnet",
        weights="none",
        image_size=32,
        epochs=1,
        max_steps=1,
        num_workers=0,
        progress=False,
        batch_size=16,
        tracking="none",
        output_dir=str(tmp_path / "runs"),
    )
    direct = train_direct(data_root=str(root), **tiny)[0]
    template = direct.face_template
    assert template.source == "measured" and template.n_images >= 20 and template.size == (128, 128)
    assert load_pipeline(direct.save(tmp_path / "b", onnx=False)).face_template == template
    published = train_direct(data_root=str(root), face_template_images=0, **tiny)[0]
    assert published.face_template == FaceTemplate.celeba()


def test_real_crops_pasted_into_photos_are_found_and_picked(shared_celeba):
    """The bench's composites on CI's real crops, a few: every pasted face found, the central one picked."""
    from attr2gender.data.composites import make_composites

    crops = sorted((shared_celeba / "img_align_celeba").glob("*.jpg"))[:40]
    detector = FaceDetector.shared()
    found = picked = 0
    composites = make_composites(crops, 24, seed=0)
    for c in composites:
        faces = detector.detect_central(c.image)  # what predict(align="auto") uses
        found += any(c.main.contains(box_centre(f.box)) for f in faces)
        picked += bool(faces) and c.main.contains(box_centre(faces[0].box))
    assert found == picked == len(composites)


def test_files_over_several_batches_are_aligned_by_parallel_threads(pipelines, photos, tmp_path):
    """More files than one batch, with workers: aligned in threads (a forked worker could hang creating the
    detector next to this process's ONNX Runtime sessions), in input order, the same as in one thread."""
    _, direct = pipelines
    kinds = ["one", "none", "two", "tiny"] * 5
    paths = []
    for i, kind in enumerate(kinds):
        paths.append(tmp_path / f"{i:02d}.png")
        photos[kind].save(paths[-1])
    direct.num_workers = 2
    try:
        threaded = direct.predict(paths, batch_size=3, progress=False)
    finally:
        direct.num_workers = 0
    single = direct.predict(paths, batch_size=3, progress=False)
    assert threaded["image"].tolist() == single["image"].tolist() == [str(p) for p in paths]
    assert threaded["error"].tolist() == single["error"].tolist()
    np.testing.assert_allclose(
        threaded["male_probability"].to_numpy(dtype=float), single["male_probability"].to_numpy(dtype=float)
    )
    assert threaded["n_faces"].tolist() == [1, 0, 2, 1] * 5
