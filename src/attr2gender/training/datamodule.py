"""Data for training (Lightning ``LightningDataModule``): CelebA root -> splits -> datasets -> loaders."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from ..config import ConfigError, RunConfig
from ..data import (
    CachedCelebADataset,
    CelebA,
    CelebADataset,
    DecodedImageCache,
    Splits,
    balance_by_target,
    build_transforms,
    collate_skipping_corrupt,
    load_celeba,
    make_splits,
)
from ..data.groups import group_ids, group_names, inverse_frequency_weights
from ..data.labelled_faces import (
    LabelledFaces,
    find_labelled_faces,
    load_labelled_faces,
    split_labelled_faces,
)


def _cap(ids: list[str], n: int, seed: int) -> list[str]:
    """A seeded subset of ``n`` ids (all when n is 0), kept in file order."""
    if not n or n >= len(ids):
        return ids
    keep = np.sort(np.random.default_rng(seed).choice(len(ids), size=n, replace=False))
    return [ids[i] for i in keep]


class CelebADataModule(L.LightningDataModule):
    """Splits (official or identity-disjoint), optional balancing and caps, loaders that skip bad images."""

    def __init__(self, config: RunConfig, celeba: CelebA | None = None):
        super().__init__()
        self.config = config
        self.celeba = celeba
        self.splits: Splits | None = None
        self.datasets: dict[str, CelebADataset] = {}
        # The second source (config.labelled_faces), split by group; None when there is none.
        self.labelled: LabelledFaces | None = None
        self.labelled_splits: Splits | None = None
        self.labelled_note = ""  # one line when labelled_faces=auto found no folder

    def prepare(self) -> None:
        """Read the root and make the split ids; cheap, safe to call in every process."""
        if self.splits is not None:
            return
        c = self.config
        if self.celeba is None:
            self.celeba = load_celeba(c.data_root)
        splits = make_splits(self.celeba, c.split, tuple(c.split_fractions), seed=c.seed)
        train = splits.train
        if c.balance == "male":
            train = balance_by_target(train, self.celeba.male(train), seed=c.seed)
        self.splits = Splits(
            _cap(train, c.max_train_images, c.seed),
            _cap(splits.val, c.max_eval_images, c.seed + 1),
            _cap(splits.test, c.max_eval_images, c.seed + 2),
            splits.strategy,
        )
        for name, ids in self.splits.as_dict().items():
            if not ids:
                raise ConfigError(
                    f"the {name} split of {self.celeba.root} is empty ({self.splits.sizes()}); "
                    "use more images or other split_fractions"
                )
        male = self.celeba.male(self.splits.train)
        if len(np.unique(male)) < 2:
            only = "Male" if male[0] else "Female"
            raise ConfigError(
                f"the training split of {self.celeba.root} holds only {only} images ({len(male):,}); "
                "a classifier needs both classes: use more images, other split_fractions or another "
                "seed"
            )
        self._prepare_labelled()
        val_male = self.celeba.male(self.splits.val)
        if c.calibrate and len(np.unique(val_male)) < 2:  # found now, not after training
            only = "Male" if val_male[0] else "Female"
            raise ConfigError(
                f"calibrate=true fits a temperature on the validation split, but it holds only {only} images "
                f"({len(val_male):,}): use more images, other split_fractions or another seed, or calibrate=false"
            )

    def _prepare_labelled(self) -> None:
        """The labelled faces the config names, split by group (capped like CelebA's splits)."""
        c = self.config
        folder, self.labelled_note = find_labelled_faces(c.labelled_faces, c.data_root)
        if self.labelled_note and c.progress:
            print(self.labelled_note, flush=True)
        if folder is None:
            if c.male_sources == "labelled_faces":
                raise ConfigError(
                    "male_sources=labelled_faces but no labelled faces were found "
                    f"({self.labelled_note or c.labelled_faces}); name the folder with labelled_faces=FOLDER"
                )
            return
        self.labelled = load_labelled_faces(folder)
        splits = split_labelled_faces(self.labelled, c.labelled_faces_split, c.seed)
        self.labelled_splits = Splits(
            _cap(splits.train, c.max_train_images, c.seed),
            _cap(splits.val, c.max_eval_images, c.seed + 1),
            _cap(splits.test, c.max_eval_images, c.seed + 2),
            splits.strategy,
        )
        if c.male_sources != "celeba":
            for name in ("train", "val"):
                male = self.labelled.male(getattr(self.labelled_splits, name))
                if len(np.unique(male)) < 2:
                    raise ConfigError(
                        f"the {name} side of the labelled faces in {folder} holds "
                        f"{'no photos' if not len(male) else 'one gender only'} ({len(male):,} photos); "
                        "use more photos, another labelled_faces_split or seed, or male_sources=celeba"
                    )

    def setup(self, stage: str | None = None) -> None:
        self.prepare()
        c = self.config
        for name, ids in self.splits.as_dict().items():
            if name in self.datasets:
                continue
            transform = build_transforms(c.image_size, train=name == "train", augment=c.augment)
            if c.decode_cache:
                cache = DecodedImageCache(
                    self.celeba, ids, c.image_size, Path(c.cache_dir) / "decoded", c.progress
                )
                self.datasets[name] = CachedCelebADataset(
                    self.celeba, ids, transform, cache, grouping=c.group_by
                )
            else:
                self.datasets[name] = CelebADataset(self.celeba, ids, transform, grouping=c.group_by)

    def val_group_ids(self) -> np.ndarray:
        """The Male x ``group_by`` group of every validation image (what a worst-group checkpoint ranks)."""
        self.prepare()
        return group_ids(self.celeba.attributes.loc[self.splits.val], grouping=self.config.group_by)

    def group_counts(self) -> list[int]:
        """Training images per Male x ``group_by`` group (inverse-frequency loss weights come from these)."""
        self.prepare()
        ids = group_ids(self.celeba.attributes.loc[self.splits.train], grouping=self.config.group_by)
        return np.bincount(ids, minlength=len(group_names(self.config.group_by))).tolist()

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        c = self.config
        generator = torch.Generator().manual_seed(c.seed)
        sampler = None
        if shuffle and c.balance == "groups":
            # Every Male x group_by group equally likely per draw (with replacement): the rare groups, e.g.
            # women without makeup, are seen as often as the common ones.
            weights = inverse_frequency_weights(self.datasets[name].groups.numpy())
            sampler = WeightedRandomSampler(
                torch.from_numpy(weights), num_samples=len(weights), replacement=True, generator=generator
            )
            shuffle = False
        return DataLoader(
            self.datasets[name],
            batch_size=c.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=c.num_workers,
            collate_fn=collate_skipping_corrupt,
            persistent_workers=c.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            generator=generator,
            drop_last=False,
        )

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)
