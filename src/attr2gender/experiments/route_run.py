"""One pipeline run: train the planned route, save its bundle, measure it, write its plots and reports,
and log all of it through the tracker (MLflow, or nothing with ``tracking=none``)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics as reports
from .. import plots
from ..config import RunConfig
from ..data.attributes import STAGE_ONE_ATTRIBUTES
from ..data.groups import GROUPINGS, group_ids, slice_masks
from ..data.images import load_image
from ..data.transforms import eval_transform_from_spec
from ..metrics import shown, worst_group_name
from ..models.internals import feature_maps_of, first_conv
from ..pipeline.bundle import disk_bytes, share_identical
from ..pipeline.concept_quality import NOT_CONCEPTS
from ..pipeline.loading import synthetic_warning
from ..tracking.measure import MeasureSpec, cost_metrics, measure_latency
from ..tracking.mlflow_tracking import NullTracker
from .comparison_metrics import PREDICTIONS_ARTIFACT, RouteResult
from .plan import RunPlan

N_EXAMPLES = 16  # images per prediction grid


@dataclass
class PipelineRun:
    route: str
    config: RunConfig  # resolved (lr after the finder, data root)
    pipeline: object
    run_dir: Path
    bundle_dir: Path
    metrics: dict[str, float]
    route_result: RouteResult
    run_id: str | None = None
    model_uri: str | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)
    run_dir_bytes: int = 0  # the run folder on the disk when the run ended
    bundle_bytes: int = 0  # of which the bundle (MLflow keeps a copy of it when tracking)
    report: object = None  # the training run's TrainReport (what it measured; the pipeline only predicts)


def _train(route: str, config: RunConfig):
    # lazy: training imports Lightning; compare --mlflow-runs loads this module and trains nothing
    from ..training.routes import train_direct, train_two_stage

    return (train_two_stage if route == "two_stage" else train_direct)(config)


def _params(config: RunConfig) -> dict:
    values = config.to_dict()
    if values.get("lr") == "auto":  # logged after training, once the finder has chosen it
        values.pop("lr")
    return values


def logged_metrics(pipeline, report) -> dict[str, float]:
    """Test metrics as ``test_<name>`` (the same names for both routes), training time and timings."""
    not_test = {"train_seconds", "stage_two_rows", "threshold", "temperature"}
    out = {
        f"test_{k}": v
        for k, v in pipeline.metrics.items()
        if k not in not_test and not k.startswith(("val_", "labelled_"))
    }
    # The labelled faces' sides say which side they are (labelled_val_*, labelled_test_*).
    out |= {k: v for k, v in pipeline.metrics.items() if k.startswith("labelled_")}
    out |= {k: v for k, v in pipeline.metrics.items() if k.startswith("val_") or k == "temperature"}
    # One name per meaning for both routes, sorting to the top of the runs table.
    out["headline_accuracy"] = float(pipeline.metrics.get("accuracy", float("nan")))
    out |= _headline_ci(report)
    out["train_seconds"] = float(pipeline.metrics.get("train_seconds", report.train_result.train_seconds))
    if "stage_two_rows" in pipeline.metrics:
        out["stage_two_rows"] = pipeline.metrics["stage_two_rows"]
    out |= {f"time_{k}_seconds": float(v) for k, v in report.timings.items() if k != "train"}
    out["time_train_seconds"] = out["train_seconds"]  # whole fit: for two-stage, stage one + stage two
    out["epochs_run"] = float(report.train_result.epochs_run)
    return out


def _headline_ci(report) -> dict[str, float]:
    """``headline_accuracy_ci_low`` / ``_high``: its 95 % percentile bootstrap CI over the test images, as
    the run's evaluation computed it (once, in training)."""
    evaluation = getattr(report, "evaluation", None)
    if evaluation is None or not evaluation.n:
        return {}
    return {"headline_accuracy_ci_low": evaluation.ci_low, "headline_accuracy_ci_high": evaluation.ci_high}


