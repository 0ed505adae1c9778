"""Drawing one synthetic face: a person's fixed appearance (:class:`Identity`), then one image of them
showing a set of CelebA labels (:func:`render_face`), part by part, back to front. All randomness comes from
the caller's generator, in a fixed order, so the same arguments give the same bytes (tests/test_synth.py pins
them). Sampling identities and labels, and writing a CelebA-layout folder, is :mod:`attr2gender.data.synth`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Pale_Skin mixes each identity's skin tone toward this colour (a quarter of its own tone is kept).
_SKIN_PALE = np.array([252.0, 236.0, 228.0])


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


@dataclass(frozen=True, eq=False)
class _Face:
    """Where one face's parts go and what colour they are, shared by every part drawer."""

    labels: dict[str, bool]
    identity: Identity
    rng: np.random.Generator  # each part draws from it in turn, so the part order fixes the bytes
    draw: ImageDraw.ImageDraw
    size: float
    px: float  # one pixel at 128 px, the scale line widths are designed for
    cx: float  # face centre
    cy: float
    a: float  # half-width of the face at the cheeks
    b: float  # centre to the top of the forehead (to the chin: 0.97 b)
    brow_y: float
    eye_y: float
    mouth_y: float
    chin_y: float
    mouth_hw: float  # half-width of the mouth
    neck_w: float  # half-width of the neck
    shoulder_y: float
    skin: tuple[int, int, int]  # colours from here on
    skin_dark: tuple[int, int, int]
    skin_shadow: tuple[int, int, int]
    hair: tuple[int, int, int]
    strand: tuple[int, int, int]
    beard_rgb: tuple[int, int, int]
    outline: list[tuple[float, float]]
    jaw_ys: np.ndarray  # the lower outline's right half: y -> half-width, increasing in y
    jaw_hws: np.ndarray

    def half_width(self, y):
        """Half-width of the lower face at height ``y`` (zero below the chin)."""
        return np.interp(y, self.jaw_ys, self.jaw_hws, left=self.jaw_hws[0], right=0.0)


def _layout(labels, identity: Identity, rng: np.random.Generator, draw, size: int) -> _Face:
    """Jitter the face's position, size and colours, and place its parts."""
    L = labels
    S = float(size)
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
    hair = _rgb(np.array(identity.hair_rgb) + rng.normal(0.0, 4.0, 3))
    hair_lum = 0.3 * hair[0] + 0.59 * hair[1] + 0.11 * hair[2]
    outline, lower = _face_outline(cx, cy, a, b, b_low, identity.jaw_power, jaw_w)
    return _Face(
        labels=L,
        identity=identity,
        rng=rng,
        draw=draw,
        size=S,
        px=S / 128.0,
        cx=cx,
        cy=cy,
        a=a,
        b=b,
        brow_y=cy - 0.30 * b,
        eye_y=cy - 0.11 * b,
        mouth_y=cy + 0.50 * b,
        chin_y=cy + b_low,
        mouth_hw=(0.36 if L["Smiling"] else 0.3) * a,
        neck_w=0.42 * a,
        shoulder_y=cy + 1.18 * b,
        skin=skin,
        skin_dark=_scale(skin, 0.78),
        skin_shadow=_scale(skin, 0.62),
        hair=hair,
        # Darker strands vanish in dark hair, so those get greyish ones.
        strand=_scale(hair, 0.62) if hair_lum > 70 else _mix(hair, (120, 110, 105), 0.45),
        beard_rgb=_mix(hair, (40, 32, 28), 0.4),
        outline=outline,
        jaw_ys=np.array([p[0] for p in lower]),
        jaw_hws=np.array([p[1] for p in lower]),
    )


