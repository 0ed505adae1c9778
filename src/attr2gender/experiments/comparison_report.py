"""Two-stage vs direct in words: the markdown report of a :class:`~attr2gender.experiments.comparison_metrics.Comparison`
(its numbers next to the source study's claims), the summary paragraph, and the files (``report.md``,
``comparison.json``, the plots).

Pure functions of a comparison's numbers (no MLflow, no arithmetic beyond formatting);
:mod:`attr2gender.experiments.comparison_metrics` computes them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics import markdown_table, shown, worst_group_name
from ..plots import plot_comparison, plot_cost_ratios, plot_group_accuracy, plot_reliability
from .comparison_metrics import Comparison, RouteResult, points_digits

SOURCE_CLAIMS = {
    "accuracy": "predicting Male from the predicted attributes is less accurate than from the pixels",
    "inference": "the two-stage route is about twice as slow at inference",
    "training": "learning the two-stage route takes about twice as long",
}


def ratio_phrase(r: float) -> str:
    """A ratio in words, against the source's "about twice"."""
    if not math.isfinite(r):
        return "not measured"
    if r >= 2.5:
        return f"about {r:.0f}×, more than twice"
    if r >= 1.75:
        return "about twice"
    if r > 1.15:
        return "more, but well short of twice"
    if r >= 0.87:
        return "about the same"
    return "less: the two-stage route is cheaper here"


RATIO_LINES = (1.15, 1.75, 2.5)  # where the verdict on "about twice" changes


def _ratio_class(r: float) -> str:
    if 1.75 <= r < 2.5:
        return "**reproduced**"
    if r >= 2.5:
        return "**exceeded** (more than twice)"
    if r > 1.15:
        return "**partly** (slower, but less than twice)"
    return "**not reproduced**"


def ratio_verdict(r: float, low: float | None = None, high: float | None = None) -> str:
    """The verdict on a source claim of "about twice" from a cost ratio: given only where the ratio's
    interval (``low``, ``high``: interleaved rounds) lies on one side of every line where the verdict
    changes; a single timing (no interval) gets none, since repeats on a shared machine moved it by a third."""
    if not math.isfinite(r):
        return "not measured"
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return "**no verdict**: one timing per route, and timings on a shared machine vary by a third"
    verdicts = {_ratio_class(low), _ratio_class(high)} | {
        _ratio_class(line) for line in RATIO_LINES if low < line < high
    }
    if len(verdicts) > 1:
        return f"**undecided**: the interval {low:.2f}× to {high:.2f}× spans more than one verdict"
    return _ratio_class(r)


