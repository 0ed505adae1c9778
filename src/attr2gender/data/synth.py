"""A synthetic stand-in for CelebA, written in CelebA's own file layout.

Every image is a procedurally drawn face. Its 39 non-target labels are sampled from the real per-gender
rates in :data:`attr2gender.data.attributes.CONDITIONAL_RATES` (independently given ``Male``) and then
drawn so that they are visible: hair colour, bangs, glasses, beard, lipstick and so on.

Gender also shows in one cue that is *not* among the 39 attributes: the jaw. Each identity has a latent
"jaw masculinity" score (normal, mean +/-1.5, sd 1, so the cue alone separates the genders at roughly
93 %); it sets how square and how wide the lower face is. A model that sees pixels can use that cue, a
model that only sees the 39 attributes cannot.

The output is byte-for-byte deterministic for a given set of arguments. Labels are sampled with one
generator before any drawing; each image is then drawn with its own generator seeded from
``(seed, image index)``, so changing the drawing code never changes the labels.

Layout written under ``out_dir``::

    img_align_celeba/000001.jpg ...
    list_attr_celeba.txt        count, header of 40 names, one row of -1/1 per image
    list_eval_partition.txt     "000001.jpg 0" (0 train, 1 val, 2 test), assigned per identity
    identity_CelebA.txt         "000001.jpg 17"
    README.md                   says the data is synthetic and how it was made
"""

from __future__ import annotations

import pathlib

import numpy as np

from attr2gender.data.attributes import (
    ATTRIBUTE_NAMES,
    CONDITIONAL_RATES,
    MALE_RATE,
    STAGE_ONE_ATTRIBUTES,
    TARGET,
)
from attr2gender.data.synth_render import Identity, render_face
from attr2gender.progress import progress as progress_bar

__all__ = [
    "HAIR_COLOURS",
    "IDENTITY_ATTRIBUTES",
    "SYNTH_README",
    "Identity",
    "make_synthetic_celeba",
    "render_face",
]

# Attributes drawn once per identity (from the same per-gender rates) rather than once per image.
HAIR_COLOURS: tuple[str, ...] = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
IDENTITY_ATTRIBUTES: frozenset[str] = frozenset(HAIR_COLOURS)

_HAIR_RGB = {
    "Black_Hair": (28, 22, 20),
    "Blond_Hair": (226, 196, 118),
    "Brown_Hair": (112, 70, 38),
    "Gray_Hair": (172, 172, 170),
}
# Hair colours for identities with none of the four labels: auburn, ginger, dark auburn, mousy.
_OTHER_HAIR_RGB = ((150, 62, 32), (196, 104, 48), (92, 40, 30), (150, 118, 84))

_SKIN_LIGHT = np.array([236.0, 200.0, 176.0])
_SKIN_DARK = np.array([104.0, 70.0, 52.0])

SYNTH_README = """\
# Synthetic CelebA stand-in

This directory is **synthetic**. It is not CelebA and holds no real faces. It was written by
`attr2gender.data.synth.make_synthetic_celeba` in the standard CelebA layout (`img_align_celeba/`,
`list_attr_celeba.txt`, `list_eval_partition.txt`, `identity_CelebA.txt`).

- images: {n}, {image_size} x {image_size} px RGB JPEG (quality 90)
- identities: {n_identities} ({images_per_identity} images each, the last possibly fewer)
- partition fractions (train, val, test) by identity: {fractions}
  -> {n_train} / {n_val} / {n_test} images
- seed: {seed}

How it was made: each identity gets a gender ~ Bernoulli({male_rate}), a skin tone, a hair style and
a jaw-shape score; each image's 39 other attributes are drawn ~ Bernoulli(P(attribute | gender))
from the real CelebA per-gender rates (hair colours once per identity), then the face is drawn with
Pillow so that the attributes are visible. Gender additionally shows in the jaw shape (square and
wide for men, narrow and pointed for women, with per-identity noise), a cue not among the 39
attributes. Same arguments, same bytes.
"""

_JPEG_QUALITY = 90


# --------------------------------------------------------------------------------------------------
# sampling


def _sample_identity(rng: np.random.Generator) -> Identity:
    male = bool(rng.random() < MALE_RATE)
    col = 1 if male else 0
    hair = {name: bool(rng.random() < CONDITIONAL_RATES[name][col]) for name in HAIR_COLOURS}
    chosen = [name for name in HAIR_COLOURS if hair[name]]
    if chosen:
        # Several colours labelled at once: draw their mix (blond + brown reads as light brown).
        hair_rgb = np.mean([_HAIR_RGB[name] for name in chosen], axis=0)
    else:
        hair_rgb = np.array(_OTHER_HAIR_RGB[int(rng.integers(len(_OTHER_HAIR_RGB)))], dtype=float)
    hair_rgb = np.clip(hair_rgb + rng.normal(0.0, 6.0, 3), 0, 255)

    tone = float(rng.beta(2.0, 2.5))
    skin = _SKIN_LIGHT + tone * (_SKIN_DARK - _SKIN_LIGHT) + rng.normal(0.0, 4.0, 3)

    # The gender cue outside the 39 attributes.
    z = float(rng.normal(1.5 if male else -1.5, 1.0))
    jaw_power = float(np.clip(2.5 + 0.55 * z, 1.4, 4.6))
    jaw_width = float(np.clip(0.86 + 0.045 * z, 0.7, 1.0))

    iris = ((84, 52, 30), (60, 40, 28), (70, 110, 160), (80, 120, 80))[int(rng.integers(4))]
    return Identity(
        male=male,
        hair=hair,
        hair_rgb=tuple(int(v) for v in hair_rgb),
        skin=tuple(float(v) for v in skin),
        jaw_power=jaw_power,
        jaw_width=jaw_width,
        face_width=float(rng.normal(1.0, 0.03)),
        long_hair=bool(rng.random() < 0.5),
        iris_rgb=iris,
    )