def run_description(route: str, config: RunConfig, pipeline, synthetic: bool) -> str:
    """The paragraph on the run page's first screen: what was trained, on what, and how it did."""
    what = (
        f"Two-stage: {config.backbone} predicts the 39 attributes, a {config.stage_two_model} stage two "
        "reads them to predict Male"
        if route == "two_stage"
        else f"Direct: {config.backbone} predicts Male from the pixels"
    )
    m = pipeline.metrics
    n = int(m.get("n") or m.get("n_images") or 0)  # test images scored
    parts = [
        f"{what} ({config.image_size} px, {config.epochs} epoch(s), seed {config.seed}).",
        f"Test accuracy {shown(m.get('accuracy'), m.get('accuracy_ci_low'), m.get('accuracy_ci_high'), n)} on "
        f"{n:,} images; worst group {shown(m.get('worst_group_accuracy'), n=n)}; ECE {shown(m.get('ece'), n=n)}.",
    ]
    if "concept_mean_auc" in m:
        parts.append(concept_words(pipeline))
    if synthetic or pipeline.data_kind == "synthetic":
        parts.append("**Warning:** " + synthetic_warning("This model"))
    return " ".join(parts)


def concept_words(pipeline) -> str:
    """The concepts' quality in words beside its numbers: a mean accuracy means little next to what always
    answering each attribute's common value scores, so that is said too, and the verdict."""
    m = pipeline.metrics
    text = (
        f"Its 39 concepts on the test images: mean accuracy {m['concept_mean_accuracy']:.3f}, AUC "
        f"{m['concept_mean_auc']:.3f}"
    )
    if "concept_majority_accuracy" in m:
        text += f" (always answering each attribute's common value: {m['concept_majority_accuracy']:.3f})"
    concepts = getattr(pipeline, "concepts", None)
    if concepts is None:
        return text + "; their reliability is unknown (no validation record)."
    if not concepts.reliable:
        return text + f". **Verdict: {NOT_CONCEPTS}** ({concepts.why()})."
    return text + f". Verdict: **reliable concepts** ({concepts.why()})."


def run_pipeline(
    plan: RunPlan,
    tracker=None,
    nested: bool = False,
    measure: MeasureSpec | None = None,
    extra_tags: dict | None = None,
) -> PipelineRun:
    """Fit the planned route, write its artifacts into its run folder and log everything."""
    tracker = tracker or NullTracker()
    config = plan.config
    tags = {
        "route": plan.route,
        "task": config.task,
        "backbone": config.backbone,
        "data": "synthetic" if plan.data.synthetic else "celeba",
        "preset": plan.preset or "(defaults)",
    } | (extra_tags or {})
    tags["run_folder"] = config.run_name  # the MLflow name is shorter (plan.mlflow_name)
    with tracker.run(
        plan.mlflow_name, tags=tags, nested=nested, system_metrics=config.system_metrics
    ) as run_id:
        tracker.log_params(_params(config))
        pipeline, report = _train(plan.route, config)
        result = report.train_result
        config = result.config
        run_dir = Path(result.run_dir)
        if plan.config.lr == "auto":
            tracker.log_params({"lr": config.lr})
        bundle_dir = pipeline.save(run_dir / "bundle")
        share_identical(run_dir / "model" / "model.safetensors", bundle_dir / "model.safetensors")

        metrics = logged_metrics(pipeline, report)
        metrics |= cost_metrics(pipeline, bundle_dir)
        celeba = result.datamodule.celeba
        test_paths = [celeba.image_path(i) for i in report.test_ids]
        metrics |= measure_latency(
            pipeline, _decode(test_paths, max((measure or MeasureSpec()).images.values())), measure
        )
        route_result = RouteResult(
            plan.route,
            list(report.test_ids),
            np.asarray(report.test_male),
            np.asarray(report.test_male_probability),
            metrics,
            pipeline.threshold,
            run_id,
            info=_info(config, plan),
            groups=_group_ids(report.test_truth),
            slices=slice_masks(report.test_truth) if report.test_truth is not None else {},
        )
        artifacts = write_run_artifacts(plan.route, pipeline, report, route_result, run_dir, test_paths)
        tables = artifacts.pop("tables", {})
        (run_dir / "results.json").write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float))

        tracker.log_history(result.history)
        tracker.log_metrics(metrics)
        if pipeline.data_kind != "unknown":  # what the data turned out to be (a given root may be synthetic)
            tracker.set_tags({"data": pipeline.data_kind})
        if getattr(report, "stage_one_cache", ""):
            tracker.set_tags({"stage_one_cache": report.stage_one_cache})
        tracker.set_tags(
            {"mlflow.note.content": run_description(plan.route, config, pipeline, plan.data.synthetic)}
        )
        for name, table in tables.items():  # sortable in the MLflow UI
            tracker.log_table(table, f"tables/{name}.json")
        if report.group_table is not None:
            tracker.set_tags({"worst_group": worst_group_name(report.group_table) or "none with 30+ images"})
        tracker.log_artifact(run_dir / "config.yaml", "config")
        tracker.log_artifact(run_dir / "engine.json", "config")
        tracker.log_artifact(run_dir / "history.csv", "history")
        tracker.log_artifact(run_dir / "results.json")
        for folder in ("plots", "reports", "predictions", "tensorboard"):
            tracker.log_artifacts(run_dir / folder, folder)
        tracker.log_artifact(run_dir / "lr_finder.png", "plots")
        model_uri = tracker.log_pyfunc_model(bundle_dir, input_example=_input_example(test_paths))
    run = PipelineRun(
        plan.route, config, pipeline, run_dir, bundle_dir, metrics, route_result, run_id, model_uri, artifacts
    )
    run.report = report
    run.run_dir_bytes = disk_bytes(run_dir)  # at the end: the bundle, plots and reports included
    run.bundle_bytes = disk_bytes(bundle_dir)
    return run