def _draw_clothes(f: _Face) -> None:
    """Neck and shirt, and with Wearing_Necktie a white collar and a tie."""
    d, cx, a, b, S = f.draw, f.cx, f.a, f.b, f.size
    nw, sy = f.neck_w, f.shoulder_y
    shirt = _rgb(f.rng.uniform(20, 235, 3))
    d.rectangle([cx - nw, f.cy + 0.5 * b, cx + nw, sy + 0.1 * b], fill=f.skin_dark)
    d.polygon(
        [(cx - 2.1 * a, S + 2), (cx - 1.7 * a, sy + 0.15 * b), (cx - nw, sy - 0.02 * b)]
        + [(cx + nw, sy - 0.02 * b), (cx + 1.7 * a, sy + 0.15 * b), (cx + 2.1 * a, S + 2)],
        fill=shirt,
    )
    if not f.labels["Wearing_Necktie"]:
        return
    for side in (-1, 1):
        d.polygon(
            [(cx + side * 1.15 * nw, sy - 0.04 * b), (cx, sy + 0.25 * b)]
            + [(cx + side * 0.2 * a, S + 2), (cx + side * 1.6 * nw, S + 2)],
            fill=(238, 238, 235),
        )
    tie = _rgb(f.rng.uniform(20, 220, 3))
    kw = 0.14 * a
    knot = [(cx - kw, sy - 0.02 * b), (cx + kw, sy - 0.02 * b)]
    d.polygon(knot + [(cx + 0.6 * kw, sy + 0.14 * b), (cx - 0.6 * kw, sy + 0.14 * b)], fill=tie)
    d.polygon(
        [(cx - 0.6 * kw, sy + 0.14 * b), (cx + 0.6 * kw, sy + 0.14 * b)]
        + [(cx + 1.5 * kw, S + 2), (cx - 1.5 * kw, S + 2)],
        fill=_scale(tie, 0.9),
    )


def _draw_hair_behind(f: _Face) -> None:
    """The hair behind the head: down to the shoulders when long, a cap when short."""
    if f.labels["Bald"]:
        return
    d, cx, cy, a, b = f.draw, f.cx, f.cy, f.a, f.b
    if not f.identity.long_hair:
        d.ellipse([cx - 1.1 * a, cy - 1.12 * b, cx + 1.1 * a, cy + 0.15 * b], fill=f.hair)
        return
    top = cy - 1.12 * b
    bottom = f.shoulder_y + 0.25 * b
    hw = 1.3 * a
    n_side = 10
    left, right = [], []
    for i in range(n_side + 1):
        y = cy - 0.2 * b + (bottom - (cy - 0.2 * b)) * i / n_side
        off = 0.07 * a * math.sin(i * 1.7) if f.labels["Wavy_Hair"] else 0.0
        left.append((cx - hw - off, y))
        right.append((cx + hw + off, y))
    d.ellipse([cx - hw, top, cx + hw, cy + 0.4 * b], fill=f.hair)
    d.polygon(left + right[::-1], fill=f.hair)


def _draw_ears(f: _Face) -> None:
    """Two ears, in the shadowed skin tone."""
    for side in (-1, 1):
        ex = f.cx + side * 0.98 * f.a
        box = [ex - 0.09 * f.a, f.cy - 0.22 * f.b, ex + 0.09 * f.a, f.cy + 0.16 * f.b]
        f.draw.ellipse(box, fill=f.skin_dark)


def _draw_side_strands(f: _Face) -> None:
    """Strands down the sides of long wavy or straight hair, drawn before the face covers their inner end."""
    L = f.labels
    wavy = L["Wavy_Hair"]
    if L["Bald"] or not f.identity.long_hair or not (wavy or L["Straight_Hair"]):
        return
    a, b = f.a, f.b
    for side in (-1, 1):
        for j in range(3):
            x = f.cx + side * (1.05 + 0.09 * j) * a
            p0, p1 = (x, f.cy + 0.2 * b), (x, f.shoulder_y + 0.2 * b)
            pts = _wave(p0, p1, 0.05 * a, 2.5) if wavy else [p0, p1]
            _polyline(f.draw, pts, f.strand, f.px)


