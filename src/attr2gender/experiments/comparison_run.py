"""The comparison: both routes on the same split and seed as nested child runs of one parent run (tag
``comparison``), or two finished runs read back from MLflow; then what the detour costs. With several
seeds, one comparison per seed, nested under one parent run that reports the spread across seeds.

Each comparison writes ``report.md`` and a self-contained ``report.html`` (the report, its plots and each
route's own reports and plots, embedded) into its folder, both logged under the ``comparison`` artifacts.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..metrics import markdown_table, paired_accuracy_difference_ci
from ..pipeline.concepts import curve_from_probabilities
from ..pipeline.robustness import corruption_accuracy
from ..plots import plot_concept_front, plot_intervention_curve
from ..stamps import run_stamp
from ..tracking.measure import MeasureSpec, paired_latency
from ..tracking.mlflow_tracking import NullTracker
from .comparison_metrics import PREDICTIONS_ARTIFACT, Comparison, RouteResult, compare_routes
from .comparison_report import corruption_comparison_text, described, description, write_comparison
from .html_report import Collapsible, Item, demote_headings, ordered_files, write_html_report
from .plan import ROUTES, SHARED_KEYS, RunPlan, comparison_name, say
from .route_run import PipelineRun, decoded_images, run_pipeline
from .seeds import WHAT_VARIES, SeedsSummary, summarize_seeds

N_BOOT = 2000  # bootstrap resamples for the accuracy-loss CI
# The HTML report shows each route's own reports and plots that exist, these first (the analyses that
# answer "where does the detour cost?"), then any others alphabetically; diagnostics come last.
PREFERRED_REPORTS = (
    "labelled_val_cells.md",
    "labelled_test_cells.md",
    "attribute_metrics.md",
    "slices.md",
    "calibration.md",
    "groups.md",
    "leakage.md",
)
PREFERRED_PLOTS = (
    "labelled_val_heatmap.png",
    "labelled_val_recall.png",
    "attribute_balanced_accuracy.png",
    "attribute_accuracy.png",
    "slices.png",
    "reliability.png",
    "group_accuracy.png",
    "attribute_importance.png",
    "permutation_importance.png",
    "importance_change.png",
    "confusion_matrix.png",
    "learning_curves.png",
    "predictions_correct.png",
    "predictions_incorrect.png",
    "conv_filters.png",
    "feature_maps.png",
)


@dataclass
class ComparisonRun:
    comparison: Comparison
    out_dir: Path
    files: dict[str, Path]
    run_id: str | None = None
    children: list[PipelineRun] = field(default_factory=list)


@dataclass
class SeedsRun:
    """One comparison per seed under one parent run, and the summary across seeds."""

    summary: SeedsSummary
    out_dir: Path
    files: dict[str, Path]
    run_id: str | None = None
    comparisons: dict[int, ComparisonRun] = field(default_factory=dict)


def log_comparison(
    tracker,
    comparison: Comparison,
    files: dict[str, Path],
    tags: dict | None = None,
    run_id: str | None = None,
) -> None:
    """Parent-run logging: the comparison metrics, its report (also as the run description) and plots; the
    saved view opens ``run_id`` (this parent) with its routes under it."""
    tracker.log_metrics(comparison.metrics)
    tracker.set_tags({"mlflow.note.content": description(comparison)} | (tags or {}))
    for path in files.values():
        tracker.log_artifact(path, "comparison")


def interleaved_latency(two_stage: PipelineRun, direct: PipelineRun, measure: MeasureSpec | None) -> dict:
    """Both routes timed in turn on the same decoded test images, round after round (each route's own run
    timed it alone once; a ratio of two single timings moved by a third between identical comparisons)."""
    spec = measure or MeasureSpec()
    report = two_stage.report
    if report is None or direct.pipeline is None or not len(two_stage.route_result.test_ids):
        return {}  # nothing to time on (a run read back, or none): each route's own timing stands
    images = decoded_images(two_stage, max(spec.images.values()))
    return paired_latency({"two_stage": two_stage.pipeline, "direct": direct.pipeline}, images, spec)


def run_comparison(
    two_stage: RunPlan | list[RunPlan],
    direct: RunPlan,
    tracker=None,
    measure: MeasureSpec | None = None,
    n_boot: int = N_BOOT,
    stamp: str | None = None,
    corruptions: bool = False,
    nested: bool = False,
    extra_tags: dict | None = None,
    out_dir: str | Path | None = None,
) -> ComparisonRun:
    """Both routes as nested child runs of one parent run (tag ``comparison``), then the comparison;
    with ``corruptions``, both routes are also scored on CelebA-C (the test images, corrupted).

    ``two_stage`` may be several plans (a multi-run preset such as ``concept_sweep``): each is a child run,
    the first is the headline comparison, and a sweep table sets every variant against the direct route.
    ``nested``: the comparison run itself nests under the active run (one seed of
    :func:`run_seed_comparisons`); ``extra_tags`` go on it and on its children; ``out_dir`` replaces
    ``<output_dir>/compare-<stamp>``."""
    variants = list(two_stage) if isinstance(two_stage, list | tuple) else [two_stage]
    two_stage = variants[0]
    tracker = tracker or NullTracker()
    stamp = stamp or run_stamp()
    out_dir = Path(out_dir or Path(two_stage.config.output_dir) / f"compare-{stamp}").resolve()
    extra_tags = {k: str(v) for k, v in (extra_tags or {}).items()}
    tags = {
        "comparison": "two_stage_vs_direct",
        "data": "synthetic" if two_stage.data.synthetic else "celeba",
    }
    with tracker.run(comparison_name(stamp), tags=tags | extra_tags, nested=nested) as parent_id:
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
                plan,
                tracker,
                nested=True,
                measure=measure,
                extra_tags={"comparison_parent": parent_id or ""} | extra_tags,
            )
            for plan in (two_stage, direct, *variants[1:])
        ]
        comparison = described(
            compare_routes(
                children[0].route_result,
                children[1].route_result,
                n_boot=n_boot,
                seed=two_stage.config.seed,
                latency_rounds=interleaved_latency(children[0], children[1], measure),
            ),
            children[0].route_result,
            children[1].route_result,
        )
        two_stage_children = [children[0], *children[2:]]
        concept_files = concepts_section(comparison, two_stage_children, children[1], out_dir, n_boot)
        if corruptions:
            tables = celeba_c(children, seed=two_stage.config.seed, n_boot=n_boot)
            comparison.add_corruptions(tables)
            comparison.add_section("CelebA-C: corrupted test images", corruption_comparison_text(tables))
        files = write_comparison(comparison, out_dir) | concept_files
        files["html"] = write_html_report(
            out_dir / "report.html",
            f"Two-stage vs direct: compare-{stamp}",
            comparison_sections(comparison, files, children),
        )
        log_comparison(
            tracker,
            comparison,
            files,
            {"two_stage_run_id": children[0].run_id or "", "direct_run_id": children[1].run_id or ""},
        )
    return ComparisonRun(comparison, out_dir, files, parent_id, children)


def run_seed_comparisons(
    plans: Mapping[int, tuple[list[RunPlan], RunPlan]],
    tracker=None,
    measure: MeasureSpec | None = None,
    n_boot: int = N_BOOT,
    stamp: str | None = None,
    corruptions: bool = False,
    what_varies: str = WHAT_VARIES,
) -> SeedsRun:
    """:func:`run_comparison` once per seed, each a comparison run (tag ``seed``) nested under one parent
    run (tag ``comparison=seeds``) with its two routes nested under it; then the spread across seeds.

    ``plans`` maps each seed to its ``(two-stage plans, direct plan)``, planned with ``seed=<seed>`` and
    distinct run names (see ``attr2gender run compare --seeds``). The parent logs ``seeds_*`` metrics
    (mean and std of each route's accuracy and of the loss), each seed's numbers at step ``seed``, the tag
    ``seeds_sign_stable``, and ``seeds.md``, ``seeds.json`` and ``report.html`` from
    ``<output_dir>/compare-seeds-<stamp>/`` (each seed's comparison in its ``seed-<seed>/``)."""
    if not plans:
        raise ValueError("run_seed_comparisons needs at least one seed's plans")
    tracker = tracker or NullTracker()
    stamp = stamp or run_stamp()
    seeds = list(plans)
    first_two, first_direct = plans[seeds[0]][0][0], plans[seeds[0]][1]
    out_dir = Path(first_two.config.output_dir).resolve() / f"compare-seeds-{stamp}"
    tags = {
        "comparison": "seeds",
        "seeds": ",".join(map(str, seeds)),
        "data": "synthetic" if first_two.data.synthetic else "celeba",
    }
    runs: dict[int, ComparisonRun] = {}
    with tracker.run(comparison_name(stamp, "compare-seeds"), tags=tags) as parent_id:
        tracker.log_params(
            {k: getattr(first_two.config, k) for k in SHARED_KEYS if k not in ("tracking", "seed")}
            | {
                "seeds": seeds,
                "preset_two_stage": first_two.preset,
                "preset_direct": first_direct.preset,
                "bootstrap_resamples": n_boot,
            }
        )
        for k, (seed, (two_stage, direct)) in enumerate(plans.items()):
            say(f"[seeds] seed {seed} ({k + 1} of {len(seeds)})")
            run = run_comparison(
                two_stage,
                direct,
                tracker,
                measure=measure,
                n_boot=n_boot,
                stamp=f"{stamp}-seed{seed}",
                corruptions=corruptions,
                nested=True,
                extra_tags={"seed": seed, "seeds_parent": parent_id or ""},
                out_dir=out_dir / f"seed-{seed}",
            )
            runs[seed] = run
            m = run.comparison.metrics
            # One point per seed on the parent: MLflow charts the per-seed numbers against the seed.
            tracker.log_metrics(
                {
                    f"seed_{key}": m[key]
                    for key in ("accuracy_two_stage", "accuracy_direct", "two_stage_minus_direct")
                },
                step=seed,
            )
        summary = summarize_seeds({seed: run.comparison for seed, run in runs.items()}, what_varies)
        files = summary.write(out_dir)
        files["html"] = write_html_report(
            out_dir / "report.html",
            f"Two-stage vs direct across {len(seeds)} seeds: compare-seeds-{stamp}",
            seeds_sections(summary, runs),
        )
        tracker.log_metrics(summary.metrics())
        tracker.set_tags(
            {"seeds_sign_stable": str(summary.sign_stable).lower(), "mlflow.note.content": summary.report}
            | {f"seed_{seed}_comparison_run_id": run.run_id or "" for seed, run in runs.items()}
        )
        for path in files.values():
            tracker.log_artifact(path, "comparison")
    return SeedsRun(summary, out_dir, files, parent_id, runs)


# --------------------------------------------------------------------------------------------------
# the HTML report
# --------------------------------------------------------------------------------------------------


def comparison_sections(
    comparison: Comparison, files: dict[str, Path], children: list[PipelineRun], child_plots: bool = True
) -> list[Item]:
    """The HTML report's content: the comparison report (headline first), its plots, then each route's
    own reports and plots (``child_plots=False`` leaves the routes' plots out, for a page that holds
    several comparisons)."""
    items: list[Item] = [comparison.report]
    items += [path for path in files.values() if path.suffix == ".png" and path.is_file()]
    for child in children:
        items += route_sections(child, plots=child_plots)
    return items


def seeds_sections(summary: SeedsSummary, runs: dict[int, ComparisonRun]) -> list[Item]:
    """The seeds run's HTML report: across seeds first (the answer of a seeds run), then each seed's
    comparison, folded. The routes' plots stay in each seed's own report.html: with them, every seed
    would add megabytes to this page."""
    items: list[Item] = [
        f"# Two-stage (image → 39 attributes → Male) vs direct (image → Male), across {len(runs)} seeds",
        summary.report,
    ]
    for seed, run in runs.items():
        m = run.comparison.metrics
        folded = [
            f"Seed {seed}'s own report, with each route's plots: `{run.files['html']}` (also under the "
            f"`comparison` artifacts of its MLflow run{f' `{run.run_id}`' if run.run_id else ''}).",
            *comparison_sections(run.comparison, run.files, run.children, child_plots=False),
        ]
        items.append(
            Collapsible(
                f"Seed {seed}: two-stage {m['accuracy_two_stage']:.4f}, direct {m['accuracy_direct']:.4f}, "
                f"two-stage minus direct {100 * m['two_stage_minus_direct'] + 0.0:+.2f} points",
                [demote_headings(i, 1) if isinstance(i, str) else i for i in folded],
            )
        )
    return items


def route_sections(child: PipelineRun, plots: bool = True) -> list[Item]:
    """One route's markdown reports (``<run_dir>/reports/*.md``) and plots (``<run_dir>/plots/*.png``)
    that exist, under one heading; nothing when it wrote neither."""
    run_dir = Path(child.run_dir)
    reports = ordered_files(run_dir / "reports", "*.md", PREFERRED_REPORTS)
    pngs = ordered_files(run_dir / "plots", "*.png", PREFERRED_PLOTS) if plots else []
    if not reports and not pngs:
        return []
    heading = (
        "Two-stage route (image → 39 attributes → Male)" if child.route == "two_stage" else "Direct route"
    )
    where = f"Run folder `{run_dir}`" + (f", MLflow run `{child.run_id}`" if child.run_id else "")
    # The routes' reports start at "#": nested two levels down, under this route's "##".
    return [
        f"## {heading}: {child.config.run_name}\n\n{where}.",
        *(demote_headings(path.read_text(), 2) for path in reports),
        *pngs,
    ]


def concepts_section(
    comparison: Comparison, two_stage: list[PipelineRun], direct: PipelineRun, out_dir: Path, n_boot: int
) -> dict[str, Path]:
    """Leakage and intervention curves of every two-stage child, and (for several) the sweep table; added to
    the comparison's report and metrics. Returns the files written (plots, curves)."""
    two_stage = [c for c in two_stage if getattr(c.report, "leakage", None) is not None]
    if not two_stage:  # nothing trained here to analyse (e.g. runs read back from MLflow)
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    files, rows, metrics = {}, [], {}
    direct_acc = comparison.metrics["accuracy_direct"]
    for child in two_stage:
        report, name = child.report, child.config.run_name
        curve = curve_from_probabilities(
            child.pipeline, report.test_attribute_probabilities, report.test_truth
        )
        files[f"curve_{name}"] = out_dir / f"intervention_curve_{name}.csv"
        curve.to_csv(files[f"curve_{name}"], index=False)
        references = {
            "direct route": direct_acc,
            "stage two on the true attributes": report.metrics.get("leakage_true_accuracy", float("nan")),
        }
        files[f"curve_plot_{name}"] = out_dir / f"intervention_curve_{name}.png"
        plot_intervention_curve(
            curve,
            references,
            files[f"curve_plot_{name}"],
            title=f"Interventions on {name}: correcting the k worst concepts",
        )
        at = curve.set_index(["policy", "k"])["accuracy"]
        d = paired_accuracy_difference_ci(
            child.route_result.male,
            child.route_result.male_probability >= 0.5,
            direct.route_result.male_probability >= 0.5,
            n_boot=n_boot,
        )
        row = {
            "variant": name,
            "mode": child.config.mode,
            "bottleneck": child.config.resolved_bottleneck(),
            "concept weight": child.config.concept_weight if child.config.mode == "joint" else "",
            "test accuracy": child.metrics.get("test_accuracy"),
            "two-stage - direct, points [95% CI]": f"{100 * d['difference']:+.2f} [{100 * d['low']:+.2f}, "
            f"{100 * d['high']:+.2f}]",
            "val Male accuracy": _val_accuracy(child),
            "val concept AUC": child.pipeline.metrics.get("val_concept_mean_auc", float("nan")),
            "test concept accuracy": child.pipeline.metrics.get("concept_mean_accuracy", float("nan")),
            "test concept AUC": child.pipeline.metrics.get("concept_mean_auc", float("nan")),
            "stage two fit on": child.config.stage_two_fit_on,
            "soft - hard (leakage)": child.metrics.get("test_leakage_soft_minus_hard"),
            "k=5 (uncertainty)": at.get(("uncertainty", 5)),
            "k=10 (uncertainty)": at.get(("uncertainty", 10)),
        }
        rows.append(row)
        for key in ("true", "hard", "soft"):
            metrics[f"leakage_{key}_accuracy_{name}"] = child.metrics.get(f"test_leakage_{key}_accuracy")
        for k in (5, 10):
            metrics[f"intervention_accuracy_k{k}_uncertainty_{name}"] = at.get(("uncertainty", k))
    text = (
        "Per two-stage run: Male accuracy after a person corrects the k most uncertain concepts of each image "
        "(plots: intervention_curve_*.png, all three policies), and leakage: stage two on the true "
        "attributes, on hard and on soft predictions (each run's reports/leakage.md).\n\n"
        + markdown_table(rows, floatfmt=".4f")
    )
    if len(two_stage) > 1:
        chosen_text, chosen_metrics, front = choose_concept_weight(
            rows, two_stage[0].config.concept_auc_tolerance
        )
        text += chosen_text
        metrics |= chosen_metrics
        files["concept_front"] = out_dir / "concept_front.png"
        plot_concept_front(
            front,
            _direct_val_accuracy(direct),
            chosen_metrics.get("sequential_val_concept_auc"),
            chosen_metrics.get("concept_auc_floor"),
            files["concept_front"],
        )
    comparison.add_section("The concept bottleneck: interventions and leakage", text, metrics)
    return files


def choose_concept_weight(rows: list[dict], tolerance: float) -> tuple[str, dict, pd.DataFrame]:
    """The joint model a sweep keeps: the most accurate on validation among those whose validation concept
    AUC is within ``tolerance`` of the sequential model's; the sequential model when none is. Returns the
    report's words, metrics and the points of the accuracy-concepts front (never reads a test number)."""
    sequential = next(
        (r for r in rows if r["mode"] == "staged" and r.get("stage two fit on") == "predicted"), None
    )
    joint = [r for r in rows if r["mode"] == "joint"]
    points = pd.DataFrame(
        [
            {"name": r["variant"], "concept_auc": r["val concept AUC"], "accuracy": r["val Male accuracy"]}
            for r in joint
            if np.isfinite(r["val Male accuracy"]) and np.isfinite(r["val concept AUC"])
        ],
        columns=["name", "concept_auc", "accuracy"],
    )
    if sequential is None or not joint:
        return "", {}, points.assign(chosen=False)
    floor = sequential["val concept AUC"] - tolerance
    qualified = [r for r in joint if r["val concept AUC"] >= floor and np.isfinite(r["val Male accuracy"])]
    metrics = {"concept_auc_floor": floor}
    if qualified:
        best = max(qualified, key=lambda r: r["val Male accuracy"])
        text = (
            f"\nThe concept weight chosen on validation (never on test): **{best['variant']}**, the most accurate "
            f"(validation Male accuracy {best['val Male accuracy']:.4f}) of the {len(qualified)} joint model(s) "
            f"whose validation concept AUC is within {tolerance} of the sequential model's "
            f"({sequential['val concept AUC']:.3f}). Test: Male accuracy {best['test accuracy']:.4f}, concept "
            f"accuracy {best['test concept accuracy']:.4f}, concept AUC {best['test concept AUC']:.3f}."
        )
    else:
        best = sequential
        text = (
            f"\nNo joint model kept its concepts: every one's validation concept AUC is more than {tolerance} "
            f"below the sequential model's ({sequential['val concept AUC']:.3f}), so the sweep keeps the "
            f"sequential model ({sequential['variant']}, test accuracy {sequential['test accuracy']:.4f})."
        )
    lost = [r["variant"] for r in joint if r["val concept AUC"] < floor]
    if lost:
        text += f" Concepts lost (below the floor): {', '.join(lost)}; their 39 outputs are not concepts."
    metrics |= {
        "best_joint_test_accuracy": best["test accuracy"],
        "chosen_is_sequential": float(best is sequential),
        "sequential_val_concept_auc": sequential["val concept AUC"],
    }
    points["chosen"] = points["name"] == best["variant"]
    return text, metrics, points


def _direct_val_accuracy(direct: PipelineRun) -> float:
    """The direct model's validation Male accuracy at the epoch its checkpoint kept."""
    result = getattr(direct.report, "train_result", None)
    return result.kept_validation().get("val_accuracy", float("nan")) if result is not None else float("nan")


def _val_accuracy(child: PipelineRun) -> float:
    """A joint model's validation Male accuracy at the epoch its checkpoint kept; NaN for staged models,
    whose stage two is fitted on the validation images (no honest validation figure)."""
    if child.config.mode != "joint":
        return float("nan")
    return child.report.train_result.kept_validation().get("val_accuracy", float("nan"))


def celeba_c(children: list[PipelineRun], seed: int, n_boot: int) -> dict:
    """CelebA-C accuracy of each route on its test images (the same images and corruptions for both)."""
    out = {}
    for child in children:
        report = child.report
        celeba = report.train_result.datamodule.celeba
        paths = [celeba.image_path(i) for i in report.test_ids]
        say(f"[{child.route}] CelebA-C: {len(paths):,} test images x 6 corruptions")
        out[child.route] = corruption_accuracy(
            child.pipeline, paths, report.test_male, seed=seed, n_boot=n_boot
        )
    return out


def route_from_run(tracker, run_id: str, expected: str, work_dir: Path) -> RouteResult:
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
    route = tags.get("route", tags.get("pipeline"))  # "pipeline": the tag runs had before 0.3
    if route not in ROUTES:
        raise ConfigError(
            f"MLflow run {run_id} has no pipeline tag (two_stage/direct): was it made by "
            "run_two_stage.py / run_direct.py?"
        )
    if route != expected:
        raise ConfigError(
            f"MLflow run {run_id} is a {route} run, but --mlflow-runs takes the two_stage run first and the "
            "direct run second"
        )
    path = tracker.download_artifact(run_id, PREDICTIONS_ARTIFACT, work_dir / run_id)
    frame = pd.read_csv(path, dtype={"image_id": str})
    info = {k: params[k] for k in ("backbone", "weights", "image_size", "epochs") if k in params}
    info["data"] = tags.get("data", "")
    return RouteResult.from_predictions_frame(
        route, frame, metrics=metrics, run_id=run_id, threshold=float(params.get("threshold", 0.5)), info=info
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
    stamp = stamp or run_stamp()
    out_dir = Path(output_dir).resolve() / f"compare-{stamp}"
    tracker.use_experiment_of(run_two_stage)
    try:
        two = route_from_run(tracker, run_two_stage, "two_stage", out_dir / "downloads")
        direct = route_from_run(tracker, run_direct, "direct", out_dir / "downloads")
        comparison = described(compare_routes(two, direct, n_boot=n_boot, seed=0), two, direct)
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)  # a refused comparison leaves no folder behind
        raise
    files = write_comparison(comparison, out_dir)
    files["html"] = write_html_report(
        out_dir / "report.html",
        f"Two-stage vs direct: compare-{stamp}",
        comparison_sections(comparison, files, children=[]),  # the routes' own files stay on their runs
    )
    tags = {
        "comparison": "two_stage_vs_direct",
        "two_stage_run_id": run_two_stage,
        "direct_run_id": run_direct,
    }
    with tracker.run(comparison_name(stamp), tags=tags) as parent_id:
        log_comparison(tracker, comparison, files)
    return ComparisonRun(comparison, out_dir, files, parent_id)
