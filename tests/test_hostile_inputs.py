"""Hostile inputs to the commands, configs, bundles and the Python API: each gets one clear answer, found
before any image is read, and nothing else is lost.

The tables below are the cases a hostile user tried (issue 23). A command-line case expects an exit status
and a fragment of its single ``error:`` line; a Python case expects an error type and message. Large or
dangerous files are made in the test from a few bytes; none is committed. Neighbours of this file cover the
rest: ``test_hostile_images.py`` (decoders, pixel caps, the served model), ``test_hostile_align.py``
(``attr2gender align``), ``test_weights_download.py`` (downloads, ``weights=`` files) and
``test_security.py`` (pickles and forged bundles).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from attr2gender.cli import main
from attr2gender.config import ConfigError, RunConfig, load_preset
from attr2gender.data.synth import make_synthetic_celeba
from attr2gender.errors import BundleError, CelebAFormatError
from attr2gender.pipeline import Attr2GenderPipeline, load_pipeline
from attr2gender.pipeline.bundle import _canonical
from attr2gender.pipeline.cache import StageOneCache
from attr2gender.tabular import StageTwoClassifier
from attr2gender.training import AttributeModel, train
from attr2gender.training.engine import RUN_LOCK, claim_run_folder
from conftest import tiny_config

# --------------------------------------------------------------------------------------------------
# shared material: a tiny synthetic CelebA and a tiny two-stage bundle
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_synthetic_celeba(tmp_path_factory.mktemp("hostile") / "celeba", n=120, seed=0, image_size=40)


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    stage_two = StageTwoClassifier().fit(rng.random((40, 39)), rng.integers(0, 2, 40))
    model = AttributeModel(backbone="test_efficientnet", weights="none")
    return Attr2GenderPipeline(model, stage_two, 32, num_workers=0, align="none")


@pytest.fixture(scope="module")
def bundle(pipe, tmp_path_factory):
    return pipe.save(tmp_path_factory.mktemp("bundle") / "b")


@pytest.fixture
def images(root):
    return sorted((Path(root) / "img_align_celeba").glob("*.jpg"))[:6]


def _rehashed(bundle: Path, target: Path, change) -> Path:
    """A copy of ``bundle`` whose pipeline.json was edited by ``change`` and hashed again, as a careful forger
    would: only the value checks stand between it and a prediction."""
    shutil.copytree(bundle, target)
    manifest = json.loads((target / "pipeline.json").read_text())
    change(manifest, target)
    manifest["manifest_sha256"] = hashlib.sha256(_canonical(manifest)).hexdigest()
    (target / "pipeline.json").write_text(json.dumps(manifest))
    return target


def _onnx_with_outside_data(manifest: dict, target: Path) -> None:
    """model.onnx whose first weight is stored "externally", in a file outside the bundle."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(target / "model.onnx"))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../../../etc/passwd"
    (target / "model.onnx").write_bytes(model.SerializeToString())
    manifest["files"]["model.onnx"] = hashlib.sha256((target / "model.onnx").read_bytes()).hexdigest()


def _error_lines(captured) -> list[str]:
    return [line for line in captured.err.splitlines() if line.startswith("error:")]


# --------------------------------------------------------------------------------------------------
# configs: exit 2 with one error line, before any image is read (no run folder is left behind)
# --------------------------------------------------------------------------------------------------

BILLION_LAUGHS = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")]
    + ["stage_two_exclude: *i"]
)

CONFIG_CASES = [
    # (name, preset text or None, overrides, expected fragment of the error line)
    ("strategy=bogus", None, ["strategy=bogus"], "strategy='bogus' is not valid"),
    ("output_dir is a file", None, ["output_dir={file}"], "is a file; give a folder"),
    ("output_dir under /proc", None, ["output_dir=/proc/attr2gender-x"], "cannot write there"),
    ("cache_dir is a file (issue 33)", None, ["cache_dir={file}"], "cache_dir="),
    ("cache_dir under /proc (issue 33)", None, ["cache_dir=/proc/attr2gender-cache"], "cache_dir="),
    ("experiment empty", None, ["experiment="], "experiment is empty"),
    ("num_workers=100000", None, ["num_workers=100000"], "num_workers must be from 0 to 64"),
    ("image_size=4000", None, ["image_size=4000"], "image_size must be from 16 to 1024"),
    ("weights=a text file", None, ["weights={file}"], "weights="),
    ("billion laughs", BILLION_LAUGHS, [], "anchors and aliases"),
    ("50k-deep YAML", "a: " + "[" * 50_000 + "]" * 50_000, [], "nested too deep"),
    (
        "calibrate, one-class validation",
        None,
        ["calibrate=true", "split_fractions=[0.8,0.01,0.19]"],
        "calibrate=true",
    ),
]
if not torch.cuda.is_available():
    CONFIG_CASES.append(
        ("accelerator=cuda without GPU", None, ["accelerator=cuda"], "no CUDA device is visible")
    )