def _draw_skin(f: _Face) -> None:
    """The face itself, with a second chin under the jaw for Double_Chin."""
    d, cx, a, b, chin_y = f.draw, f.cx, f.a, f.b, f.chin_y
    if f.labels["Double_Chin"]:
        d.ellipse([cx - 0.42 * a, chin_y - 0.2 * b, cx + 0.42 * a, chin_y + 0.12 * b], fill=f.skin)
    d.polygon(f.outline, fill=f.skin)
    if f.labels["Double_Chin"]:
        box = [cx - 0.36 * a, chin_y - 0.12 * b, cx + 0.36 * a, chin_y + 0.09 * b]
        d.arc(box, 20, 160, fill=f.skin_shadow, width=max(1, int(round(1.2 * f.px))))


def _draw_cheeks(f: _Face) -> None:
    """Highlights and a hollow for High_Cheekbones, red patches for Rosy_Cheeks."""
    d, cx, cy, a, b = f.draw, f.cx, f.cy, f.a, f.b
    if f.labels["High_Cheekbones"]:
        highlight = _mix(f.skin, (255, 255, 255), 0.3)
        for side in (-1, 1):
            x = cx + side * 0.58 * a
            d.ellipse([x - 0.2 * a, cy + 0.0 * b, x + 0.2 * a, cy + 0.1 * b], fill=highlight)
            hollow = [(cx + side * 0.75 * a, cy + 0.17 * b), (cx + side * 0.45 * a, cy + 0.32 * b)]
            d.line(hollow, fill=_scale(f.skin, 0.86), width=max(1, int(round(1.5 * f.px))))
    if f.labels["Rosy_Cheeks"]:
        rosy = _mix(f.skin, (232, 80, 96), 0.5)
        for side in (-1, 1):
            x = cx + side * 0.52 * a
            d.ellipse([x - 0.16 * a, cy + 0.12 * b, x + 0.16 * a, cy + 0.3 * b], fill=rosy)


def _draw_age_lines(f: _Face) -> None:
    """Forehead lines and nasolabial folds unless Young."""
    if f.labels["Young"]:
        return
    d, cx, cy, a, b, px = f.draw, f.cx, f.cy, f.a, f.b, f.px
    line_c = _scale(f.skin, 0.7)
    for j in range(3):
        y = cy - (0.46 + 0.09 * j) * b
        w = (0.5 - 0.06 * j) * a
        d.arc([cx - w, y - 0.05 * b, cx + w, y + 0.05 * b], 200, 340, fill=line_c, width=max(1, int(px)))
    for side in (-1, 1):
        fold = [(0.22, 0.22), (0.38, 0.38), (0.42, 0.55)]
        _polyline(d, [(cx + side * u * a, cy + v * b) for u, v in fold], line_c, px)


def _draw_beard(f: _Face) -> None:
    """Stubble (5_o_Clock_Shadow), a full beard (not No_Beard), Goatee and Sideburns."""
    L, d, cx, cy, a, b = f.labels, f.draw, f.cx, f.cy, f.a, f.b
    mw, mouth_y = f.mouth_hw, f.mouth_y
    if L["5_o_Clock_Shadow"]:
        m = int(160 * (f.size / 128.0) ** 2)  # the same density at every size
        yy = f.rng.uniform(cy + 0.1 * b, f.chin_y, m)
        xx = f.rng.uniform(-1.0, 1.0, m)
        xs = cx + xx * f.half_width(yy)
        in_mouth = (np.abs(xs - cx) < mw * 1.05) & (np.abs(yy - mouth_y) < 0.1 * b)
        # Keep the cheeks' upper middle clear: stubble grows along the jaw and around the mouth.
        keep = ~in_mouth & ((np.abs(xx) > 0.35) | (yy > mouth_y - 0.14 * b))
        d.point(list(zip(xs[keep].tolist(), yy[keep].tolist())), fill=_mix(f.skin, (60, 60, 70), 0.45))
    if not L["No_Beard"]:
        outer = [(x, y) for x, y in f.outline if y >= cy + 0.05 * b]
        outer.sort(key=lambda p: math.atan2(p[1] - cy, p[0] - cx))  # right side -> chin -> left side
        cheek = [(0.78 * a, cy + 0.08 * b), (0.5 * a, cy + 0.38 * b), (mw * 1.05, mouth_y + 0.06 * b)]
        inner = [(cx - dx, y) for dx, y in cheek] + [(cx, mouth_y + 0.17 * b)]
        inner += [(cx + dx, y) for dx, y in cheek[::-1]]
        d.polygon(outer + inner, fill=f.beard_rgb)
    if L["Goatee"]:
        d.ellipse([cx - 0.5 * mw, mouth_y + 0.08 * b, cx + 0.5 * mw, f.chin_y + 0.03 * b], fill=f.beard_rgb)
    if L["Sideburns"]:
        for side in (-1, 1):
            x_out = cx + side * float(f.half_width(cy + 0.02 * b)) * 0.99
            x_in = x_out - side * 0.13 * a
            d.polygon(
                [(x_out, cy - 0.45 * b), (x_in, cy - 0.45 * b), (x_in, cy + 0.25 * b), (x_out, cy + 0.3 * b)],
                fill=f.beard_rgb,
            )


