"""One bad input never takes down the rest; runs never collide; every bad value fails before any work with
exit status 2 and one ``error:`` line; messages say what was given and what is accepted."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from attr2gender.cli import main as cli_main
from attr2gender.cli import main_compare, main_direct
from attr2gender.config import ConfigError, RunConfig, load_preset
from attr2gender.data import load_celeba
from attr2gender.data.attributes import ATTRIBUTE_NAMES, STAGE_ONE_ATTRIBUTES
from attr2gender.data.celeba import CelebAFormatError
from attr2gender.data.images import ImageLoadError, load_image
from attr2gender.data.synth import make_synthetic_celeba
from attr2gender.pipeline import Attr2GenderPipeline
from attr2gender.tabular import StageTwoClassifier
from attr2gender.tracking.pyfunc_model import UNREADABLE_PATH, predict_frame
from attr2gender.training import AttributeModel, train
from conftest import write_fake_celeba

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_stage():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    stage_two = StageTwoClassifier().fit(rng.random((40, 39)), rng.integers(0, 2, 40))
    # Noise images stand in for crops here, read as they are (photos and alignment: test_faces.py).
    return Attr2GenderPipeline(
        AttributeModel(backbone="test_efficientnet", weights="none"),
        stage_two,
        32,
        num_workers=0,
        align="none",
    )


@pytest.fixture(scope="module")
def bundle(two_stage, tmp_path_factory):
    return two_stage.save(tmp_path_factory.mktemp("bundle") / "b", onnx=False)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, size=(40, 36, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    return folder


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


# --------------------------------------------------------------------------------------------------
# the served model: one input row, one output row
# --------------------------------------------------------------------------------------------------


def test_served_rows_stay_aligned_with_folders_and_bad_rows(two_stage, faces, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    good = sorted(faces.glob("*.jpg"))
    frame = pd.DataFrame({"path": [str(good[0]), str(empty), str(faces), str(good[1]), None]})
    out = predict_frame(two_stage, frame)
    assert len(out) == 5
    assert out["error"][0] == "" and out["error"][3] == ""
    # The server's files are not told apart: a folder, a missing file and a name too long read the same.
    assert out["error"][1] == f"row 1: {empty}: {UNREADABLE_PATH}" and out["error"][2].endswith(
        UNREADABLE_PATH
    )
    assert "neither" in out["error"][4]
    hidden = predict_frame(
        two_stage,
        pd.DataFrame({"path": [str(tmp_path / "missing.jpg"), "/" + "x" * 300 + ".jpg", str(good[0])]}),
    )
    assert all(e.endswith(f": {UNREADABLE_PATH}") for e in hidden["error"][:2])
    assert "missing.jpg" in hidden["error"][0]  # the path the caller gave, not what the server found there
    assert hidden["error"][2] == "" and np.isfinite(
        hidden["male_probability"][2]
    )  # the others still answered
    assert out["male_probability"][[1, 2, 4]].isna().all()
    alone = predict_frame(two_stage, pd.DataFrame({"path": [str(good[1])]}))
    assert out["male_probability"][3] == pytest.approx(alone["male_probability"][0])  # not shifted


def test_served_model_survives_a_decompression_bomb_and_accepts_wrapped_base64(two_stage, faces, tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("L", (100_000, 1)).save(bomb)  # 177-ish bytes that declare 100,000 px
    huge = tmp_path / "huge.png"
    Image.new("1", (12_000, 12_000)).save(huge)  # 144 M px: over Pillow's bomb limit
    face = sorted(faces.glob("*.jpg"))[0]
    wrapped = "\n".join(textwrap.wrap(_b64(face), 76)) + "\n"  # what `base64 face.jpg` prints
    frame = pd.DataFrame(
        {
            "image_base64": [
                _b64(bomb),
                _b64(huge),
                wrapped,
                "data:image/jpeg;base64," + _b64(face),
                "not base64!",
                "Y29ycnVwdA==",
            ]
        }
    )
    out = predict_frame(two_stage, frame)
    assert len(out) == 6
    assert "100000x1 px" in out["error"][0] and "refused" in out["error"][0] and "pixels" in out["error"][1]
    assert out["error"][2] == "" and out["error"][3] == ""
    assert out["male_probability"][2] == pytest.approx(out["male_probability"][3])
    assert "not valid base64" in out["error"][4]
    assert "not a readable image" in out["error"][5] and "BytesIO" not in out["error"][5]
    assert not any(re.search(r"0x[0-9a-f]{6,}", e) for e in out["error"])  # no object addresses in messages


def test_served_model_names_columns_and_types(two_stage):
    with pytest.raises(ValueError, match=r"received \['image', 'path'\]"):
        predict_frame(two_stage, pd.DataFrame({"image": ["x"], "path": ["y"]}))
    out = predict_frame(two_stage, pd.DataFrame({"path": [42.0], "image_base64": [None]}))
    assert "path must be a string" in out["error"][0] and "got float" in out["error"][0]


def test_rgba_is_converted_the_same_way_from_bytes_and_from_a_path(two_stage, tmp_path):
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 60  # mostly transparent red: composited on white
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    from_path = load_image(path)
    from_bytes = load_image(path.read_bytes())
    assert np.array_equal(np.asarray(from_path), np.asarray(from_bytes))
    out = predict_frame(two_stage, pd.DataFrame({"image_base64": [_b64(path)], "path": [str(path)]}))
    both = predict_frame(two_stage, pd.DataFrame({"path": [str(path)]}))
    assert out["male_probability"][0] == pytest.approx(both["male_probability"][0])


# --------------------------------------------------------------------------------------------------
# predict(): odd files and values
# --------------------------------------------------------------------------------------------------


def test_a_thin_png_is_refused_before_decoding_with_bounded_memory(tmp_path):
    bomb = tmp_path / "thin.png"
    Image.new("L", (100_000, 1)).save(bomb)
    assert bomb.stat().st_size < 1000
    code = textwrap.dedent(f"""
        import resource, torch
        from attr2gender.pipeline import DirectGenderClassifier
        from attr2gender.training import DirectModel
        pipe = DirectGenderClassifier(DirectModel(backbone="test_efficientnet", weights="none"), 32, num_workers=0,
                                      align="none")
        pipe.predict([torch.zeros(3, 32, 32)])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = pipe.predict([{str(bomb)!r}])
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(out["error"][0]); print((after - before) // 1024)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    error, growth_mb = proc.stdout.strip().splitlines()[-2:]
    assert "100000x1 px" in error and "refused" in error
    assert int(growth_mb) < 50  # the 2.3 GB decode never happens


def test_non_finite_pixels_are_an_error_row(two_stage):
    nan = torch.full((3, 32, 32), float("nan"))
    inf = np.full((20, 20, 3), np.inf, dtype=np.float32)
    out = two_stage.predict([nan, inf, torch.rand(3, 32, 32)])
    assert (
        "NaN or infinite" in out["error"][0]
        and "NaN or infinite" in out["error"][1]
        and out["error"][2] == ""
    )
    assert out["male_probability"][:2].isna().all()


def test_wrong_dtype_says_what_is_accepted_and_no_tensor_is_printed(two_stage):
    out = two_stage.predict([np.zeros((20, 20, 3), dtype=np.int64), np.zeros((2, 2, 2, 2, 2))])
    assert "dtype int64 is not accepted" in out["error"][0] and "uint8" in out["error"][0]
    assert all(len(e) < 300 and "0., 0." not in e for e in out["error"])


def test_non_utf8_file_names_are_kept_and_written(bundle, faces, tmp_path):
    folder = tmp_path / "named"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/caf\xe9.jpg"
    with open(raw, "wb") as f:
        f.write((sorted(faces.glob("*.jpg"))[0]).read_bytes())
    out_csv = tmp_path / "out.csv"
    assert (
        cli_main(["predict", str(bundle), str(folder), "--out", str(out_csv), "--quiet", "--align", "none"])
        == 0
    )
    assert b"caf\xe9.jpg" in out_csv.read_bytes()  # the file's own bytes, not a crash
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "attr2gender.cli",
            "predict",
            str(bundle),
            str(folder),
            "--quiet",
            "--align",
            "none",
        ],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0 and b"caf\xe9.jpg" in proc.stdout, proc.stderr[-1000:]


