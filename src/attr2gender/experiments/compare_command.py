"""``attr2gender run compare``: plan the comparison (or one per seed, or two finished runs read back), run
it, and say in lines what it found and where to see it. The work is in :mod:`.comparison_run`."""

from __future__ import annotations

from pathlib import Path

from ..config import build_config, parse_overrides
from ..errors import ConfigError
from ..stamps import run_stamp
from ..tracking.measure import MeasureSpec
from ..tracking.mlflow_tracking import is_rank_zero, make_tracker
from .comparison_report import difference_words
from .comparison_run import (
    N_BOOT,
    ComparisonRun,
    SeedsRun,
    compare_logged_runs,
    run_comparison,
    run_seed_comparisons,
)
from .plan import RunPlan, materialize, plan_comparison, say
from .route_run import PipelineRun, run_lines
from .seeds import WHAT_VARIES


def plan_seed_comparisons(
    config_two_stage: str | Path | None,
    config_direct: str | Path | None,
    data_root: str | None,
    overrides: list[str],
    seeds: list[int],
    stamp: str,
) -> tuple[dict[int, tuple[list[RunPlan], RunPlan]], str]:
    """One comparison's plans per seed (``seed=<seed>``, split=auto becomes identity, run names apart), and
    what changes from seed to seed, said in one line: with split=official only the initialisation and the
    data order do; otherwise each seed also draws its own identity-disjoint split."""
    plans = {
        seed: plan_comparison(
            config_two_stage,
            config_direct,
            data_root,
            [*overrides, f"seed={seed}"],
            f"{stamp}-seed{seed}",
            seeded=True,
        )
        for seed in seeds
    }
    split = plans[seeds[0]][0][0].config.split
    if split == "official":
        say(
            "compare --seeds: split=official keeps CelebA's partition for every seed; only the "
            "initialisation and the data order change"
        )
        return plans, "the initialisation and the data order (split=official: the same partition)"
    if split == "identity":
        say("compare --seeds: split=identity, so each seed draws its own identity-disjoint split")
        return plans, WHAT_VARIES
    say(
        "compare --seeds: split=auto, as a single comparison: CelebA's official partition where it can serve "
        "(the same for every seed), else an identity-disjoint split each seed draws; seed 0 is the comparison "
        "`compare` alone makes (split=identity redraws the people for every seed)"
    )
    return plans, "the initialisation and the data order, and the split where auto draws it by identity"


def run_comparison_command(
    config_two_stage: str | Path | None = None,
    config_direct: str | Path | None = None,
    data_root: str | None = None,
    overrides: list[str] | None = None,
    runs: tuple[str, str] | list[str] | None = None,
    seeds: list[int] | None = None,
    measure: MeasureSpec | None = None,
    n_boot: int = N_BOOT,
    corruptions: bool = False,
) -> list[str]:
    """``attr2gender run compare``, its arguments already checked: with ``runs`` (two run ids, two-stage
    first) the two finished runs read back from MLflow; with ``seeds``, one comparison per seed
    (:func:`plan_seed_comparisons`, :func:`run_seed_comparisons`); otherwise both routes trained and
    compared (:func:`run_comparison`). Everything is planned and checked before any work.

    Returns the lines that say the results and where to see them (none off rank zero)."""
    overrides = list(overrides or [])
    if runs:
        extra = parse_overrides(overrides)
        config = build_config(
            {k: v for k, v in extra.items() if k in ("output_dir", "experiment", "tracking")}
        )
        if config.tracking == "none":
            raise ConfigError("--mlflow-runs reads the runs from MLflow; drop tracking=none")
        tracker = make_tracker(config)
        result = compare_logged_runs(tracker, runs[0], runs[1], config.output_dir, n_boot=n_boot)
    elif seeds:
        stamp = run_stamp()
        plans, what_varies = plan_seed_comparisons(
            config_two_stage, config_direct, data_root, overrides, seeds, stamp
        )
        materialize([plan for variants, direct in plans.values() for plan in (*variants, direct)])
        tracker = make_tracker(plans[seeds[0]][0][0].config)
        seeds_run = run_seed_comparisons(
            plans,
            tracker,
            measure=measure,
            n_boot=n_boot,
            stamp=stamp,
            corruptions=corruptions,
            what_varies=what_varies,
        )
        if not is_rank_zero():
            return []
        return [*seeds_lines(seeds_run), f"To see them: {tracker.ui_line()}"]
    else:
        stamp = run_stamp()
        variants, direct = plan_comparison(config_two_stage, config_direct, data_root, overrides, stamp)
        materialize([*variants, direct])
        tracker = make_tracker(variants[0].config)
        result = run_comparison(
            variants, direct, tracker, measure=measure, n_boot=n_boot, stamp=stamp, corruptions=corruptions
        )
    if not is_rank_zero():
        return []
    return [*comparison_lines(result, tracker), f"To see them: {tracker.ui_line()}"]