def _draw_blemishes(f: _Face) -> None:
    """A few dark spots on the cheeks unless Attractive."""
    if f.labels["Attractive"]:
        return
    blem = _scale(f.skin, 0.8)
    for _ in range(4):
        x = f.cx + float(f.rng.uniform(-0.6, 0.6)) * f.a
        y = f.cy + float(f.rng.uniform(0.0, 0.4)) * f.b
        r = 0.7 * f.px
        f.draw.ellipse([x - r, y - r, x + r, y + r], fill=blem)


def _draw_eyes(f: _Face) -> None:
    """Eyes, with Heavy_Makeup's eye shadow and liner, Bags_Under_Eyes and Narrow_Eyes."""
    L, d, cx, a, b, px = f.labels, f.draw, f.cx, f.a, f.b, f.px
    eye_hw = 0.17 * a
    eye_hh = eye_hw * (0.24 if L["Narrow_Eyes"] else 0.52)
    asym = 0.0 if L["Attractive"] else 0.03 * b
    makeup = L["Heavy_Makeup"]
    for side in (-1, 1):
        ex = cx + side * 0.42 * a
        ey = f.eye_y + (asym if side > 0 else 0.0)
        if makeup:
            shadow = ((120, 60, 130), (60, 80, 150), (90, 55, 40), (40, 30, 35))[int(f.rng.integers(4))]
            box = [ex - 1.25 * eye_hw, ey - 3.0 * eye_hh - 0.03 * b, ex + 1.25 * eye_hw, ey + 0.4 * eye_hh]
            d.ellipse(box, fill=_mix(f.skin, shadow, 0.7))
        if L["Bags_Under_Eyes"]:
            box = [ex - eye_hw, ey - 0.14 * b, ex + eye_hw, ey + 0.15 * b]
            d.arc(box, 20, 160, fill=f.skin_shadow, width=max(1, int(round(2.0 * px))))
        d.ellipse(
            [ex - eye_hw, ey - eye_hh, ex + eye_hw, ey + eye_hh],
            fill=(245, 245, 240),
            outline=(20, 15, 15) if makeup else _scale(f.skin, 0.5),
            width=max(1, int(round((1.6 if makeup else 1.0) * px))),
        )
        r = min(eye_hh * 0.95, eye_hw * 0.5)
        d.ellipse([ex - r, ey - r, ex + r, ey + r], fill=f.identity.iris_rgb)
        r2 = r * 0.5
        d.ellipse([ex - r2, ey - r2, ex + r2, ey + r2], fill=(10, 10, 10))


