"""Training both pipelines from a CelebA root and a config: :func:`train_two_stage` and :func:`train_direct`
return a complete pipeline and its :class:`TrainReport` (what the experiments layer logs and compares);
stage two is fitted by :func:`attr2gender.tabular.fitting.fit_stage_two`, which concept editing and the
benchmarks share."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import RunConfig, build_config, load_preset
from ..data.attributes import STAGE_ONE_ATTRIBUTES, TARGET
from ..data.faces import FaceTemplate, measure_template
from ..data.groups import CELEBA_SOURCE, age_bands, slice_masks
from ..metrics import (
    Evaluation,
    MetricsDict,
    binary_metrics,
    concept_quality,
    expected_calibration_error,
    group_metrics,
    slice_metrics,
    slice_table,
)
from ..pipeline.concept_quality import ConceptRecord
from ..pipeline.concepts import Leakage, leakage_report
from ..pipeline.direct import DirectGenderClassifier
from ..pipeline.evaluation import evaluate_probabilities
from ..pipeline.two_stage import Attr2GenderPipeline, male_probability
from ..tabular.fitting import StageTwoData, fit_stage_two
from .calibration import fit_temperature
from .engine import TrainResult
from .evaluate import LabelledSideEvaluation, SplitPredictions, evaluate_labelled, split_metrics
from .face_heads import male_head_reads_labelled, route_inputs, train_image_model


@dataclass
class TrainReport:
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
    test_truth: pd.DataFrame | None = None  # the 40 true attributes of the test images (groups, slices)
    # The test side's evaluation, computed once: accuracy and ECE with CIs, Brier, AUC, every group's
    # accuracy and the worst group (attr2gender.metrics.Evaluation; .to_dict() for a file)
    evaluation: Evaluation | None = None
    slice_table: pd.DataFrame | None = None  # fairness slices: accuracy, false-male/-female rates, CIs
    # two-stage: "off" (no cache_dir), "miss" or "hit" (some untimed pass read stage one's outputs from disk;
    # timed passes never do)
    stage_one_cache: str = ""
    leakage: Leakage | None = None  # two-stage: stage two on true attributes, hard and soft predictions
    concept_worst: dict[str, float] = field(default_factory=dict)  # two-stage: the 5 worst concepts, test
    # The labelled faces' held-out sides ("val", "test"), scored per age band and race; empty without them.
    labelled: dict[str, LabelledSideEvaluation] = field(default_factory=dict)
    # two-stage: the rows stage two was fitted on (in memory only): what concept editing
    # (pipe.without_attributes(..., data=)) and adapt(original=) refit on
    stage_two_data: StageTwoData | None = None

    def __post_init__(self) -> None:
        self.metrics = MetricsDict(
            self.metrics
        )  # a renamed metric still reads, with a warning naming the new one

    @property
    def group_table(self) -> pd.DataFrame | None:
        """Male accuracy per group with CIs: the evaluation's (one table, read where it is shown)."""
        return None if self.evaluation is None else self.evaluation.groups


def prediction_metrics(
    male: np.ndarray, prob: np.ndarray, truth: pd.DataFrame, threshold: float, seed: int = 0
) -> tuple[dict[str, float], Evaluation, pd.DataFrame]:
    """The test side's evaluation, computed once (:func:`attr2gender.pipeline.evaluation.evaluate_probabilities`:
    accuracy with its CI, AUC, ECE with its CI, Brier, every group's accuracy and the worst group, by the one
    rule), the binary metrics and CelebA's fairness slices; returns (flat metrics, the evaluation, the slice
    table). ECE, Brier and the group table are the evaluation's (read, not recomputed); ``binary_metrics``
    adds precision, recall and F1 beside accuracy and AUC (the same two numbers, by the same functions)."""
    evaluation = evaluate_probabilities(male, prob, threshold, attributes=truth, seed=seed)
    metrics = {k: float(v) for k, v in binary_metrics(male, prob, threshold=threshold).items()}
    metrics |= {"ece": evaluation.ece, "brier": evaluation.brier}
    slices = slice_table(male, prob, slice_masks(truth), threshold=threshold, seed=seed)
    metrics |= group_metrics(evaluation.groups, metrics["accuracy"]) | slice_metrics(
        slices, metrics["accuracy"]
    )
    return metrics, evaluation, slices