def test_folders_take_every_format_pillow_reads_and_count_the_rest(two_stage, tmp_path):
    rng = np.random.default_rng(2)
    image = Image.fromarray(rng.integers(0, 256, size=(30, 30, 3), dtype=np.uint8))
    for ext in ("gif", "tif", "tiff", "bmp", "webp"):
        image.save(tmp_path / f"face.{ext}")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "data.csv").write_text("a,b")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = two_stage.predict(tmp_path)
    assert len(out) == 5 and (out["error"] == "").all()
    messages = [str(w.message) for w in caught if "not images" in str(w.message)]
    assert len(messages) == 1 and "2 file(s)" in messages[0] and ".txt" in messages[0]


def test_columns_are_the_same_when_nothing_is_readable(two_stage, bundle, tmp_path, capsys):
    out = two_stage.predict([tmp_path / "missing.jpg"])
    assert list(out.columns) == ["image", "male_probability", "label", *STAGE_ONE_ATTRIBUTES, "error"]
    assert two_stage.explain([tmp_path / "missing.jpg"]).contributions.shape == (1, 40)
    assert cli_main(["predict", str(bundle), str(tmp_path / "missing.jpg"), "--explain", "--quiet"]) == 3
    assert "none of the 1 inputs" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# runs that cannot collide
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return make_synthetic_celeba(tmp_path_factory.mktemp("rob") / "celeba", n=160, seed=0, image_size=40)