def accuracy_verdict(low: float, high: float) -> str:
    """The source's "accuracy drops" claim against the CI of two-stage minus direct accuracy."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "not measurable (no test images)"
    if high < 0:
        return "**reproduced**: the direct route is more accurate and the 95% CI excludes 0"
    if low > 0:
        return "**reversed**: the two-stage route is more accurate and the 95% CI excludes 0"
    return "**not shown**: the 95% CI includes 0, so these test images cannot tell the routes apart"


def difference_words(diff: float, low: float, high: float, level: str = "95%") -> str:
    """Two-stage minus direct accuracy in plain words, with its CI: which route is more accurate, or
    "no significant difference" when the interval contains 0."""
    d = points_digits(low, high)
    ci = f"{level} CI {signed_points(low, d)} to {signed_points(high, d)} points"
    if low > 0:
        return f"two-stage is {100 * diff:.{d}f} points more accurate than direct ({ci})"
    if high < 0:
        return f"direct is {-100 * diff:.{d}f} points more accurate than two-stage ({ci})"
    return (
        f"no significant difference: two-stage minus direct is {signed_points(diff, d)} points "
        f"({ci}, which contains 0)"
    )


def signed_points(x: float, decimals: int = 2) -> str:
    """A proportion as signed percentage points, e.g. ``+1.25``."""
    return f"{100 * x + 0.0:+.{decimals}f}" if math.isfinite(x) else "n/a"


def comparison_report(c: Comparison, two_stage: RouteResult, direct: RouteResult, alpha: float = 0.05) -> str:
    """A short markdown report: the numbers, then each source claim with what this run found."""
    m = c.metrics
    level = f"{100 * (1 - alpha):.0f}%"
    batches = sorted(int(k.rsplit("_b", 1)[1]) for k in m if k.startswith("inference_time_ratio_b"))
    diff, low, high = (
        m["two_stage_minus_direct"],
        m["two_stage_minus_direct_ci_low"],
        m["two_stage_minus_direct_ci_high"],
    )
    two, dir_ = c.costs["two_stage"], c.costs["direct"]
    rows = [
        {
            "": "test accuracy",
            "two-stage": c.per_route["two_stage"]["accuracy"],
            "direct": c.per_route["direct"]["accuracy"],
            "two-stage vs direct": f"{signed_points(diff, points_digits(low, high))} points ({level} CI "
            f"{signed_points(low, points_digits(low, high))} to {signed_points(high, points_digits(low, high))})",
        },
        {
            "": "ROC AUC",
            "two-stage": c.per_route["two_stage"].get("roc_auc"),
            "direct": c.per_route["direct"].get("roc_auc"),
            "two-stage vs direct": "",
        },
    ]
    for b in batches:
        key = f"inference_ms_per_image_b{b}"
        interval = (
            f" ({m[f'inference_time_ratio_low_b{b}']:.2f} to {m[f'inference_time_ratio_high_b{b}']:.2f} over "
            f"{int(m['inference_time_rounds'])} interleaved rounds)"
            if f"inference_time_ratio_low_b{b}" in m
            else " (one timing each)"
        )
        rows.append(
            {
                "": f"inference, ms/image at batch {b}",
                "two-stage": two.get(key),
                "direct": dir_.get(key),
                "two-stage vs direct": f"{m[f'inference_time_ratio_b{b}']:.2f}×{interval}",
            }
        )
    rows += [
        {
            "": "training time, s",
            "two-stage": two.get("train_seconds"),
            "direct": dir_.get("train_seconds"),
            "two-stage vs direct": f"{m['training_time_ratio']:.2f}×",
        },
        {
            "": "bundle size, MB",
            "two-stage": _mb(two.get("bundle_bytes")),
            "direct": _mb(dir_.get("bundle_bytes")),
            "two-stage vs direct": f"{m['size_ratio']:.2f}×",
        },
        {
            "": "parameters",
            "two-stage": two.get("param_count"),
            "direct": dir_.get("param_count"),
            "two-stage vs direct": f"{m['param_ratio']:.2f}×",
        },
    ]
    r_inf, r_train = m["inference_time_ratio"], m["training_time_ratio"]
    others = ", ".join(f"{m[f'inference_time_ratio_b{b}']:.2f}× at batch {b}" for b in batches[1:])
    lines = [
        "# Two-stage (image → 39 attributes → Male) vs direct (image → Male)",
        "",
        f"{int(m['n_test_images']):,} test images, the same for both routes (matched by image id; two-stage "
        f"predicted {int(m['n_test_images_two_stage']):,}, direct {int(m['n_test_images_direct']):,}). "
        "Ratios are two-stage ÷ direct: above 1 means the detour costs more.",
        "",
        markdown_table(rows, floatfmt=".4g"),
        "## Against the source study's claims",
        "",
        f"- **Accuracy drops** (source: {SOURCE_CLAIMS['accuracy']}). Here "
        f"{difference_words(diff, low, high, level)} ({int(m['bootstrap_resamples'])} paired bootstrap "
        "resamples of the same images). "
        f"Claim {accuracy_verdict(low, high)}.",
        f"- **Inference about twice as slow** (source: {SOURCE_CLAIMS['inference']}). Here the two-stage route "
        f"needs {r_inf:.2f}× the direct route's time per image at batch {batches[0] if batches else '-'}"
        + (f" ({others})" if others else "")
        + (
            f", the median of {int(m['inference_time_rounds'])} interleaved rounds (range "
            f"{m['inference_time_ratio_low']:.2f}× to {m['inference_time_ratio_high']:.2f}×)"
            if "inference_time_ratio_low" in m
            else ", one timing each"
        )
        + f": {ratio_phrase(r_inf)}. Claim "
        f"{ratio_verdict(r_inf, m.get('inference_time_ratio_low'), m.get('inference_time_ratio_high'))}. "
        "This two-stage pipeline runs one CNN pass and "
        "adds only the tabular model, so its extra inference cost is small unless the routes use different "
        "backbones or image sizes; timings on a shared or busy CPU are noisy.",
        f"- **Learning about twice as long** (source: {SOURCE_CLAIMS['training']}). Here training the two-stage "
        f"route (stage one, stage one's pass over the validation images, the stage-two fit) took "
        f"{r_train:.2f}× as long as the direct route (one training each): {ratio_phrase(r_train)}. Claim "
        f"{ratio_verdict(r_train)} (benchmarks/bench_training.py times training repeated).",
        f"- **Size**: the two-stage bundle is {m['size_ratio']:.2f}× the direct one ({m['param_ratio']:.2f}× the "
        "parameters).",
        "",
    ]
    if c.group_tables:
        lines += ["## The people the average hides", "", group_comparison_text(c), ""]
    if c.slice_tables:
        lines += ["## Fairness slices", "", slice_comparison_text(c), ""]
    lines += ["## Calibration", "", calibration_text(c), ""]
    info = _setup_lines(two_stage, direct)
    if info:
        lines += ["## Setup", "", *info, ""]
    if any(r.info.get("data") == "synthetic" for r in (two_stage, direct)):
        lines += [
            "*Synthetic data (smoke run): the numbers show that the pipeline runs end to end, not what "
            "holds on CelebA.*",
            "",
        ]
    return "\n".join(lines)


def described(c: Comparison, two_stage: RouteResult, direct: RouteResult, alpha: float = 0.05) -> Comparison:
    """``c`` with its report written (:func:`comparison_report`): compare_routes returns the numbers, this
    layer says them in words."""
    c.report = comparison_report(c, two_stage, direct, alpha=alpha)
    return c


def description(c: Comparison) -> str:
    """The parent run's description: the summary paragraph (the run page's first screen), then the report."""
    return "\n\n".join(part for part in (summary_text(c), c.report) if part)


def summary_text(c: Comparison) -> str:
    """One paragraph for the run page's first screen: the answer, the costs, the worst group."""
    m = c.metrics
    needed = ("two_stage_minus_direct", "accuracy_two_stage", "inference_time_ratio", "n_test_images")
    if any(k not in m for k in needed):
        return ""
    words = difference_words(
        m["two_stage_minus_direct"],
        m["two_stage_minus_direct_ci_low"],
        m["two_stage_minus_direct_ci_high"],
    )
    n = int(m["n_test_images"])
    parts = [
        f"Two-stage (image → 39 attributes → Male) vs direct (image → Male) on {n:,} test images: accuracy "
        f"{shown(m['accuracy_two_stage'], n=n)} vs {shown(m['accuracy_direct'], n=n)}; {words}.",
        f"The detour's inference time is {m['inference_time_ratio']:.2f}× the direct route's, its training "
        f"time {m['training_time_ratio']:.2f}×, its size {m['size_ratio']:.2f}×.",
    ]
    if "concept_mean_auc_two_stage" in m:
        parts.append(
            f"Its 39 concepts on the same images: mean accuracy {shown(m['concept_mean_accuracy_two_stage'], n=n)}"
            + (
                f" (always answering each attribute's common value: "
                f"{shown(m['concept_majority_accuracy_two_stage'], n=n)})"
                if "concept_majority_accuracy_two_stage" in m
                else ""
            )
            + f", balanced accuracy {shown(m['concept_mean_balanced_accuracy_two_stage'], n=n)}, AUC "
            f"{m['concept_mean_auc_two_stage']:.2f}. "
            + (
                "**Verdict: not reliable concepts**: explanations and interventions are not meaningful."
                if m.get("concepts_reliable_two_stage", 1.0) < 0.5
                else "Verdict: reliable concepts."
            )
        )
    if "worst_group_accuracy_two_stage" in m:
        parts.append(
            f"Worst group: two-stage {shown(m['worst_group_accuracy_two_stage'], n=n)}, direct "
            f"{shown(m['worst_group_accuracy_direct'], n=n)}."
        )
    if "labelled_val_accuracy_two_stage" in m:
        k = int(m["labelled_val_n_two_stage"])
        parts.append(
            f"On the labelled faces' validation side (everyday photos of every age, {k:,} photos): "
            f"two-stage {shown(m['labelled_val_accuracy_two_stage'], n=k)}, direct "
            f"{shown(m['labelled_val_accuracy_direct'], n=k)}; the weakest gender x age band cell from 10 up "
            f"{shown(m['labelled_val_worst_recall_10_up_two_stage'], n=k)} and "
            f"{shown(m['labelled_val_worst_recall_10_up_direct'], n=k)} (each route's reports name it)."
        )
    if "*Synthetic data" in c.report:
        parts.append(
            "**Synthetic faces (smoke run): these numbers say the pipeline runs, not how it does on people.**"
        )
    parts.append("The full report with every plot: `comparison/report.html`.")
    return " ".join(parts)


