"""Tests for the synthetic CelebA generator. The files are parsed here, independently of any reader."""

from __future__ import annotations

import hashlib
import math
import pathlib

import numpy as np
import pytest
from PIL import Image

from attr2gender.data import synth
from attr2gender.data.attributes import (
    ATTRIBUTE_NAMES,
    CONDITIONAL_RATES,
    MALE_RATE,
    STAGE_ONE_ATTRIBUTES,
    TARGET,
)
from attr2gender.data.synth import IDENTITY_ATTRIBUTES, make_synthetic_celeba

BIG_N = 3000
BIG_SIZE = 32
IPI = 5  # images per identity (the default)


def _hash_tree(root: pathlib.Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read_attrs(root: pathlib.Path):
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    count = int(lines[0].strip())
    header = lines[1].split()
    names, values = [], []
    for line in lines[2:]:
        parts = line.split()
        names.append(parts[0])
        values.append([int(v) for v in parts[1:]])
    return count, header, names, np.array(values, dtype=int), lines


def _read_pairs(path: pathlib.Path) -> tuple[list[str], list[int]]:
    names, vals = [], []
    for line in path.read_text().splitlines():
        name, v = line.split()
        names.append(name)
        vals.append(int(v))
    return names, vals


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    root = make_synthetic_celeba(tmp_path_factory.mktemp("synth_big"), n=BIG_N, seed=123, image_size=BIG_SIZE)
    count, header, names, values, lines = _read_attrs(root)
    return {"root": root, "count": count, "header": header, "names": names, "values": values, "lines": lines}


# --------------------------------------------------------------------------------------------------
# determinism


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    kw = {"n": 60, "image_size": 32, "images_per_identity": 4}
    a = _hash_tree(make_synthetic_celeba(tmp_path / "a", seed=7, **kw))
    b = _hash_tree(make_synthetic_celeba(tmp_path / "b", seed=7, **kw))
    c = _hash_tree(make_synthetic_celeba(tmp_path / "c", seed=8, **kw))
    assert len(a) == 60 + 3 + 2  # images, three annotation files, README, the SYNTHETIC marker
    assert a == b
    assert a.keys() == c.keys()
    assert a["list_attr_celeba.txt"] != c["list_attr_celeba.txt"]
    differing_images = sum(a[k] != c[k] for k in a if k.startswith("img_align_celeba"))
    assert differing_images == 60


def test_returns_path_and_writes_readme(tmp_path):
    out = make_synthetic_celeba(str(tmp_path / "nested" / "dir"), n=7, seed=3, image_size=24)
    assert isinstance(out, pathlib.Path) and out == tmp_path / "nested" / "dir"
    readme = (out / "README.md").read_text()
    assert "synthetic" in readme.lower()
    assert "seed: 3" in readme and "images: 7" in readme and "24 x 24" in readme


# --------------------------------------------------------------------------------------------------
# layout


def test_layout(big):
    root, n = big["root"], BIG_N
    for item in (
        "img_align_celeba",
        "list_attr_celeba.txt",
        "list_eval_partition.txt",
        "identity_CelebA.txt",
    ):
        assert (root / item).exists(), item

    expected_names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    assert big["count"] == n
    assert big["header"] == list(ATTRIBUTE_NAMES)
    assert big["names"] == expected_names
    assert big["values"].shape == (n, 40)
    assert set(np.unique(big["values"])) <= {-1, 1}
    # Real CelebA formatting: each value right-aligned in width 2, single-space separated.
    for line, name, row in zip(big["lines"][2:5], big["names"], big["values"]):
        assert line == f"{name} " + " ".join(f"{v:2d}" for v in row)

    files = sorted(p.name for p in (root / "img_align_celeba").iterdir())
    assert files == expected_names
    for name in files:
        with Image.open(root / "img_align_celeba" / name) as im:
            assert im.format == "JPEG"
            assert im.size == (BIG_SIZE, BIG_SIZE)
            assert im.mode == "RGB"

    p_names, parts = _read_pairs(root / "list_eval_partition.txt")
    i_names, ids = _read_pairs(root / "identity_CelebA.txt")
    assert p_names == expected_names and i_names == expected_names
    assert set(parts) == {0, 1, 2}
    assert parts == sorted(parts)  # train, then val, then test, as in CelebA
    assert min(ids) == 1

    n_ids = math.ceil(n / IPI)
    assert sorted(set(ids)) == list(range(1, n_ids + 1))
    part_of: dict[int, set[int]] = {}
    for ident, part in zip(ids, parts):
        part_of.setdefault(ident, set()).add(part)
    assert all(len(s) == 1 for s in part_of.values()), "an identity spans two partitions"
    per_id = np.bincount(ids)[1:]
    assert per_id.max() == IPI and per_id.sum() == n
    id_parts = np.array([next(iter(part_of[i])) for i in range(1, n_ids + 1)])
    for p, frac in enumerate((0.8, 0.1, 0.1)):
        assert abs(np.mean(id_parts == p) - frac) < 0.01

    # Gender is an identity trait too.
    male = big["values"][:, ATTRIBUTE_NAMES.index(TARGET)]
    male_of: dict[int, set[int]] = {}
    for ident, m in zip(ids, male):
        male_of.setdefault(ident, set()).add(int(m))
    assert all(len(s) == 1 for s in male_of.values())


def test_partition_fractions_and_uneven_n(tmp_path):
    out = make_synthetic_celeba(
        tmp_path, n=53, seed=1, image_size=16, images_per_identity=3, partition_fractions=(0.5, 0.25, 0.25)
    )
    _, parts = _read_pairs(out / "list_eval_partition.txt")
    _, ids = _read_pairs(out / "identity_CelebA.txt")
    assert len(parts) == 53 and len(set(ids)) == 18  # ceil(53 / 3)
    id_part = {i: p for i, p in zip(ids, parts)}
    assert [sum(v == p for v in id_part.values()) for p in (0, 1, 2)] == [9, 4, 5]  # round(9), round(4.5)


# --------------------------------------------------------------------------------------------------
# rates


def _rate_failures(values: np.ndarray, table: dict[str, tuple[float, float]], k_sigma=4.5, slack=0.01):
    """Attributes whose empirical P(attr | gender) is outside k_sigma binomial sd (+ slack) of ``table``.

    Attributes drawn once per identity (hair colours) repeat over an identity's IPI images, so their
    sample counts as n / IPI independent draws: the variance is multiplied by the design effect IPI.
    """
    male = values[:, ATTRIBUTE_NAMES.index(TARGET)] == 1
    failures = []
    for name in STAGE_ONE_ATTRIBUTES:
        col = values[:, ATTRIBUTE_NAMES.index(name)] == 1
        deff = IPI if name in IDENTITY_ATTRIBUTES else 1
        for g, mask in ((0, ~male), (1, male)):
            p = table[name][g]
            n_g = int(mask.sum())
            emp = float(col[mask].mean())
            tol = k_sigma * math.sqrt(p * (1.0 - p) * deff / n_g) + slack
            if abs(emp - p) > tol:
                failures.append((name, g, round(emp, 4), p, round(tol, 4)))
    return failures


def test_male_rate(big):
    male = big["values"][:, ATTRIBUTE_NAMES.index(TARGET)] == 1
    n_ids = BIG_N / IPI  # gender is drawn per identity
    tol = 4.5 * math.sqrt(MALE_RATE * (1 - MALE_RATE) / n_ids) + 0.01
    assert abs(male.mean() - MALE_RATE) < tol


def test_conditional_rates_follow_the_real_table(big):
    assert _rate_failures(big["values"], CONDITIONAL_RATES) == []


def test_rate_check_can_fail(big):
    swapped = dict(CONDITIONAL_RATES)
    swapped["Wearing_Lipstick"] = CONDITIONAL_RATES["Wearing_Lipstick"][::-1]
    assert {f[0] for f in _rate_failures(big["values"], swapped)} == {"Wearing_Lipstick"}

    shifted = dict(CONDITIONAL_RATES)
    f_rate, m_rate = CONDITIONAL_RATES["Wearing_Lipstick"]
    shifted["Wearing_Lipstick"] = (f_rate + 0.1, m_rate)
    assert [f[:2] for f in _rate_failures(big["values"], shifted)] == [("Wearing_Lipstick", 0)]


# --------------------------------------------------------------------------------------------------
# the attributes are drawn


def _region_means(root: pathlib.Path, names, rows: slice, cols: slice) -> np.ndarray:
    out = []
    for name in names:
        with Image.open(root / "img_align_celeba" / name) as im:
            arr = np.asarray(im, dtype=float)
        out.append(arr[rows, cols].reshape(-1, 3).mean(axis=0))
    return np.array(out)


def test_lipstick_makes_the_mouth_redder(big):
    v, names = big["values"], np.array(big["names"])
    col = {n: v[:, i] == 1 for i, n in enumerate(ATTRIBUTE_NAMES)}
    women = ~col["Male"] & col["No_Beard"]
    with_ls = names[women & col["Wearing_Lipstick"]][:300]
    without = names[women & ~col["Wearing_Lipstick"]][:300]
    assert len(with_ls) >= 100 and len(without) >= 100
    # Mouth centre is at about (0.5, 0.61) of the image.
    s = BIG_SIZE
    box = (slice(int(0.57 * s), int(0.65 * s)), slice(int(0.42 * s), int(0.58 * s)))

    def redness(ns):
        m = _region_means(big["root"], ns, *box)
        return m[:, 0] - 0.5 * (m[:, 1] + m[:, 2])

    assert redness(with_ls).mean() - redness(without).mean() > 20.0


def test_blond_hair_is_brighter_than_black_hair(big):
    v, names = big["values"], np.array(big["names"])
    col = {n: v[:, i] == 1 for i, n in enumerate(ATTRIBUTE_NAMES)}
    others = col["Brown_Hair"] | col["Gray_Hair"] | col["Bald"] | col["Wearing_Hat"]
    blond = names[col["Blond_Hair"] & ~col["Black_Hair"] & ~others][:200]
    black = names[col["Black_Hair"] & ~col["Blond_Hair"] & ~others][:200]
    assert len(blond) >= 50 and len(black) >= 50
    # Top of the head, above the hairline.
    s = BIG_SIZE
    box = (slice(int(0.2 * s), int(0.26 * s)), slice(int(0.4 * s), int(0.6 * s)))
    bright_blond = _region_means(big["root"], blond, *box).mean()
    bright_black = _region_means(big["root"], black, *box).mean()
    assert bright_blond - bright_black > 60.0


def test_jaw_cue_separates_genders_strongly_but_not_perfectly():
    rng = np.random.default_rng(0)
    ids = [synth._sample_identity(rng) for _ in range(4000)]
    male = np.array([i.male for i in ids])
    power = np.array([i.jaw_power for i in ids])
    width = np.array([i.jaw_width for i in ids])
    # One threshold on the jaw exponent classifies gender well, but not perfectly.
    acc = np.mean((power > 2.5) == male)
    assert 0.85 < acc < 0.99
    assert width[male].mean() > width[~male].mean() + 0.05
    assert abs(male.mean() - MALE_RATE) < 0.03
