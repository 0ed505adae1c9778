"""``attr2gender data summary ROOT``: what a CelebA root (or a folder of labelled faces) holds, and what is
wrong with it."""

from __future__ import annotations

import pandas as pd
from PIL import Image, UnidentifiedImageError

from ..progress import progress as tqdm
from .attributes import TARGET
from .celeba import PARTITION_NAMES, CelebA
from .groups import AGE_BAND_LABELS, age_bands
from .images import ImageLoadError, load_image
from .splits import official_partition_usable


def find_unreadable_images(celeba: CelebA, decode: bool = False, progress: bool = True) -> list[str]:
    """Image files that cannot be opened (header check) or, with ``decode``, fully decoded."""
    bad = []
    for image_id in tqdm(celeba.present, desc="checking images", disable=not progress, leave=False):
        path = celeba.image_path(image_id)
        try:
            if decode:
                load_image(path)
            else:
                with Image.open(path) as im:
                    im.verify()
        except (ImageLoadError, UnidentifiedImageError, OSError, SyntaxError, ValueError):
            bad.append(image_id)
    return bad


def summarize(celeba: CelebA, decode: bool = False, progress: bool = True) -> str:
    table = celeba.table
    lines = [f"CelebA root: {celeba.root}"]
    lines.append(f"annotated images: {len(celeba.attributes):,}")
    lines.append(f"images found:     {len(celeba.present):,}")
    if celeba.missing_count:
        lines.append(
            f"missing on disk:  {celeba.missing_count:,} annotated images have no file (a partial copy)"
        )
    if celeba.unannotated:
        lines.append(
            f"not annotated:    {len(celeba.unannotated):,} image files have no row, e.g. {celeba.unannotated[:3]}"
        )
    if celeba.partition is None:
        lines.append("partition:        list_eval_partition.txt absent (splits will be made by identity)")
    else:
        counts = table["partition"].value_counts()
        parts = ", ".join(f"{PARTITION_NAMES[k]} {int(counts.get(k, 0)):,}" for k in PARTITION_NAMES)
        usable = (
            "usable" if official_partition_usable(celeba) else "NOT usable, splits will be made by identity"
        )
        lines.append(f"partition:        {parts} (official partition {usable})")
    if len(table):
        lines.append(f"{TARGET} rate:        {table[TARGET].mean():.4f} over present images")
    if celeba.identity is None:
        lines.append("identities:       identity_CelebA.txt absent")
    else:
        lines.append(f"identities:       {table['identity'].nunique():,} among present images")
    for name, frame in (("bbox", celeba.bbox), ("landmarks", celeba.landmarks)):
        lines.append(f"{name + ':':<18}{'present' if frame is not None else 'absent (optional)'}")
    bad = find_unreadable_images(celeba, decode=decode, progress=progress)
    check = "decoded" if decode else "header-checked"
    if bad:
        lines.append(
            f"unreadable:       {len(bad):,} of {len(celeba.present):,} images ({check}), e.g. {bad[:5]}"
        )
    else:
        lines.append(f"unreadable:       none ({len(celeba.present):,} images {check})")
    return "\n".join(lines)


def summarize_labelled(faces) -> str:
    """What a folder of labelled faces (:class:`~attr2gender.data.labelled_faces.LabelledFaces`) holds: photos,
    genders by age band and by race, groups, the licence, and the rows left out."""
    table = faces.table
    bands = age_bands(table["age"].to_numpy())
    lines = [
        f"labelled faces:   {faces.root} ({faces.name}, read from {faces.layout})",
        f"photos:           {len(table):,} ({int(table['male'].sum()):,} male, {int((table['male'] == 0).sum()):,} female)",
        f"groups:           {table['group'].nunique():,}"
        + ("" if faces.has_groups else " (no group column: every photo its own group)"),
        f"licence:          {faces.licence}",
        "by age band (female / male):",
    ]
    counts = pd.crosstab(pd.Series(bands, name="band"), table["male"].to_numpy())
    for band in [*AGE_BAND_LABELS, ""]:
        if band in counts.index:
            row = counts.loc[band]
            lines.append(f"  {band or 'unknown':8s} {int(row.get(0, 0)):>6,} / {int(row.get(1, 0)):,}")
    races = pd.crosstab(table["race"].replace("", "unknown").to_numpy(), table["male"].to_numpy())
    lines.append("by race (female / male):")
    for race, row in races.iterrows():
        lines.append(f"  {race:8s} {int(row.get(0, 0)):>6,} / {int(row.get(1, 0)):,}")
    if faces.problems:
        lines.append(f"left out:         {len(faces.problems):,} rows, e.g. {faces.problems[0]}")
    return "\n".join(lines)
