"""adapt(): a user's labelled photos refit the head, never silently for the worse; the bundle says so."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from attr2gender.data.attributes import STAGE_ONE_ATTRIBUTES
from attr2gender.data.labelled_faces import parse_male_label
from attr2gender.errors import ConfigError
from attr2gender.pipeline import Attr2GenderPipeline, DirectGenderClassifier, load_pipeline
from attr2gender.pipeline import adapt as adapt_module
from attr2gender.pipeline.adapt import read_labels_csv
from attr2gender.tabular import StageTwoClassifier
from attr2gender.training import AttributeModel, DirectModel

ATTRS = list(STAGE_ONE_ATTRIBUTES)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """60 photos: bright ones are 'Male', dark ones 'Female' (a rule a head can learn)."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(60):
        male = i % 2
        base = 200 if male else 40
        pixels = np.clip(base + rng.normal(0, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
        paths.append(folder / f"p{i:02d}.png")
        Image.fromarray(pixels).save(paths[-1])
        labels.append(male)
    return paths, np.array(labels)


def _two_stage():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X = rng.random((200, 39))
    stage_two = StageTwoClassifier().fit(pd.DataFrame(X, columns=ATTRS), (X[:, 0] > 0.5).astype(int))
    return Attr2GenderPipeline(
        AttributeModel(backbone="test_efficientnet", weights="none"),
        stage_two,
        32,
        num_workers=0,
        align="none",
        runtime="torch",
    )


def _direct():
    torch.manual_seed(0)
    return DirectGenderClassifier(
        DirectModel(backbone="test_efficientnet", weights="none"),
        32,
        num_workers=0,
        align="none",
        runtime="torch",
    )


@pytest.mark.parametrize(
    "value, expected", [(1, 1), ("0", 0), ("Male", 1), ("female", 0), (1.0, 1), (" M ", 1)]
)
def test_labels_read_as_a_person_writes_them(value, expected):
    assert parse_male_label(value) == expected


@pytest.mark.parametrize("value", ["maybe", 2, "", True, None])
def test_other_labels_are_refused_naming_the_choices(value):
    with pytest.raises(ValueError, match="1/0 or Male/Female"):
        parse_male_label(value)


@pytest.mark.parametrize("make", [_two_stage, _direct], ids=["two_stage", "direct"])
def test_adapt_returns_a_new_pipeline_and_leaves_the_original_alone(photos, make, tmp_path):
    paths, labels = photos
    pipe = make()
    before = pipe.predict(paths, progress=False)["male_probability"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapted = pipe.adapt(paths, labels, prior="none", C=10.0, progress=False)
    assert adapted is not pipe
    assert np.array_equal(pipe.predict(paths, progress=False)["male_probability"].to_numpy(), before)
    record = adapted.adapted
    assert (record.n_photos, record.n_holdout) == (48, 12) and len(record.photos_sha256) == 64
    after = adapted.predict(paths, progress=False)["male_probability"].to_numpy()
    assert ((after >= 0.5) == labels).mean() >= 0.95  # it learnt the rule from 48 photos
    assert adapted.metrics["adapt_holdout_accuracy_after"] == record.accuracy_after
    # It says what it is: adapted, on how many photos, the held-out numbers; the original's test numbers
    # (about the old head) only as original_*.
    assert "adapted on 48 of your photos" in repr(adapted) and "(n=12)" in repr(adapted)
    assert not set(pipe.metrics) & set(adapted.metrics)
    assert all(f"original_{k}" in adapted.metrics for k in pipe.metrics)
    loaded = load_pipeline(adapted.save(tmp_path / "adapted", onnx=False), align="none")
    assert loaded.adapted == record and "adapted on 48" in repr(loaded)
    assert np.allclose(loaded.predict(paths, progress=False)["male_probability"], after, atol=1e-6)


def test_a_worse_head_is_never_kept_silently(photos, monkeypatch):
    paths, labels = photos
    _, held = adapt_module._holdout_split(labels, 0.2, 0)
    truth = labels[held].astype(float)
    # The original is right on every held-out photo and the refitted head wrong on every one.
    monkeypatch.setattr(
        adapt_module, "head_probability", lambda pipeline, head, X: truth if head is None else 1 - truth
    )
    with pytest.warns(UserWarning, match="adapting lowered accuracy on the 12 held-out photos: 1.000 before"):
        adapted = _two_stage().adapt(paths, labels, C=1.0, progress=False)
    assert (adapted.adapted.accuracy_before, adapted.adapted.accuracy_after) == (1.0, 0.0)


def test_the_penalty_is_chosen_on_the_photos_by_default(photos):
    paths, labels = photos
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapted = _direct().adapt(paths, labels, progress=False)
    assert adapted.adapted.C in adapt_module.AUTO_C


@pytest.mark.parametrize(
    "labels, match",
    [
        ([1] * 55 + [0] * 5, "at least 10 photos of each class; got 5 Female"),
        ([1, 0] * 29, "60 images but 58 labels"),
        ([1, 0] * 29 + ["yes", 0], r"labels\[58\].*'yes' is not 1/0 or Male/Female"),
    ],
)
def test_bad_labels_are_named_before_any_photo_is_read(photos, labels, match, monkeypatch):
    paths, _ = photos
    pipe = _two_stage()
    monkeypatch.setattr(adapt_module, "head_inputs", lambda *a, **k: pytest.fail("read photos first"))
    with pytest.raises(ConfigError, match=match):
        pipe.adapt(paths, labels, progress=False)


def test_a_labels_csv_keeps_its_good_rows_and_names_the_bad_ones(photos, tmp_path):
    paths, labels = photos
    rows = [(paths[0].name, "Male"), (paths[1].name, "0"), ("missing.png", "1"), (paths[2].name, "maybe")]
    rows.append((paths[0].name, "1"))  # the same photo twice
    csv = paths[0].parent / "labels.csv"
    pd.DataFrame(rows, columns=["path", "male"]).to_csv(csv, index=False)
    found, values, problems = read_labels_csv(csv)
    assert found == [paths[0], paths[1]] and values == [1, 0]
    assert any("row 4 (missing.png): no such file" in p for p in problems)
    assert any("row 5" in p and "'maybe'" in p for p in problems)
    assert any("row 6" in p and "same photo as row 2" in p for p in problems)
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\na.png,1\n")
    with pytest.raises(ConfigError, match="no path or male column"):
        read_labels_csv(bad)


def test_the_command_adapts_a_bundle_and_says_how_many_rows_it_used(photos, tmp_path):
    paths, labels = photos
    bundle = _two_stage().save(tmp_path / "bundle", onnx=False)
    csv = tmp_path / "labels.csv"
    frame = pd.DataFrame({"path": [str(p) for p in paths], "male": np.where(labels == 1, "Male", "Female")})
    pd.concat([frame, pd.DataFrame({"path": ["nope.png"], "male": ["1"]})]).to_csv(csv, index=False)
    cmd = [
        sys.executable,
        "-m",
        "attr2gender",
        "adapt",
        str(bundle),
        str(csv),
        str(tmp_path / "out"),
        "--align",
        "none",
    ]
    proc = subprocess.run([*cmd, "--quiet"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "used 60 of 61 rows (1 skipped)" in proc.stdout and "skipped row 62 (nope.png)" in proc.stderr
    said = proc.stdout.count("adapted on") + proc.stdout.count("kept the head unchanged")
    assert said == 1, proc.stdout  # the summary once, not twice
    assert load_pipeline(tmp_path / "out").adapted.n_photos == 48
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1].startswith("error: OUT_BUNDLE")
    assert Path(tmp_path / "out" / "pipeline.json").is_file()  # the first one is untouched


def test_a_hostile_labels_csv_costs_one_row_each(photos, tmp_path):
    """Issue 33's rows: a NUL byte, a name too long, a path that is not UTF-8 and the same photo under
    another name (a link) are each one skipped row; "1.0"/"0.0" read as the API reads 1.0 and 0.0."""
    paths, _ = photos
    folder = paths[0].parent
    link = tmp_path / "alias.jpg"
    link.symlink_to(paths[1])
    raw = b"path,male\n" + b"\n".join(
        [
            str(paths[0]).encode() + b",1.0",
            str(paths[1]).encode() + b",0.0",
            b"bad\x00name.jpg,1",
            b"/" + b"x" * 300 + b".jpg,1",
            str(folder).encode() + b"/caf\xe9.jpg,1",  # not UTF-8, and no such file
            str(link).encode() + b",0",  # paths[1] again, under another name
        ]
    )
    csv = tmp_path / "hostile.csv"
    csv.write_bytes(raw + b"\n")
    found, values, problems = read_labels_csv(csv)
    assert found == [paths[0], paths[1]] and values == [1, 0]
    assert len(problems) == 4, problems
    assert "cannot be a file here" in problems[0] and "cannot be a file here" in problems[1]
    assert "no such file" in problems[2] and "same photo as row 3" in problems[3]


def test_the_api_refuses_one_photo_given_twice(photos):
    """Held out and fitted on at once, a photo makes the held-out accuracy 1.000: refused, naming both."""
    paths, labels = photos
    with pytest.raises(ConfigError, match=r"images\[\d+\] is the same photo as images\[0\]"):
        _two_stage().adapt([paths[0], *paths[1:], Path(str(paths[0]))], [*labels, labels[0]], progress=False)
