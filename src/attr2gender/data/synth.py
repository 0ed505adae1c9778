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

import math
import pathlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from attr2gender.data.attributes import (
    ATTRIBUTE_NAMES,
    CONDITIONAL_RATES,
    MALE_RATE,
    STAGE_ONE_ATTRIBUTES,
    TARGET,
)

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
_SKIN_PALE = np.array([252.0, 236.0, 228.0])

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


@dataclass(frozen=True)
class Identity:
    """What stays fixed across one person's images."""

    male: bool
    hair: dict[str, bool]  # the four hair-colour labels
    hair_rgb: tuple[int, int, int]
    skin: tuple[float, float, float]
    jaw_power: float  # superellipse exponent of the lower face: ~1.6 pointed .. ~4 square
    jaw_width: float  # width of the lower face relative to the cheeks
    face_width: float  # multiplicative, around 1
    long_hair: bool
    iris_rgb: tuple[int, int, int]


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
# drawing helpers


def _rgb(c) -> tuple[int, int, int]:
    return tuple(int(round(min(255.0, max(0.0, float(v))))) for v in c)


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return _rgb([(1.0 - t) * float(x) + t * float(y) for x, y in zip(a, b)])


def _scale(c, f: float) -> tuple[int, int, int]:
    return _rgb([float(v) * f for v in c])


def _face_outline(cx, cy, a, b_up, b_low, power, jaw_width, n=48):
    """Closed outline: elliptic forehead, superellipse jaw. Returns (points, lower-half table)."""
    pts = []
    lower = []
    for i in range(n):
        t = 2.0 * math.pi * i / n
        c, s = math.cos(t), math.sin(t)
        if s <= 0.0:  # upper half (image y grows downwards)
            x, y = cx + a * c, cy + b_up * s
        else:
            e = 2.0 / power
            taper = 1.0 - (1.0 - jaw_width) * s
            x = cx + a * taper * math.copysign(abs(c) ** e, c)
            y = cy + b_low * s**e
            if c >= 0.0:
                lower.append((y, x - cx))
        pts.append((x, y))
    lower.sort()
    return pts, lower


def _polyline(draw, pts, fill, width):
    draw.line([(float(x), float(y)) for x, y in pts], fill=fill, width=max(1, int(round(width))))


def _wave(p0, p1, amp, periods, n=12):
    """Points from p0 to p1 with a sinusoidal offset perpendicular to the segment."""
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    length = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / length, dx / length
    out = []
    for k in range(n + 1):
        u = k / n
        o = amp * math.sin(2.0 * math.pi * periods * u)
        out.append((x0 + u * dx + o * nx, y0 + u * dy + o * ny))
    return out


# --------------------------------------------------------------------------------------------------
# the face


