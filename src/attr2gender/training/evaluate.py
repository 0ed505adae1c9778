"""Evaluation: one pass of a trained model over a dataset, and the metrics of that pass."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from ..data import collate_skipping_corrupt
from ..data.attributes import STAGE_ONE_ATTRIBUTES
from ..data.groups import age_bands, cell_masks
from ..metrics import (
    accuracy_ci,
    binary_metrics,
    cell_metrics,
    cell_table,
    cross_table,
    per_attribute_metrics,
    worst_cell,
)
from ..models.inference import TorchRuntime
from ..progress import progress as tqdm


@dataclass
class SplitPredictions:
    """Probabilities of one pass over a split, with the truth, aligned by ``index`` into the dataset."""

    prob: np.ndarray  # (n, 39) attribute probabilities, or (n,) P(Male)
    male: np.ndarray  # (n,) 0/1 truth
    attributes: np.ndarray  # (n, 39) 0/1 truth
    index: np.ndarray  # dataset positions of the rows (unreadable images are absent)
    skipped: int  # unreadable images left out
    seconds: float  # wall time of the pass


@torch.no_grad()
def predict_dataset(
    model,
    dataset,
    batch_size: int = 64,
    num_workers: int = 0,
    device="auto",
    progress: bool = False,
    desc: str = "predict",
) -> SplitPredictions:
    """Run the model's probability forward (channels-last; bf16 on CUDA) over every readable item."""
    forward = TorchRuntime(model.inference_module(), device)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_skipping_corrupt,
        pin_memory=forward.device.type == "cuda",
    )
    probs, male, attrs, index, skipped = [], [], [], [], 0
    start = time.perf_counter()
    with tqdm(total=len(dataset), desc=desc, unit="img", disable=not progress) as bar:
        for batch in loader:
            skipped += batch["skipped"]
            bar.update(len(batch["image"]) + batch["skipped"])
            if len(batch["image"]) == 0:
                continue
            probs.append(forward(batch["image"]).astype(np.float32))
            male.append(batch["male"].numpy())
            attrs.append(batch["attributes"].numpy())
            index.append(batch["index"].numpy())
    seconds = time.perf_counter() - start
    if not probs:
        raise ValueError(f"no readable image in the dataset ({skipped} unreadable)")
    return SplitPredictions(
        np.concatenate(probs),
        np.concatenate(male).astype(np.int64),
        np.concatenate(attrs).astype(np.int64),
        np.concatenate(index),
        skipped,
        seconds,
    )


def split_metrics(task: str, pred: SplitPredictions, threshold: float = 0.5) -> dict[str, float]:
    """Test-split metrics with the same names for both tasks where they mean the same thing."""
    if task == "attributes":
        table = per_attribute_metrics(pred.attributes, pred.prob, STAGE_ONE_ATTRIBUTES, threshold=threshold)
        out = {
            "concept_mean_accuracy": float(table["accuracy"].mean()),
            "concept_mean_auc": float(table["roc_auc"].mean(skipna=True)),
        }
        for name, row in table.iterrows():
            out[f"attr_accuracy_{name}"] = float(row["accuracy"])
            out[f"attr_auc_{name}"] = float(row["roc_auc"])
    else:
        out = {k: float(v) for k, v in binary_metrics(pred.male, pred.prob, threshold=threshold).items()}
    out["n_images"] = float(len(pred.prob))
    out["skipped_images"] = float(pred.skipped)
    return out


@dataclass
class LabelledSideEvaluation:
    """A route's Male predictions on one held-out side of the labelled faces (people it never saw), with
    the cells the average hides: accuracy and each gender's recall per age band and per race."""

    source: str  # the labelled faces' name (e.g. utkface)
    side: str  # "val" (where choices are made) or "test"
    ids: list[str]  # photos with a usable face, in order
    male: np.ndarray
    male_probability: np.ndarray
    age_band: np.ndarray  # "" unknown
    race: np.ndarray  # "" unknown
    skipped: int  # photos without a usable face
    threshold: float
    cells: pd.DataFrame  # attr2gender.metrics.cell_table over age_band and race
    seed: int = 0

    @property
    def prefix(self) -> str:
        return f"labelled_{self.side}"

    def worst_cell(self) -> dict:
        """The lowest recall of a gender x age band cell from 10 years up (UTKFace's README: gender is hard to
        tell in small children, so 0-9 is reported, not ranked)."""
        return worst_cell(self.cells, "age_band", skip=("0-9",))

    @functools.cached_property
    def metrics(self) -> dict[str, float]:
        """``labelled_<side>_accuracy`` (+ CI, n), each gender's recall, the worst cell from 10 up, and every
        cell (:func:`attr2gender.metrics.cell_metrics`). Computed once: the run's metrics and its report read
        the same bootstrap."""
        p = self.prefix
        point, low, high = accuracy_ci(self.male, self.male_probability, self.threshold, seed=self.seed)
        pred = self.male_probability >= self.threshold
        women, men = self.male == 0, self.male == 1
        worst = self.worst_cell()
        out = {
            f"{p}_accuracy": point,
            f"{p}_accuracy_ci_low": low,
            f"{p}_accuracy_ci_high": high,
            f"{p}_n": float(len(self.male)),
            f"{p}_skipped_images": float(self.skipped),
            f"{p}_female_recall": float((~pred[women]).mean()) if women.any() else float("nan"),
            f"{p}_male_recall": float(pred[men].mean()) if men.any() else float("nan"),
            f"{p}_worst_recall_10_up": worst["recall"],
            f"{p}_worst_recall_10_up_ci_low": worst["low"],
            f"{p}_worst_recall_10_up_ci_high": worst["high"],
        }
        return out | cell_metrics(self.cells, p)

    def cross(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(accuracy, n) per age band x race: the heatmap's numbers."""
        return cross_table(self.male, self.male_probability, self.age_band, self.race, self.threshold)

    def describe_worst(self) -> str:
        """e.g. ``women 70+: 88.0 % [80.3, 94.7] (n=75)``."""
        w = self.worst_cell()
        if not np.isfinite(w["recall"]):
            return "no age band x gender cell from 10 up has enough photos"
        return (
            f"{w['gender']} {w['cell']}: recall {100 * w['recall']:.1f} % [{100 * w['low']:.1f}, "
            f"{100 * w['high']:.1f}] (n={w['n']})"
        )


def evaluate_labelled(
    faces,
    side: str,
    ids: list[str],
    male_probability: np.ndarray,
    errors: list[str],
    threshold: float,
    seed: int = 0,
) -> LabelledSideEvaluation:
    """Score P(Male) on ``ids`` of the labelled ``faces`` (``errors``: one per id, "" where a face was usable)."""
    ok = np.array([not e for e in errors], dtype=bool)
    kept = list(np.asarray(ids, dtype=object)[ok])
    male = faces.male(kept)
    prob = np.asarray(male_probability, dtype=np.float64)[ok]
    bands = age_bands(faces.age(kept))
    race = np.asarray(faces.race(kept), dtype=object)
    cells = cell_table(male, prob, cell_masks(male, {"age_band": bands, "race": race}), threshold, seed=seed)
    return LabelledSideEvaluation(
        faces.name, side, kept, male, prob, bands, race, int((~ok).sum()), threshold, cells, seed
    )