def validation_temperature(pipeline, celeba, splits, config: RunConfig) -> float:
    """``calibrate: true``: the temperature that best fits P(Male) on the validation images (1 when off)."""
    if not config.calibrate:
        return 1.0
    paths = _paths(celeba, splits.val)
    align = route_inputs(config).align
    if isinstance(pipeline, Attr2GenderPipeline):  # stage one's validation outputs are cached: no CNN pass
        probs, errors = pipeline.attribute_probabilities(paths, progress=False, align=align)
        ok = _readable(splits.val, errors)
        prob = male_probability(pipeline.stage_two, probs[ok])
    else:
        frame = pipeline.predict(paths, progress=False, align=align)
        ok = (frame["error"] == "").to_numpy()
        prob = frame.loc[ok, "male_probability"].to_numpy()
    return fit_temperature(celeba.male(list(np.asarray(splits.val)[ok])), prob)


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


def training_face_template(config: RunConfig, celeba, splits) -> FaceTemplate:
    """The template ``predict(align="auto")`` warps photos onto: a face backbone's own; else the median
    landmarks of up to ``face_template_images`` training images (CelebA's published one when 0, or when no
    face is found)."""
    fixed = route_inputs(config).template
    if fixed is not None:
        return fixed
    if config.face_template_images == 0:
        return FaceTemplate.celeba()
    return measure_template(
        _paths(celeba, splits.train), config.face_template_images, config.seed, progress=config.progress
    )


def training_crop_layout(config: RunConfig, celeba, splits) -> FaceTemplate | None:
    """Where the landmarks sit in the training crops (the median of up to ``face_template_images``): what
    ``predict(align="crops")`` warps crops like them from. A face backbone records it, since it reads faces
    on its own template and a crop read as one is a wrong result; an image CNN's template is that layout
    already (None)."""
    if route_inputs(config).template is None or config.face_template_images == 0:
        return None
    return measure_template(
        _paths(celeba, splits.train), config.face_template_images, config.seed, progress=config.progress
    )


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