def render_face(
    labels: dict[str, bool], identity: Identity, rng: np.random.Generator, size: int
) -> Image.Image:
    """Draw one face showing ``labels`` for ``identity``; all randomness comes from ``rng``."""
    L = labels
    S = float(size)
    px = S / 128.0  # one pixel at 128 px, the scale line widths are designed for

    bg = _rgb(rng.uniform(25, 235, 3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)

    # geometry, with jitter
    k = float(rng.normal(1.0, 0.035))
    cx = S * (0.5 + float(rng.normal(0.0, 0.015)))
    cy = S * (0.47 + float(rng.normal(0.0, 0.012)))
    a = S * 0.215 * k * identity.face_width
    b = S * 0.28 * k
    jaw_w = identity.jaw_width
    if L["Chubby"]:
        a *= 1.13
        jaw_w = min(1.0, jaw_w + 0.06)
    if L["Oval_Face"]:
        a *= 0.93
        b *= 1.06
    b_low = b * 0.97

    skin = np.array(identity.skin) + rng.normal(0.0, 5.0, 3)
    if L["Pale_Skin"]:
        skin = 0.25 * skin + 0.75 * _SKIN_PALE
    skin = _rgb(skin)
    skin_dark = _scale(skin, 0.78)
    skin_shadow = _scale(skin, 0.62)
    hair = _rgb(np.array(identity.hair_rgb) + rng.normal(0.0, 4.0, 3))
    hair_lum = 0.3 * hair[0] + 0.59 * hair[1] + 0.11 * hair[2]
    strand = _scale(hair, 0.62) if hair_lum > 70 else _mix(hair, (120, 110, 105), 0.45)
    wavy, straight = L["Wavy_Hair"], L["Straight_Hair"]
    bald = L["Bald"]

    brow_y = cy - 0.30 * b
    eye_y = cy - 0.11 * b
    mouth_y = cy + 0.50 * b
    chin_y = cy + b_low

    # clothes, neck
    neck_w = 0.42 * a
    shoulder_y = cy + 1.18 * b
    shirt = _rgb(rng.uniform(20, 235, 3))
    d.rectangle([cx - neck_w, cy + 0.5 * b, cx + neck_w, shoulder_y + 0.1 * b], fill=skin_dark)
    d.polygon(
        [
            (cx - 2.1 * a, S + 2),
            (cx - 1.7 * a, shoulder_y + 0.15 * b),
            (cx - neck_w, shoulder_y - 0.02 * b),
            (cx + neck_w, shoulder_y - 0.02 * b),
            (cx + 1.7 * a, shoulder_y + 0.15 * b),
            (cx + 2.1 * a, S + 2),
        ],
        fill=shirt,
    )
    if L["Wearing_Necktie"]:
        collar = (238, 238, 235)
        d.polygon(
            [
                (cx - 1.15 * neck_w, shoulder_y - 0.04 * b),
                (cx, shoulder_y + 0.25 * b),
                (cx - 0.2 * a, S + 2),
                (cx - 1.6 * neck_w, S + 2),
            ],
            fill=collar,
        )
        d.polygon(
            [
                (cx + 1.15 * neck_w, shoulder_y - 0.04 * b),
                (cx, shoulder_y + 0.25 * b),
                (cx + 0.2 * a, S + 2),
                (cx + 1.6 * neck_w, S + 2),
            ],
            fill=collar,
        )
        tie = _rgb(rng.uniform(20, 220, 3))
        kw = 0.14 * a
        d.polygon(
            [
                (cx - kw, shoulder_y - 0.02 * b),
                (cx + kw, shoulder_y - 0.02 * b),
                (cx + 0.6 * kw, shoulder_y + 0.14 * b),
                (cx - 0.6 * kw, shoulder_y + 0.14 * b),
            ],
            fill=tie,
        )
        d.polygon(
            [
                (cx - 0.6 * kw, shoulder_y + 0.14 * b),
                (cx + 0.6 * kw, shoulder_y + 0.14 * b),
                (cx + 1.5 * kw, S + 2),
                (cx - 1.5 * kw, S + 2),
            ],
            fill=_scale(tie, 0.9),
        )

    # hair behind the head
    if not bald:
        if identity.long_hair:
            top = cy - 1.12 * b
            bottom = shoulder_y + 0.25 * b
            hw = 1.3 * a
            n_side = 10
            left, right = [], []
            for i in range(n_side + 1):
                y = cy - 0.2 * b + (bottom - (cy - 0.2 * b)) * i / n_side
                off = 0.07 * a * math.sin(i * 1.7) if wavy else 0.0
                left.append((cx - hw - off, y))
                right.append((cx + hw + off, y))
            d.ellipse([cx - hw, top, cx + hw, cy + 0.4 * b], fill=hair)
            d.polygon(left + right[::-1], fill=hair)
        else:
            d.ellipse([cx - 1.1 * a, cy - 1.12 * b, cx + 1.1 * a, cy + 0.15 * b], fill=hair)

    # ears
    for side in (-1, 1):
        ex = cx + side * 0.98 * a
        d.ellipse([ex - 0.09 * a, cy - 0.22 * b, ex + 0.09 * a, cy + 0.16 * b], fill=skin_dark)

    # long hair strands at the sides (behind the ears' front, outside the face)
    if not bald and identity.long_hair and (wavy or straight):
        for side in (-1, 1):
            for j in range(3):
                x = cx + side * (1.05 + 0.09 * j) * a
                p0, p1 = (x, cy + 0.2 * b), (x, shoulder_y + 0.2 * b)
                pts = _wave(p0, p1, 0.05 * a, 2.5) if wavy else [p0, p1]
                _polyline(d, pts, strand, px)

    # face
    outline, lower = _face_outline(cx, cy, a, b, b_low, identity.jaw_power, jaw_w)
    if L["Double_Chin"]:
        d.ellipse([cx - 0.42 * a, chin_y - 0.2 * b, cx + 0.42 * a, chin_y + 0.12 * b], fill=skin)
    d.polygon(outline, fill=skin)
    if L["Double_Chin"]:
        d.arc(
            [cx - 0.36 * a, chin_y - 0.12 * b, cx + 0.36 * a, chin_y + 0.09 * b],
            20,
            160,
            fill=skin_shadow,
            width=max(1, int(round(1.2 * px))),
        )
    ys = np.array([p[0] for p in lower])
    hws = np.array([p[1] for p in lower])

    def half_width(y: float) -> float:
        return float(np.interp(y, ys, hws, left=hws[0], right=0.0))

    # cheeks
    if L["High_Cheekbones"]:
        for side in (-1, 1):
            x = cx + side * 0.58 * a
            d.ellipse(
                [x - 0.2 * a, cy + 0.0 * b, x + 0.2 * a, cy + 0.1 * b], fill=_mix(skin, (255, 255, 255), 0.3)
            )
            d.line(
                [(cx + side * 0.75 * a, cy + 0.17 * b), (cx + side * 0.45 * a, cy + 0.32 * b)],
                fill=_scale(skin, 0.86),
                width=max(1, int(round(1.5 * px))),
            )
    if L["Rosy_Cheeks"]:
        rosy = _mix(skin, (232, 80, 96), 0.5)
        for side in (-1, 1):
            x = cx + side * 0.52 * a
            d.ellipse([x - 0.16 * a, cy + 0.12 * b, x + 0.16 * a, cy + 0.3 * b], fill=rosy)

    # age: forehead lines and nasolabial folds
    if not L["Young"]:
        line_c = _scale(skin, 0.7)
        for j in range(3):
            y = cy - (0.46 + 0.09 * j) * b
            w = (0.5 - 0.06 * j) * a
            d.arc([cx - w, y - 0.05 * b, cx + w, y + 0.05 * b], 200, 340, fill=line_c, width=max(1, int(px)))
        for side in (-1, 1):
            _polyline(
                d,
                [
                    (cx + side * 0.22 * a, cy + 0.22 * b),
                    (cx + side * 0.38 * a, cy + 0.38 * b),
                    (cx + side * 0.42 * a, cy + 0.55 * b),
                ],
                line_c,
                px,
            )

    # stubble, beard, goatee, sideburns
    mw = (0.36 if L["Smiling"] else 0.3) * a
    beard_c = _mix(hair, (40, 32, 28), 0.4)
    if L["5_o_Clock_Shadow"]:
        m = int(160 * (S / 128.0) ** 2)
        yy = rng.uniform(cy + 0.1 * b, chin_y, m)
        xx = rng.uniform(-1.0, 1.0, m)
        stub = _mix(skin, (60, 60, 70), 0.45)
        xs_ = cx + xx * np.interp(yy, ys, hws, left=hws[0], right=0.0)
        in_mouth = (np.abs(xs_ - cx) < mw * 1.05) & (np.abs(yy - mouth_y) < 0.1 * b)
        keep = ~in_mouth & ((np.abs(xx) > 0.35) | (yy > mouth_y - 0.14 * b))
        pts = list(zip(xs_[keep].tolist(), yy[keep].tolist()))
        d.point(pts, fill=stub)
    if not L["No_Beard"]:
        outer = [(x, y) for x, y in outline if y >= cy + 0.05 * b]
        outer.sort(key=lambda p: math.atan2(p[1] - cy, p[0] - cx))  # right side -> chin -> left side
        inner = [
            (cx - 0.78 * a, cy + 0.08 * b),
            (cx - 0.5 * a, cy + 0.38 * b),
            (cx - mw * 1.05, mouth_y + 0.06 * b),
            (cx, mouth_y + 0.17 * b),
            (cx + mw * 1.05, mouth_y + 0.06 * b),
            (cx + 0.5 * a, cy + 0.38 * b),
            (cx + 0.78 * a, cy + 0.08 * b),
        ]
        d.polygon(outer + inner, fill=beard_c)
    if L["Goatee"]:
        d.ellipse([cx - 0.5 * mw, mouth_y + 0.08 * b, cx + 0.5 * mw, chin_y + 0.03 * b], fill=beard_c)
    if L["Sideburns"]:
        for side in (-1, 1):
            x_out = cx + side * half_width(cy + 0.02 * b) * 0.99
            x_in = x_out - side * 0.13 * a
            d.polygon(
                [(x_out, cy - 0.45 * b), (x_in, cy - 0.45 * b), (x_in, cy + 0.25 * b), (x_out, cy + 0.3 * b)],
                fill=beard_c,
            )

    # blemishes for the not-attractive
    if not L["Attractive"]:
        blem = _scale(skin, 0.8)
        for _ in range(4):
            x = cx + float(rng.uniform(-0.6, 0.6)) * a
            y = cy + float(rng.uniform(0.0, 0.4)) * b
            r = 0.7 * px
            d.ellipse([x - r, y - r, x + r, y + r], fill=blem)

    # eyes
    eye_hw = 0.17 * a
    eye_hh = eye_hw * (0.24 if L["Narrow_Eyes"] else 0.52)
    asym = 0.0 if L["Attractive"] else 0.03 * b
    for side in (-1, 1):
        ex = cx + side * 0.42 * a
        ey = eye_y + (asym if side > 0 else 0.0)
        if L["Heavy_Makeup"]:
            shadow = ((120, 60, 130), (60, 80, 150), (90, 55, 40), (40, 30, 35))[int(rng.integers(4))]
            d.ellipse(
                [ex - 1.25 * eye_hw, ey - 3.0 * eye_hh - 0.03 * b, ex + 1.25 * eye_hw, ey + 0.4 * eye_hh],
                fill=_mix(skin, shadow, 0.7),
            )
        if L["Bags_Under_Eyes"]:
            d.arc(
                [ex - eye_hw, ey - 0.14 * b, ex + eye_hw, ey + 0.15 * b],
                20,
                160,
                fill=skin_shadow,
                width=max(1, int(round(2.0 * px))),
            )
        d.ellipse(
            [ex - eye_hw, ey - eye_hh, ex + eye_hw, ey + eye_hh],
            fill=(245, 245, 240),
            outline=(20, 15, 15) if L["Heavy_Makeup"] else _scale(skin, 0.5),
            width=max(1, int(round((1.6 if L["Heavy_Makeup"] else 1.0) * px))),
        )
        r = min(eye_hh * 0.95, eye_hw * 0.5)
        d.ellipse([ex - r, ey - r, ex + r, ey + r], fill=identity.iris_rgb)
        r2 = r * 0.5
        d.ellipse([ex - r2, ey - r2, ex + r2, ey + r2], fill=(10, 10, 10))

    # eyebrows
    brow_c = _mix(hair, (45, 35, 30), 0.45)
    brow_w = (3.4 if L["Bushy_Eyebrows"] else 1.6) * px
    for side in (-1, 1):
        x0, x1 = cx + side * 0.18 * a, cx + side * 0.66 * a
        if L["Arched_Eyebrows"]:
            pts = [
                (x0, brow_y + 0.02 * b),
                (cx + side * 0.45 * a, brow_y - 0.09 * b),
                (x1, brow_y + 0.05 * b),
            ]
        else:
            pts = [
                (x0, brow_y - 0.01 * b),
                (cx + side * 0.45 * a, brow_y - 0.02 * b),
                (x1, brow_y + 0.01 * b),
            ]
        _polyline(d, pts, brow_c, brow_w)

    # nose
    nw = (0.2 if L["Big_Nose"] else 0.12) * a
    tip = cy + (0.3 if L["Pointy_Nose"] else 0.22) * b
    nose_c = _scale(skin, 0.88)
    if L["Pointy_Nose"]:
        d.polygon(
            [
                (cx - 0.04 * a, cy - 0.08 * b),
                (cx + 0.04 * a, cy - 0.08 * b),
                (cx + nw, tip - 0.08 * b),
                (cx, tip),
                (cx - nw, tip - 0.08 * b),
            ],
            fill=nose_c,
        )
    else:
        d.polygon(
            [
                (cx - 0.04 * a, cy - 0.08 * b),
                (cx + 0.04 * a, cy - 0.08 * b),
                (cx + nw, tip - 0.06 * b),
                (cx - nw, tip - 0.06 * b),
            ],
            fill=nose_c,
        )
        d.ellipse([cx - nw, tip - 0.12 * b, cx + nw, tip + 0.02 * b], fill=nose_c)
    nr = (0.05 if L["Big_Nose"] else 0.03) * a + 0.4 * px
    for side in (-1, 1):
        nx = cx + side * 0.55 * nw
        d.ellipse([nx - nr, tip - 0.04 * b - nr * 0.6, nx + nr, tip - 0.04 * b + nr * 0.6], fill=skin_shadow)

    # mouth
    if L["Wearing_Lipstick"]:
        lip = _rgb(np.array([200.0, 28.0, 48.0]) + rng.normal(0.0, 10.0, 3))
    else:
        lip = _mix(skin, (170, 80, 85), 0.35)
    lip_t = (0.075 if L["Big_Lips"] else 0.04) * b
    smile, open_ = L["Smiling"], L["Mouth_Slightly_Open"]
    open_h = (0.13 if smile else 0.08) * b if open_ else 0.0
    xs = np.linspace(-1.0, 1.0, 15)
    env = np.clip(1.0 - xs**2, 0.0, 1.0)
    centre = mouth_y + ((0.07 * env - 0.04) * b if smile else 0.0)
    in_up = centre - 0.3 * open_h * env**0.7
    in_lo = centre + 0.7 * open_h * env**0.7
    out_up = in_up - lip_t * env**0.5
    out_lo = in_lo + 1.2 * lip_t * env**0.5
    xx = cx + mw * xs
    d.polygon(list(zip(xx, out_up)) + list(zip(xx[::-1], out_lo[::-1])), fill=lip)
    if open_:
        d.polygon(list(zip(xx, in_up)) + list(zip(xx[::-1], in_lo[::-1])), fill=(70, 18, 25))
        if smile:
            teeth_lo = in_up + 0.35 * (in_lo - in_up)
            d.polygon(
                list(zip(xx[2:-2], in_up[2:-2])) + list(zip(xx[-3:1:-1], teeth_lo[-3:1:-1])),
                fill=(240, 238, 228),
            )
    else:
        _polyline(d, list(zip(xx, centre if smile else np.full_like(xx, mouth_y))), _scale(lip, 0.55), px)
    if L["Mustache"]:
        m_y = float(np.min(out_up)) - 0.065 * b
        _polyline(
            d,
            [
                (cx - 1.08 * mw, mouth_y + 0.03 * b),
                (cx - 0.8 * mw, m_y + 0.01 * b),
                (cx, m_y),
                (cx + 0.8 * mw, m_y + 0.01 * b),
                (cx + 1.08 * mw, mouth_y + 0.03 * b),
            ],
            beard_c,
            0.09 * b,
        )

    # hair on top
    if bald:
        d.ellipse(
            [cx - 0.35 * a, cy - 0.95 * b, cx + 0.1 * a, cy - 0.8 * b], fill=_mix(skin, (255, 255, 255), 0.35)
        )
        for side in (-1, 1):
            x_out = cx + side * 1.02 * a
            d.polygon(
                [
                    (x_out, cy - 0.5 * b),
                    (x_out - side * 0.12 * a, cy - 0.45 * b),
                    (x_out - side * 0.1 * a, cy - 0.1 * b),
                    (x_out + side * 0.04 * a, cy - 0.1 * b),
                ],
                fill=hair,
            )
    else:
        if L["Receding_Hairline"]:
            line = [(1.06, -0.1), (0.95, -0.42), (0.72, -0.86), (0.42, -0.72), (0.0, -0.76)]
        else:
            line = [(1.06, -0.05), (0.95, -0.38), (0.8, -0.55), (0.4, -0.62), (0.0, -0.63)]
        hairline = [(cx + u * a, cy + v * b) for u, v in line]
        hairline = hairline + [(2 * cx - x, y) for x, y in hairline[-2::-1]]  # right -> left
        cap = []
        n_cap = 20
        for i in range(n_cap + 1):
            t = math.pi + math.pi * i / n_cap  # left -> over the top -> right
            r = 1.0 + (0.035 * math.sin(9 * t) if wavy else 0.0)
            cap.append((cx + 1.08 * a * r * math.cos(t), cy - 0.04 * b + 1.1 * b * r * math.sin(t)))
        d.polygon(cap + hairline, fill=hair)
        if L["Bangs"]:
            fr = [(cx + 0.9 * a, cy - 0.58 * b), (cx - 0.9 * a, cy - 0.58 * b)]
            n_teeth = 7
            for j in range(n_teeth + 1):
                u = -0.86 + 1.72 * j / n_teeth
                depth = 0.36 if j % 2 == 0 else 0.44
                fr.append((cx + u * a, cy - depth * b))
            d.polygon(fr, fill=hair)
        if wavy or straight:
            hx = np.array([p[0] for p in hairline[::-1]])
            hy = np.array([p[1] for p in hairline[::-1]])
            for u in np.linspace(-0.75, 0.75, 7):
                x_top = cx + 0.55 * u * a
                y_top = cy - 1.08 * b * math.sqrt(max(0.0, 1.0 - (0.55 * u) ** 2 / 1.17))
                x_bot = cx + 0.9 * u * a
                y_bot = float(np.interp(x_bot, hx, hy))
                if L["Bangs"] and abs(u) < 0.86:
                    y_bot = cy - 0.4 * b
                p0, p1 = (x_top + 0.02 * a, y_top + 0.08 * b), (x_bot, y_bot - 0.05 * b)
                if p1[1] - p0[1] < 0.08 * b:
                    continue
                pts = _wave(p0, p1, 0.04 * a, 1.5, n=8) if wavy else [p0, p1]
                _polyline(d, pts, strand, px)

    # hat
    if L["Wearing_Hat"]:
        hat = _rgb(rng.uniform(15, 230, 3))
        if rng.random() < 0.5:  # brimmed hat
            d.rounded_rectangle(
                [cx - 1.0 * a, cy - 1.5 * b, cx + 1.0 * a, cy - 0.62 * b], radius=0.3 * a, fill=hat
            )
            d.ellipse([cx - 1.5 * a, cy - 0.74 * b, cx + 1.5 * a, cy - 0.52 * b], fill=_scale(hat, 0.85))
            d.rectangle([cx - 1.0 * a, cy - 0.85 * b, cx + 1.0 * a, cy - 0.74 * b], fill=_scale(hat, 0.6))
        else:  # beanie
            d.chord([cx - 1.12 * a, cy - 1.3 * b, cx + 1.12 * a, cy - 0.1 * b], 180, 360, fill=hat)
            d.rectangle([cx - 1.12 * a, cy - 0.78 * b, cx + 1.12 * a, cy - 0.6 * b], fill=_scale(hat, 0.8))

    # glasses
    if L["Eyeglasses"]:
        frame = ((20, 20, 20), (90, 60, 30), (150, 150, 160), (120, 20, 30))[int(rng.integers(4))]
        fw = max(1, int(round(1.6 * px)))
        rx, ry = 0.3 * a, 0.2 * b
        for side in (-1, 1):
            ex = cx + side * 0.42 * a
            d.ellipse([ex - rx, eye_y - ry, ex + rx, eye_y + ry], outline=frame, width=fw)
            d.line(
                [(ex + side * rx, eye_y - 0.05 * b), (cx + side * 1.0 * a, eye_y - 0.08 * b)],
                fill=frame,
                width=fw,
            )
        d.arc(
            [cx - 0.14 * a, eye_y - 0.1 * b, cx + 0.14 * a, eye_y + 0.05 * b], 200, 340, fill=frame, width=fw
        )

    # earrings
    if L["Wearing_Earrings"]:
        ring = ((230, 190, 60), (210, 210, 220), (240, 240, 235))[int(rng.integers(3))]
        r = 0.045 * S
        for side in (-1, 1):
            ex, ey = cx + side * 0.99 * a, cy + 0.2 * b + r
            if rng.random() < 0.5:
                d.ellipse([ex - r, ey - r, ex + r, ey + r], outline=ring, width=max(1, int(round(1.5 * px))))
            else:
                d.ellipse([ex - 0.5 * r, ey - 0.9 * r, ex + 0.5 * r, ey + 0.1 * r], fill=ring)

    # necklace
    if L["Wearing_Necklace"]:
        bead = ((230, 190, 60), (215, 215, 225), (245, 242, 232))[int(rng.integers(3))]
        r = 1.3 * px
        for j in range(11):
            u = -1.0 + 2.0 * j / 10
            x = cx + 1.05 * neck_w * u
            y = shoulder_y - 0.04 * b + 0.22 * b * (1.0 - u * u)
            d.ellipse([x - r, y - r, x + r, y + r], fill=bead)

    if L["Blurry"]:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(1.2, 2.0)) * px))

    # sensor noise, lighter for attractive (smoother) faces
    # (triangular: the sum of two uniform integers in [0, 2h], minus 2h; sd 2.8 / 3.7 for h = 3 / 4)
    h = 3 if L["Attractive"] else 4
    arr = np.asarray(img, dtype=np.int16)
    arr += rng.integers(0, 2 * h + 1, size=arr.shape, dtype=np.uint8)
    arr += rng.integers(0, 2 * h + 1, size=arr.shape, dtype=np.uint8)
    arr -= 2 * h
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


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
        from ..progress import progress as progress_bar

        indices = progress_bar(indices, total=n, desc="synthetic CelebA", unit="img")
    for k in indices:
        img_rng = np.random.default_rng([seed, k])
        image = render_face(labels[k], identities[img_id[k]], img_rng, image_size)
        image.save(img_dir / f"{k + 1:06d}.jpg", "JPEG", quality=_JPEG_QUALITY)

    names = [f"{k + 1:06d}.jpg" for k in range(n)]
    attr_lines = [str(n), " ".join(ATTRIBUTE_NAMES)]
    for name, lab in zip(names, labels):
        attr_lines.append(f"{name} " + " ".join(f"{1 if lab[a] else -1:2d}" for a in ATTRIBUTE_NAMES))
    (out / "list_attr_celeba.txt").write_text("\n".join(attr_lines) + "\n")
    (out / "list_eval_partition.txt").write_text(
        "".join(f"{name} {int(p)}\n" for name, p in zip(names, img_part))
    )
    (out / "identity_CelebA.txt").write_text(
        "".join(f"{name} {int(id_numbers[i])}\n" for name, i in zip(names, img_id))
    )
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
