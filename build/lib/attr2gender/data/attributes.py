"""CelebA's 40 attribute names, the target, and the real per-gender attribute rates.

The rates are constants on purpose: the synthetic generator must not need the real annotation file.
"""

from __future__ import annotations

# The 40 CelebA attributes, in the column order of ``list_attr_celeba.txt``.
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)

# What the project predicts.
TARGET = "Male"

# The 39 attributes stage one predicts and stage two reads, in file order.
STAGE_ONE_ATTRIBUTES: tuple[str, ...] = tuple(n for n in ATTRIBUTE_NAMES if n != TARGET)

# Share of Male == 1 over all 202,599 annotated CelebA images.
MALE_RATE = 0.4168

# P(attribute = 1 | Female), P(attribute = 1 | Male) over all 202,599 rows of the real
# ``list_attr_celeba.txt`` (computed once from ../shared/celeba/list_attr_celeba.txt, 2026-11-28).
CONDITIONAL_RATES: dict[str, tuple[float, float]] = {
    "5_o_Clock_Shadow": (0.0002, 0.2664),
    "Arched_Eyebrows": (0.4196, 0.0535),
    "Attractive": (0.6792, 0.2793),
    "Bags_Under_Eyes": (0.1019, 0.3482),
    "Bald": (0.0001, 0.0537),
    "Bangs": (0.2011, 0.0823),
    "Big_Lips": (0.3013, 0.1561),
    "Big_Nose": (0.1023, 0.4196),
    "Black_Hair": (0.1973, 0.2979),
    "Blond_Hair": (0.2389, 0.0207),
    "Blurry": (0.0464, 0.0572),
    "Brown_Hair": (0.2436, 0.1515),
    "Bushy_Eyebrows": (0.0692, 0.2442),
    "Chubby": (0.0122, 0.1211),
    "Double_Chin": (0.0097, 0.0985),
    "Eyeglasses": (0.0230, 0.1241),
    "Goatee": (0.0001, 0.1504),
    "Gray_Hair": (0.0107, 0.0857),
    "Heavy_Makeup": (0.6614, 0.0028),
    "High_Cheekbones": (0.5603, 0.3077),
    "Mouth_Slightly_Open": (0.5255, 0.4245),
    "Mustache": (0.0000, 0.0997),
    "Narrow_Eyes": (0.1114, 0.1204),
    "No_Beard": (0.9988, 0.6056),
    "Oval_Face": (0.3300, 0.2199),
    "Pale_Skin": (0.0562, 0.0244),
    "Pointy_Nose": (0.3596, 0.1624),
    "Receding_Hairline": (0.0529, 0.1174),
    "Rosy_Cheeks": (0.1105, 0.0030),
    "Sideburns": (0.0001, 0.1355),
    "Smiling": (0.5405, 0.4003),
    "Straight_Hair": (0.1841, 0.2424),
    "Wavy_Hair": (0.4473, 0.1408),
    "Wearing_Earrings": (0.3125, 0.0160),
    "Wearing_Hat": (0.0249, 0.0814),
    "Wearing_Lipstick": (0.8056, 0.0062),
    "Wearing_Necklace": (0.1981, 0.0178),
    "Wearing_Necktie": (0.0003, 0.1741),
    "Young": (0.8741, 0.6330),
}

assert tuple(CONDITIONAL_RATES) == STAGE_ONE_ATTRIBUTES