def train_two_stage(
    config=None, loggers=None, **overrides
) -> tuple[Attr2GenderPipeline | None, TrainReport | None]:
    """Train stage one, fit stage two, evaluate on the test split. (None, None) on a non-zero DDP rank."""
    config = resolve_config(config, "attributes", overrides)
    result = train_image_model(config, loggers=loggers)
    if result.model is None:  # a non-zero DDP rank: rank 0 fits stage two and evaluates
        return None, None
    config = result.config
    dm = result.datamodule
    celeba, splits = dm.celeba, dm.splits
    # An image CNN reads the CelebA crops as they are (align="none"); a face backbone reads them aligned
    # onto its template, as it reads every photo.
    inputs = route_inputs(config)
    stage_one = Attr2GenderPipeline._stage_one_only(
        result.model,
        inputs.preprocessing,
        threshold=config.threshold,
        cache_dir=config.cache_dir,
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        face_template=training_face_template(config, celeba, splits),
        crop_layout=training_crop_layout(config, celeba, splits),
        data_kind=celeba.kind,
    )
    timings = {"stage_one_train": result.train_seconds}

    start = time.perf_counter()
    data = stage_two_training_data(stage_one, config, celeba, splits, dm.labelled, dm.labelled_splits)
    timings["stage_one_on_stage_two_rows"] = (
        time.perf_counter() - start if data.input_kind == "probability" else 0.0
    )
    model, objective = config.resolved_stage_two(two_sources=data.source is not None)
    config = dataclasses.replace(config, stage_two_model=model, stage_two_objective=objective)
    start = time.perf_counter()
    if config.mode == "joint":  # the jointly trained Male head is stage two: same coefficients
        stage_two, stage_two_info = result.model.stage_two(), {}
    else:
        stage_two, stage_two_info = fit_stage_two(
            data,
            model=config.stage_two_model,
            objective=config.stage_two_objective,
            exclude=config.stage_two_exclude,
            group_by=config.group_by,
            threshold=config.threshold,
            class_weight=config.stage_two_class_weight,
            seed=config.seed,
            bottleneck=config.resolved_bottleneck(),
        )
    timings["stage_two_fit"] = time.perf_counter() - start

    start = time.perf_counter()
    # Timed, so never from the cache: a rerun of a deterministic model would otherwise time a disk read.
    probs, errors = stage_one.attribute_probabilities(
        _paths(celeba, splits.test), progress=config.progress, align=inputs.align, read_cache=False
    )
    timings["test_inference"] = time.perf_counter() - start
    ok = _readable(splits.test, errors)
    test_ids = list(np.asarray(splits.test)[ok])
    truth = celeba.stage_one_targets(test_ids).astype(np.int64)
    male = celeba.male(test_ids)
    scored = stage_one.with_stage_two(stage_two)
    scored.temperature = validation_temperature(scored, celeba, splits, config)
    male_prob = scored.stage_two_probability(probs[ok])
    split = SplitPredictions(
        probs[ok], male, truth, np.flatnonzero(ok), int((~ok).sum()), timings["test_inference"]
    )
    metrics = split_metrics("attributes", split, config.threshold)
    metrics["concept_mean_ece"] = float(
        np.mean([expected_calibration_error(truth[:, j], probs[ok][:, j]) for j in range(truth.shape[1])])
    )
    test_truth = celeba.attributes.loc[test_ids]
    male_metrics, evaluation, slices = prediction_metrics(
        male, male_prob, test_truth, config.threshold, config.seed
    )
    metrics |= male_metrics | stage_two_info | {"temperature": scored.temperature}
    # Leakage, on the validation images (stage one's outputs there are cached) and the test images.
    val_probs, val_errors = stage_one.attribute_probabilities(
        _paths(celeba, splits.val), progress=config.progress, align=inputs.align
    )
    cache_state = "off" if not config.cache_dir else ("hit" if stage_one.last_cache_hit else "miss")
    val_ok = _readable(splits.val, val_errors)
    val_truth = celeba.attributes.loc[list(np.asarray(splits.val)[val_ok])]
    leakage = leakage_report(scored, val_probs[val_ok], val_truth, probs[ok], test_truth, seed=config.seed)
    metrics |= leakage.metrics
    # Validation metrics under the names the direct route uses, so MLflow's compare view lines them up. With
    # stage_two_fit_on=predicted stage two was fitted on these images: an optimistic number, say so.
    val = binary_metrics(
        celeba.male(list(np.asarray(splits.val)[val_ok])), scored.stage_two_probability(val_probs[val_ok])
    )
    metrics |= {"val_accuracy": float(val["accuracy"]), "val_auc": float(val["roc_auc"])}
    # Concept quality next to the Male accuracy, on the test and the validation images.
    test_concepts = concept_quality(truth, probs[ok], STAGE_ONE_ATTRIBUTES, config.threshold)
    val_concepts = concept_quality(
        val_truth[list(STAGE_ONE_ATTRIBUTES)].to_numpy(),
        val_probs[val_ok],
        STAGE_ONE_ATTRIBUTES,
        config.threshold,
    )
    metrics |= {k: v for k, v in test_concepts.items() if k != "concept_worst"}
    metrics |= {f"val_{k}": v for k, v in val_concepts.items() if k != "concept_worst"}
    # The sequential model's concept AUC is the reference: a staged stage one is that model; a joint one is
    # judged against it when it is known (a face backbone fits it alongside, in seconds).
    reference = (
        val_concepts["concept_mean_auc"]
        if config.mode == "staged"
        else result.metrics.get("reference_val_concept_mean_auc")
    )
    concepts = ConceptRecord(
        val_concepts["concept_mean_auc"],
        val_concepts["concept_mean_accuracy"],
        val_concepts["concept_majority_accuracy"],
        reference,
        config.concept_auc_tolerance,
    )
    metrics["concepts_reliable"] = float(concepts.reliable)
    if reference is not None:
        metrics["reference_val_concept_mean_auc"] = float(reference)
    metrics["train_seconds"] = (
        result.train_seconds + timings["stage_two_fit"] + timings["stage_one_on_stage_two_rows"]
    )
    metrics["stage_two_rows"] = float(len(data.y))
    labelled_rows = int((data.sources() != CELEBA_SOURCE).sum())
    if labelled_rows:
        metrics["stage_two_labelled_rows"] = float(labelled_rows)

    def two_stage_male(paths):
        probs, errors = stage_one.attribute_probabilities(paths, progress=config.progress, align=inputs.align)
        ok = _readable(paths, errors)
        prob = np.full(len(paths), np.nan)
        prob[ok] = scored.stage_two_probability(probs[ok])
        return prob, errors

    labelled = labelled_evaluations(two_stage_male, dm, config)
    for side in labelled.values():
        metrics |= side.metrics
    report = TrainReport(
        result,
        test_ids,
        male,
        male_prob,
        metrics,
        test_attribute_probabilities=probs[ok],
        test_attributes=truth,
        stage_two_rows=len(data.y),
        timings=timings,
        test_truth=test_truth,
        evaluation=evaluation,
        slice_table=slices,
        leakage=leakage,
        stage_one_cache=cache_state,
        labelled=labelled,
        stage_two_data=data,
    )
    report.concept_worst = test_concepts["concept_worst"]
    pipeline = stage_one.with_stage_two(stage_two, metrics=metrics, config=config.to_dict())
    pipeline.temperature = scored.temperature
    pipeline.concepts = concepts
    pipeline.training_data = training_data_record(config, result, {"train": labelled_rows})
    return pipeline, report


