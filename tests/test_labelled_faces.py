"""The second training source: a folder of gender-labelled faces (labels.csv or UTKFace's own names), read
row by row with one line per row left out, split by group, weighted against CelebA, and found by
``labelled_faces=auto`` beside the CelebA root."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attr2gender.config import build_config
from attr2gender.data.groups import AGE_BAND_LABELS, age_bands, cell_masks, source_weights
from attr2gender.data.labelled_faces import (
    NO_LICENCE,
    UTKFACE_LICENCE,
    find_labelled_faces,
    load_labelled_faces,
    split_labelled_faces,
)
from attr2gender.errors import ConfigError, LabelledFacesError

SHARED_UTKFACE = Path(__file__).resolve().parents[1].parent / "shared" / "utkface"


def _photo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), (120, 90, 80)).save(path)
    return path


def _folder(tmp_path: Path, lines: list[str], photos=("a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg")) -> Path:
    root = tmp_path / "faces"
    for name in photos:
        _photo(root / "photos" / name)
    (root / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_labels_csv_reads_good_rows_and_gives_each_bad_row_one_line(tmp_path):
    root = _folder(
        tmp_path,
        [
            "path,male,age,race,group",
            "photos/a.jpg,1,34,White,p1",
            "photos/b.jpg,Female,71,,p2",
            "photos/c.jpg,0,,Asian,p2",
            "photos/missing.jpg,1,20,,p3",  # no such file
            "photos/d.jpg,2,20,,p4",  # not a label
            "photos/e.jpg,1,forty,,p5",  # not an age
            "photos/a.jpg,0,30,,p6",  # given twice
            "../outside.jpg,1,30,,p7",  # outside the folder
            "/abs/photo.jpg,1,30,,p8",  # absolute
        ],
    )
    with pytest.warns(UserWarning, match="6 of 9 photos left out") as caught:
        faces = load_labelled_faces(root)
    assert len(caught) == 1  # one warning, a line per row inside it
    assert list(faces.table.index) == ["photos/a.jpg", "photos/b.jpg", "photos/c.jpg"]
    assert faces.male(faces.table.index).tolist() == [1, 0, 0]
    assert np.isnan(faces.age(["photos/c.jpg"])[0]) and faces.age(["photos/b.jpg"])[0] == 71
    assert faces.table.loc["photos/b.jpg", "group"] == faces.table.loc["photos/c.jpg", "group"] == "p2"
    assert len(faces.problems) == 6
    for needle, line in zip(
        ["no such image", "not 1/0 or Male/Female", "not a number of years", "the same photo as line 2",
         "points outside", "relative"],
        faces.problems,
    ):  # fmt: skip
        assert needle in line
    assert faces.licence == NO_LICENCE and faces.layout == "labels.csv" and faces.has_groups


def test_utkface_names_are_read_as_utkface_ships_them(tmp_path):
    root = tmp_path / "UTKFace"
    for name in ("25_1_2_20170116174525125.jpg.chip.jpg", "71_0_0_20170111204720785.jpg", "notes.png"):
        _photo(root / name)
    with pytest.warns(UserWarning, match="not a UTKFace name"):
        faces = load_labelled_faces(root)
    woman = faces.table.loc["25_1_2_20170116174525125.jpg.chip.jpg"]
    assert (woman["male"], woman["age"], woman["race"]) == (0, 25.0, "Asian")  # gender 1 is female
    assert faces.table.loc["71_0_0_20170111204720785.jpg", "male"] == 1
    assert faces.name == "utkface" and faces.licence == UTKFACE_LICENCE
    assert not faces.has_groups  # every photo its own group


def test_a_licence_file_travels_with_the_photos(tmp_path):
    root = _folder(tmp_path, ["path,male", "photos/a.jpg,1", "photos/b.jpg,0"])
    (root / "LICENSE").write_text("\nCC BY 4.0, photos by the project's volunteers\n")
    faces = load_labelled_faces(root)
    assert faces.licence == "CC BY 4.0, photos by the project's volunteers"
    assert faces.record({"train": 2})["licence"] == faces.licence


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.mkdir(), "no labels.csv and no images"),
        (
            lambda root: (root.mkdir(), (root / "labels.csv").write_text("file,gender\na.jpg,1\n")),
            "no path or male",
        ),
        (
            lambda root: (root.mkdir(), (root / "labels.csv").write_bytes(b"path,male\n\xff\xfe,1\n")),
            "not UTF-8",
        ),
        (lambda root: (root.mkdir(), (root / "labels.csv").write_text("path,male\nx.jpg,1\n")), "no usable"),
    ],
    ids=["no folder", "empty folder", "wrong columns", "not UTF-8", "no usable row"],
)
def test_a_folder_that_cannot_serve_names_the_fix(tmp_path, setup, match):
    root = tmp_path / "faces"
    setup(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(LabelledFacesError, match=match):
            load_labelled_faces(root)


def _many(tmp_path: Path, n: int = 400, seed: int = 0) -> Path:
    """A labels.csv of ``n`` photos of n // 2 people (two each), every age and both genders."""
    rng = np.random.default_rng(seed)
    root = tmp_path / "many"
    _photo(root / "x.jpg")
    rows = ["path,male,age,group"]
    for k in range(n):
        person = k // 2
        (root / f"{k}.jpg").symlink_to(root / "x.jpg")  # a symlinked photo reads like any other
        rows.append(f"{k}.jpg,{person % 2},{5 + (person * 7) % 80 + rng.integers(0, 2)},person{person}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_the_split_keeps_each_person_on_one_side_and_every_cell_on_each(tmp_path):
    faces = load_labelled_faces(_many(tmp_path))
    splits = split_labelled_faces(faces, [0.6, 0.2, 0.2], seed=0)
    sides = {name: set(faces.table.loc[ids, "group"]) for name, ids in splits.as_dict().items()}
    assert not (
        sides["train"] & sides["val"] or sides["train"] & sides["test"] or sides["val"] & sides["test"]
    )
    assert sum(splits.sizes().values()) == len(faces.table)
    assert splits.sizes()["train"] == pytest.approx(240, abs=24)
    for name, ids in splits.as_dict().items():
        cells = set(zip(faces.male(ids), age_bands(faces.age(ids))))
        assert len(cells) >= 14, name  # both genders in (nearly) every band on every side
    again = split_labelled_faces(faces, [0.6, 0.2, 0.2], seed=0)
    other = split_labelled_faces(faces, [0.6, 0.2, 0.2], seed=1)
    assert again == splits and other.val != splits.val


def test_source_weights_give_each_source_and_each_cell_its_share():
    sources = np.array(["celeba"] * 6 + ["utk"] * 6, dtype=object)
    male = np.array([0, 1, 0, 1, 0, 1] + [0, 0, 0, 0, 1, 1])
    bands = np.array([""] * 6 + ["20-29", "20-29", "20-29", "70+", "70+", "20-29"], dtype=object)
    cells = source_weights(sources, male, bands, "cells")
    assert cells.mean() == pytest.approx(1.0)
    assert cells[:6].sum() == pytest.approx(cells[6:].sum())  # each source half
    # utk's four cells (female 20-29 x3, female 70+, male 70+, male 20-29) weigh the same in all
    assert cells[6:9].sum() == pytest.approx(cells[9]) == pytest.approx(cells[10]) == pytest.approx(cells[11])
    assert np.allclose(source_weights(sources, male, bands, "rows"), 1.0)
    halves = source_weights(sources[:9], male[:9], bands[:9], "sources")
    assert halves[:6].sum() == pytest.approx(halves[6:].sum())


def test_age_bands_and_cells():
    assert age_bands([0, 9.5, 10, 69, 70, 101, np.nan]).tolist() == [
        "0-9",
        "0-9",
        "10-19",
        "60-69",
        "70+",
        "70+",
        "",
    ]
    masks = cell_masks([0, 1, 1], {"age_band": np.array(["70+", "0-9", ""], dtype=object)})
    assert list(masks["age_band"]) == ["0-9", "70+"]  # youngest first, unknown in no cell
    assert len(AGE_BAND_LABELS) == 8


def test_auto_finds_the_folder_beside_the_celeba_root_or_says_in_one_line_it_did_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shared" / "celeba").mkdir(parents=True)
    folder, note = find_labelled_faces("auto", tmp_path / "shared" / "celeba")
    assert folder is None and "CelebA alone" in note and "\n" not in note
    (tmp_path / "shared" / "utkface").mkdir()
    folder, note = find_labelled_faces("auto", tmp_path / "shared" / "celeba")
    assert folder == (tmp_path / "shared" / "utkface").resolve() and note == ""
    assert find_labelled_faces("", tmp_path) == (None, "")
    with pytest.raises(LabelledFacesError, match="no such folder"):
        find_labelled_faces(str(tmp_path / "typo"), tmp_path)


@pytest.mark.parametrize(
    "values, match",
    [
        ({"male_sources": "utk"}, "male_sources"),
        ({"source_weighting": "age"}, "source_weighting"),
        ({"male_sources": "labelled_faces"}, "labelled_faces is empty"),
        ({"labelled_faces_split": [1.0, 0.0, 0.0]}, "validation share"),
        ({"labelled_faces_split": [0.5, 0.5]}, "labelled_faces_split"),
    ],
)
def test_config_keys_are_checked_before_any_photo_is_read(values, match):
    with pytest.raises(ConfigError, match=match):
        build_config(values, "test")


@pytest.mark.skipif(not (SHARED_UTKFACE / "labels.csv").is_file(), reason="../shared/utkface is absent")
def test_the_shared_utkface_reads_whole_and_splits_by_group():
    faces = load_labelled_faces(SHARED_UTKFACE)
    assert len(faces.table) > 11_000 and not faces.problems
    assert faces.name == "utkface" and "non-commercial" in faces.licence
    splits = split_labelled_faces(faces, [0.6, 0.2, 0.2], seed=0)
    val = faces.table.loc[splits.val]
    assert not set(val["group"]) & set(faces.table.loc[splits.train, "group"])
    women_over_70 = ((val["male"] == 0) & (val["age"] >= 70)).sum()
    assert 60 <= women_over_70 <= 90  # about a fifth of UTKFace's 375
    assert pd.Series(faces.race(splits.val)).isin(["White", "Black", "Asian", "Indian", "Others"]).all()


def test_data_summary_reads_a_labelled_folder(tmp_path, capsys):
    from attr2gender.cli import main

    root = _folder(tmp_path, ["path,male,age,race", "photos/a.jpg,1,72,Black", "photos/b.jpg,0,25,"])
    assert main(["data", "summary", str(root)]) == 0
    out = capsys.readouterr().out
    assert "2 (1 male, 1 female)" in out and "not stated" in out
    assert "70+" in out and "Black" in out and "unknown" in out
