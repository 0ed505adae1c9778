"""Tests for the synthetic CelebA generator. The files are parsed here, independently of any reader."""

from __future__ import annotations

import dataclasses
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


# --------------------------------------------------------------------------------------------------
# pinned output
#
# The hashes below were computed with numpy 2.4.6 and Pillow 13.0.0. Pillow's drawing and JPEG encoder
# and numpy's generators define these bytes, so a dependency upgrade may change them without any change
# to synth.py; then regenerate them deliberately (print the digests these tests compute) after checking
# by eye that the faces still look right. A change to synth.py that moves them is a behaviour change.


def _labels(on=(), off=(), default=False) -> dict[str, bool]:
    labels = {name: default for name in ATTRIBUTE_NAMES}
    labels.update({name: True for name in on})
    labels.update({name: False for name in off})
    return labels


def _identity(seed: int, **changes) -> synth.Identity:
    return dataclasses.replace(synth._sample_identity(np.random.default_rng(seed)), **changes)


_BLACK = (28, 22, 20)
_BLOND = (226, 196, 118)

# name -> (identity, labels, render seed, size); between them every branch of render_face is taken.
_PINNED_FACES = {
    "plain_young_woman_40": (
        _identity(1, male=False, long_hair=False),
        _labels(on=("Young", "No_Beard", "Attractive")),
        0,
        40,
    ),
    "everything_on_long_wavy_128": (
        _identity(2, long_hair=True, hair_rgb=_BLOND),
        _labels(default=True, off=("Bald",)),
        1,
        128,
    ),
    "everything_off_short_black_128": (_identity(3, long_hair=False, hair_rgb=_BLACK), _labels(), 2, 128),
    "bald_hat_glasses_beard_man_128": (
        _identity(4, male=True),
        _labels(on=("Bald", "Wearing_Hat", "Eyeglasses", "Goatee", "Mustache", "Sideburns", "Male")),
        3,
        128,
    ),
    "bald_hat_other_kind_64": (
        _identity(4, male=True),
        _labels(on=("Bald", "Wearing_Hat", "5_o_Clock_Shadow", "Double_Chin", "Male")),
        5,
        64,
    ),
    "makeup_earrings_necklace_woman_128": (
        _identity(5, male=False, long_hair=True),
        _labels(
            on=(
                "Young",
                "No_Beard",
                "Attractive",
                "Heavy_Makeup",
                "Wearing_Lipstick",
                "Wearing_Earrings",
                "Wearing_Necklace",
                "Arched_Eyebrows",
                "Rosy_Cheeks",
                "High_Cheekbones",
                "Straight_Hair",
                "Smiling",
                "Mouth_Slightly_Open",
            )
        ),
        6,
        128,
    ),
    "earrings_other_kind_bangs_straight_40": (
        _identity(6, male=False, long_hair=False, hair_rgb=_BLOND),
        _labels(
            on=("Young", "No_Beard", "Wearing_Earrings", "Bangs", "Straight_Hair", "Mouth_Slightly_Open")
        ),
        9,
        40,
    ),
    "receding_wavy_big_nose_blurry_96": (
        _identity(7, male=True, long_hair=False),
        _labels(
            on=(
                "Male",
                "Receding_Hairline",
                "Wavy_Hair",
                "Big_Nose",
                "Big_Lips",
                "Narrow_Eyes",
                "Bags_Under_Eyes",
                "Bushy_Eyebrows",
                "Blurry",
                "Chubby",
                "Oval_Face",
                "Pale_Skin",
                "Wearing_Necktie",
                "Pointy_Nose",
            )
        ),
        10,
        96,
    ),
}


def _sampled_faces(n: int = 6):
    """Identities and labels sampled as make_synthetic_celeba samples them, drawn at 128 and 40 px."""
    out = {}
    for k in range(n):
        rng = np.random.default_rng(100 + k)
        identity = synth._sample_identity(rng)
        size = 40 if k % 2 else 128
        out[f"sampled_{k}_{size}"] = (identity, synth._sample_labels(identity, rng), 200 + k, size)
    return out


_PINNED_FACES.update(_sampled_faces())