def _draw_brows(f: _Face) -> None:
    """Eyebrows, thicker when Bushy_Eyebrows, peaked when Arched_Eyebrows."""
    cx, a, b, brow_y = f.cx, f.a, f.b, f.brow_y
    brow_c = _mix(f.hair, (45, 35, 30), 0.45)
    brow_w = (3.4 if f.labels["Bushy_Eyebrows"] else 1.6) * f.px
    # (inner end, peak, outer end) heights above brow_y, in units of b
    rise = (0.02, -0.09, 0.05) if f.labels["Arched_Eyebrows"] else (-0.01, -0.02, 0.01)
    for side in (-1, 1):
        xs = (cx + side * 0.18 * a, cx + side * 0.45 * a, cx + side * 0.66 * a)
        _polyline(f.draw, [(x, brow_y + r * b) for x, r in zip(xs, rise)], brow_c, brow_w)


def _draw_nose(f: _Face) -> None:
    """The nose: wider for Big_Nose, longer and pointed for Pointy_Nose; then the nostrils."""
    L, d, cx, cy, a, b = f.labels, f.draw, f.cx, f.cy, f.a, f.b
    nw = (0.2 if L["Big_Nose"] else 0.12) * a
    tip = cy + (0.3 if L["Pointy_Nose"] else 0.22) * b
    nose_c = _scale(f.skin, 0.88)
    bridge = [(cx - 0.04 * a, cy - 0.08 * b), (cx + 0.04 * a, cy - 0.08 * b)]
    if L["Pointy_Nose"]:
        d.polygon(bridge + [(cx + nw, tip - 0.08 * b), (cx, tip), (cx - nw, tip - 0.08 * b)], fill=nose_c)
    else:
        d.polygon(bridge + [(cx + nw, tip - 0.06 * b), (cx - nw, tip - 0.06 * b)], fill=nose_c)
        d.ellipse([cx - nw, tip - 0.12 * b, cx + nw, tip + 0.02 * b], fill=nose_c)
    nr = (0.05 if L["Big_Nose"] else 0.03) * a + 0.4 * f.px
    ny = tip - 0.04 * b
    for side in (-1, 1):
        nx = cx + side * 0.55 * nw
        d.ellipse([nx - nr, ny - nr * 0.6, nx + nr, ny + nr * 0.6], fill=f.skin_shadow)


def _draw_mouth(f: _Face) -> None:
    """Lips (red with Wearing_Lipstick, fuller with Big_Lips), a smile, an open mouth, and a moustache."""
    L, d, cx, b, mouth_y = f.labels, f.draw, f.cx, f.b, f.mouth_y
    if L["Wearing_Lipstick"]:
        lip = _rgb(np.array([200.0, 28.0, 48.0]) + f.rng.normal(0.0, 10.0, 3))
    else:
        lip = _mix(f.skin, (170, 80, 85), 0.35)
    lip_t = (0.075 if L["Big_Lips"] else 0.04) * b
    smile, open_ = L["Smiling"], L["Mouth_Slightly_Open"]
    open_h = (0.13 if smile else 0.08) * b if open_ else 0.0
    xs = np.linspace(-1.0, 1.0, 15)
    env = np.clip(1.0 - xs**2, 0.0, 1.0)  # lips and opening thin out to nothing at the corners
    centre = mouth_y + ((0.07 * env - 0.04) * b if smile else 0.0)
    in_up = centre - 0.3 * open_h * env**0.7
    in_lo = centre + 0.7 * open_h * env**0.7
    out_up = in_up - lip_t * env**0.5
    out_lo = in_lo + 1.2 * lip_t * env**0.5
    xx = cx + f.mouth_hw * xs
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
        _polyline(d, list(zip(xx, centre if smile else np.full_like(xx, mouth_y))), _scale(lip, 0.55), f.px)
    _draw_moustache(f, float(np.min(out_up)))


def _draw_moustache(f: _Face, lip_top: float) -> None:
    """A thick bar over the upper lip (whose top is ``lip_top``) for Mustache."""
    if not f.labels["Mustache"]:
        return
    cx, b, mw, mouth_y = f.cx, f.b, f.mouth_hw, f.mouth_y
    m_y = lip_top - 0.065 * b
    pts = [(cx - 1.08 * mw, mouth_y + 0.03 * b), (cx - 0.8 * mw, m_y + 0.01 * b), (cx, m_y)]
    pts += [(cx + 0.8 * mw, m_y + 0.01 * b), (cx + 1.08 * mw, mouth_y + 0.03 * b)]
    _polyline(f.draw, pts, f.beard_rgb, 0.09 * b)