def stage_two_training_data(
    pipeline, config: RunConfig, celeba, splits, labelled=None, labelled_splits=None
) -> StageTwoData:
    """Stage two's rows per ``stage_two_fit_on``: stage one's probabilities on the validation images
    (``predicted``, the *sequential* model of the concept-bottleneck literature) or the true attributes of
    every training-partition row (``labels``, *independent*). With labelled faces (and ``male_sources`` not
    ``celeba``) their training side is added: stage one never saw them, so its outputs there are honest
    held-out concepts; they have no true attributes, so with ``labels`` they enter as stage one's outputs
    thresholded at 0.5 (the hard bottleneck a labels-fitted stage two reads anyway)."""
    parts = []  # (X, truth, identities, source, age band)
    align = route_inputs(config).align
    if config.male_sources != "labelled_faces":
        if config.stage_two_fit_on == "predicted":
            # Stage one's probabilities on images it did not train on, so stage two learns its real errors.
            # Part of the timed fit, so never from the cache (see train_two_stage); later passes read it.
            probs, errors = pipeline.attribute_probabilities(
                _paths(celeba, splits.val), progress=config.progress, align=align, read_cache=False
            )
            ok = _readable(splits.val, errors)
            ids = list(np.asarray(splits.val)[ok])
            X = pd.DataFrame(probs[ok], columns=list(STAGE_ONE_ATTRIBUTES))
        else:
            rows = stage_two_label_rows(celeba, splits)
            ids = list(rows.index)
            X = rows[list(STAGE_ONE_ATTRIBUTES)].astype(np.float64).reset_index(drop=True)
        truth = celeba.attributes.loc[ids]
        identities = celeba.identity.reindex(ids).to_numpy() if celeba.identity is not None else None
        parts.append((X, truth, identities, CELEBA_SOURCE, np.full(len(ids), "", dtype=object)))
    input_kind = "probability" if config.stage_two_fit_on == "predicted" else "binary"
    if labelled is not None and config.male_sources != "celeba":
        ids = list(labelled_splits.train)
        probs, errors = pipeline.attribute_probabilities(
            [labelled.image_path(i) for i in ids], progress=config.progress, align=align, read_cache=False
        )
        ok = _readable(ids, errors)
        kept = list(np.asarray(ids, dtype=object)[ok])
        probs = probs[ok] if input_kind == "probability" else (probs[ok] >= 0.5).astype(np.float64)
        X = pd.DataFrame(probs, columns=list(STAGE_ONE_ATTRIBUTES))
        truth = pd.DataFrame(np.nan, index=pd.Index(kept), columns=celeba.attributes.columns)
        truth[TARGET] = labelled.male(kept)
        identities = labelled.table.loc[kept, "group"].to_numpy(dtype=object)
        parts.append((X, truth, identities, labelled.name, age_bands(labelled.age(kept))))
    X = pd.concat([p[0] for p in parts], ignore_index=True)
    truth = pd.concat([p[1] for p in parts])
    if len(parts) == 1 and parts[0][3] == CELEBA_SOURCE:  # CelebA alone: as before, one source
        return StageTwoData(X, truth[TARGET].to_numpy(), truth, parts[0][2], input_kind)
    # One person per identity across sources (CelebA's numbers and the labelled faces' groups never collide).
    identities = np.concatenate(
        [
            np.asarray([f"{p[3]}:{i}" for i in (p[2] if p[2] is not None else p[1].index)], dtype=object)
            for p in parts
        ]
    )
    source = np.concatenate([np.full(len(p[0]), p[3], dtype=object) for p in parts])
    band = np.concatenate([p[4] for p in parts])
    return StageTwoData(
        X,
        truth[TARGET].to_numpy().astype(np.int64),
        truth,
        identities,
        input_kind,
        source,
        band,
        config.source_weighting,
    )


def labelled_evaluations(male_probability, dm, config: RunConfig) -> dict[str, LabelledSideEvaluation]:
    """The route on the labelled faces' validation and test sides (people it never saw): ``male_probability``
    maps photo paths to (P(Male), errors). Empty without labelled faces."""
    faces, splits = dm.labelled, dm.labelled_splits
    if faces is None:
        return {}
    out = {}
    for side in ("val", "test"):
        ids = list(getattr(splits, side))
        if not ids:
            continue
        prob, errors = male_probability([faces.image_path(i) for i in ids])
        out[side] = evaluate_labelled(faces, side, ids, prob, errors, config.threshold, config.seed)
    return out


