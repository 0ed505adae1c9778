"""The logic behind ``pipelines/run_two_stage.py``, ``pipelines/run_direct.py`` and ``pipelines/compare.py``.

    python pipelines/run_two_stage.py [--config configs/two_stage.yaml] [--data-root DIR] [key=value ...]
    python pipelines/run_direct.py    [--config configs/direct.yaml]    [--data-root DIR] [key=value ...]
    python pipelines/compare.py [--config-two-stage X] [--config-direct Y] [--data-root DIR] [key=value ...]
    python pipelines/compare.py --runs RUN_ID_TWO_STAGE RUN_ID_DIRECT

Data: ``--data-root DIR`` (or ``data_root=DIR``), else ``data/celeba`` in the working folder; with either,
the named preset runs (default ``configs/two_stage.yaml`` / ``configs/direct.yaml``). With neither, a
synthetic CelebA is made in ``data/synthetic-celeba`` and the smoke preset (``configs/smoke.yaml``) runs,
said in one line; a few minutes on 2 CPU cores. Everything (config keys, values, the data root) is checked
before any work; a bad one exits with status 2 and a message naming the fix.

Each run: trains, saves the pipeline bundle, measures inference latency, writes plots and reports into
its run folder and logs all of it to MLflow (see :mod:`attr2gender.tracking.mlflow_tracking`) with the
model as a models-from-code pyfunc. ``compare`` runs both routes on the same split and seed as nested
child runs of a parent run tagged ``comparison`` and logs what the detour costs.

API: :func:`main_two_stage`, :func:`main_direct`, :func:`main_compare` (argv -> exit status);
:func:`plan_run` (arguments -> validated :class:`RunPlan`); :func:`run_pipeline` (plan + tracker ->
:class:`PipelineRun`); :func:`run_comparison` and :func:`compare_logged_runs` (-> :class:`ComparisonRun`).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import LOSSES, ConfigError, RunConfig, build_config, load_preset, parse_overrides
from .tracking.comparison import (
    PREDICTIONS_ARTIFACT,
    ApproachResult,
    Comparison,
    compare_approaches,
    write_comparison,
)
from .tracking.measure import MeasureSpec, cost_metrics, measure_latency
from .tracking.mlflow_tracking import NullTracker, is_rank_zero, make_tracker

KINDS = ("two_stage", "direct")
TASK_OF = {"two_stage": "attributes", "direct": "direct"}
DEFAULT_PRESET = {"two_stage": "two_stage.yaml", "direct": "direct.yaml"}
SMOKE_PRESET = "smoke.yaml"
REPO_ROOT = Path(__file__).resolve().parents[2]
# Keys that fix which images are trained and tested on: compare gives both routes the two-stage values.
SHARED_KEYS = ("data_root", "split", "split_fractions", "seed", "max_train_images", "max_eval_images", "balance",
               "output_dir", "tracking", "experiment")  # fmt: skip
N_EXAMPLES = 16  # images per prediction grid
N_BOOT = 2000  # bootstrap resamples for the accuracy-loss CI


def _say(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------------------
# planning: everything checked before any work
# --------------------------------------------------------------------------------------------------


@dataclass
class DataChoice:
    root: str  # "" until the synthetic data is made (see materialize)
    synthetic: bool  # no root given and no data/celeba: make/use the synthetic CelebA, run the smoke preset


@dataclass
class RunPlan:
    """A validated run: which route, with which config, from which preset, on which data."""

    kind: str
    config: RunConfig
    preset: Path | None
    data: DataChoice

    @property
    def smoke(self) -> bool:
        return self.data.synthetic


def find_preset(name: str) -> Path:
    """``configs/<name>`` in the working folder, else in the repository."""
    for base in (Path.cwd() / "configs", REPO_ROOT / "configs"):
        if (base / name).is_file():
            return base / name
    raise ConfigError(f"preset {name} not found in ./configs or {REPO_ROOT / 'configs'}; pass --config PATH")


def choose_data(data_root: str | None) -> DataChoice:
    """An explicit root must be a CelebA root (checked now); none means data/celeba or synthetic."""
    from .data.celeba import ATTR_FILE
    from .data.roots import USER_ROOT, resolve_data_root

    if data_root:
        return DataChoice(str(resolve_data_root(data_root)), synthetic=False)  # raises for a bad root
    if (USER_ROOT / ATTR_FILE).is_file():
        return DataChoice(str(USER_ROOT.resolve()), synthetic=False)
    return DataChoice("", synthetic=True)


def _task_keys(kind: str, config: RunConfig) -> dict:
    """The route's task, and a loss that is valid for it (direct: cross_entropy unless bce was asked)."""
    task = TASK_OF[kind]
    keys = {"task": task}
    if config.loss not in LOSSES[task]:
        keys["loss"] = "cross_entropy" if task == "direct" else ""
    return keys