def run_lines(run: PipelineRun, tracker) -> list[str]:
    """The results of one route's run, as the command line prints them: its folders, its MLflow run and
    model, its test accuracy, training time and inference timings."""
    copy = (
        f"; MLflow keeps a {run.bundle_bytes / 1e6:.1f} MB copy of the bundle in its artifact store"
        if run.run_id
        else ""
    )
    lines = [
        f"[{run.route}] run dir:   {run.run_dir} ({run.run_dir_bytes / 1e6:.1f} MB on disk, the bundle "
        f"{run.bundle_bytes / 1e6:.1f} MB of it{copy})",
        f"[{run.route}] bundle:    {run.bundle_dir}",
    ]
    if run.run_id:
        lines.append(
            f"[{run.route}] MLflow run {run.run_id} (experiment {tracker.experiment!r}); model "
            f"{run.model_uri} = runs:/{run.run_id}/model"
        )
    n = int(run.metrics.get("test_n") or 0)
    acc = shown(run.metrics.get("test_accuracy"), n=n)
    ms = {k: v for k, v in run.metrics.items() if k.startswith("inference_ms_per_image_b")}
    timing = ", ".join(f"{v:.3g} ms/image at batch {k.rsplit('_b', 1)[1]}" for k, v in ms.items())
    worst = shown(run.metrics.get("test_worst_group_accuracy"), n=n)
    lines.append(
        f"[{run.route}] test accuracy {acc} on {n:,} images, worst-group accuracy {worst}, trained in "
        f"{run.metrics.get('train_seconds', 0):.0f}s, {timing}"
    )
    m = run.metrics
    if "labelled_val_accuracy" in m:  # the second source's validation side: everyday photos of every age
        k = int(m.get("labelled_val_n") or 0)
        source = next((d["name"] for d in run.pipeline.training_data[1:]), "labelled faces")
        lines.append(
            f"[{run.route}] {source} validation side (people never trained on): accuracy "
            f"{shown(m['labelled_val_accuracy'], m.get('labelled_val_accuracy_ci_low'), m.get('labelled_val_accuracy_ci_high'), k)} "
            f"on {k:,} photos; weakest gender x age band cell from 10 up: {_weakest(run, k)} "
            "(reports/labelled_val_cells.md)"
        )
    if getattr(run.pipeline, "data_kind", "") == "synthetic":  # said once, about the bundle the user gets
        lines.append(f"[{run.route}] warning: {synthetic_warning(run.bundle_dir)}")
    return lines