def _draw_bald_top(f: _Face) -> None:
    """For Bald: a shine on the scalp and a fringe of hair at the sides."""
    d, cx, cy, a, b = f.draw, f.cx, f.cy, f.a, f.b
    shine = _mix(f.skin, (255, 255, 255), 0.35)
    d.ellipse([cx - 0.35 * a, cy - 0.95 * b, cx + 0.1 * a, cy - 0.8 * b], fill=shine)
    for side in (-1, 1):
        x_out = cx + side * 1.02 * a
        d.polygon(
            [(x_out, cy - 0.5 * b), (x_out - side * 0.12 * a, cy - 0.45 * b)]
            + [(x_out - side * 0.1 * a, cy - 0.1 * b), (x_out + side * 0.04 * a, cy - 0.1 * b)],
            fill=f.hair,
        )


def _draw_hair_top(f: _Face) -> None:
    """The hair over the forehead down to the hairline (higher for Receding_Hairline), Bangs and strands."""
    if f.labels["Bald"]:
        _draw_bald_top(f)
        return
    L, d, cx, cy, a, b = f.labels, f.draw, f.cx, f.cy, f.a, f.b
    wavy = L["Wavy_Hair"]
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
    d.polygon(cap + hairline, fill=f.hair)
    if L["Bangs"]:
        fr = [(cx + 0.9 * a, cy - 0.58 * b), (cx - 0.9 * a, cy - 0.58 * b)]
        n_teeth = 7
        for j in range(n_teeth + 1):
            u = -0.86 + 1.72 * j / n_teeth
            depth = 0.36 if j % 2 == 0 else 0.44  # a jagged fringe
            fr.append((cx + u * a, cy - depth * b))
        d.polygon(fr, fill=f.hair)
    if not (wavy or L["Straight_Hair"]):
        return
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
        if p1[1] - p0[1] < 0.08 * b:  # too short to read as a strand
            continue
        pts = _wave(p0, p1, 0.04 * a, 1.5, n=8) if wavy else [p0, p1]
        _polyline(d, pts, f.strand, f.px)


def _draw_hat(f: _Face) -> None:
    """For Wearing_Hat, a brimmed hat or a beanie, half and half."""
    if not f.labels["Wearing_Hat"]:
        return
    d, cx, cy, a, b = f.draw, f.cx, f.cy, f.a, f.b
    hat = _rgb(f.rng.uniform(15, 230, 3))
    if f.rng.random() < 0.5:  # brimmed hat
        crown = [cx - 1.0 * a, cy - 1.5 * b, cx + 1.0 * a, cy - 0.62 * b]
        d.rounded_rectangle(crown, radius=0.3 * a, fill=hat)
        d.ellipse([cx - 1.5 * a, cy - 0.74 * b, cx + 1.5 * a, cy - 0.52 * b], fill=_scale(hat, 0.85))
        d.rectangle([cx - 1.0 * a, cy - 0.85 * b, cx + 1.0 * a, cy - 0.74 * b], fill=_scale(hat, 0.6))
    else:  # beanie
        d.chord([cx - 1.12 * a, cy - 1.3 * b, cx + 1.12 * a, cy - 0.1 * b], 180, 360, fill=hat)
        d.rectangle([cx - 1.12 * a, cy - 0.78 * b, cx + 1.12 * a, cy - 0.6 * b], fill=_scale(hat, 0.8))


