"""CelebA-C: a pipeline's Male accuracy on corrupted test images (see :mod:`attr2gender.data.corruptions`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.corruptions import CORRUPTIONS, corrupt
from ..data.images import load_image
from ..metrics import bootstrap_ci


def corruption_accuracy(
    pipeline,
    images,
    male,
    corruptions=CORRUPTIONS,
    seed: int = 0,
    n_boot: int = 1000,
    batch_size: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Accuracy (95 % bootstrap CI) on the clean images and under each corruption, plus their mean.

    ``images``: paths or images (decoded once); ``male``: their 0/1 truth. Each image ``i`` is corrupted
    with ``(seed, i)``, so both routes of a comparison see the same corrupted pixels. Rows: ``clean``, one
    per corruption, and ``mean`` (the mean accuracy over the corruptions, without a CI)."""
    from ..progress import progress as tqdm

    decoded = [load_image(image) for image in images]
    male = np.asarray(male, dtype=int)
    if len(decoded) != len(male):
        raise ValueError(f"{len(decoded)} images but {len(male)} Male labels")
    rows = []
    for name in tqdm(["clean", *corruptions], desc=f"CelebA-C ({pipeline.kind})", disable=not progress):
        shown = decoded if name == "clean" else [corrupt(im, name, seed, i) for i, im in enumerate(decoded)]
        # CelebA crops, read as they are: alignment would add the detector's misses to the corruption's effect
        frame = pipeline.predict(shown, progress=False, batch_size=batch_size, align="none")
        prob = frame["male_probability"].to_numpy()
        correct = ((prob >= pipeline.threshold).astype(int) == male).astype(float)
        acc, low, high = bootstrap_ci(
            lambda c: c.mean(axis=-1), correct, n_boot=n_boot, seed=seed, vectorized=True
        )
        rows.append({"corruption": name, "accuracy": acc, "ci_low": low, "ci_high": high, "n": len(male)})
    table = pd.DataFrame(rows).set_index("corruption")
    table.loc["mean"] = [table.loc[list(corruptions), "accuracy"].mean(), np.nan, np.nan, len(male)]
    return table