def _weakest(run: PipelineRun, n: int) -> str:
    """The weakest cell named (the in-memory report knows it), else its recall alone."""
    report = run.report
    side = getattr(report, "labelled", {}).get("val") if report is not None else None
    return (
        side.describe_worst()
        if side is not None
        else shown(run.metrics.get("labelled_val_worst_recall_10_up"), n=n)
    )


def _group_ids(truth) -> dict[str, np.ndarray]:
    """Each test image's group per grouping (Male x makeup, Male x blond), from its true attributes."""
    if truth is None:
        return {}
    return {grouping: group_ids(truth, grouping=grouping) for grouping in GROUPINGS}


def _info(config: RunConfig, plan: RunPlan) -> dict[str, str]:
    return {
        "backbone": config.backbone,
        "weights": config.weights,
        "image_size": str(config.image_size),
        "epochs": str(config.epochs),
        "data": "synthetic" if plan.data.synthetic else "celeba",
    }


def _decode(paths: list[Path], n: int) -> list:
    """Up to ``n`` images decoded (RGB PIL) ahead of the latency measurement."""
    return [load_image(p) for p in paths[: max(1, n)]]


def decoded_images(run: PipelineRun, n: int) -> list:
    """Up to ``n`` of the run's test images, decoded: what its latency was measured on."""
    celeba = run.report.train_result.datamodule.celeba
    return _decode([celeba.image_path(i) for i in run.route_result.test_ids], n)


def _input_example(paths: list[Path]) -> pd.DataFrame | None:
    if not paths:
        return None
    return pd.DataFrame({"image_base64": [base64.b64encode(Path(paths[0]).read_bytes()).decode("ascii")]})


def labelled_artifacts(evaluation, title: str, plots_dir: Path, reports_dir: Path, tables: dict) -> dict:
    """One side of the labelled faces: the cells' table (markdown, CSV, an MLflow table), the age band x
    race heatmap and each gender's recall per age band."""
    side, source = evaluation.side, evaluation.source
    name = f"labelled_{side}"
    where = f"{source}, {'validation' if side == 'val' else 'test'} side: people never trained on"
    evaluation.cells.to_csv(reports_dir / f"{name}_cells.csv", index=False)
    m = evaluation.metrics
    (reports_dir / f"{name}_cells.md").write_text(
        f"# Everyday photos by age band and race ({title}, {where})\n\n"
        f"Male accuracy {shown(m[f'{name}_accuracy'], m[f'{name}_accuracy_ci_low'], m[f'{name}_accuracy_ci_high'])} "
        f"on {len(evaluation.male):,} photos ({evaluation.skipped} without a usable face); women called women "
        f"{100 * m[f'{name}_female_recall']:.1f} %, men called men {100 * m[f'{name}_male_recall']:.1f} %. "
        f"Weakest gender x age band cell from 10 up: {evaluation.describe_worst()}. 95 % bootstrap CIs; a cell "
        'of fewer than 30 photos says "too few".\n\n' + reports.cell_table_markdown(evaluation.cells)
    )
    tables[f"{name}_cells"] = evaluation.cells
    accuracy, counts = evaluation.cross()
    accuracy.index.name, accuracy.columns.name = "age band", "race"
    out = {
        f"{name}_heatmap": plots_dir / f"{name}_heatmap.png",
        f"{name}_recall": plots_dir / f"{name}_recall.png",
    }
    plots.plot_cell_heatmap(
        accuracy,
        counts,
        path=out[f"{name}_heatmap"],
        title=f"Male accuracy by age band and race ({title}, {where})",
    )
    plots.plot_cell_recall(
        evaluation.cells,
        path=out[f"{name}_recall"],
        title=f"Each gender's recall by age band ({title}, {where})",
    )
    return out