@pytest.mark.parametrize("name,preset,overrides,expected", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_a_bad_config_is_one_error_line_before_any_work(
    name, preset, overrides, expected, root, tmp_path, capsys, monkeypatch
):
    import attr2gender.data.dataset as dataset

    def no_images(*a, **k):
        raise AssertionError("an image was read before the config was refused")

    monkeypatch.setattr(dataset, "load_image", no_images)
    file = tmp_path / "a-file.txt"
    file.write_text("not a folder, not weights\n")
    argv = ["train", "--config", "smoke"]
    if preset is not None:
        (tmp_path / "preset.yaml").write_text(preset)
        argv = ["train", "--config", str(tmp_path / "preset.yaml")]
    runs = tmp_path / "runs"
    base = [f"data_root={root}", f"output_dir={runs}", "run_name=r", "progress=false"]
    base += ["backbone=test_efficientnet", "weights=none"]
    argv += base + [o.format(file=file) for o in overrides]
    assert _exit_status(argv) == 2
    lines = _error_lines(capsys.readouterr())
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (runs / "r").exists()  # refused before the run folder was claimed, or removed again


def test_the_yaml_bombs_fail_fast_in_the_python_api_too(tmp_path):
    (tmp_path / "bomb.yaml").write_text(BILLION_LAUGHS)
    with pytest.raises(ConfigError, match="anchors and aliases"):
        load_preset(tmp_path / "bomb.yaml")
    with pytest.raises(ConfigError, match="nested too deep|not plain YAML"):
        load_preset(None, ["stage_two_exclude=" + "[" * 50_000 + "]" * 50_000])


# --------------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------------

COMMAND_CASES = [
    # (name, argv with {root} {bundle} {tmp} placeholders, exit status, expected fragment of stderr)
    ("synth --n -5", ["data", "synth", "--n", "-5", "--out", "{tmp}/s"], 2, "must be a positive integer"),
    ("synth --size 0", ["data", "synth", "--size", "0", "--out", "{tmp}/s"], 2, "must be a positive integer"),
    ("synth --size 5000", ["data", "synth", "--size", "5000", "--out", "{tmp}/s"], 2, "from 16 to 1024"),
    ("synth --out a file", ["data", "synth", "--n", "3", "--out", "{tmp}/file"], 2, "is a file"),
    ("predict an empty folder", ["predict", "{bundle}", "{tmp}/empty"], 3, "no images found"),
    ("predict a folder of text", ["predict", "{bundle}", "{tmp}/text"], 3, "no images found"),
    (
        "predict --out a 300-char name",
        ["predict", "{bundle}", "{root}", "--align", "none", "--out", "{tmp}/" + "x" * 300 + ".csv"],
        2,
        "cannot create it",
    ),
    (
        "predict --out under /proc",
        ["predict", "{bundle}", "{root}", "--align", "none", "--out", "/proc/x.csv"],
        2,
        "--out",
    ),
    (
        "summary of a random-bytes attribute file",
        ["data", "summary", "{tmp}/random", "--quiet"],
        2,
        "is not UTF-8 text",
    ),
    # issue 33: found before any work, not after it or as a traceback
    ("synth --n 10^20", ["data", "synth", "--n", "99999999999999999999", "--out", "{tmp}/s"], 2, "1,000,000"),
    ("synth --seed -1", ["data", "synth", "--n", "3", "--seed", "-1", "--out", "{tmp}/s"], 2, "seed"),
    (
        "adapt --C abc",
        ["adapt", "{bundle}", "{tmp}/labels.csv", "{tmp}/a", "--C", "abc"],
        2,
        "auto or a number",
    ),
    ("adapt --seed -1", ["adapt", "{bundle}", "{tmp}/labels.csv", "{tmp}/a", "--seed", "-1"], 2, "seed"),
    (
        "adapt --C 1e-300",
        ["adapt", "{bundle}", "{tmp}/labels.csv", "{tmp}/a", "--C", "1e-300"],
        2,
        "C must be",
    ),
    ("synth --out a 300-char name", ["data", "synth", "--n", "3", "--out", "{tmp}/" + "x" * 300], 2, "--out"),
    ("export-target --out /proc", ["data", "export-target", "{root}/..", "--out", "/proc/x.csv"], 2, "--out"),
    (
        "export-target --out a folder",
        ["data", "export-target", "{root}/..", "--out", "{tmp}"],
        2,
        "is a folder",
    ),
    ("align OUT_DIR a 300-char name", ["align", "{root}", "{tmp}/" + "x" * 300], 2, "OUT_DIR"),
    (
        "adapt OUT_BUNDLE a dangling link",
        ["adapt", "{bundle}", "{tmp}/labels.csv", "{tmp}/dangling"],
        2,
        "link to nothing",
    ),
    (
        "adapt OUT_BUNDLE under /proc",
        ["adapt", "{bundle}", "{tmp}/labels.csv", "/proc/new_bundle"],
        2,
        "OUT_BUNDLE",
    ),
    (
        "adapt LABELS a 300-char name",
        ["adapt", "{bundle}", "{tmp}/" + "y" * 300 + ".csv", "{tmp}/a"],
        2,
        "LABELS",
    ),
]


@pytest.mark.parametrize("name,argv,status,expected", COMMAND_CASES, ids=[c[0] for c in COMMAND_CASES])
def test_a_bad_command_line_gets_its_exit_status_and_one_line(
    name, argv, status, expected, root, bundle, tmp_path, capsys, monkeypatch
):
    import attr2gender.pipeline.base as base

    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("hello")
    (tmp_path / "file").write_text("x")
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "list_attr_celeba.txt").write_bytes(np.random.default_rng(0).bytes(3000))
    (tmp_path / "random" / "img_align_celeba").mkdir()
    photos = sorted((Path(root) / "img_align_celeba").glob("*.jpg"))[:2]
    (tmp_path / "labels.csv").write_text("path,male\n" + "".join(f"{p},{i}\n" for i, p in enumerate(photos)))
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    monkeypatch.setattr(base, "stream_batches", _no_prediction)  # every case must stop before predicting
    values = dict(root=f"{root}/img_align_celeba", bundle=bundle, tmp=tmp_path)
    assert _exit_status([a.format(**values) for a in argv]) == status
    err = capsys.readouterr().err
    assert expected in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1, err
    assert not (tmp_path / "s").exists()


