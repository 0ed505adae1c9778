"""CelebA-C: a pipeline's Male accuracy on corrupted test images (see :mod:`attr2gender.data.corruptions`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..data.corruptions import CORRUPTIONS, corrupted_versions
from ..metrics import accuracy_ci
from ..progress import progress as tqdm


def corruption_table(
    male,
    probabilities: Mapping[str, np.ndarray],
    threshold: float = 0.5,
    seed: int = 0,
    n_boot: int = 1000,
) -> pd.DataFrame:
    """The CelebA-C table from P(Male) per version of the same images: ``{"clean": ..., corruption: ...}``
    (``clean`` optional). One row per key, in order (``accuracy``, ``ci_low``, ``ci_high``: a 95 %
    bootstrap CI, NaN with ``n_boot=0``; ``n``), then ``mean``: the mean accuracy over the corruptions,
    without a CI. For probabilities already computed (a stage one reused by several stage twos)."""
    male = np.asarray(male, dtype=int)
    rows = []
    for name, prob in probabilities.items():
        acc, low, high = accuracy_ci(male, np.asarray(prob), threshold, n_boot=n_boot, seed=seed)
        rows.append({"corruption": name, "accuracy": acc, "ci_low": low, "ci_high": high, "n": len(male)})
    table = pd.DataFrame(rows).set_index("corruption")
    corruptions = [name for name in probabilities if name != "clean"]
    table.loc["mean"] = [table.loc[corruptions, "accuracy"].mean(), np.nan, np.nan, len(male)]
    return table


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
    per corruption, and ``mean`` (the mean accuracy over the corruptions, without a CI); see
    :func:`corruption_table`."""
    male = np.asarray(male, dtype=int)
    probabilities = {}
    versions = corrupted_versions(images, corruptions, seed)
    for name, shown in tqdm(
        versions, total=1 + len(corruptions), desc=f"CelebA-C ({pipeline.route})", disable=not progress
    ):
        if len(shown) != len(male):
            raise ValueError(f"{len(shown)} images but {len(male)} Male labels")
        # CelebA crops, read as they are: alignment would add the detector's misses to the corruption's effect
        frame = pipeline.predict(shown, progress=False, batch_size=batch_size, align="none")
        probabilities[name] = frame["male_probability"].to_numpy()
    return corruption_table(male, probabilities, pipeline.threshold, seed=seed, n_boot=n_boot)
