"""CelebA reader, splits, balancing, images and dataset: fake files in a tmpdir, and the real sample."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from attr2gender.cli import main as cli_main
from attr2gender.data import (
    ATTRIBUTE_NAMES,
    STAGE_ONE_ATTRIBUTES,
    TARGET,
    CelebADataset,
    CelebAFormatError,
    CelebANotFoundError,
    ImageLoadError,
    balance_by_target,
    build_transforms,
    collate_skipping_corrupt,
    load_celeba,
    load_image,
    make_splits,
    read_attributes,
)
from conftest import write_fake_celeba

# --- reader ---------------------------------------------------------------------------------------


def test_reads_attributes_as_int8_frame_in_file_order(fake_celeba):
    frame = read_attributes(fake_celeba / "list_attr_celeba.txt")
    assert list(frame.columns) == list(ATTRIBUTE_NAMES)
    assert frame.index.name == "image_id" and frame.index[0] == "000001.jpg"
    assert set(frame.dtypes) == {np.dtype("int8")}
    assert set(np.unique(frame.to_numpy())) <= {0, 1}
    assert len(STAGE_ONE_ATTRIBUTES) == 39 and TARGET not in STAGE_ONE_ATTRIBUTES


def test_values_match_the_file(tmp_path):
    root, attrs = write_fake_celeba(tmp_path / "c", n=6)
    frame = read_attributes(root / "list_attr_celeba.txt")
    np.testing.assert_array_equal(frame.to_numpy(), attrs)


def test_partial_copy_uses_present_images_and_warns_once(tmp_path):
    root, _ = write_fake_celeba(tmp_path / "c", n=10, present=[0, 2, 4])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        celeba = load_celeba(root)
    msgs = [str(w.message) for w in caught if "not in" in str(w.message)]
    assert len(msgs) == 1 and "7 of 10" in msgs[0]
    assert list(celeba.present) == ["000001.jpg", "000003.jpg", "000005.jpg"]
    assert list(celeba.table.columns[-2:]) == ["partition", "identity"]


def test_missing_root_names_path_and_layout(tmp_path):
    with pytest.raises(CelebANotFoundError) as err:
        load_celeba(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value) and "list_attr_celeba.txt" in str(err.value)
    assert "attr2gender data synth" in str(err.value)


def test_missing_attribute_file_named(fake_celeba):
    (fake_celeba / "list_attr_celeba.txt").unlink()
    with pytest.raises(CelebANotFoundError, match="list_attr_celeba.txt"):
        load_celeba(fake_celeba)


def test_missing_image_folder_named(fake_celeba):
    import shutil

    shutil.rmtree(fake_celeba / "img_align_celeba")
    with pytest.raises(CelebANotFoundError, match="img_align_celeba"):
        load_celeba(fake_celeba)


def _rewrite_line(path, line_no, new_text):
    lines = path.read_text().splitlines()
    lines[line_no - 1] = new_text
    path.write_text("\n".join(lines) + "\n")


def test_wrong_column_count_names_file_and_line(fake_celeba):
    path = fake_celeba / "list_attr_celeba.txt"
    row = path.read_text().splitlines()[5]
    _rewrite_line(path, 6, row + "  1")
    with pytest.raises(CelebAFormatError) as err:
        read_attributes(path)
    assert err.value.line == 6 and "list_attr_celeba.txt" in str(err.value)


def test_short_row_names_line(fake_celeba):
    path = fake_celeba / "list_attr_celeba.txt"
    row = path.read_text().splitlines()[4]
    _rewrite_line(path, 5, row.rsplit(" ", 2)[0])
    with pytest.raises(CelebAFormatError) as err:
        read_attributes(path)
    assert err.value.line == 5


def test_value_other_than_minus_one_or_one(fake_celeba):
    path = fake_celeba / "list_attr_celeba.txt"
    row = path.read_text().splitlines()[6].split()
    row[3] = "0"
    _rewrite_line(path, 7, " ".join(row))
    with pytest.raises(CelebAFormatError) as err:
        read_attributes(path)
    assert err.value.line == 7 and "'0'" in str(err.value)


def test_non_numeric_value(fake_celeba):
    path = fake_celeba / "list_attr_celeba.txt"
    row = path.read_text().splitlines()[3].split()
    row[10] = "yes"
    _rewrite_line(path, 4, " ".join(row))
    with pytest.raises(CelebAFormatError) as err:
        read_attributes(path)
    assert err.value.line == 4 and "yes" in str(err.value)


def test_duplicate_ids(fake_celeba):
    path = fake_celeba / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[8] = lines[3].split(" ", 1)[0] + " " + lines[8].split(" ", 1)[1]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CelebAFormatError) as err:
        read_attributes(path)
    assert err.value.line == 9 and "duplicate" in str(err.value)


def test_count_line_disagrees(fake_celeba):
    path = fake_celeba / "list_attr_celeba.txt"
    _rewrite_line(path, 1, "99")
    with pytest.raises(CelebAFormatError, match="count line says 99") as err:
        read_attributes(path)
    assert err.value.line == 1


def test_bad_header(fake_celeba):
    path = fake_celeba / "list_attr_celeba.txt"
    _rewrite_line(path, 2, " ".join(ATTRIBUTE_NAMES[:-1] + ("Old",)))
    with pytest.raises(CelebAFormatError, match="Old") as err:
        read_attributes(path)
    assert err.value.line == 2


def test_bad_partition_value(fake_celeba):
    path = fake_celeba / "list_eval_partition.txt"
    _rewrite_line(path, 3, "000003.jpg 7")
    with pytest.raises(CelebAFormatError) as err:
        load_celeba(fake_celeba)
    assert err.value.line == 3 and "list_eval_partition.txt" in str(err.value)


def test_export_target_table(fake_celeba, tmp_path):
    out = tmp_path / "out" / "output_list_attrib.csv"
    assert cli_main(["data", "export-target", str(fake_celeba), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["id", "Male"]
    assert len(table) == 12 and table["Male"].sum() == 6


def test_summary_cli(fake_celeba, capsys):
    (fake_celeba / "img_align_celeba" / "000004.jpg").write_bytes(b"not a jpeg")
    assert cli_main(["data", "summary", str(fake_celeba), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "images found:     12" in out and "Male rate:        0.5000" in out
    assert "identities:       6" in out
    assert "unreadable:       1 of 12" in out and "000004.jpg" in out


def test_cli_reports_missing_root_cleanly(tmp_path, capsys):
    assert cli_main(["data", "summary", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --- splits ---------------------------------------------------------------------------------------


def test_official_partition_when_usable(fake_celeba):
    splits = make_splits(load_celeba(fake_celeba))
    assert splits.strategy == "official"
    assert splits.train == ["000001.jpg", "000004.jpg", "000007.jpg", "000010.jpg"]


def test_identity_split_when_one_partition(tmp_path):
    n = 120
    root, _ = write_fake_celeba(
        tmp_path / "c", n=n, partitions=[2] * n, identities=[i // 3 + 1 for i in range(n)], size=(8, 8)
    )
    celeba = load_celeba(root)
    splits = make_splits(celeba, fractions=(0.8, 0.1, 0.1), seed=3)
    assert splits.strategy == "identity"
    ident = celeba.identity
    groups = [set(ident[s]) for s in (splits.train, splits.val, splits.test)]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert sum(splits.sizes().values()) == n
    assert 84 <= len(splits.train) <= 108 and len(splits.val) >= 6 and len(splits.test) >= 6
    assert make_splits(celeba, seed=3) == splits  # seeded
    assert make_splits(celeba, seed=4).train != splits.train


def test_official_split_refused_when_it_cannot_serve(tmp_path):
    root, _ = write_fake_celeba(tmp_path / "c", n=6, partitions=[2] * 6, size=(8, 8))
    with pytest.raises(ValueError, match="split=identity"):
        make_splits(load_celeba(root), strategy="official")


def test_balance_equal_counts_seeded():
    ids = [f"{i:06d}.jpg" for i in range(100)]
    male = np.array([1] * 30 + [0] * 70)
    kept = balance_by_target(ids, male, seed=1)
    kept_male = male[[ids.index(k) for k in kept]]
    assert kept_male.sum() == 30 and (1 - kept_male).sum() == 30
    assert kept == balance_by_target(ids, male, seed=1)
    assert kept != balance_by_target(ids, male, seed=2)
    with pytest.raises(ValueError, match="one Male class"):
        balance_by_target(ids[:3], np.array([1, 1, 1]))


# --- images and dataset ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16", "LA", "1"])
def test_any_image_mode_becomes_rgb(mode, tmp_path):
    base = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    if mode == "I;16":
        im = Image.fromarray(np.arange(600, dtype=np.uint16).reshape(20, 30) * 100)
    else:
        im = base.convert(mode)
    out = load_image(im)
    assert out.mode == "RGB" and out.size == (30, 20)
    if mode == "I;16":  # 16-bit scaled to 8-bit, not clipped to white
        arr = np.asarray(out)
        assert arr.max() > 200 and arr.min() < 10


def test_arrays_and_tensors(tmp_path):
    arr = np.zeros((10, 12, 3), dtype=np.uint8)
    assert load_image(arr).size == (12, 10)
    assert load_image(torch.rand(3, 10, 12)).size == (12, 10)
    with pytest.raises(ImageLoadError, match="shape"):
        load_image(np.zeros((5, 5, 7), dtype=np.uint8))
    with pytest.raises(ImageLoadError, match="does not exist"):
        load_image(tmp_path / "x.jpg")


def test_dataset_items_and_transforms(fake_celeba):
    celeba = load_celeba(fake_celeba)
    ds = CelebADataset(celeba, celeba.present[:4], build_transforms(32, train=True))
    item = ds[1]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["attributes"].shape == (39,)
    assert item["male"].item() == float(celeba.attributes.loc["000002.jpg", "Male"])
    np.testing.assert_array_equal(
        item["attributes"].numpy(), celeba.attributes.loc["000002.jpg", list(STAGE_ONE_ATTRIBUTES)].to_numpy()
    )


def test_eval_transform_keeps_source_ratio():
    tf = build_transforms(112, train=False)
    assert tf.transforms[0].size == 128 and tf.transforms[1].size == (112, 112)
    assert build_transforms(224).transforms[0].size == 256


def test_corrupt_image_skipped_and_counted_not_fatal(fake_celeba):
    (fake_celeba / "img_align_celeba" / "000003.jpg").write_bytes(b"\xff\xd8garbage")
    celeba = load_celeba(fake_celeba)
    ds = CelebADataset(celeba, celeba.present, build_transforms(32))
    loader = DataLoader(ds, batch_size=4, collate_fn=collate_skipping_corrupt)
    with pytest.warns(UserWarning, match="000003.jpg"):
        batches = list(loader)
    assert sum(b["skipped"] for b in batches) == 1
    assert sum(len(b["image"]) for b in batches) == 11
    strict = CelebADataset(celeba, celeba.present, build_transforms(32), strict=True)
    with pytest.raises(ImageLoadError, match="000003.jpg"):
        strict[2]


# --- the real sample (skipped when absent) --------------------------------------------------------


def test_shared_celeba_sample(shared_celeba):
    with pytest.warns(UserWarning, match="not in"):
        celeba = load_celeba(shared_celeba)
    assert len(celeba.present) == 12072
    table = celeba.table
    assert table["partition"].eq(2).all()
    assert table[TARGET].mean() == pytest.approx(celeba.attributes.loc[celeba.present, TARGET].mean())
    assert 0.3 < table[TARGET].mean() < 0.45
    splits = make_splits(celeba, seed=0)
    assert splits.strategy == "identity"
    ident = [set(table.loc[s, "identity"]) for s in (splits.train, splits.val, splits.test)]
    assert not (ident[0] & ident[1] or ident[0] & ident[2] or ident[1] & ident[2])
    assert sum(splits.sizes().values()) == 12072
    assert abs(len(splits.train) / 12072 - 0.8) < 0.03
    image = load_image(celeba.image_path(celeba.present[0]))
    assert image.mode == "RGB" and 150 < image.size[0] < 260