TINY = [
    "backbone=test_efficientnet",
    "weights=none",
    "image_size=32",
    "epochs=1",
    "max_steps=2",
    "num_workers=0",
    "progress=false",
    "batch_size=16",
    "max_train_images=48",
    "max_eval_images=16",
]


def test_two_concurrent_runs_get_their_own_folders_and_runs(synth_root, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "MPLBACKEND": "Agg"}
    env.pop("PYTHONWARNINGS", None)
    # The store exists before the two start, as after any first run in a folder.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from attr2gender.tracking.mlflow_tracking import MlflowTracker; MlflowTracker()",
        ],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    cmd = [
        sys.executable,
        str(REPO / "pipelines" / "run_direct.py"),
        "--data-root",
        str(synth_root),
        "--latency",
        "1:1",
        "--latency-repeats",
        "1",
        *TINY,
    ]
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("attr2gender").experiment_id])
    assert len(runs) == 2 and {r.data.params["run_name"] for r in runs} == {f.name for f in folders}


def test_an_existing_run_folder_is_not_reused_without_resume(synth_root, tmp_path):
    config = load_preset(
        None,
        [
            f"data_root={synth_root}",
            f"output_dir={tmp_path}",
            "run_name=same",
            "task=direct",
            "tracking=none",
            *TINY,
        ],
    )[0][1]
    train(config)
    with pytest.raises(ConfigError, match="exists already; pass resume=true"):
        train(config)


def test_a_killed_run_is_marked_killed_on_the_next_start(tmp_path, monkeypatch):
    import mlflow

    from attr2gender.tracking.mlflow_tracking import TAG_HOST, TAG_PID, TAG_PID_STARTED, MlflowTracker

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    tracker = MlflowTracker(announce=lambda m: None)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    run = tracker.client.create_run(
        tracker.experiment_id,
        tags={TAG_PID: str(dead.pid), TAG_PID_STARTED: "1.0", TAG_HOST: socket.gethostname()},
    )
    alive = tracker.client.create_run(tracker.experiment_id, tags={TAG_HOST: "another-machine", TAG_PID: "1"})
    said = []
    again = MlflowTracker(announce=said.append)
    assert again.ended_stale == [run.info.run_id]
    assert mlflow.MlflowClient().get_run(run.info.run_id).info.status == "KILLED"
    assert mlflow.MlflowClient().get_run(alive.info.run_id).info.status == "RUNNING"  # not ours to judge
    assert len(said) == 1 and "KILLED" in said[0]


# --------------------------------------------------------------------------------------------------
# every bad value fails before any work, with exit status 2 and one error line
# --------------------------------------------------------------------------------------------------


def _run(main, argv, cwd: Path, monkeypatch) -> tuple[int, str]:
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue()


def _nothing_made(folder: Path) -> bool:
    return not any((folder / name).exists() for name in ("mlflow.db", "runs", "data"))