def plan_run(kind: str, config_path: str | Path | None = None, data_root: str | None = None,
             overrides: list[str] | None = None, run: str | None = None, stamp: str | None = None) -> RunPlan:  # fmt: skip
    """Check the arguments and build the run's config; raises ConfigError / CelebANotFoundError."""
    if kind not in KINDS:
        raise ConfigError(f"unknown pipeline {kind!r}; choose one of {KINDS}")
    extra = parse_overrides(overrides or [])  # unknown keys and bad values fail here
    root_arg = data_root or extra.get("data_root") or ""
    data = choose_data(root_arg)
    if config_path is not None:
        preset = Path(config_path)
    else:
        preset = find_preset(SMOKE_PRESET if data.synthetic else DEFAULT_PRESET[kind])
    runs = load_preset(preset, overrides or [])
    if run is not None:
        runs = [(n, c) for n, c in runs if n == run]
        if not runs:
            names = [n for n, _ in load_preset(preset)]
            raise ConfigError(f"no run named {run!r} in {preset}; choose one of {names}")
    if len(runs) != 1:
        raise ConfigError(f"{preset} holds {len(runs)} runs ({', '.join(n for n, _ in runs)}); pick one with --run NAME")
    _, config = runs[0]
    if data.synthetic and config.data_root:  # the preset names a root: it wins over the synthetic fallback
        data = choose_data(config.data_root)
    values = config.to_dict() | _task_keys(kind, config) | {"data_root": data.root}
    if not values.get("run_name"):
        # A random suffix: two runs started in the same second in one folder never share a run folder.
        values["run_name"] = f"{kind}-{config.backbone}-{stamp or time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    # Missing ImageNet weights fail here, naming the file and where to put it, before any work starts.
    return RunPlan(kind, build_config(values, str(preset)).check_weights(), preset, data)


def materialize(plans: list[RunPlan], announce=_say) -> None:
    """Make (or reuse) the synthetic dataset when a plan needs it, announced in one line."""
    from .data.roots import resolve_data_root

    pending = [p for p in plans if p.data.synthetic and not p.data.root]
    if not pending:
        return
    preset = pending[0].preset
    shown = _shown(preset)
    keys = "; ".join(f"{p.kind}: task={p.config.task} loss={p.config.resolved_loss()}" for p in plans)
    tail = f" Running preset {shown} ({keys}); pass --data-root DIR (a CelebA root) for a real run."
    root = str(resolve_data_root("", announce=lambda m: announce(m + tail)))
    for p in plans:
        if p.data.synthetic:
            p.data.root = root
            p.config = dataclasses.replace(p.config, data_root=root)


def _shown(path: Path | None) -> str:
    if path is None:
        return "(defaults)"
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------------------
# one pipeline run
# --------------------------------------------------------------------------------------------------


@dataclass
class PipelineRun:
    kind: str
    config: RunConfig  # resolved (lr after the finder, data root)
    pipeline: object
    run_dir: Path
    bundle_dir: Path
    metrics: dict[str, float]
    approach: ApproachResult
    run_id: str | None = None
    model_uri: str | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)


def _fit(kind: str, config: RunConfig):
    from .pipeline import fit_direct, fit_two_stage

    return (fit_two_stage if kind == "two_stage" else fit_direct)(config)


