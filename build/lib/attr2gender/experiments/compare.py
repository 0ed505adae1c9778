"""The comparison: both routes on the same split and seed as nested child runs of one parent run (tag
``comparison``), or two finished runs read back from MLflow; then what the detour costs."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from ..tracking.measure import MeasureSpec
from ..tracking.mlflow_tracking import NullTracker
from .comparison import PREDICTIONS_ARTIFACT, ApproachResult, Comparison, compare_approaches, write_comparison
from .plan import KINDS, SHARED_KEYS, RunPlan, say
from .single import PipelineRun, run_pipeline

N_BOOT = 2000  # bootstrap resamples for the accuracy-loss CI


@dataclass
class ComparisonRun:
    comparison: Comparison
    out_dir: Path
    files: dict[str, Path]
    run_id: str | None = None
    children: list[PipelineRun] = field(default_factory=list)


def log_comparison(tracker, comparison: Comparison, files: dict[str, Path], tags: dict | None = None) -> None:
    """Parent-run logging: the comparison metrics, its report (also as the run description) and plots."""
    tracker.log_metrics(comparison.metrics)
    tracker.set_tags({"mlflow.note.content": comparison.report} | (tags or {}))
    for path in files.values():
        tracker.log_artifact(path, "comparison")


def run_comparison(
    two_stage: RunPlan,
    direct: RunPlan,
    tracker=None,
    measure: MeasureSpec | None = None,
    n_boot: int = N_BOOT,
    stamp: str | None = None,
    corruptions: bool = False,
) -> ComparisonRun:
    """Both routes as nested child runs of one parent run (tag ``comparison``), then the comparison;
    with ``corruptions``, both routes are also scored on CelebA-C (the test images, corrupted)."""
    tracker = tracker or NullTracker()
    stamp = stamp or f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    out_dir = Path(two_stage.config.output_dir).resolve() / f"compare-{stamp}"
    tags = {"comparison": "two_stage_vs_direct", "data": "synthetic" if two_stage.smoke else "celeba"}
    with tracker.run(f"compare-{stamp}", tags=tags) as parent_id:
        tracker.log_params(
            {k: getattr(two_stage.config, k) for k in SHARED_KEYS if k not in ("tracking",)}
            | {
                "preset_two_stage": two_stage.preset,
                "preset_direct": direct.preset,
                "bootstrap_resamples": n_boot,
            }
        )
        children = [
            run_pipeline(
                plan, tracker, nested=True, measure=measure, extra_tags={"comparison_parent": parent_id or ""}
            )
            for plan in (two_stage, direct)
        ]
        comparison = compare_approaches(
            children[0].approach, children[1].approach, n_boot=n_boot, seed=two_stage.config.seed
        )
        if corruptions:
            comparison.add_corruptions(celeba_c(children, seed=two_stage.config.seed, n_boot=n_boot))
        files = write_comparison(comparison, out_dir)
        log_comparison(
            tracker,
            comparison,
            files,
            {"two_stage_run_id": children[0].run_id or "", "direct_run_id": children[1].run_id or ""},
        )
    return ComparisonRun(comparison, out_dir, files, parent_id, children)


def celeba_c(children: list[PipelineRun], seed: int, n_boot: int) -> dict:
    """CelebA-C accuracy of each route on its test images (the same images and corruptions for both)."""
    from ..pipeline.robustness import corruption_accuracy

    out = {}
    for child in children:
        report = child.pipeline.report
        celeba = report.train_result.datamodule.celeba
        paths = [celeba.image_path(i) for i in report.test_ids]
        say(f"[{child.kind}] CelebA-C: {len(paths):,} test images x 6 corruptions")
        out[child.kind] = corruption_accuracy(
            child.pipeline, paths, report.test_male, seed=seed, n_boot=n_boot
        )
    return out


def approach_from_run(tracker, run_id: str, expected: str, work_dir: Path) -> ApproachResult:
    """A finished pipeline run's logged metrics and test predictions."""
    from mlflow.exceptions import MlflowException

    try:
        metrics, params, tags = tracker.run_data(run_id)
    except MlflowException as exc:
        raise ConfigError(
            f"cannot read MLflow run {run_id} from {tracker.uri} ({exc}); pass the run ids printed "
            "by run_two_stage.py / run_direct.py, with the same MLFLOW_TRACKING_URI (or working "
            "folder) they used"
        ) from None
    kind = tags.get("pipeline")
    if kind not in KINDS:
        raise ConfigError(
            f"MLflow run {run_id} has no pipeline tag (two_stage/direct): was it made by "
            "run_two_stage.py / run_direct.py?"
        )
    if kind != expected:
        raise ConfigError(
            f"MLflow run {run_id} is a {kind} run, but --runs takes the two_stage run first and the "
            "direct run second"
        )
    path = tracker.download_artifact(run_id, PREDICTIONS_ARTIFACT, work_dir / run_id)
    frame = pd.read_csv(path, dtype={"image_id": str})
    info = {k: params[k] for k in ("backbone", "weights", "image_size", "epochs") if k in params}
    info["data"] = tags.get("data", "")
    return ApproachResult.from_predictions_frame(
        kind, frame, metrics=metrics, run_id=run_id, threshold=float(params.get("threshold", 0.5)), info=info
    )


def compare_logged_runs(
    tracker,
    run_two_stage: str,
    run_direct: str,
    output_dir: str | Path = "runs",
    n_boot: int = N_BOOT,
    stamp: str | None = None,
) -> ComparisonRun:
    """Compare two finished runs by id; the comparison becomes a new parent run tagged ``comparison``."""
    stamp = stamp or f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    out_dir = Path(output_dir).resolve() / f"compare-{stamp}"
    tracker.use_experiment_of(run_two_stage)
    two = approach_from_run(tracker, run_two_stage, "two_stage", out_dir / "downloads")
    direct = approach_from_run(tracker, run_direct, "direct", out_dir / "downloads")
    seed = 0
    comparison = compare_approaches(two, direct, n_boot=n_boot, seed=seed)
    files = write_comparison(comparison, out_dir)
    tags = {
        "comparison": "two_stage_vs_direct",
        "two_stage_run_id": run_two_stage,
        "direct_run_id": run_direct,
    }
    with tracker.run(f"compare-{stamp}", tags=tags) as parent_id:
        log_comparison(tracker, comparison, files)
    return ComparisonRun(comparison, out_dir, files, parent_id)