def _exit_status(argv: list[str]) -> int:
    """``main``'s status; argparse's own usage errors exit 2 through SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def _no_prediction(*args, **kwargs):
    raise AssertionError("images were predicted before the command was refused")


def test_predict_explain_with_a_file_name_that_is_not_utf8(bundle, images, tmp_path, capsys):
    odd = tmp_path / os.fsdecode(b"caf\xe9.jpg")
    shutil.copy(images[0], odd)
    out = tmp_path / "p.csv"
    assert main(["predict", str(bundle), str(odd), "--align", "none", "--explain", "--out", str(out)]) == 0
    assert "caf\\xe9.jpg:" in capsys.readouterr().err  # printed with the odd byte escaped
    header, row = out.read_bytes().splitlines()  # the name's original bytes, as the file system has them
    assert row.startswith(os.fsencode(odd) + b",") and header.endswith(b",error") and row.endswith(b",")
    explanation = load_pipeline(bundle).explain([odd], align="none")
    assert explanation.top(0, 3).name == str(odd)
    assert "caf\\xe9.jpg" in repr(explanation)
    repr(explanation).encode("utf-8")  # printable anywhere


# --------------------------------------------------------------------------------------------------
# bundles: refused at load, with a BundleError, even when the forger rehashed the manifest
# --------------------------------------------------------------------------------------------------

BUNDLE_CASES = [
    ("temperature 1e-300", lambda m, d: m.update(temperature=1e-300), "temperature"),
    ("temperature 50", lambda m, d: m.update(temperature=50.0), "temperature"),
    ("threshold 1", lambda m, d: m.update(threshold=1.0), "threshold"),
    ("threshold 0", lambda m, d: m.update(threshold=0.0), "threshold"),
    ("model.onnx with outside data", _onnx_with_outside_data, "model.onnx"),
]


@pytest.mark.parametrize("name,change,field", BUNDLE_CASES, ids=[c[0] for c in BUNDLE_CASES])
def test_a_forged_bundle_is_refused_at_load(name, change, field, bundle, tmp_path):
    forged = _rehashed(bundle, tmp_path / "forged", change)
    with pytest.raises(BundleError, match=field):
        load_pipeline(forged)


def test_a_manifest_nested_200k_deep_is_a_bundle_error(bundle, tmp_path):
    shutil.copytree(bundle, tmp_path / "b")
    (tmp_path / "b" / "pipeline.json").write_text('{"a":' * 200_000 + "1" + "}" * 200_000)
    with pytest.raises(BundleError, match="nested too deep"):
        load_pipeline(tmp_path / "b")
    assert main(["predict", str(tmp_path / "b"), str(tmp_path)]) == 2


def test_an_attribute_file_of_random_bytes_names_the_file(tmp_path):
    from attr2gender.data import load_celeba

    (tmp_path / "img_align_celeba").mkdir()
    (tmp_path / "list_attr_celeba.txt").write_bytes(np.random.default_rng(1).bytes(5000))
    with pytest.raises(CelebAFormatError, match="list_attr_celeba.txt.*not UTF-8 text"):
        load_celeba(tmp_path)


# --------------------------------------------------------------------------------------------------
# the Python API
# --------------------------------------------------------------------------------------------------

API_CASES = [
    # (name, call on (pipe, bundle, images), expected error type, message fragment)
    (
        "predict batch_size=-1",
        lambda p, b, i: p.predict(i, batch_size=-1),
        ConfigError,
        "batch_size must be an integer",
    ),
    (
        "predict batch_size='8'",
        lambda p, b, i: p.predict(i, batch_size="8"),
        ConfigError,
        "batch_size must be an integer",
    ),
    ("load batch_size=-1", lambda p, b, i: load_pipeline(b, batch_size=-1), ConfigError, "batch_size"),
    ("load batch_size=0", lambda p, b, i: load_pipeline(b, batch_size=0), ConfigError, "batch_size"),
    ("load num_workers=-3", lambda p, b, i: load_pipeline(b, num_workers=-3), ConfigError, "num_workers"),
    (
        "temperature 1e-300",
        lambda p, b, i: p.__class__(p.image_model, p.stage_two, 32, temperature=1e-300),
        ConfigError,
        "temperature",
    ),
    ("intervene typo", lambda p, b, i: p.predict(i, intervene={"Eyeglases": 1}), ValueError, "Eyeglases"),
    (
        "intervene frame of the wrong length",
        lambda p, b, i: p.predict(i, intervene=pd.DataFrame({"Eyeglasses": [1.0]})),
        ValueError,
        "1 rows but there are 6 images",
    ),
]


@pytest.mark.parametrize("name,call,error,message", API_CASES, ids=[c[0] for c in API_CASES])
def test_a_bad_argument_is_refused_before_any_image_is_read(
    name, call, error, message, pipe, bundle, images, monkeypatch
):
    import attr2gender.pipeline.base as base

    monkeypatch.setattr(base, "stream_batches", _no_prediction)
    with pytest.raises(error, match=message):
        call(pipe, bundle, images)


def test_a_poisoned_stage_one_cache_entry_is_recomputed(pipe, images, tmp_path):
    fresh = pipe.with_stage_two(pipe.stage_two)
    fresh.cache_dir = tmp_path / "cache"
    expected, _ = fresh.attribute_probabilities(images)
    cache = StageOneCache(tmp_path / "cache")
    key, _ = cache.key(fresh.model_hash, fresh.preprocessing, images)
    for poison in (np.nan, np.inf, 5.0):
        stored = expected.astype(np.float32)
        stored[0, 0] = poison
        np.save(cache.directory / f"{key}.npy", stored, allow_pickle=False)
        with pytest.warns(UserWarning, match="ignoring unreadable cache entry"):
            again, errors = fresh.attribute_probabilities(images)
        assert not fresh.last_cache_hit and not any(errors)
        np.testing.assert_allclose(again, expected, atol=1e-6)


def test_intervene_with_faces_all_applies_each_images_row_to_its_faces(pipe, images, monkeypatch):
    """``faces="all"`` gives several rows per image; the intervention frame has one row per input image."""
    real = pipe._run

    def two_faces_each(*args, **kwargs):
        rows = real(*args, **kwargs)
        rows.names = [n for n in rows.names for _ in (0, 1)]  # as if each image had two faces
        rows.positions = [p for p in rows.positions for _ in (0, 1)]
        rows.errors = [e for e in rows.errors for _ in (0, 1)]
        rows.faces = [f for f in rows.faces for _ in (0, 1)]
        rows.outputs = {k: np.repeat(v, 2, axis=0) for k, v in rows.outputs.items()}
        return rows

    monkeypatch.setattr(pipe, "_run", two_faces_each)
    per_image = pd.DataFrame({"Eyeglasses": [1.0, 0.0, np.nan, 1.0, 0.0, np.nan]})
    frame = pipe.predict(images, align="none", intervene=per_image)
    assert len(frame) == 12
    np.testing.assert_array_equal(frame["Eyeglasses"].to_numpy()[[0, 1, 2, 3]], [1, 1, 0, 0])
    assert frame["Eyeglasses"].iloc[4] == frame["Eyeglasses"].iloc[5] != 1.0  # NaN kept stage one's value


# --------------------------------------------------------------------------------------------------
# runs: one folder per run, and no path from a checkpoint leaves it
# --------------------------------------------------------------------------------------------------


def _config(root, out, **kw) -> RunConfig:
    return tiny_config(root, out, **(dict() | kw))


def test_two_runs_with_one_run_name_never_share_its_folder(root, tmp_path):
    run_dir = tmp_path / "runs" / "run"
    with claim_run_folder(run_dir):  # the first run holds it
        with pytest.raises(ConfigError, match="exists already"):
            train(_config(root, tmp_path / "runs"))
        (run_dir / "checkpoints").mkdir()
        (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")  # as if it had checkpointed
        with pytest.raises(ConfigError, match="in use by another run"):
            with claim_run_folder(run_dir, resume=True):
                pass
    with claim_run_folder(run_dir, resume=True):  # released when the first run ends
        assert (run_dir / RUN_LOCK).is_file()


def test_a_run_that_fails_before_writing_leaves_no_folder(tmp_path):
    run_dir = tmp_path / "runs" / "run"
    with pytest.raises(RuntimeError, match="boom"):
        with claim_run_folder(run_dir):
            raise RuntimeError("boom")
    assert not run_dir.exists()


@pytest.mark.skipif(sys.platform != "linux", reason="the planted path is a Linux path")
def test_a_checkpoint_path_outside_the_run_folder_is_ignored(root, tmp_path):
    train(_config(root, tmp_path, max_steps=-1, keep_checkpoints="last"))  # resume needs last.ckpt
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    outside = tmp_path / "outside.ckpt"
    outside.write_bytes(b"not a checkpoint")
    for key, state in checkpoint["callbacks"].items():
        if key.startswith("ModelCheckpoint"):  # a "best" no later epoch can beat, outside the folder
            state.update(best_model_path=str(outside), kth_best_model_path=str(outside))
            state.update(best_model_score=torch.tensor(-1e9), kth_value=torch.tensor(-1e9))
            state["best_k_models"] = {str(outside): torch.tensor(-1e9)}
    torch.save(checkpoint, last)
    with pytest.warns(UserWarning, match="outside the run folder"):
        result = train(_config(root, tmp_path, epochs=2, max_steps=-1, resume=True))
    assert result.epochs_run == 2 and result.model is not None


def test_a_quoted_number_in_a_yaml_config_is_a_string_and_refused(tmp_path):
    """YAML values are taken as typed (issue 33): a quoted "0.01" is a string, not a number, whatever it
    looks like; the command line's weight_decay=0.01 is text and is parsed."""
    (tmp_path / "c.yaml").write_text('weight_decay: "0.01"\n')
    with pytest.raises(ConfigError, match="weight_decay must be a number, got '0.01'"):
        load_preset(tmp_path / "c.yaml")
    ((_, config),) = load_preset(tmp_path / "c.yaml", ["weight_decay=0.01"])
    assert config.weight_decay == 0.01
