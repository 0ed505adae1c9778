"""Train/val/test splits: CelebA's official partition, or a seeded identity-disjoint split.

The official partition cannot serve a partial copy whose present images all sit in one partition
(the shared sample holds test-partition images only); then the split is made by identity, so that no
person is on both sides of a split.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .attributes import TARGET
from .celeba import PARTITION_NAMES, CelebA

SPLIT_STRATEGIES = ("auto", "official", "identity")


@dataclass(frozen=True)
class Splits:
    """Image ids per split and how they were made."""

    train: list[str]
    val: list[str]
    test: list[str]
    strategy: str  # "official" or "identity"

    def as_dict(self) -> dict[str, list[str]]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.as_dict().items()}


def official_partition_usable(celeba: CelebA) -> bool:
    """True when the partition file exists and present images fall in train, val and test."""
    if celeba.partition is None:
        return False
    parts = set(celeba.partition.reindex(celeba.present).dropna().astype(int).unique())
    return parts >= set(PARTITION_NAMES)


def make_splits(
    celeba: CelebA,
    strategy: str = "auto",
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> Splits:
    """Split the present images. ``auto`` takes the official partition when it can serve."""
    if strategy not in SPLIT_STRATEGIES:
        raise ValueError(f"split strategy {strategy!r} is not one of {SPLIT_STRATEGIES}")
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    if strategy == "official" and not official_partition_usable(celeba):
        raise ValueError(
            f"the official partition cannot serve {celeba.root}: the partition file is absent or the present "
            "images do not cover train, val and test. Use split=identity (or auto)."
        )
    if strategy in ("auto", "official") and official_partition_usable(celeba):
        part = celeba.partition.reindex(celeba.present)
        ids = {
            name: list(celeba.present[(part == code).to_numpy()]) for code, name in PARTITION_NAMES.items()
        }
        return Splits(ids["train"], ids["val"], ids["test"], "official")
    return identity_split(celeba, fractions, seed)


def identity_split(celeba: CelebA, fractions: tuple[float, float, float], seed: int) -> Splits:
    """Seeded split of identities (not images), sized by image counts."""
    present = celeba.present
    if celeba.identity is None:
        warnings.warn(
            f"no identity file in {celeba.root}: splitting images at random, so one person may appear in "
            "more than one split.",
            stacklevel=3,
        )
        identity = pd.Series(np.arange(len(present)), index=present)
    else:
        identity = celeba.identity.reindex(present)
        if identity.isna().any():
            missing = list(identity.index[identity.isna()][:3])
            raise ValueError(f"{celeba.root}: images {missing} have no identity in the identity file")
    counts = identity.value_counts().sort_index()
    rng = np.random.default_rng(seed)
    order = counts.index.to_numpy()[rng.permutation(len(counts))]
    # Walk identities in random order and fill train, then val, then test up to their image targets.
    targets = np.cumsum(np.asarray(fractions) * len(present))
    cumulative = np.cumsum(counts.loc[order].to_numpy())
    # An identity goes to the first split whose cumulative target its midpoint has not passed.
    midpoints = cumulative - counts.loc[order].to_numpy() / 2
    which = np.searchsorted(targets, midpoints, side="right").clip(0, 2)
    assign = pd.Series(which, index=order)
    split_of_image = assign.reindex(identity.to_numpy()).to_numpy()
    ids = [list(present[split_of_image == k]) for k in range(3)]
    return Splits(ids[0], ids[1], ids[2], "identity")


def balance_by_target(image_ids, male: np.ndarray, seed: int = 0) -> list[str]:
    """Downsample the majority class so Male and Female counts are equal (the source study's 1,769 each).

    Keeps the original order of the images that stay.
    """
    image_ids = np.asarray(list(image_ids))
    male = np.asarray(male).astype(bool)
    if len(image_ids) != len(male):
        raise ValueError(f"{len(image_ids)} image ids but {len(male)} {TARGET} labels")
    n = int(min(male.sum(), (~male).sum()))
    if n == 0:
        raise ValueError(f"cannot balance: the training set has only one {TARGET} class")
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(male), dtype=bool)
    for cls in (True, False):
        idx = np.flatnonzero(male == cls)
        keep[rng.choice(idx, size=n, replace=False)] = True
    return list(image_ids[keep])


def group_split(
    groups,
    strata,
    fractions: tuple[float, float, float],
    seed: int = 0,
    ids=None,
) -> Splits:
    """Seeded train/val/test split of rows by ``groups`` (photos of one person share a group: no person on
    two sides), stratified by ``strata`` (e.g. gender x age band; a group's is its most common), so every cell
    keeps about ``fractions`` of its people on each side. Returns the row ``ids`` (default: positions as
    strings) per side, in their input order."""
    groups = pd.Series(np.asarray(groups, dtype=object)).astype(str)
    strata = pd.Series(np.asarray(strata, dtype=object)).astype(str)
    if len(groups) != len(strata):
        raise ValueError(f"{len(groups)} groups but {len(strata)} strata")
    ids = np.asarray([str(i) for i in range(len(groups))] if ids is None else list(ids), dtype=object)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    frame = pd.DataFrame({"group": groups, "stratum": strata})
    sizes = frame.groupby("group", sort=False).size()
    # A group's stratum is its most common one (a 254-photo group of babies counts among the babies).
    first = (
        frame.groupby(["group", "stratum"], sort=False)
        .size()
        .rename("n")
        .reset_index()
        .sort_values(["n", "stratum"], ascending=[False, True], kind="stable")
        .drop_duplicates("group")
    )
    rng = np.random.default_rng(seed)
    side = {}
    for _, members in sorted(first.groupby("stratum"), key=lambda kv: kv[0]):
        # As identity_split: groups in random order fill train, then val, then test up to their photo
        # targets, each going where its midpoint falls (a 254-photo group cannot swell one side alone).
        order = members["group"].to_numpy()[rng.permutation(len(members))]
        counts = sizes.loc[order].to_numpy()
        targets = np.cumsum(np.asarray(fractions)) * counts.sum()
        midpoints = np.cumsum(counts) - counts / 2
        side.update(
            zip(order.tolist(), np.searchsorted(targets, midpoints, side="right").clip(0, 2).tolist())
        )
    which = groups.map(side).to_numpy()
    parts = [list(ids[which == k]) for k in range(3)]
    return Splits(parts[0], parts[1], parts[2], "group")