def _params(config: RunConfig) -> dict:
    values = config.to_dict()
    if values.get("lr") == "auto":  # logged after training, once the finder has chosen it
        values.pop("lr")
    return values


def logged_metrics(pipeline, report) -> dict[str, float]:
    """Test metrics as ``test_<name>`` (the same names for both routes), training time and timings."""
    not_test = {"train_seconds", "stage_two_rows", "threshold"}
    out = {f"test_{k}": v for k, v in pipeline.metrics.items() if k not in not_test}
    out["train_seconds"] = float(pipeline.metrics.get("train_seconds", report.train_result.train_seconds))
    if "stage_two_rows" in pipeline.metrics:
        out["stage_two_rows"] = pipeline.metrics["stage_two_rows"]
    out |= {f"time_{k}_seconds": float(v) for k, v in report.timings.items()}
    out["epochs_run"] = float(report.train_result.epochs_run)
    return out


def run_pipeline(plan: RunPlan, tracker=None, nested: bool = False, measure: MeasureSpec | None = None,
                 extra_tags: dict | None = None) -> PipelineRun:  # fmt: skip
    """Fit the planned route, write its artifacts into its run folder and log everything."""
    tracker = tracker or NullTracker()
    config = plan.config
    tags = {"pipeline": plan.kind, "task": config.task, "backbone": config.backbone,
            "data": "synthetic" if plan.smoke else "celeba", "preset": _shown(plan.preset)} | (extra_tags or {})  # fmt: skip
    with tracker.run(config.run_name, tags=tags, nested=nested, system_metrics=True) as run_id:
        tracker.log_params(_params(config))
        pipeline = _fit(plan.kind, config)
        report = pipeline.fit_report_
        result = report.train_result
        config = result.config
        run_dir = Path(result.run_dir)
        if plan.config.lr == "auto":
            tracker.log_params({"lr": config.lr})
        bundle_dir = pipeline.save(run_dir / "bundle")

        metrics = logged_metrics(pipeline, report)
        metrics |= cost_metrics(pipeline, bundle_dir)
        celeba = result.datamodule.celeba
        test_paths = [celeba.image_path(i) for i in report.test_ids]
        metrics |= measure_latency(pipeline, _decode(test_paths, max((measure or MeasureSpec()).images.values())),
                                   measure)  # fmt: skip
        approach = ApproachResult(plan.kind, list(report.test_ids), np.asarray(report.test_male),
                                  np.asarray(report.test_male_probability), metrics, pipeline.threshold, run_id,
                                  info=_info(config, plan), groups=_group_ids(report.test_truth))  # fmt: skip
        artifacts = write_run_artifacts(plan.kind, pipeline, report, approach, run_dir, test_paths)
        (run_dir / "results.json").write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float))

        tracker.log_history(result.history)
        tracker.log_metrics(metrics)
        if report.group_table is not None:
            from .tracking.reports import worst_group_name

            tracker.set_tags({"worst_group": worst_group_name(report.group_table) or "none with 30+ images"})
        tracker.log_artifact(run_dir / "config.yaml", "config")
        tracker.log_artifact(run_dir / "engine.json", "config")
        tracker.log_artifact(run_dir / "history.csv", "history")
        tracker.log_artifact(run_dir / "results.json")
        for folder in ("plots", "reports", "predictions", "tensorboard"):
            tracker.log_artifacts(run_dir / folder, folder)
        tracker.log_artifact(run_dir / "lr_finder.png", "plots")
        model_uri = tracker.log_pyfunc_model(bundle_dir, input_example=_input_example(test_paths))
    return PipelineRun(plan.kind, config, pipeline, run_dir, bundle_dir, metrics, approach, run_id, model_uri,
                       artifacts)  # fmt: skip


def _group_ids(truth) -> dict[str, np.ndarray]:
    """Each test image's group per grouping (Male x makeup, Male x blond), from its true attributes."""
    if truth is None:
        return {}
    from .data.groups import GROUPINGS, group_ids

    return {grouping: group_ids(truth, grouping=grouping) for grouping in GROUPINGS}