_PINNED_FACE_SHA256 = {
    "bald_hat_glasses_beard_man_128": "799bbdccb49177d1b1b6c9943a03f5e8bf55fd16bbe5775a3d8c173a7a31609a",
    "bald_hat_other_kind_64": "a900f06234b0f38f0266d3a052e3c19ab696d5f6573a09f5863ac68b6bed4135",
    "earrings_other_kind_bangs_straight_40": "9f7a0ff6acc7403586870ad2f764374fffe2b007541fc6908efed60e70c51ce6",
    "everything_off_short_black_128": "54e83d8848d72b0dfd200be24c0833f31d8bace38de8c845f073efd86570d38a",
    "everything_on_long_wavy_128": "7b3a5dea8bfb2bec8e037a157ed4263a57048ee47d47ce04f21a7ca0952d7f50",
    "makeup_earrings_necklace_woman_128": "244d3bd1e563b1287d499a252aaa60370a15d056c43b11d84f01b408d3b4aab4",
    "plain_young_woman_40": "ac25385a10a37b107776f6c879af1bf583e211890880a6cf45dadd09532dc43e",
    "receding_wavy_big_nose_blurry_96": "b61ed7fd2a12b2e6bde1039443f8b4d33301bd4320a3357b2390392a48fe1402",
    "sampled_0_128": "e071942450d770e8b43903e2e8156ee0184bd823556c3a52fd34b25afdaefc00",
    "sampled_1_40": "06c39d74a4b42415aa110caa3e62e4955b6f44fd113e67140150a813e0fe5e3c",
    "sampled_2_128": "6ce51dac8f425c17e4065ac0c4460b87d05f1eb45356c4d2462099cb27b5f3b1",
    "sampled_3_40": "ba5534016eba94493027410b92feafdd2aaff4cad13373b0ff83cc6da6340e41",
    "sampled_4_128": "4a1e7c44279f30c4605bcd2a198fd0cbeda44f58ecd8b6060ab0ff17e901d838",
    "sampled_5_40": "bf0b257396350e40c9cfb8d3534e9e76cfeddfdd38a54cf13bebf02e1d4beeda",
}


def _face_digest(name: str) -> str:
    identity, labels, seed, size = _PINNED_FACES[name]
    image = synth.render_face(labels, identity, np.random.default_rng(seed), size)
    assert image.mode == "RGB" and image.size == (size, size)
    return hashlib.sha256(image.tobytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(_PINNED_FACES))
def test_render_face_pixels_are_pinned(name):
    """render_face's pixels for fixed identities, labels and seeds, byte for byte.

    The digests depend on the numpy and Pillow versions: regenerate them deliberately when a dependency
    changes the rendering, never to make a change to synth.py pass.
    """
    assert _face_digest(name) == _PINNED_FACE_SHA256.get(name)


_PINNED_DATASET_SHA256 = {
    "images": "cacb47e66238f463d853c54382054c2905f33c2e3f2d46e783fc33015fb0d308",
    "list_attr_celeba.txt": "5968e90bf29088ad20590cad26737090f16014ab6899a1558f9e73794132e452",
    "others": "0366605b12687520d5a5a84cad3576d8c0b5ba908f8604bb49d5e680b85f1eb2",
}


def test_make_synthetic_celeba_bytes_are_pinned(tmp_path):
    """make_synthetic_celeba(n=24, seed=0, image_size=40)'s JPEG bytes and annotation files, pinned.

    The digests depend on the numpy and Pillow versions (Pillow's drawing and its libjpeg encoder, numpy's
    generators): regenerate them deliberately when a dependency changes the rendering, never to make a
    change to synth.py pass.
    """
    hashes = _hash_tree(make_synthetic_celeba(tmp_path, n=24, seed=0, image_size=40))
    images = [v for k, v in hashes.items() if k.startswith("img_align_celeba")]  # sorted by file name
    others = {k: v for k, v in hashes.items() if not k.startswith("img_align_celeba")}
    got = {
        "images": hashlib.sha256(";".join(images).encode()).hexdigest(),
        "list_attr_celeba.txt": others.pop("list_attr_celeba.txt"),
        "others": hashlib.sha256("".join(f"{k}={v};" for k, v in others.items()).encode()).hexdigest(),
    }
    assert len(images) == 24
    assert got == _PINNED_DATASET_SHA256