def group_comparison_text(c: Comparison) -> str:
    """Both routes' accuracy per Male x makeup and Male x blond group, side by side, and the worst group."""
    tables = c.group_tables
    rows = []
    for group in next(iter(tables.values())).index:
        row = {
            "group (true attributes)": group.replace("_", " "),
            "images": int(next(iter(tables.values())).loc[group, "n"]),
        }
        for name, table in tables.items():
            r = table.loc[group]
            row[name.replace("_", "-")] = (
                f"{r['accuracy']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]" if r["enough"] else r["note"]
            )
        rows.append(row)
    words = []
    for name, table in tables.items():
        worst = worst_group_name(table)
        if worst:
            words.append(
                f"{name.replace('_', '-')}: worst group {worst.replace('_', ' ')} at "
                f"{table.loc[worst, 'accuracy']:.4f}, {c.per_route[name]['worst_group_gap'] * 100:.1f} "
                f"points below its average"
            )
    note = (
        "Accuracy of Male per group of true attributes (95 % bootstrap CI); a group with fewer than 30 test "
        'images shows "too few" instead of a number.' + (" " + "; ".join(words) + "." if words else "")
    )
    return note + "\n\n" + markdown_table(rows)


def slice_comparison_text(c: Comparison) -> str:
    """Both routes per slice of true attributes: accuracy and the two error rates, worst slice named."""
    tables = c.slice_tables
    first = next(iter(tables.values()))
    rows = []
    for name in first.index:
        row = {"slice (true attributes)": name.replace("_", " "), "images": int(first.loc[name, "n"])}
        for route, table in tables.items():
            r = table.loc[name]
            label = route.replace("_", "-")
            row[f"{label} accuracy"] = (
                f"{r['accuracy']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]" if r["enough"] else r["note"]
            )
            rates = [
                f"{r[key]:.3f}" if np.isfinite(r[key]) else "-"
                for key in ("false_male_rate", "false_female_rate")
            ]
            row[f"{label} false-male / false-female"] = " / ".join(rates)
        rows.append(row)
    words = []
    for route, table in tables.items():
        eligible = table[table["enough"]]
        if len(eligible):
            worst = str(eligible["accuracy"].idxmin())
            words.append(
                f"{route.replace('_', '-')}: worst slice {worst.replace('_', ' ')} at "
                f"{eligible.loc[worst, 'accuracy']:.4f} ({c.per_route[route]['worst_slice_gap'] * 100:.1f} "
                "points below its average)"
            )
    return (
        "Male accuracy per slice of true attributes (95 % bootstrap CI), and the false-male rate (women "
        'called men) and false-female rate (men called women); fewer than 30 images says "too few".'
        + (" " + "; ".join(words) + "." if words else "")
        + "\n\n"
        + markdown_table(rows)
    )