def _info(config: RunConfig, plan: RunPlan) -> dict[str, str]:
    return {"backbone": config.backbone, "weights": config.weights, "image_size": str(config.image_size),
            "epochs": str(config.epochs), "data": "synthetic" if plan.smoke else "celeba"}  # fmt: skip


def _decode(paths: list[Path], n: int) -> list:
    """Up to ``n`` images decoded (RGB PIL) ahead of the latency measurement."""
    from .data.images import load_image

    return [load_image(p) for p in paths[: max(1, n)]]


def _input_example(paths: list[Path]) -> pd.DataFrame | None:
    if not paths:
        return None
    return pd.DataFrame({"image_base64": [base64.b64encode(Path(paths[0]).read_bytes()).decode("ascii")]})


def write_run_artifacts(kind: str, pipeline, report, approach: ApproachResult, run_dir: Path,
                        test_paths: list[Path]) -> dict[str, Path]:  # fmt: skip
    """The source study's plots and reports, into ``run_dir/plots``, ``reports`` and ``predictions``."""
    from .data.images import load_image
    from .data.transforms import eval_transform_from_spec
    from .models import backbone_first_conv
    from .tracking import plots, reports

    plots_dir, reports_dir, pred_dir = run_dir / "plots", run_dir / "reports", run_dir / "predictions"
    for d in (plots_dir, reports_dir, pred_dir):
        d.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    y = np.asarray(report.test_male, dtype=int)
    prob = np.asarray(report.test_male_probability, dtype=float)
    pred = (prob >= pipeline.threshold).astype(int)
    title = "two-stage" if kind == "two_stage" else "direct"

    frame = approach.predictions_frame()
    out["predictions"] = pred_dir / Path(PREDICTIONS_ARTIFACT).name
    frame.to_csv(out["predictions"], index=False)
    out["classification_report"] = reports_dir / "classification_report.txt"
    out["classification_report"].write_text(
        f"{title}: Male from {'39 predicted attributes' if kind == 'two_stage' else 'pixels'}, test split, "
        f"threshold {pipeline.threshold}\n\n" + reports.classification_report_text(y, pred, digits=4))

    history = report.train_result.history
    if history is not None and len(history):
        curves = history[[c for c in history.columns if not c.endswith(("_skipped", "images_per_s"))]]
    else:
        curves = pd.DataFrame()
    out["learning_curves"] = plots_dir / "learning_curves.png"
    plots.plot_learning_curves(curves, path=out["learning_curves"], title=f"Learning curves ({title}, "
                               f"{'stage one' if kind == 'two_stage' else 'Male'})")  # fmt: skip
    out["confusion_matrix"] = plots_dir / "confusion_matrix.png"
    plots.plot_confusion_matrix(y, pred, path=out["confusion_matrix"], title=f"Confusion matrix, {title}")

    correct, wrong = plots.select_prediction_examples(y, pred, n=N_EXAMPLES, seed=0)
    for name, idx, grid_title in (("predictions_correct", correct, f"Correct predictions, {title}"),
                                  ("predictions_incorrect", wrong, f"Incorrect predictions, {title}")):  # fmt: skip
        images = [np.asarray(load_image(test_paths[i])) for i in idx]
        out[name] = plots_dir / f"{name}.png"
        plots.plot_prediction_grid(images, y[idx], pred[idx], prob[idx], path=out[name], title=grid_title,
                                   max_images=N_EXAMPLES)  # fmt: skip

    net = getattr(pipeline.image_model, "net", pipeline.image_model)
    out["conv_filters"] = plots_dir / "conv_filters.png"
    plots.plot_conv_filters(backbone_first_conv(net).weight, path=out["conv_filters"],
                            title=f"First convolution layer filters ({title})")  # fmt: skip
    if test_paths:
        image = load_image(test_paths[0])
        tensor = eval_transform_from_spec(pipeline.preprocessing)(image)
        out["feature_maps"] = plots_dir / "feature_maps.png"
        plots.plot_feature_maps(plots.feature_maps_of(net, tensor), image=tensor, path=out["feature_maps"],
                                title=f"Feature maps of the first convolution layer ({title})")  # fmt: skip

    if report.group_table is not None:
        report.group_table.to_csv(reports_dir / "groups.csv")
        (reports_dir / "groups.md").write_text(
            f"# Male accuracy per group ({title}, test split)\n\n" + reports.group_table_markdown(report.group_table))
        out["group_accuracy"] = plots_dir / "group_accuracy.png"
        plots.plot_group_accuracy({title: report.group_table}, path=out["group_accuracy"],
                                  title=f"Male accuracy per group ({title})")  # fmt: skip

    if kind == "two_stage":
        from .data.attributes import STAGE_ONE_ATTRIBUTES

        if pipeline.edited_from is not None or pipeline.stage_two.get_params().get("exclude"):
            out["importance_change"] = plots_dir / "importance_change.png"
            plots.plot_importance_change(pipeline.importance_change(), path=out["importance_change"],
                                         title="Stage two after the concept edit (excluded attributes at 0)")  # fmt: skip
        importance = pipeline.global_importance()
        out["attribute_importance"] = plots_dir / "attribute_importance.png"
        plots.plot_attribute_importance(importance, path=out["attribute_importance"],
                                        title="What drives the Male decision (stage two)")  # fmt: skip
        importance.rename("importance").to_csv(reports_dir / "attribute_importance.csv")
        if report.test_attribute_probabilities is not None and len(report.test_attribute_probabilities):
            table = reports.per_attribute_metrics(report.test_attributes, report.test_attribute_probabilities,
                                                  STAGE_ONE_ATTRIBUTES, threshold=pipeline.threshold)  # fmt: skip
            table.to_csv(reports_dir / "attribute_metrics.csv")
            out["attribute_accuracy"] = plots_dir / "attribute_accuracy.png"
            plots.plot_attribute_accuracy(table["accuracy"], table["roc_auc"], path=out["attribute_accuracy"],
                                          baseline=table["majority_accuracy"])  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------------------------------


