"""Evaluation: one pass of a trained model over a dataset, and the metrics of that pass."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data import collate_skipping_corrupt
from ..data.attributes import STAGE_ONE_ATTRIBUTES
from ..metrics import binary_metrics, per_attribute_metrics
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
            "attr_mean_accuracy": float(table["accuracy"].mean()),
            "attr_mean_auc": float(table["roc_auc"].mean(skipna=True)),
        }
        for name, row in table.iterrows():
            out[f"attr_accuracy_{name}"] = float(row["accuracy"])
            out[f"attr_auc_{name}"] = float(row["roc_auc"])
    else:
        out = {k: float(v) for k, v in binary_metrics(pred.male, pred.prob, threshold=threshold).items()}
    out["n_images"] = float(len(pred.prob))
    out["skipped_images"] = float(pred.skipped)
    return out