def split_lines(children: list[PipelineRun]) -> list[str]:
    """Which people the comparison tested on, in one line (``compare`` and each seed of ``--seeds`` say it
    the same way, so two numbers can be told apart when their splits differ)."""
    report = children[0].report if children else None
    dm = getattr(getattr(report, "train_result", None), "datamodule", None)
    if dm is None or dm.splits is None:
        return []
    kind = (
        "CelebA's official partition"
        if dm.splits.strategy == "official"
        else f"an identity-disjoint split drawn by seed {children[0].config.seed}"
    )
    sizes = ", ".join(f"{k} {v:,}" for k, v in dm.splits.sizes().items())
    return [f"[comparison] split: {kind} ({sizes}); both routes on the same images"]


def comparison_lines(result: ComparisonRun, tracker) -> list[str]:
    """The results of one comparison: each trained route's lines, the answer and the costs, the files and
    the run."""
    lines = [line for child in result.children for line in run_lines(child, tracker)]
    m = result.comparison.metrics
    lines += split_lines(result.children)
    lines += [
        "[comparison] "
        + difference_words(
            m["two_stage_minus_direct"],
            m["two_stage_minus_direct_ci_low"],
            m["two_stage_minus_direct_ci_high"],
        )
        + "; "
        f"inference time x{m['inference_time_ratio']:.2f}, training time x{m['training_time_ratio']:.2f}, "
        f"size x{m['size_ratio']:.2f} (two-stage / direct)",
        *(
            [
                f"[comparison] worst-group accuracy: two-stage {m['worst_group_accuracy_two_stage']:.4f}, direct "
                f"{m['worst_group_accuracy_direct']:.4f} (groups: Male x makeup, Male x blond; 30+ test images)"
            ]
            if "worst_group_accuracy_two_stage" in m
            else []
        ),
        *(
            [
                f"[comparison] CelebA-C mean accuracy: two-stage {m['celeba_c_mean_accuracy_two_stage']:.4f}, direct "
                f"{m['celeba_c_mean_accuracy_direct']:.4f}"
            ]
            if "celeba_c_mean_accuracy_two_stage" in m
            else []
        ),
        f"[comparison] report:    {result.files['report']}",
        f"[comparison] HTML:      {result.files['html']} (plots embedded; one file to read or share)",
    ]
    if result.run_id:
        nested = (
            "the two routes are its child runs" if result.children else "it names the two runs in its tags"
        )
        lines.append(f"[comparison] MLflow run {result.run_id} (tag comparison; {nested})")
    return lines


def seeds_lines(run: SeedsRun) -> list[str]:
    """The results of ``compare --seeds``: one line per seed, the spread, the files and the runs."""
    s = run.summary
    lines = []
    for row in s.rows:
        lines.append(
            f"[seed {row.seed}] accuracy two-stage {row.accuracy_two_stage:.4f}, direct "
            f"{row.accuracy_direct:.4f}; "
            + difference_words(
                row.two_stage_minus_direct,
                row.two_stage_minus_direct_ci_low,
                row.two_stage_minus_direct_ci_high,
            )
            + "; "
            f"report {run.comparisons[row.seed].files['html']}"
        )
    mean, std = s.mean, s.std
    lines += [
        f"[seeds] accuracy two-stage {mean['accuracy_two_stage']:.4f} ± {std['accuracy_two_stage']:.4f}, "
        f"direct {mean['accuracy_direct']:.4f} ± {std['accuracy_direct']:.4f}; two-stage minus direct "
        f"{100 * mean['two_stage_minus_direct']:+.2f} ± {100 * std['two_stage_minus_direct']:.2f} points (mean ± std over "
        f"{len(s.rows)} seeds); the sign is {'stable' if s.sign_stable else 'NOT stable'} across seeds",
        f"[seeds] report:    {run.files['seeds_report']}",
        f"[seeds] HTML:      {run.files['html']} (across seeds, then each seed's comparison)",
    ]
    if run.run_id:
        lines.append(
            f"[seeds] MLflow run {run.run_id} (tag comparison=seeds; one comparison run per seed under it, "
            "each holding its two routes)"
        )
    return lines