@dataclass
class ComparisonRun:
    comparison: Comparison
    out_dir: Path
    files: dict[str, Path]
    run_id: str | None = None
    children: list[PipelineRun] = field(default_factory=list)


def align_plans(two_stage: RunPlan, direct: RunPlan, announce=_say) -> RunPlan:
    """The direct plan with the two-stage plan's data, split, seed and caps (same test images)."""
    shared = {k: getattr(two_stage.config, k) for k in SHARED_KEYS}
    changed = [k for k, v in shared.items() if getattr(direct.config, k) != v and k != "data_root"]
    if changed:
        announce(f"compare: the direct run uses the two-stage preset's {', '.join(changed)} so both see the same "
                 "images")  # fmt: skip
    config = build_config(direct.config.to_dict() | shared, "compare")
    return dataclasses.replace(direct, config=config, data=two_stage.data)


def log_comparison(tracker, comparison: Comparison, files: dict[str, Path], tags: dict | None = None) -> None:
    """Parent-run logging: the comparison metrics, its report (also as the run description) and plots."""
    tracker.log_metrics(comparison.metrics)
    tracker.set_tags({"mlflow.note.content": comparison.report} | (tags or {}))
    for path in files.values():
        tracker.log_artifact(path, "comparison")


def run_comparison(two_stage: RunPlan, direct: RunPlan, tracker=None, measure: MeasureSpec | None = None,
                   n_boot: int = N_BOOT, stamp: str | None = None, corruptions: bool = False) -> ComparisonRun:  # fmt: skip
    """Both routes as nested child runs of one parent run (tag ``comparison``), then the comparison;
    with ``corruptions``, both routes are also scored on CelebA-C (the test images, corrupted)."""
    tracker = tracker or NullTracker()
    stamp = stamp or f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    out_dir = Path(two_stage.config.output_dir).resolve() / f"compare-{stamp}"
    tags = {"comparison": "two_stage_vs_direct", "data": "synthetic" if two_stage.smoke else "celeba"}
    with tracker.run(f"compare-{stamp}", tags=tags) as parent_id:
        tracker.log_params({k: getattr(two_stage.config, k) for k in SHARED_KEYS if k not in ("tracking",)}
                           | {"preset_two_stage": _shown(two_stage.preset), "preset_direct": _shown(direct.preset),
                              "bootstrap_resamples": n_boot})  # fmt: skip
        children = [run_pipeline(plan, tracker, nested=True, measure=measure,
                                 extra_tags={"comparison_parent": parent_id or ""})
                    for plan in (two_stage, direct)]  # fmt: skip
        comparison = compare_approaches(children[0].approach, children[1].approach, n_boot=n_boot,
                                        seed=two_stage.config.seed)  # fmt: skip
        if corruptions:
            comparison.add_corruptions(celeba_c(children, seed=two_stage.config.seed, n_boot=n_boot))
        files = write_comparison(comparison, out_dir)
        log_comparison(tracker, comparison, files, {"two_stage_run_id": children[0].run_id or "",
                                                    "direct_run_id": children[1].run_id or ""})  # fmt: skip
    return ComparisonRun(comparison, out_dir, files, parent_id, children)


