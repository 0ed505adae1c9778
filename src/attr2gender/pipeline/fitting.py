"""Fitting both pipelines from a CelebA root and a config, with a report the tracking layer logs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import RunConfig, build_config, load_preset
from ..data.attributes import STAGE_ONE_ATTRIBUTES, TARGET
from ..tabular import StageTwoClassifier
from ..tracking.reports import binary_metrics
from ..training import TrainResult, train
from ..training.evaluate import SplitPredictions, split_metrics
from .direct import DirectGenderClassifier
from .two_stage import Attr2GenderPipeline


@dataclass
class FitReport:
    """Everything a fit produced that a report or a comparison needs."""

    train_result: TrainResult
    test_ids: list[str]  # test images that were read, in order
    test_male: np.ndarray  # truth
    test_male_probability: np.ndarray  # the pipeline's P(Male)
    metrics: dict[str, float]  # test metrics (same names for both pipelines where they mean the same)
    test_attribute_probabilities: np.ndarray | None = None  # two-stage: stage one's (n, 39)
    test_attributes: np.ndarray | None = None  # two-stage: the (n, 39) truth
    stage_two_rows: int = 0  # rows stage two was fitted on
    timings: dict[str, float] = field(default_factory=dict)  # seconds: stage_one_train, stage_two_fit, ...


def resolve_config(config, task: str, overrides: dict) -> RunConfig:
    """A RunConfig from a RunConfig, a preset path or nothing, with ``overrides`` and the task applied."""
    if config is None:
        base = RunConfig()
    elif isinstance(config, RunConfig):
        base = config
    else:
        runs = load_preset(config)
        if len(runs) != 1:
            raise ValueError(f"{config} holds {len(runs)} runs; pass one RunConfig (load_preset(...)[i][1])")
        base = runs[0][1]
    return build_config(base.to_dict() | overrides | {"task": task}, "fit() arguments")


def _paths(celeba, ids) -> list[Path]:
    return [celeba.image_path(i) for i in ids]


def _readable(ids: list[str], errors: list[str]) -> np.ndarray:
    return np.array([not e for e in errors], dtype=bool) if ids else np.zeros(0, dtype=bool)


def stage_two_label_rows(celeba, splits) -> pd.DataFrame:
    """Ground-truth rows for ``stage_two_fit_on=labels``: every annotated image of the official
    training partition (162,770 on CelebA; no image needed), minus any image in val or test."""
    held_out = set(splits.val) | set(splits.test)
    if celeba.partition is not None:
        ids = celeba.partition.index[celeba.partition.to_numpy() == 0]
        ids = ids[ids.isin(celeba.attributes.index) & ~ids.isin(list(held_out))]
    else:
        ids = pd.Index(splits.train)
    return celeba.attributes.loc[ids]


def fit_two_stage(config=None, loggers=None, **overrides) -> Attr2GenderPipeline | None:
    config = resolve_config(config, "attributes", overrides)
    result = train(config, loggers=loggers, evaluate_test=False)
    if result.model is None:  # a non-zero DDP rank: rank 0 fits stage two and evaluates
        return None
    config = result.config
    dm = result.datamodule
    celeba, splits = dm.celeba, dm.splits
    pipeline = Attr2GenderPipeline(result.model, None, config.image_size, threshold=config.threshold,
                                   cache_dir=config.cache_dir, batch_size=config.batch_size,
                                   num_workers=config.num_workers)  # fmt: skip
    timings = {"stage_one_train": result.train_seconds}

    start = time.perf_counter()
    if config.stage_two_fit_on == "predicted":
        # Stage one's probabilities on images it did not train on, so stage two learns its real errors.
        probs, errors = pipeline.attribute_probabilities(_paths(celeba, splits.val), progress=config.progress)
        ok = _readable(splits.val, errors)
        X = pd.DataFrame(probs[ok], columns=list(STAGE_ONE_ATTRIBUTES))
        y = celeba.male(np.asarray(splits.val)[ok])
        input_kind = "probability"
    else:
        rows = stage_two_label_rows(celeba, splits)
        X = rows[list(STAGE_ONE_ATTRIBUTES)].astype(np.float64)
        y = rows[TARGET].to_numpy()
        input_kind = "binary"  # fitted on 0/1, so stage one's probabilities are thresholded too
    timings["stage_one_on_stage_two_rows"] = time.perf_counter() - start if input_kind == "probability" else 0.0
    start = time.perf_counter()
    stage_two = StageTwoClassifier(model=config.stage_two_model, input_kind=input_kind, threshold=config.threshold,
                                   class_weight=config.stage_two_class_weight or None,
                                   random_state=config.seed).fit(X, y)  # fmt: skip
    timings["stage_two_fit"] = time.perf_counter() - start
    pipeline.stage_two = stage_two

    start = time.perf_counter()
    probs, errors = pipeline.attribute_probabilities(_paths(celeba, splits.test), progress=config.progress)
    timings["test_inference"] = time.perf_counter() - start
    ok = _readable(splits.test, errors)
    test_ids = list(np.asarray(splits.test)[ok])
    truth = celeba.stage_one_targets(test_ids).astype(np.int64)
    male = celeba.male(test_ids)
    male_prob = pipeline.stage_two_probability(probs[ok])
    stage_one = SplitPredictions(probs[ok], male, truth, np.flatnonzero(ok), int((~ok).sum()), timings["test_inference"])
    metrics = split_metrics("attributes", stage_one, config.threshold)
    metrics |= {k: float(v) for k, v in binary_metrics(male, male_prob, threshold=config.threshold).items()}
    metrics["train_seconds"] = result.train_seconds + timings["stage_two_fit"] + timings["stage_one_on_stage_two_rows"]
    metrics["stage_two_rows"] = float(len(X))
    pipeline.metrics = metrics
    pipeline.config = config.to_dict()
    pipeline.fit_report_ = FitReport(result, test_ids, male, male_prob, metrics, probs[ok], truth, len(X), timings)
    return pipeline


def fit_direct(config=None, loggers=None, **overrides) -> DirectGenderClassifier | None:
    config = resolve_config(config, "direct", overrides)
    result = train(config, loggers=loggers, evaluate_test=False)
    if result.model is None:  # a non-zero DDP rank
        return None
    config = result.config
    dm = result.datamodule
    celeba, splits = dm.celeba, dm.splits
    pipeline = DirectGenderClassifier(result.model, config.image_size, threshold=config.threshold,
                                      batch_size=config.batch_size, num_workers=config.num_workers)  # fmt: skip
    start = time.perf_counter()
    frame = pipeline.predict(_paths(celeba, splits.test), progress=config.progress)
    seconds = time.perf_counter() - start
    ok = (frame["error"] == "").to_numpy()
    test_ids = list(np.asarray(splits.test)[ok])
    male = celeba.male(test_ids)
    male_prob = frame.loc[ok, "male_probability"].to_numpy()
    metrics = {k: float(v) for k, v in binary_metrics(male, male_prob, threshold=config.threshold).items()}
    metrics |= {"n_images": float(ok.sum()), "skipped_images": float((~ok).sum()), "train_seconds": result.train_seconds}
    pipeline.metrics = metrics
    pipeline.config = config.to_dict()
    pipeline.fit_report_ = FitReport(result, test_ids, male, male_prob, metrics,
                                     timings={"train": result.train_seconds, "test_inference": seconds})  # fmt: skip
    return pipeline