def _draw_glasses(f: _Face) -> None:
    """For Eyeglasses, round frames with arms and a bridge."""
    if not f.labels["Eyeglasses"]:
        return
    d, cx, a, b, eye_y = f.draw, f.cx, f.a, f.b, f.eye_y
    frame = ((20, 20, 20), (90, 60, 30), (150, 150, 160), (120, 20, 30))[int(f.rng.integers(4))]
    fw = max(1, int(round(1.6 * f.px)))
    rx, ry = 0.3 * a, 0.2 * b
    for side in (-1, 1):
        ex = cx + side * 0.42 * a
        d.ellipse([ex - rx, eye_y - ry, ex + rx, eye_y + ry], outline=frame, width=fw)
        arm = [(ex + side * rx, eye_y - 0.05 * b), (cx + side * 1.0 * a, eye_y - 0.08 * b)]
        d.line(arm, fill=frame, width=fw)
    d.arc([cx - 0.14 * a, eye_y - 0.1 * b, cx + 0.14 * a, eye_y + 0.05 * b], 200, 340, fill=frame, width=fw)


def _draw_earrings(f: _Face) -> None:
    """For Wearing_Earrings, a hoop or a drop under each ear."""
    if not f.labels["Wearing_Earrings"]:
        return
    d, r = f.draw, 0.045 * f.size
    ring = ((230, 190, 60), (210, 210, 220), (240, 240, 235))[int(f.rng.integers(3))]
    for side in (-1, 1):
        ex, ey = f.cx + side * 0.99 * f.a, f.cy + 0.2 * f.b + r
        if f.rng.random() < 0.5:
            d.ellipse([ex - r, ey - r, ex + r, ey + r], outline=ring, width=max(1, int(round(1.5 * f.px))))
        else:
            d.ellipse([ex - 0.5 * r, ey - 0.9 * r, ex + 0.5 * r, ey + 0.1 * r], fill=ring)


def _draw_necklace(f: _Face) -> None:
    """For Wearing_Necklace, a string of beads hanging below the neck."""
    if not f.labels["Wearing_Necklace"]:
        return
    bead = ((230, 190, 60), (215, 215, 225), (245, 242, 232))[int(f.rng.integers(3))]
    r = 1.3 * f.px
    for j in range(11):
        u = -1.0 + 2.0 * j / 10
        x = f.cx + 1.05 * f.neck_w * u
        y = f.shoulder_y - 0.04 * f.b + 0.22 * f.b * (1.0 - u * u)
        f.draw.ellipse([x - r, y - r, x + r, y + r], fill=bead)


def _blur_and_noise(f: _Face, img: Image.Image) -> Image.Image:
    """Blur the image for Blurry, then add sensor noise, lighter for Attractive (smoother) faces."""
    if f.labels["Blurry"]:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(f.rng.uniform(1.2, 2.0)) * f.px))
    # Triangular noise, the sum of two uniform integers in [0, 2h] minus 2h (sd 2.8 / 3.7 for h = 3 / 4),
    # added in int16 so that it clips instead of wrapping.
    h = 3 if f.labels["Attractive"] else 4
    arr = np.asarray(img, dtype=np.int16)
    arr += f.rng.integers(0, 2 * h + 1, size=arr.shape, dtype=np.uint8)
    arr += f.rng.integers(0, 2 * h + 1, size=arr.shape, dtype=np.uint8)
    arr -= 2 * h
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


# Back to front: each part may cover the ones before it, and each draws from the face's generator in turn.
_PARTS = (
    _draw_clothes,
    _draw_hair_behind,
    _draw_ears,
    _draw_side_strands,
    _draw_skin,
    _draw_cheeks,
    _draw_age_lines,
    _draw_beard,
    _draw_blemishes,
    _draw_eyes,
    _draw_brows,
    _draw_nose,
    _draw_mouth,
    _draw_hair_top,
    _draw_hat,
    _draw_glasses,
    _draw_earrings,
    _draw_necklace,
)


def render_face(
    labels: dict[str, bool], identity: Identity, rng: np.random.Generator, size: int
) -> Image.Image:
    """Draw one face showing ``labels`` for ``identity``; all randomness comes from ``rng``."""
    img = Image.new("RGB", (size, size), _rgb(rng.uniform(25, 235, 3)))
    f = _layout(labels, identity, rng, ImageDraw.Draw(img), size)
    for part in _PARTS:
        part(f)
    return _blur_and_noise(f, img)