def celeba_c(children: list[PipelineRun], seed: int, n_boot: int) -> dict:
    """CelebA-C accuracy of each route on its test images (the same images and corruptions for both)."""
    from .pipeline.robustness import corruption_accuracy

    out = {}
    for child in children:
        report = child.pipeline.fit_report_
        celeba = report.train_result.datamodule.celeba
        paths = [celeba.image_path(i) for i in report.test_ids]
        _say(f"[{child.kind}] CelebA-C: {len(paths):,} test images x 6 corruptions")
        out[child.kind] = corruption_accuracy(child.pipeline, paths, report.test_male, seed=seed, n_boot=n_boot)
    return out


def approach_from_run(tracker, run_id: str, expected: str, work_dir: Path) -> ApproachResult:
    """A finished pipeline run's logged metrics and test predictions."""
    from mlflow.exceptions import MlflowException

    try:
        metrics, params, tags = tracker.run_data(run_id)
    except MlflowException as exc:
        raise ConfigError(f"cannot read MLflow run {run_id} from {tracker.uri} ({exc}); pass the run ids printed "
                          "by run_two_stage.py / run_direct.py, with the same MLFLOW_TRACKING_URI (or working "
                          "folder) they used") from None  # fmt: skip
    kind = tags.get("pipeline")
    if kind not in KINDS:
        raise ConfigError(f"MLflow run {run_id} has no pipeline tag (two_stage/direct): was it made by "
                          "run_two_stage.py / run_direct.py?")  # fmt: skip
    if kind != expected:
        raise ConfigError(f"MLflow run {run_id} is a {kind} run, but --runs takes the two_stage run first and the "
                          "direct run second")  # fmt: skip
    path = tracker.download_artifact(run_id, PREDICTIONS_ARTIFACT, work_dir / run_id)
    frame = pd.read_csv(path, dtype={"image_id": str})
    info = {k: params[k] for k in ("backbone", "weights", "image_size", "epochs") if k in params}
    info["data"] = tags.get("data", "")
    return ApproachResult.from_predictions_frame(kind, frame, metrics=metrics, run_id=run_id,
                                                 threshold=float(params.get("threshold", 0.5)), info=info)  # fmt: skip


def compare_logged_runs(tracker, run_two_stage: str, run_direct: str, output_dir: str | Path = "runs",
                        n_boot: int = N_BOOT, stamp: str | None = None) -> ComparisonRun:  # fmt: skip
    """Compare two finished runs by id; the comparison becomes a new parent run tagged ``comparison``."""
    stamp = stamp or f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    out_dir = Path(output_dir).resolve() / f"compare-{stamp}"
    tracker.use_experiment_of(run_two_stage)
    two = approach_from_run(tracker, run_two_stage, "two_stage", out_dir / "downloads")
    direct = approach_from_run(tracker, run_direct, "direct", out_dir / "downloads")
    seed = 0
    comparison = compare_approaches(two, direct, n_boot=n_boot, seed=seed)
    files = write_comparison(comparison, out_dir)
    tags = {"comparison": "two_stage_vs_direct", "two_stage_run_id": run_two_stage, "direct_run_id": run_direct}
    with tracker.run(f"compare-{stamp}", tags=tags) as parent_id:
        log_comparison(tracker, comparison, files)
    return ComparisonRun(comparison, out_dir, files, parent_id)