@pytest.mark.parametrize(
    "yaml_text,needle",
    [
        ("epochs: 2.5", "epochs must be an integer"),
        ("batch_size: true", "batch_size must be an integer"),
        ("epochs: [1]", "epochs must be an integer"),
        ("backbone: 123", "backbone must be a string"),
        ("lr: .inf", "lr must be a positive finite number"),
        ("dropout: 5", "dropout is a probability"),
        ("split_fractions: [-0.1, 0.6, 0.5]", "split_fractions must be three non-negative"),
        ("max_steps: -7", "max_steps must be -1"),
        ("devices: abc", "devices must be a positive integer"),
        ("run_name: ../../escape", "run_name '../../escape' must be a plain folder name"),
        ("seed: !!python/object/apply:os.system ['touch pwned']", "is not plain YAML"),
    ],
)
def test_bad_preset_values_exit_2_before_any_work(yaml_text, needle, synth_root, tmp_path, monkeypatch):
    preset = tmp_path / "bad.yaml"
    preset.write_text("task: direct\n" + yaml_text + "\n")
    rc, err = _run(
        main_direct, ["--config", str(preset), "--data-root", str(synth_root)], tmp_path, monkeypatch
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and lines[0].startswith("error:") and needle in lines[0], err
    assert len([line for line in lines if line.startswith("error:")]) == 1
    assert _nothing_made(tmp_path) and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "override,needle",
    [
        ("lr=.inf", "lr must be a positive finite number"),
        ("run_name=../../escape", "must be a plain folder name"),
        ("devices=abc", "devices must be"),
    ],
)
def test_bad_overrides_exit_2(override, needle, synth_root, tmp_path, monkeypatch):
    for main in (main_direct, main_compare):
        rc, err = _run(main, ["--data-root", str(synth_root), override], tmp_path, monkeypatch)
        assert rc == 2 and err.startswith("error:") and needle in err, err
    assert _nothing_made(tmp_path)


def test_a_training_split_with_one_class_exits_2(tmp_path, monkeypatch):
    root, _ = write_fake_celeba(tmp_path / "one", n=12)
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    male = ATTRIBUTE_NAMES.index("Male") + 1
    fixed = lines[:2] + [
        " ".join(p if i != male else " 1" for i, p in enumerate(line.split())) for line in lines[2:]
    ]
    (root / "list_attr_celeba.txt").write_text("\n".join(fixed) + "\n")
    rc, err = _run(
        main_direct,
        ["--data-root", str(root), "split=official", "tracking=none", *TINY],
        tmp_path,
        monkeypatch,
    )
    assert rc == 2 and "holds only Male images" in err and "both classes" in err


def test_resume_without_a_checkpoint_exits_2(synth_root, tmp_path, monkeypatch):
    rc, err = _run(
        main_direct,
        ["--data-root", str(synth_root), "resume=true", "run_name=nothing", "tracking=none", *TINY],
        tmp_path,
        monkeypatch,
    )
    assert rc == 2 and err.startswith("error: resume=true but") and "last.ckpt does not exist" in err


def test_predict_options_fail_before_loading(bundle, faces, tmp_path, monkeypatch):
    import attr2gender.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "load_pipeline", lambda *a, **k: pytest.fail("loaded the bundle"))
    image = str(sorted(faces.glob("*.jpg"))[0])
    rc, err = _run(
        cli_main,
        ["predict", str(bundle), image, "--out", str(tmp_path / "no" / "x.csv")],
        tmp_path,
        monkeypatch,
    )
    assert rc == 2 and "does not exist; create it first" in err
    if not torch.cuda.is_available():
        rc, err = _run(cli_main, ["predict", str(bundle), image, "--device", "cuda"], tmp_path, monkeypatch)
        assert rc == 2 and "no CUDA device" in err
    with pytest.raises(SystemExit) as exit_info:
        _run(cli_main, ["predict", str(bundle), image, "--batch-size", "0"], tmp_path, monkeypatch)
    assert exit_info.value.code == 2


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_predict_refuses_a_read_only_output_folder(bundle, faces, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    rc, err = _run(
        cli_main, ["predict", str(bundle), str(faces), "--out", str(locked / "x.csv")], tmp_path, monkeypatch
    )
    assert rc == 2 and "not writable" in err


# --------------------------------------------------------------------------------------------------
# messages
# --------------------------------------------------------------------------------------------------


def test_a_duplicated_attribute_header_is_named(fake_celeba):
    path = fake_celeba / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    names = lines[1].split()
    names[names.index("Smiling")] = "Young"
    path.write_text("\n".join([lines[0], " ".join(names), *lines[2:]]) + "\n")
    with pytest.raises(CelebAFormatError, match="duplicate attribute name Young"):
        load_celeba(fake_celeba)


def test_undecodable_bytes_name_no_object_address():
    with pytest.raises(ImageLoadError) as info:
        load_image(b"definitely not an image")
    assert not re.search(r"0x[0-9a-f]{6,}", str(info.value)) and "BytesIO" not in str(info.value)


def test_config_error_lists_choices_for_new_keys():
    with pytest.raises(ConfigError, match="'none', 'male', 'groups'"):
        RunConfig(balance="everyone").validate()
    assert json.dumps(RunConfig().validate().to_dict())  # the resolved config stays plain data