def write_run_artifacts(
    route: str, pipeline, report, route_result: RouteResult, run_dir: Path, test_paths: list[Path]
) -> dict:
    """The source study's plots and reports, into ``run_dir/plots``, ``reports`` and ``predictions``; also
    ``tables``: DataFrames to log as MLflow tables."""
    plots_dir, reports_dir, pred_dir = run_dir / "plots", run_dir / "reports", run_dir / "predictions"
    for d in (plots_dir, reports_dir, pred_dir):
        d.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    y = np.asarray(report.test_male, dtype=int)
    prob = np.asarray(report.test_male_probability, dtype=float)
    pred = (prob >= pipeline.threshold).astype(int)
    title = "two-stage" if route == "two_stage" else "direct"

    frame = route_result.predictions_frame()
    out["predictions"] = pred_dir / Path(PREDICTIONS_ARTIFACT).name
    frame.to_csv(out["predictions"], index=False)
    out["classification_report"] = reports_dir / "classification_report.txt"
    out["classification_report"].write_text(
        f"{title}: Male from {'39 predicted attributes' if route == 'two_stage' else 'pixels'}, test split, "
        f"threshold {pipeline.threshold}\n\n" + reports.classification_report_text(y, pred, digits=4)
    )

    history = report.train_result.history
    if history is not None and len(history):
        curves = history[[c for c in history.columns if not c.endswith(("_skipped", "images_per_s"))]]
    else:
        curves = pd.DataFrame()
    out["learning_curves"] = plots_dir / "learning_curves.png"
    plots.plot_learning_curves(
        curves,
        path=out["learning_curves"],
        title=f"Learning curves ({title}, {'stage one' if route == 'two_stage' else 'Male'})",
        kept_epoch=report.train_result.kept_epoch,
        kept_by=report.train_result.kept_by,
    )
    out["confusion_matrix"] = plots_dir / "confusion_matrix.png"
    plots.plot_confusion_matrix(y, pred, path=out["confusion_matrix"], title=f"Confusion matrix, {title}")

    correct, wrong = plots.select_prediction_examples(y, pred, n=N_EXAMPLES, seed=0)
    for name, idx, grid_title in (
        ("predictions_correct", correct, f"Correct predictions, {title}"),
        ("predictions_incorrect", wrong, f"Incorrect predictions, {title}"),
    ):
        images = [np.asarray(load_image(test_paths[i])) for i in idx]
        out[name] = plots_dir / f"{name}.png"
        plots.plot_prediction_grid(
            images, y[idx], pred[idx], prob[idx], path=out[name], title=grid_title, max_images=N_EXAMPLES
        )

    net = getattr(pipeline.image_model, "net", pipeline.image_model)
    out["conv_filters"] = plots_dir / "conv_filters.png"
    plots.plot_conv_filters(
        first_conv(net).weight,
        path=out["conv_filters"],
        title=f"First convolution layer filters ({title})",
    )
    if test_paths:
        image = load_image(test_paths[0])
        tensor = eval_transform_from_spec(pipeline.preprocessing)(image)
        out["feature_maps"] = plots_dir / "feature_maps.png"
        plots.plot_feature_maps(
            feature_maps_of(net, tensor),
            image=tensor,
            path=out["feature_maps"],
            title=f"Feature maps of the first convolution layer ({title})",
        )

    if getattr(report, "leakage", None) is not None:
        (reports_dir / "leakage.md").write_text(report.leakage.markdown())
        out["permutation_importance"] = plots_dir / "permutation_importance.png"
        plots.plot_attribute_importance(
            report.leakage.permutation.rename("Male accuracy drop when permuted"),
            path=out["permutation_importance"],
            top=20,
            title="Which concepts carry the decision (permutation importance)",
        )
    if getattr(report, "evaluation", None) is not None:  # the run's evaluation, as computed once in training
        (reports_dir / "evaluation.json").write_text(json.dumps(report.evaluation.to_dict(), indent=1))
        out["evaluation"] = reports_dir / "evaluation.json"
    if report.group_table is not None:
        report.group_table.to_csv(reports_dir / "groups.csv")
        (reports_dir / "groups.md").write_text(
            f"# Male accuracy per group ({title}, test split)\n\n"
            + reports.group_table_markdown(report.group_table)
        )
        out["group_accuracy"] = plots_dir / "group_accuracy.png"
        plots.plot_group_accuracy(
            {title: report.group_table},
            path=out["group_accuracy"],
            title=f"Male accuracy per group ({title})",
        )

    tables: dict[str, pd.DataFrame] = {}
    if getattr(report, "slice_table", None) is not None:
        slices = report.slice_table
        slices.to_csv(reports_dir / "slices.csv")
        (reports_dir / "slices.md").write_text(
            f"# Fairness slices ({title}, test split, true attributes)\n\n"
            "Male accuracy, false-male rate (women called men) and false-female rate (men called women), "
            f'with 95 % bootstrap CIs; a slice or rate of fewer than 30 images says "too few".\n\n'
            + reports.slice_table_markdown(slices)
        )
        out["slices"] = plots_dir / "slices.png"
        plots.plot_group_accuracy(
            {title: slices}, path=out["slices"], title=f"Male accuracy per slice ({title})"
        )
        tables["slices"] = slices.reset_index()
    for evaluation in getattr(report, "labelled", {}).values():
        out |= labelled_artifacts(evaluation, title, plots_dir, reports_dir, tables)
    # ECE and Brier were computed once, with the test metrics (training.routes.prediction_metrics); the bins
    # are what the table and the reliability plot draw.
    ece, brier = float(report.metrics["ece"]), float(report.metrics["brier"])
    bins = reports.calibration_bins(y, prob)
    (reports_dir / "calibration.md").write_text(
        f"# Calibration ({title}, test split)\n\nECE (15 bins, top-label): {ece:.4f}; Brier score: {brier:.4f}"
        + (
            f"; temperature {pipeline.temperature:.3f} (fitted on validation)"
            if pipeline.temperature != 1
            else ""
        )
        + (
            f"; stage one's mean ECE over the 39 attributes: {pipeline.metrics['concept_mean_ece']:.4f}"
            if "concept_mean_ece" in pipeline.metrics
            else ""
        )
        + ".\n\n"
        + reports.markdown_table(bins.to_dict(orient="records"))
    )
    out["reliability"] = plots_dir / "reliability.png"
    plots.plot_reliability({title: bins}, {title: ece}, path=out["reliability"])

    if route == "two_stage":
        if pipeline.edited_from is not None or pipeline.stage_two.get_params().get("exclude"):
            out["importance_change"] = plots_dir / "importance_change.png"
            plots.plot_importance_change(
                pipeline.importance_change(),
                path=out["importance_change"],
                title="Stage two after the concept edit (excluded attributes at 0)",
            )
        importance = pipeline.global_importance()
        out["attribute_importance"] = plots_dir / "attribute_importance.png"
        plots.plot_attribute_importance(
            importance, path=out["attribute_importance"], title="What drives the Male decision (stage two)"
        )
        importance.rename("importance").to_csv(reports_dir / "attribute_importance.csv")
        if report.test_attribute_probabilities is not None and len(report.test_attribute_probabilities):
            table = reports.per_attribute_metrics(
                report.test_attributes,
                report.test_attribute_probabilities,
                STAGE_ONE_ATTRIBUTES,
                threshold=pipeline.threshold,
            )
            table = table.sort_values("balanced_accuracy")  # worst first
            table.to_csv(reports_dir / "attribute_metrics.csv")
            (reports_dir / "attribute_metrics.md").write_text(
                "# Stage one per attribute (test split), worst balanced accuracy first\n\n"
                "`!` marks an attribute whose accuracy is below always answering its more common value "
                "(CelebA's labels are noisy: annotators agree on only about a dozen attributes 95 % of the "
                "time).\n\n" + reports.attribute_table_markdown(table)
            )
            tables["attribute_metrics"] = table.reset_index()
            out["attribute_accuracy"] = plots_dir / "attribute_accuracy.png"
            plots.plot_attribute_accuracy(
                table["accuracy"],
                table["roc_auc"],
                path=out["attribute_accuracy"],
                baseline=table["majority_accuracy"],
            )
            out["attribute_balanced_accuracy"] = plots_dir / "attribute_balanced_accuracy.png"
            plots.plot_attribute_accuracy(
                table["balanced_accuracy"],
                path=out["attribute_balanced_accuracy"],
                title="Stage one: which concepts it cannot see (0.5 = chance)",
                label="balanced accuracy",
            )
    out["tables"] = tables
    return out