# --------------------------------------------------------------------------------------------------
# command lines
# --------------------------------------------------------------------------------------------------


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=None, help="CelebA root (default: data/celeba, else synthetic)")
    parser.add_argument("--latency", default="1:16,64:128", metavar="B:N,...",
                        help="inference timing: batch:images pairs (default 1:16,64:128)")  # fmt: skip
    parser.add_argument("--latency-repeats", type=int, default=3, help="timed calls per batch size (median)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. epochs=2 backbone=vgg16")


def build_parser(kind: str) -> argparse.ArgumentParser:
    if kind == "compare":
        parser = argparse.ArgumentParser(prog="compare.py", description="Two-stage vs direct on the same split "
                                         "and seed, as nested MLflow runs under one comparison run.")  # fmt: skip
        parser.add_argument("--config-two-stage", default=None, help="default: configs/two_stage.yaml")
        parser.add_argument("--config-direct", default=None, help="default: configs/direct.yaml")
        parser.add_argument("--runs", nargs=2, metavar=("RUN_ID_TWO_STAGE", "RUN_ID_DIRECT"),
                            help="compare two finished runs instead of training")  # fmt: skip
        parser.add_argument("--bootstrap", type=int, default=N_BOOT, help="resamples for the accuracy-loss CI")
        parser.add_argument("--corruptions", action="store_true",
                            help="also score both routes on CelebA-C: the test images under 6 corruptions")  # fmt: skip
    else:
        name = "two-stage (image -> 39 attributes -> Male)" if kind == "two_stage" else "direct (image -> Male)"
        parser = argparse.ArgumentParser(prog=f"run_{kind}.py", description=f"Train, evaluate and track the {name} "
                                         "pipeline.")  # fmt: skip
        parser.add_argument("--config", default=None, help=f"YAML preset (default: configs/{DEFAULT_PRESET[kind]})")
        parser.add_argument("--run", default=None, help="the named run of a multi-run preset")
    _common_arguments(parser)
    return parser


def _exit_errors() -> tuple[type[BaseException], ...]:
    from mlflow.exceptions import MlflowException

    from .data import CelebAError, ImageLoadError
    from .models import UnknownBackboneError, WeightsNotFoundError
    from .pipeline.bundle import BundleError

    return (ConfigError, CelebAError, ImageLoadError, BundleError, UnknownBackboneError, WeightsNotFoundError,
            MlflowException)  # fmt: skip


def _guarded(fn, argv) -> int:
    errors = _exit_errors()
    try:
        return fn(argv)
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _measure_spec(args) -> MeasureSpec:
    try:
        return MeasureSpec.parse(args.latency, repeats=args.latency_repeats)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _run_lines(run: PipelineRun, tracker) -> list[str]:
    lines = [f"[{run.kind}] run dir:   {run.run_dir}", f"[{run.kind}] bundle:    {run.bundle_dir}"]
    if run.run_id:
        lines.append(f"[{run.kind}] MLflow run {run.run_id} (experiment {tracker.experiment!r}); model "
                     f"{run.model_uri} = runs:/{run.run_id}/model")  # fmt: skip
    acc = run.metrics.get("test_accuracy", float("nan"))
    ms = {k: v for k, v in run.metrics.items() if k.startswith("inference_ms_per_image_b")}
    timing = ", ".join(f"{v:.2f} ms/image at batch {k.rsplit('_b', 1)[1]}" for k, v in ms.items())
    worst = run.metrics.get("test_worst_group_accuracy", float("nan"))
    lines.append(f"[{run.kind}] test accuracy {acc:.4f}, worst-group accuracy {worst:.4f}, trained in "
                 f"{run.metrics.get('train_seconds', 0):.0f}s, {timing}")  # fmt: skip
    return lines