def calibration_text(c: Comparison) -> str:
    """ECE and Brier per route, in words a reader can act on."""
    parts = []
    for route in ("two_stage", "direct"):
        p = c.per_route[route]
        parts.append(f"{route.replace('_', '-')} ECE {p['ece']:.4f}, Brier {p['brier']:.4f}")
    return (
        "Expected calibration error (15 bins, top-label; 0 = a predicted 80 % is right 80 % of the time) "
        "and Brier score (mean squared error of P(Male)): "
        + "; ".join(parts)
        + ". `calibrate: true` fits a temperature on the validation split, which lowers ECE without "
        "changing a single label at threshold 0.5."
    )


def corruption_comparison_text(tables: dict[str, pd.DataFrame]) -> str:
    rows = []
    for corruption in next(iter(tables.values())).index:
        row = {"CelebA-C": corruption}
        for name, table in tables.items():
            r = table.loc[corruption]
            row[name.replace("_", "-")] = (
                f"{r['accuracy']:.4f}"
                if corruption == "mean"
                else f"{r['accuracy']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
            )
        rows.append(row)
    return (
        "Male accuracy on the test images under deterministic corruptions (`attr2gender.data.corruptions`), "
        "a stand-in for photos that are not studio shots; `mean` averages the corruptions.\n\n"
        + markdown_table(rows)
    )