def _sample_labels(identity: Identity, rng: np.random.Generator) -> dict[str, bool]:
    col = 1 if identity.male else 0
    draws = rng.random(len(STAGE_ONE_ATTRIBUTES))
    labels = {}
    for name, u in zip(STAGE_ONE_ATTRIBUTES, draws):
        if name in IDENTITY_ATTRIBUTES:
            labels[name] = identity.hair[name]
        else:
            labels[name] = bool(u < CONDITIONAL_RATES[name][col])
    labels[TARGET] = identity.male
    return labels


# --------------------------------------------------------------------------------------------------
# the dataset


def _partition_counts(n_ids: int, fractions) -> tuple[int, int, int]:
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or np.any(f < 0) or f.sum() <= 0:
        raise ValueError(f"partition_fractions must be three non-negative numbers, got {fractions!r}")
    f = f / f.sum()
    n_train = int(round(f[0] * n_ids))
    n_val = int(round(f[1] * n_ids))
    n_val = min(n_val, n_ids - n_train)
    return n_train, n_val, n_ids - n_train - n_val


def _write_annotations(out: pathlib.Path, labels, img_id, img_part, id_numbers) -> None:
    """CelebA's three annotation files, one row per image in file order."""
    names = [f"{k + 1:06d}.jpg" for k in range(len(labels))]
    attr_lines = [str(len(labels)), " ".join(ATTRIBUTE_NAMES)]
    for name, lab in zip(names, labels):
        attr_lines.append(f"{name} " + " ".join(f"{1 if lab[a] else -1:2d}" for a in ATTRIBUTE_NAMES))
    (out / "list_attr_celeba.txt").write_text("\n".join(attr_lines) + "\n")
    (out / "list_eval_partition.txt").write_text(
        "".join(f"{name} {int(p)}\n" for name, p in zip(names, img_part))
    )
    (out / "identity_CelebA.txt").write_text(
        "".join(f"{name} {int(id_numbers[i])}\n" for name, i in zip(names, img_id))
    )


def make_synthetic_celeba(
    out_dir,
    n: int = 2000,
    seed: int = 0,
    image_size: int = 128,
    images_per_identity: int = 5,
    partition_fractions=(0.8, 0.1, 0.1),
    progress: bool = False,
) -> pathlib.Path:
    """Write ``n`` synthetic faces and their CelebA-format annotation files under ``out_dir``.

    Identities get ``images_per_identity`` images each (the last one possibly fewer); identities, not
    images, are split into train/val/test by ``partition_fractions``. As in CelebA, files are numbered
    train first, then val, then test. Returns ``out_dir`` as a :class:`pathlib.Path`.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if images_per_identity < 1:
        raise ValueError(f"images_per_identity must be >= 1, got {images_per_identity}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")

    out = pathlib.Path(out_dir)
    img_dir = out / "img_align_celeba"
    img_dir.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    n_ids = -(-n // images_per_identity)
    identities = [_sample_identity(rng) for _ in range(n_ids)]
    id_numbers = rng.permutation(n_ids) + 1  # the integer written for identity i

    counts = _partition_counts(n_ids, partition_fractions)
    order = rng.permutation(n_ids)
    id_part = np.empty(n_ids, dtype=int)
    id_part[order[: counts[0]]] = 0
    id_part[order[counts[0] : counts[0] + counts[1]]] = 1
    id_part[order[counts[0] + counts[1] :]] = 2

    # image -> identity (first n of images_per_identity copies), grouped by partition, shuffled within.
    img_id = np.repeat(np.arange(n_ids), images_per_identity)[:n]
    groups = [rng.permutation(img_id[id_part[img_id] == p]) for p in (0, 1, 2)]
    img_id = np.concatenate(groups)
    img_part = id_part[img_id]

    labels = [_sample_labels(identities[i], rng) for i in img_id]

    indices = range(n)
    if progress:
        indices = progress_bar(indices, total=n, desc="synthetic CelebA", unit="img")
    for k in indices:
        img_rng = np.random.default_rng([seed, k])
        image = render_face(labels[k], identities[img_id[k]], img_rng, image_size)
        image.save(img_dir / f"{k + 1:06d}.jpg", "JPEG", quality=_JPEG_QUALITY)

    _write_annotations(out, labels, img_id, img_part, id_numbers)
    n_split = [int(np.sum(img_part == p)) for p in (0, 1, 2)]
    (out / "SYNTHETIC").write_text("made by attr2gender.data.synth.make_synthetic_celeba: no real faces\n")
    (out / "README.md").write_text(
        SYNTH_README.format(
            n=n,
            image_size=image_size,
            n_identities=n_ids,
            images_per_identity=images_per_identity,
            fractions=tuple(float(f) for f in partition_fractions),
            n_train=n_split[0],
            n_val=n_split[1],
            n_test=n_split[2],
            seed=seed,
            male_rate=MALE_RATE,
        )
    )
    return out
