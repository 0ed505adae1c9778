"""Where the forward pass runs: PyTorch channels-last / bf16, ONNX Runtime; and the training engine's
CPU precision and memory format, recorded in the run config."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np

# onnxruntime is a core dependency (it also runs the face detector): imported, never skipped. What this file
# needs beyond it is the exporter, the [onnx] extra.
import onnxruntime  # noqa: E402
import pytest
import torch
import yaml
from PIL import Image

from attr2gender.cli import main as cli_main
from attr2gender.config import ConfigError, RunConfig
from attr2gender.data.synth import make_synthetic_celeba
from attr2gender.pipeline import (
    Attr2GenderPipeline,
    BundleError,
    DirectGenderClassifier,
    RuntimeUnavailableError,
    load_pipeline,
)
from attr2gender.pipeline import runtime as runtime_module
from attr2gender.tabular import StageTwoClassifier
from attr2gender.training import AttributeModel, DirectModel, train
from conftest import tiny_config

pytest.importorskip("onnx", reason="the [onnx] extra (onnx, onnxscript: the ONNX exporter) is not installed")
pytest.importorskip(
    "onnxscript", reason="the [onnx] extra (onnx, onnxscript: the ONNX exporter) is not installed"
)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(44, 40, 3), dtype=np.uint8) for _ in range(7)]


@pytest.fixture(scope="module")
def two_stage():
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    stage_two = StageTwoClassifier().fit(rng.random((60, 39)), rng.integers(0, 2, 60))
    return Attr2GenderPipeline(
        AttributeModel(backbone="test_efficientnet", weights="none"),
        stage_two,
        32,
        num_workers=0,
        align="none",
    )


@pytest.fixture(scope="module")
def direct():
    torch.manual_seed(0)
    return DirectGenderClassifier(
        DirectModel(backbone="test_efficientnet", weights="none"), 32, num_workers=0, align="none"
    )


@pytest.fixture(scope="module")
def bundles(two_stage, direct, tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return {
        "two_stage": two_stage.save(root / "two"),
        "direct": direct.save(root / "direct"),
        "no_onnx": direct.save(root / "no_onnx", onnx=False),
    }


@pytest.mark.parametrize("kind", ["two_stage", "direct"])
def test_exported_onnx_computes_what_predict_computes(kind, two_stage, direct, images, tmp_path):
    pipe = two_stage if kind == "two_stage" else direct
    path = pipe.export_onnx(tmp_path / "m.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.stack([pipe._transform(Image.fromarray(im)) for im in images[:5]])
    for batch in (x[:1], x):  # the batch axis is dynamic
        out = session.run(None, {"image": batch.numpy()})[0]
        expected = pipe.image_model(batch).detach().numpy()
        assert out.shape == expected.shape == ((len(batch), 39) if kind == "two_stage" else (len(batch),))
        np.testing.assert_allclose(out, expected, atol=1e-5)
        assert ((out >= 0) & (out <= 1)).all()  # probabilities, not logits


@pytest.mark.parametrize("kind", ["two_stage", "direct"])
def test_bundle_runs_on_onnx_runtime_by_default_with_the_same_answers(
    kind, bundles, two_stage, direct, images
):
    manifest = json.loads((bundles[kind] / "pipeline.json").read_text())
    assert "model.onnx" in manifest["files"]  # listed and hashed like every other file
    auto = load_pipeline(bundles[kind], device="cpu", align="none")
    assert auto.forward_runtime.name == "onnx"
    torch_pipe = load_pipeline(bundles[kind], device="cpu", runtime="torch", align="none")
    assert torch_pipe.forward_runtime.name == "torch" and torch_pipe.forward_runtime.channels_last
    a, b = auto.predict(images), torch_pipe.predict(images)
    np.testing.assert_allclose(a["male_probability"], b["male_probability"], atol=1e-5)
    assert (a["label"] == b["label"]).all()
    original = (two_stage if kind == "two_stage" else direct).predict(images)
    np.testing.assert_allclose(a["male_probability"], original["male_probability"], atol=1e-5)


def test_onnx_without_onnxruntime_names_the_install(bundles, monkeypatch):
    monkeypatch.setattr(runtime_module, "onnx_runtime_available", lambda: False)
    with pytest.raises(RuntimeUnavailableError, match=r"pip install onnxruntime"):
        load_pipeline(bundles["direct"], device="cpu", runtime="onnx")
    assert load_pipeline(bundles["direct"], device="cpu").forward_runtime.name == "torch"  # auto falls back


def test_onnx_without_model_onnx_names_the_fix(bundles, direct):
    assert not (bundles["no_onnx"] / "model.onnx").exists()
    with pytest.raises(RuntimeUnavailableError, match="model.onnx"):
        load_pipeline(bundles["no_onnx"], device="cpu", runtime="onnx")
    with pytest.raises(RuntimeUnavailableError, match="export_onnx"):
        direct.set_runtime("onnx")  # a pipeline built in memory has no export yet
    assert load_pipeline(bundles["no_onnx"], device="cpu").forward_runtime.name == "torch"


def test_saving_without_onnx_removes_a_stale_export(direct, tmp_path):
    direct.save(tmp_path / "b")
    assert (tmp_path / "b" / "model.onnx").is_file()
    direct.save(tmp_path / "b", onnx=False)
    assert not (tmp_path / "b" / "model.onnx").exists()
    assert "model.onnx" not in json.loads((tmp_path / "b" / "pipeline.json").read_text())["files"]


def test_tampered_onnx_file_is_refused(direct, tmp_path):
    bundle = direct.save(tmp_path / "b")
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.onnx"):
        load_pipeline(bundle)


def test_cli_runtime_error_is_one_line_and_exit_2(bundles, images, tmp_path):
    path = tmp_path / "face.png"
    Image.fromarray(images[0]).save(path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli_main(["predict", str(bundles["no_onnx"]), str(path), "--runtime", "onnx", "--quiet"])
    assert rc == 2
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "model.onnx" in lines[0]


def test_bf16_runtime_stays_close_and_reports_itself(two_stage, images):
    fp32 = two_stage.predict(images)["male_probability"].to_numpy()
    two_stage.set_runtime("torch", precision="bf16")
    try:
        assert two_stage.forward_runtime.describe().startswith("torch (cpu, bf16")
        bf16 = two_stage.predict(images)["male_probability"].to_numpy()
    finally:
        two_stage.set_runtime("auto")
    assert np.abs(bf16 - fp32).max() < 0.05  # bf16 keeps ~3 significant digits
    with pytest.raises(ValueError, match="precision"):
        two_stage.set_runtime("torch", precision="fp16")


# --------------------------------------------------------------------------------------------------
# training: the CPU's precision and memory format are chosen, recorded, and deterministic
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return make_synthetic_celeba(tmp_path_factory.mktemp("synth") / "celeba", n=160, seed=0, image_size=40)


def _config(root, out, **kw) -> RunConfig:
    return tiny_config(root, out, **(dict(max_steps=3, run_name="r") | kw))


def test_cpu_default_is_recorded_in_the_run_config(synth_root, tmp_path):
    result = train(_config(synth_root, tmp_path))
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    engine = json.loads((tmp_path / "r" / "engine.json").read_text())
    assert saved["memory_format"] == engine["memory_format"] == "channels_last"
    assert saved["precision"] == engine["precision"] == result.config.precision
    assert saved["precision"] in ("32-true", "bf16-mixed")  # never "auto": what ran is recorded


@pytest.mark.parametrize(
    "precision,memory_format", [("32-true", "contiguous"), ("bf16-mixed", "channels_last")]
)
def test_precision_and_memory_format_can_be_set(synth_root, tmp_path, precision, memory_format):
    result = train(_config(synth_root, tmp_path, precision=precision, memory_format=memory_format))
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert (saved["precision"], saved["memory_format"]) == (precision, memory_format)
    assert np.isfinite(result.test_predictions.prob).all()


def test_channels_last_training_is_reproducible(synth_root, tmp_path):
    a = train(_config(synth_root, tmp_path / "a", memory_format="channels_last"))
    b = train(_config(synth_root, tmp_path / "b", memory_format="channels_last"))
    np.testing.assert_array_equal(a.test_predictions.prob, b.test_predictions.prob)


def test_bad_memory_format_lists_the_choices():
    with pytest.raises(ConfigError, match="channels_last"):
        RunConfig(memory_format="nhwc").validate()
