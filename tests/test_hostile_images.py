"""Hostile images: each becomes an error row naming the image and the fix, never a prediction, never a
crash of its neighbours, and never a decode of gigabytes.

One table of inputs (``HOSTILE``), each with the one error it must give. Every big image here is a few
KB: a header that declares a huge size, or a PNG of one colour written row by row through zlib. A spy on
Pillow's decoder (``decoded``) proves that no image over a megapixel is ever decoded.
"""

from __future__ import annotations

import base64
import io
import math
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile

from attr2gender.data.images import ImageLoadError, load_image, pixel_limit, probe
from attr2gender.pipeline import Attr2GenderPipeline
from attr2gender.tabular import StageTwoClassifier
from attr2gender.tracking.pyfunc_model import predict_frame
from attr2gender.training import AttributeModel

# --- builders: a few bytes each ---


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def constant_png(width: int, height: int) -> bytes:
    """A valid 1-bit black PNG, compressed a row at a time: 60 Mpx in about 8 KB, never in memory raw."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    row = bytes(1 + (width + 7) // 8)  # filter byte + packed pixels, all zero
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A 16x16 JPEG whose frame header (SOF0) is patched to declare ``width`` x ``height``."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "gray").save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def ico_holding(png: bytes) -> bytes:
    """An ICO whose one ICONDIRENTRY declares 256 x 256 px (width and height bytes 0) around ``png``."""
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 22) + png


def icns_holding(png: bytes) -> bytes:
    """An ICNS with one 'ic10' (1024-px) block holding ``png``."""
    block = b"ic10" + struct.pack(">I", 8 + len(png)) + png
    return b"icns" + struct.pack(">I", 8 + len(block)) + block


def float_tiff(value: float) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32), value, dtype=np.float32), "F").save(buffer, format="TIFF")
    return buffer.getvalue()


def float_image(value: float) -> Image.Image:
    return Image.fromarray(np.full((32, 32), value, dtype=np.float32), "F")


NON_FINITE = "holds NaN or infinite values"
OVER_CAP = "over the cap of 50,000,000 pixels per image; downscale it, or raise max_pixels"

# id, what to send (encoded bytes, or a PIL image), the error it must give
HOSTILE = [
    ("float-tiff-all-nan", lambda: float_tiff(math.nan), NON_FINITE),
    ("float-tiff-all-inf", lambda: float_tiff(math.inf), NON_FINITE),
    ("pil-F-all-nan", lambda: float_image(math.nan), NON_FINITE),
    ("pil-F-all-minus-inf", lambda: float_image(-math.inf), NON_FINITE),
    ("png-60-Mpx-one-colour", lambda: constant_png(10_000, 6_000), "10000x6000 px (60.0 Mpx), " + OVER_CAP),
    ("jpeg-header-60-Mpx", lambda: jpeg_declaring(10_000, 6_000), "10000x6000 px (60.0 Mpx), " + OVER_CAP),
    (
        "ico-256-holding-13300-png",
        lambda: ico_holding(constant_png(13_300, 13_300)),
        "ICO frame 0 is 13300x13300 px (176.9 Mpx), " + OVER_CAP,
    ),
    (
        "icns-holding-13300-png",
        lambda: icns_holding(constant_png(13_300, 13_300)),
        "ICNS frame 'ic10' is 13300x13300 px (176.9 Mpx), " + OVER_CAP,
    ),
]
CASES = [pytest.param(make, expected, id=name) for name, make, expected in HOSTILE]


# --- fixtures ---


@pytest.fixture(scope="module")
def pipeline():
    rng = np.random.default_rng(0)
    stage_two = StageTwoClassifier().fit(rng.random((40, 39)), rng.integers(0, 2, 40))
    return Attr2GenderPipeline(
        AttributeModel(backbone="test_efficientnet", weights="none"),
        stage_two,
        32,
        num_workers=0,
        align="none",
    )


@pytest.fixture(scope="module")
def face() -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, size=(40, 36, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def decoded(monkeypatch) -> list[tuple[int, int]]:
    """The size of every image Pillow decodes while the test runs."""
    sizes: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def spy(self):
        sizes.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return sizes


def _encoded(item) -> bytes:
    if isinstance(item, Image.Image):  # a float PIL image travels as a float TIFF
        buffer = io.BytesIO()
        item.save(buffer, format="TIFF")
        return buffer.getvalue()
    return item


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _small(sizes) -> bool:
    return all(w * h <= 1_000_000 for w, h in sizes)


# --- the table, through each entry point ---


@pytest.mark.parametrize("make, expected", CASES)
def test_predict_gives_an_error_row_and_scores_the_neighbours(
    make, expected, pipeline, face, decoded, tmp_path
):
    item = make()
    if isinstance(item, bytes):
        path = tmp_path / "hostile"
        path.write_bytes(item)
        item = path
    out = pipeline.predict([face, item, face], align="none")
    assert expected in out["error"][1], out["error"][1]
    assert np.isnan(out["male_probability"][1]) and pd.isna(out["label"][1])
    assert out["error"][0] == out["error"][2] == ""
    assert out["male_probability"][0] == pytest.approx(out["male_probability"][2])
    assert _small(decoded), decoded


@pytest.mark.parametrize("make, expected", CASES)
def test_served_model_gives_an_error_row_and_scores_the_neighbours(make, expected, pipeline, face, decoded):
    request = pd.DataFrame({"image_base64": [_b64(face), _b64(_encoded(make())), _b64(face)]})
    out = predict_frame(pipeline, request, {"align": "none"})
    assert out["error"][1].startswith("row 1: ") and expected in out["error"][1], out["error"][1]
    assert np.isnan(out["male_probability"][1]) and pd.isna(out["label"][1])
    assert out["error"][0] == out["error"][2] == ""
    assert out["male_probability"][0] == pytest.approx(out["male_probability"][2])
    assert _small(decoded), decoded


# --- the caps: per call, per request ---


def test_served_model_decodes_nothing_before_the_pipeline_reads_its_batch(
    pipeline, face, decoded, monkeypatch
):
    """Rows reach the pipeline still encoded: it decodes one batch at a time, not the whole request."""
    seen = []
    predict = pipeline.predict

    def spy(images, **kw):
        seen.append((len(decoded), [type(image).__name__ for image in images]))
        return predict(images, **kw)

    monkeypatch.setattr(pipeline, "predict", spy)
    out = predict_frame(pipeline, pd.DataFrame({"image_base64": [_b64(face)] * 3}), {"align": "none"})
    assert (out["error"] == "").all()
    assert seen == [(0, ["EncodedImage"] * 3)]  # nothing decoded up front, nothing decoded handed over
    assert set(decoded) == {(36, 40)}  # then the pipeline decoded them


def test_served_caps_are_params_of_the_request(pipeline, face):
    rows = pd.DataFrame({"image_base64": [_b64(face)] * 3})
    out = predict_frame(pipeline, rows, {"align": "none", "max_pixels": 1_000})
    assert all(
        "36x40 px" in e and "over the cap of 1,000 pixels" in e and "max_pixels" in e for e in out["error"]
    )
    out = predict_frame(pipeline, rows, {"align": "none", "max_request_pixels": 2 * 36 * 40})
    assert out["error"][0] == out["error"][1] == "" and out["male_probability"][[0, 1]].notna().all()
    assert (
        "over its cap of 2,880 pixels in all" in out["error"][2] and "max_request_pixels" in out["error"][2]
    )
    for bad in (0, -5, 1.5, "many"):
        with pytest.raises(ValueError, match="max_pixels must be a whole number"):
            predict_frame(pipeline, rows, {"max_pixels": bad})


def test_pixel_limit_sets_the_cap_of_predict_and_load_image(pipeline, face):
    with pixel_limit(1_000):
        out = pipeline.predict([face], align="none")
        with pytest.raises(ImageLoadError, match="over the cap of 1,000 pixels"):
            load_image(face)
    assert "over the cap of 1,000 pixels" in out["error"][0]
    assert load_image(face, max_pixels=1_440).size == (36, 40)
    png = constant_png(10_000, 6_000)
    with pytest.raises(ImageLoadError, match="over the cap"):
        probe(png)
    with pixel_limit(70_000_000):  # raised: the header passes (nothing is decoded by probe)
        assert probe(png) == (10_000, 6_000)
