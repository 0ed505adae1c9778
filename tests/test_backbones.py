"""Backbone registry/factory and offline weight loading (attr2gender.models)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from attr2gender.models import (
    BACKBONES,
    IncompatibleWeightsError,
    UnknownBackboneError,
    UnsafeWeightsFileError,
    WeightsNotFoundError,
    create_backbone,
    describe_weights,
    first_conv,
    list_backbones,
)
from attr2gender.models.weights import (
    EFFICIENTNET_LITE0_NUM_TENSORS,
    efficientnet_lite0_checkpoint_path,
    efficientnet_lite0_imagenet_state_dict,
    load_state_dict_file,
)

EXTRA_TIMM = "mobilenetv3_small_050"

# VGG16 (138M params, ~3 s just to initialise) and ResNet-50 dominate the runtime; set
# ATTR2GENDER_SKIP_HEAVY_TESTS=1 to leave them out of quick local runs.
heavy = pytest.mark.skipif(
    os.environ.get("ATTR2GENDER_SKIP_HEAVY_TESTS") == "1", reason="ATTR2GENDER_SKIP_HEAVY_TESTS=1"
)


@pytest.fixture
def offline_dirs(tmp_path, monkeypatch):
    """Empty $ATTR2GENDER_WEIGHTS_DIR and TORCH_HOME, so no real cache can interfere."""
    weights_dir, torch_home = tmp_path / "weights", tmp_path / "torch_home"
    weights_dir.mkdir()
    torch_home.mkdir()
    monkeypatch.setenv("ATTR2GENDER_WEIGHTS_DIR", str(weights_dir))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return weights_dir, torch_home / "hub" / "checkpoints"


def _head(model: nn.Module, name: str) -> nn.Linear:
    spec = BACKBONES.resolve(name)
    return model.get_submodule(spec.head[0])


def test_registry_names():
    assert list_backbones() == [
        "resnet18",
        "resnet50",
        "vgg16",
        "googlenet",
        "efficientnet_lite0",
        "dlib_resnet",
        "dlib_resnet_descriptor",
    ]
    assert "any timm model name" in list_backbones.__doc__ or "timm" in list_backbones.__doc__


@pytest.mark.parametrize(
    "name, num_outputs",
    [
        ("resnet18", 39),
        pytest.param("resnet50", 39, marks=heavy),
        pytest.param("vgg16", 39, marks=heavy),
        ("googlenet", 39),
        ("efficientnet_lite0", 39),
        (EXTRA_TIMM, 39),
        ("resnet18", 1),
    ],
)
def test_smoke_forward_backward(name, num_outputs):
    torch.manual_seed(0)
    model = create_backbone(name, num_outputs, weights="none", dropout=0.1).train()
    head = _head(model, name)
    assert isinstance(head, nn.Linear) and head.out_features == num_outputs
    out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, torch.Tensor)  # googlenet: no aux outputs in train mode
    assert out.shape == (2, num_outputs)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()
    assert head.weight.grad.abs().sum() > 0
    conv = first_conv(model)
    assert isinstance(conv, nn.Conv2d) and conv.in_channels == 3 and conv.weight.grad is not None


def test_eval_mode_single_output():
    model = create_backbone("googlenet", 1, weights="none").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1)


# ------------------------------------------------------------------------------------ efficientnet_lite0


@pytest.fixture(scope="module")
def raw_effnet():
    return load_state_dict_file(efficientnet_lite0_checkpoint_path())


@pytest.fixture(scope="module")
def effnet_imagenet():
    return create_backbone("efficientnet_lite0", 39, weights="imagenet").eval()


def test_efficientnet_mapping_by_position(raw_effnet):
    import timm

    mapped = efficientnet_lite0_imagenet_state_dict()
    reference = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    assert len(raw_effnet) == len(mapped) == len(reference) == EFFICIENTNET_LITE0_NUM_TENSORS == 296
    assert list(mapped) == list(reference)
    for (rk, rv), (mk, mv), rv_ref in zip(raw_effnet.items(), mapped.items(), reference.values()):
        assert rv.shape == mv.shape == rv_ref.shape, (rk, mk)
        assert torch.equal(rv, mv)


def test_efficientnet_imagenet_weights_loaded(raw_effnet, effnet_imagenet):
    random_net = create_backbone("efficientnet_lite0", 39, weights="none")
    loaded_sd, random_sd = effnet_imagenet.state_dict(), random_net.state_dict()
    assert not torch.equal(loaded_sd["conv_stem.weight"], random_sd["conv_stem.weight"])
    assert len(loaded_sd) == len(raw_effnet)
    for (key, value), raw in zip(loaded_sd.items(), raw_effnet.values()):
        if key.startswith("classifier."):
            assert value.shape[0] == 39  # fresh head, not the 1000-class ImageNet one
        else:
            assert torch.equal(value, raw), key
    torch.manual_seed(0)
    with torch.no_grad():
        logits = effnet_imagenet(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 39) and torch.isfinite(logits).all()


def test_efficientnet_imagenet_classifies_sample_image(tmp_path):
    """Functional check of the mapped weights with their own 1000-class head (exact-model file path)."""
    matplotlib = pytest.importorskip("matplotlib")
    image_path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not image_path.is_file():
        pytest.skip("matplotlib sample image not available")
    from PIL import Image
    from safetensors.torch import save_file
    from torchvision import transforms as T

    path = tmp_path / "effnet_in1k.safetensors"
    # The packaged tensors are not all contiguous; safetensors needs them to be.
    save_file({k: v.contiguous() for k, v in efficientnet_lite0_imagenet_state_dict().items()}, str(path))
    model = create_backbone("efficientnet_lite0", 1000, weights=str(path)).eval()
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
    x = tf(Image.open(image_path).convert("RGB"))[None]
    with torch.no_grad():
        top5 = model(x).topk(5).indices[0].tolist()
    # academic gown, bow tie, military uniform, mortarboard, Windsor tie, suit
    assert set(top5) & {400, 457, 652, 667, 906, 834}, top5


# ------------------------------------------------------------------------------ torchvision "imagenet"


def test_resnet18_imagenet_missing_fails_fast(offline_dirs):
    weights_dir, hub_dir = offline_dirs
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as excinfo:
        create_backbone("resnet18", 39, weights="imagenet")
    assert time.perf_counter() - start < 5
    msg = str(excinfo.value)
    assert "resnet18-f37072fd.pth" in msg
    assert str(hub_dir) in msg and str(weights_dir) in msg
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    assert "efficientnet_lite0" in msg and "ATTR2GENDER_WEIGHTS_DIR" in msg
    assert isinstance(excinfo.value, FileNotFoundError)


def test_resnet18_imagenet_from_weights_dir(offline_dirs):
    from torchvision.models import resnet18

    weights_dir, _ = offline_dirs
    saved = resnet18(weights=None).state_dict()
    torch.save(saved, weights_dir / "resnet18-f37072fd.pth")
    model = create_backbone("resnet18", 39, weights="imagenet")
    assert torch.equal(model.conv1.weight, saved["conv1.weight"])
    for key, value in model.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(value, saved[key]), key
    assert type(model.fc) is nn.Linear and (model.fc.in_features, model.fc.out_features) == (512, 39)


def test_resnet18_imagenet_from_hub_dir(offline_dirs):
    from torchvision.models import resnet18

    _, hub_dir = offline_dirs
    hub_dir.mkdir(parents=True)
    saved = resnet18(weights=None).state_dict()
    torch.save(saved, hub_dir / "resnet18-f37072fd.pth")
    model = create_backbone("resnet18", 2, weights="imagenet", dropout=0.2)
    assert torch.equal(model.layer4[1].conv2.weight, saved["layer4.1.conv2.weight"])
    assert model.fc.out_features == 2


def test_timm_imagenet_missing_then_local(offline_dirs):
    weights_dir, _ = offline_dirs
    with pytest.raises(WeightsNotFoundError, match=f"{EXTRA_TIMM}.safetensors"):
        create_backbone(EXTRA_TIMM, 39, weights="imagenet")
    import timm
    from safetensors.torch import save_file

    saved = timm.create_model(EXTRA_TIMM, pretrained=False).state_dict()
    save_file(saved, str(weights_dir / f"{EXTRA_TIMM}.safetensors"))
    model = create_backbone(EXTRA_TIMM, 39, weights="imagenet")
    assert torch.equal(model.conv_stem.weight, saved["conv_stem.weight"])
    assert model.classifier.out_features == 39


def test_describe_weights():
    assert "resnet18-f37072fd.pth" in describe_weights("resnet18")
    assert "resnet50-11ad3fa6.pth" in describe_weights("resnet50")
    assert "resnet50-0676ba61.pth" in describe_weights("resnet50")
    assert "offline" in describe_weights("efficientnet_lite0")


# ---------------------------------------------------------------------------------------- local files


def _assert_same_state(a: nn.Module, b: nn.Module, skip_prefix: str | None = None):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        if skip_prefix is None or not key.startswith(skip_prefix):
            assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".pt"])
def test_local_file_round_trip(tmp_path, suffix):
    torch.manual_seed(1)
    original = create_backbone("resnet18", 39, weights="none")
    path = tmp_path / f"model{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(original.state_dict(), str(path))
    else:
        torch.save(original.state_dict(), path)
    reloaded = create_backbone("resnet18", 39, weights=path)
    _assert_same_state(original, reloaded)  # head included: same shapes, so it is loaded
    other_head = create_backbone("resnet18", 1, weights=str(path))  # head dropped, backbone loaded
    assert other_head.fc.out_features == 1
    assert torch.equal(other_head.conv1.weight, original.conv1.weight)


def test_local_file_with_dropout_head_round_trip(tmp_path):
    original = create_backbone("googlenet", 3, weights="none", dropout=0.5)
    path = tmp_path / "g.pth"
    torch.save(original.state_dict(), path)
    reloaded = create_backbone("googlenet", 3, weights=path)  # plain Linear head; same key names
    _assert_same_state(original, reloaded)


_side_effects: list[str] = []


def _record_side_effect():
    _side_effects.append("executed")
    return "evil"


class _Evil:
    def __reduce__(self):
        return (_record_side_effect, ())


def test_pickled_object_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Evil()}, path)
    _side_effects.clear()
    with pytest.raises(UnsafeWeightsFileError, match="weights_only"):
        create_backbone("resnet18", 39, weights=path)
    assert _side_effects == []


def test_incompatible_file_reports_keys(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(create_backbone("resnet18", 39, weights="none").state_dict(), path)
    with pytest.raises(IncompatibleWeightsError, match="shape mismatches|missing keys|unexpected keys"):
        create_backbone("googlenet", 39, weights=path)
    sd = torch.load(path, weights_only=True)
    sd["extra.weight"] = torch.zeros(3)
    torch.save(sd, path)
    with pytest.raises(IncompatibleWeightsError, match="extra.weight"):
        create_backbone("resnet18", 39, weights=path)


def test_missing_or_unsupported_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="neither"):
        create_backbone("resnet18", 39, weights=tmp_path / "nope.pth")
    bad = tmp_path / "w.npz"
    bad.write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported"):
        create_backbone("resnet18", 39, weights=bad)


# ------------------------------------------------------------------------------------------ names


def test_unknown_backbone_suggests_close_match():
    with pytest.raises(UnknownBackboneError) as excinfo:
        create_backbone("resnet181", 39, weights="none")
    msg = str(excinfo.value)
    assert "Did you mean: resnet18" in msg
    assert "efficientnet_lite0" in msg and "timm.list_models()" in msg
    assert isinstance(excinfo.value, ValueError)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_outputs"):
        create_backbone("resnet18", 0, weights="none")
    with pytest.raises(ValueError, match="dropout"):
        create_backbone("resnet18", 2, weights="none", dropout=1.0)