def _mb(value) -> float:
    try:
        return float(value) / 1e6
    except (TypeError, ValueError):
        return float("nan")


def _setup_lines(two_stage: RouteResult, direct: RouteResult) -> list[str]:
    out = []
    for r in (two_stage, direct):
        if r.info:
            details = ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.info.items()
            )
            run = f" (MLflow run {r.run_id})" if r.run_id else ""
            out.append(f"- {r.name.replace('_', '-')}{run}: {details}")
    return out


# --------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------


def write_comparison(c: Comparison, out_dir: str | Path) -> dict[str, Path]:
    """``report.md``, ``comparison.json``, ``comparison.png`` (quality) and ``costs.png`` (ratios)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "report": out_dir / "report.md",
        "json": out_dir / "comparison.json",
        "plot": out_dir / "comparison.png",
        "costs_plot": out_dir / "costs.png",
    }
    paths["report"].write_text(c.report)
    paths["json"].write_text(c.to_json())
    plot_comparison(
        {k.replace("_", "-"): v for k, v in c.per_route.items()},
        path=paths["plot"],
        title="Two-stage (attributes → Male) vs direct (pixels → Male), same test images",
        # The paired difference first, then the headline panels (a 3 x 3 grid that fits a screen); every
        # slice is in slices.png.
        metric_names=[
            "accuracy",
            "balanced_accuracy",
            "roc_auc",
            "f1_male",
            "worst_group_accuracy",
            "worst_slice_accuracy",
            "ece",
            "brier",
        ],
        difference=(
            c.metrics["two_stage_minus_direct"],
            c.metrics["two_stage_minus_direct_ci_low"],
            c.metrics["two_stage_minus_direct_ci_high"],
        ),
    )
    plot_cost_ratios(c.metrics, path=paths["costs_plot"])
    for key, tables, title in (
        ("groups", c.group_tables, "Male accuracy per group: the people the average hides"),
        ("slices", c.slice_tables, "Male accuracy per slice, both routes"),
    ):
        if tables:
            paths[f"{key}_plot"] = out_dir / f"{key}.png"
            plot_group_accuracy(
                {k.replace("_", "-"): v for k, v in tables.items()}, path=paths[f"{key}_plot"], title=title
            )
    if c.calibration:
        paths["reliability_plot"] = out_dir / "reliability.png"
        plot_reliability(
            {k.replace("_", "-"): v for k, v in c.calibration.items()},
            {k.replace("_", "-"): c.per_route[k]["ece"] for k in c.calibration},
            path=paths["reliability_plot"],
        )
    return paths