def training_data_record(
    config: RunConfig, result: TrainResult, stage_two_rows: dict | None = None
) -> list[dict]:
    """What the pipeline learned from, with licences and image counts, in the order the sources are used:
    ``[{"name", "root", "layout", "licence", "images": {...}, "learnt": ...}, ...]`` (bundles keep it)."""
    dm = result.datamodule
    celeba, splits = dm.celeba, dm.splits
    counted = result.sources or {}
    images = {
        side: int(counted.get(side, {}).get(CELEBA_SOURCE, (len(getattr(splits, side)), 0))[0])
        for side in ("train", "val")
    }
    records = []
    if config.task == "attributes" or config.male_sources != "labelled_faces":  # else CelebA taught nothing
        learnt = "Male" if config.task == "direct" else "the 39 attributes (stage one)"
        if config.task == "attributes" and config.male_sources != "labelled_faces":
            learnt += ", Male (stage two)" if config.mode == "staged" else ", Male (the joint head)"
        fractions = "/".join(f"{f:g}" for f in config.split_fractions)
        how = "CelebA's official partition" if splits.strategy == "official" else f"by identity, {fractions}"
        records.append(celeba.record(images) | {"learnt": learnt, "split": f"{how}, seed {config.seed}"})
    faces = dm.labelled
    if faces is not None and config.male_sources != "celeba":
        if male_head_reads_labelled(config):
            used = {side: int(counted.get(side, {}).get(faces.name, (0, 0))[0]) for side in ("train", "val")}
        else:
            used = dict(stage_two_rows or {})
        fractions = "/".join(f"{f:g}" for f in config.labelled_faces_split)
        records.append(
            faces.record(used)
            | {
                "learnt": "Male"
                + (" (stage two)" if config.task == "attributes" and config.mode == "staged" else ""),
                # Photos of one person share a group: split by group, never by row, so nobody is on two sides.
                "split": f"by group, {fractions}, seed {config.seed}",
            }
        )
    return records


def train_direct(
    config=None, loggers=None, **overrides
) -> tuple[DirectGenderClassifier | None, TrainReport | None]:
    """Train the direct model and evaluate it on the test split. (None, None) on a non-zero DDP rank."""
    config = resolve_config(config, "direct", overrides)
    result = train_image_model(config, loggers=loggers)
    if result.model is None:  # a non-zero DDP rank
        return None, None
    config = result.config
    dm = result.datamodule
    celeba, splits = dm.celeba, dm.splits
    settings = dict(
        threshold=config.threshold,
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        face_template=training_face_template(config, celeba, splits),
        crop_layout=training_crop_layout(config, celeba, splits),
        data_kind=celeba.kind,
    )
    inputs = route_inputs(config)
    uncalibrated = DirectGenderClassifier(result.model, inputs.preprocessing, **settings)
    settings["temperature"] = validation_temperature(uncalibrated, celeba, splits, config)
    scorer = DirectGenderClassifier(result.model, inputs.preprocessing, **settings)  # calibrated
    start = time.perf_counter()
    frame = scorer.predict(_paths(celeba, splits.test), progress=config.progress, align=inputs.align)
    seconds = time.perf_counter() - start
    ok = (frame["error"] == "").to_numpy()
    test_ids = list(np.asarray(splits.test)[ok])
    male = celeba.male(test_ids)
    male_prob = frame.loc[ok, "male_probability"].to_numpy()
    test_truth = celeba.attributes.loc[test_ids]
    metrics, evaluation, slices = prediction_metrics(
        male, male_prob, test_truth, config.threshold, config.seed
    )
    metrics |= result.kept_validation()
    metrics |= {
        "temperature": settings["temperature"],
        "n_images": float(ok.sum()),
        "skipped_images": float((~ok).sum()),
        "train_seconds": result.train_seconds,
    }

    def direct_male(paths):
        scored = scorer.predict(paths, progress=config.progress, align=inputs.align)
        return scored["male_probability"].to_numpy(dtype=np.float64), scored["error"].fillna("").astype(
            str
        ).tolist()

    labelled = labelled_evaluations(direct_male, dm, config)
    for side in labelled.values():
        metrics |= side.metrics
    report = TrainReport(
        train_result=result,
        test_ids=test_ids,
        test_male=male,
        test_male_probability=male_prob,
        metrics=metrics,
        timings={"train": result.train_seconds, "test_inference": seconds},
        test_truth=test_truth,
        evaluation=evaluation,
        slice_table=slices,
        labelled=labelled,
    )
    pipeline = DirectGenderClassifier(
        result.model,
        inputs.preprocessing,
        metrics=metrics,
        config=config.to_dict(),
        **settings,
    )
    pipeline.training_data = training_data_record(config, result)
    return pipeline, report