def _single(kind: str, argv) -> int:
    args = build_parser(kind).parse_args(argv)
    measure = _measure_spec(args)
    plan = plan_run(kind, args.config, args.data_root, args.overrides, run=args.run)
    materialize([plan])
    tracker = make_tracker(plan.config)
    run = run_pipeline(plan, tracker, measure=measure)
    if not is_rank_zero():
        return 0
    print("\n".join(["", "Results:", *_run_lines(run, tracker), f"To see them: {tracker.ui_line()}"]), flush=True)
    return 0


def _compare(argv) -> int:
    args = build_parser("compare").parse_args(argv)
    if args.runs:
        extra = parse_overrides(args.overrides)
        config = build_config({k: v for k, v in extra.items() if k in ("output_dir", "experiment", "tracking")})
        if config.tracking == "none":
            raise ConfigError("--runs reads the runs from MLflow; drop tracking=none")
        tracker = make_tracker(config)
        result = compare_logged_runs(tracker, args.runs[0], args.runs[1], config.output_dir, n_boot=args.bootstrap)
        lines = []
    else:
        measure = _measure_spec(args)
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        overrides = list(args.overrides)
        two = plan_run("two_stage", args.config_two_stage, args.data_root, overrides, stamp=stamp)
        direct = plan_run("direct", args.config_direct, args.data_root, overrides, stamp=stamp)
        if two.config.run_name == direct.config.run_name:  # a run_name=... override: keep the folders apart
            two.config.run_name += "-two_stage"
            direct.config.run_name += "-direct"
        direct = align_plans(two, direct)
        materialize([two, direct])
        tracker = make_tracker(two.config)
        result = run_comparison(two, direct, tracker, measure=measure, n_boot=args.bootstrap, stamp=stamp,
                                corruptions=args.corruptions)  # fmt: skip
        lines = [line for child in result.children for line in _run_lines(child, tracker)]
    if not is_rank_zero():
        return 0
    m = result.comparison.metrics
    lines += [
        f"[comparison] accuracy loss (direct - two-stage) {100 * m['accuracy_loss']:+.2f} points "
        f"(95% CI {100 * m['accuracy_loss_ci_low']:+.2f} to {100 * m['accuracy_loss_ci_high']:+.2f}); "
        f"inference time x{m['inference_time_ratio']:.2f}, training time x{m['training_time_ratio']:.2f}, "
        f"size x{m['size_ratio']:.2f} (two-stage / direct)",
        *([f"[comparison] worst-group accuracy: two-stage {m['worst_group_accuracy_two_stage']:.4f}, direct "
           f"{m['worst_group_accuracy_direct']:.4f} (groups: Male x makeup, Male x blond; 30+ test images)"]
          if "worst_group_accuracy_two_stage" in m else []),
        *([f"[comparison] CelebA-C mean accuracy: two-stage {m['celeba_c_mean_accuracy_two_stage']:.4f}, direct "
           f"{m['celeba_c_mean_accuracy_direct']:.4f}"] if "celeba_c_mean_accuracy_two_stage" in m else []),
        f"[comparison] report:    {result.files['report']}",
    ]
    if result.run_id:
        nested = "the two routes are its child runs" if result.children else "it names the two runs in its tags"
        lines.append(f"[comparison] MLflow run {result.run_id} (tag comparison; {nested})")
    print("\n".join(["", "Results:", *lines, f"To see them: {tracker.ui_line()}"]), flush=True)
    return 0


def main_two_stage(argv: list[str] | None = None) -> int:
    return _guarded(lambda a: _single("two_stage", a), argv)


def main_direct(argv: list[str] | None = None) -> int:
    return _guarded(lambda a: _single("direct", a), argv)


def main_compare(argv: list[str] | None = None) -> int:
    return _guarded(_compare, argv)
