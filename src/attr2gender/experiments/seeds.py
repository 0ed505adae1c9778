"""The comparison repeated over seeds: does the accuracy difference hold when the split, the initialisation and
the data order change?

Pure functions of the per-seed :class:`~attr2gender.experiments.comparison_metrics.Comparison` objects (no MLflow,
no training; :func:`attr2gender.experiments.comparison_run.run_seed_comparisons` runs the seeds and logs this):
each route's test accuracy as mean ± std across seeds (sample std, ddof=1), the paired per-seed
differences (two-stage minus direct on the same seed's test images: positive means two-stage is more
accurate, the sign convention used everywhere) with their mean ± std, and whether that sign is the same in
every seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from .comparison_metrics import Comparison
from .comparison_report import signed_points

KEYS = ("accuracy_two_stage", "accuracy_direct", "two_stage_minus_direct")  # what is summarised across seeds
WHAT_VARIES = "the split, the initialisation and the data order"


@dataclass(frozen=True)
class SeedRow:
    """One seed's comparison: both routes' test accuracy and the paired difference with its bootstrap CI."""

    seed: int
    accuracy_two_stage: float
    accuracy_direct: float
    two_stage_minus_direct: float  # two-stage accuracy - direct accuracy, on this seed's test images
    two_stage_minus_direct_ci_low: float
    two_stage_minus_direct_ci_high: float
    n_test_images: int


@dataclass
class SeedsSummary:
    rows: list[SeedRow]
    mean: dict[str, float]  # per key of KEYS
    std: dict[str, float]  # sample std (ddof=1); NaN for a single seed
    sign_stable: bool  # every seed's difference has the same sign (a zero counts as unstable)
    report: str  # a markdown section

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.rows]

    def metrics(self) -> dict[str, float]:
        """For the parent run: ``seeds_<key>_mean`` / ``_std`` and the number of seeds."""
        out = {"seeds_n": float(len(self.rows))}
        for key in KEYS:
            out[f"seeds_{key}_mean"] = self.mean[key]
            out[f"seeds_{key}_std"] = self.std[key]
        return out

    def to_json(self) -> str:
        data = {
            "seeds": self.seeds,
            "rows": [asdict(r) for r in self.rows],
            "mean": self.mean,
            "std": self.std,
            "sign_stable": self.sign_stable,
        }
        return json.dumps(_finite(data), indent=2, allow_nan=False)  # NaN (one seed's std) becomes null

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """``seeds.md`` (the report section) and ``seeds.json`` (the numbers) in ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {"seeds_report": out_dir / "seeds.md", "seeds_json": out_dir / "seeds.json"}
        paths["seeds_report"].write_text(self.report)
        paths["seeds_json"].write_text(self.to_json())
        return paths


def summarize_seeds(
    comparisons: Mapping[int, Comparison], what_varies: str = WHAT_VARIES, alpha: float = 0.05
) -> SeedsSummary:
    """Mean ± std of each route's accuracy and of their difference across seeds, the sign's stability and the
    report section saying so. ``comparisons`` maps each seed to its comparison (in the order to report);
    ``what_varies`` names what each seed changes, for the report."""
    if not comparisons:
        raise ValueError("summarize_seeds needs at least one seed's comparison")
    rows = []
    for seed, c in comparisons.items():
        missing = [
            k
            for k in (*KEYS, "two_stage_minus_direct_ci_low", "two_stage_minus_direct_ci_high")
            if k not in c.metrics
        ]
        if missing:
            raise ValueError(f"seed {seed}: the comparison's metrics lack {missing}")
        m = c.metrics
        rows.append(
            SeedRow(
                int(seed),
                float(m["accuracy_two_stage"]),
                float(m["accuracy_direct"]),
                float(m["two_stage_minus_direct"]),
                float(m["two_stage_minus_direct_ci_low"]),
                float(m["two_stage_minus_direct_ci_high"]),
                int(m.get("n_test_images", 0)),
            )
        )
    mean = {k: _mean([getattr(r, k) for r in rows]) for k in KEYS}
    std = {k: _std([getattr(r, k) for r in rows]) for k in KEYS}
    diffs = [r.two_stage_minus_direct for r in rows]
    sign_stable = all(x > 0 for x in diffs) or all(x < 0 for x in diffs)
    summary = SeedsSummary(rows, mean, std, sign_stable, "")
    summary.report = seeds_report(summary, what_varies=what_varies, alpha=alpha)
    return summary


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def _std(values: list[float]) -> float:
    """Sample standard deviation (ddof=1): the spread one would see over further seeds; NaN for one value."""
    if len(values) < 2:
        return float("nan")
    m = _mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


def _plain(x: float) -> str:
    return f"{100 * x:.2f}" if math.isfinite(x) else "n/a"


def seeds_report(s: SeedsSummary, what_varies: str = WHAT_VARIES, alpha: float = 0.05) -> str:
    """The markdown section: the verdict in words, mean ± std per route, then one row per seed."""
    n = len(s.rows)
    level = f"{100 * (1 - alpha):.0f}%"
    diffs = [r.two_stage_minus_direct for r in s.rows]
    two_better = sum(x > 0 for x in diffs)
    direct_better = sum(x < 0 for x in diffs)
    ties = n - direct_better - two_better
    diff = (
        f"two-stage minus direct {signed_points(s.mean['two_stage_minus_direct'])} ± "
        f"{_plain(s.std['two_stage_minus_direct'])} points"
    )
    if s.sign_stable and direct_better == n:
        verdict = f"In {n} of {n} seeds the direct route was more accurate ({diff}); the sign is stable across seeds."
    elif s.sign_stable:
        verdict = (
            f"In {n} of {n} seeds the two-stage route was more accurate ({diff}); the sign is stable "
            "across seeds."
        )
    else:
        verdict = (
            f"The direct route was more accurate in {direct_better} of {n} seeds, the two-stage route in "
            f"{two_better}" + (f", and they tied in {ties}" if ties else "") + f" ({diff}); the sign is "
            "**not stable** across seeds: which route wins depends on the seed."
        )
    excludes = sum(
        (r.two_stage_minus_direct_ci_low > 0 or r.two_stage_minus_direct_ci_high < 0)
        for r in s.rows
        if math.isfinite(r.two_stage_minus_direct_ci_low) and math.isfinite(r.two_stage_minus_direct_ci_high)
    )
    summary_rows = [
        ("two-stage accuracy", s.mean["accuracy_two_stage"], s.std["accuracy_two_stage"]),
        ("direct accuracy", s.mean["accuracy_direct"], s.std["accuracy_direct"]),
    ]
    lines = [
        f"## Across {n} seeds",
        "",
        f"Each seed changes {what_varies}; both routes share each seed's test images, so each seed gives one "
        "paired difference (two-stage minus direct: positive means two-stage is more accurate). Mean ± "
        "sample standard deviation across "
        "seeds.",
        "",
        f"**{verdict}** The difference's {level} paired bootstrap CI excludes 0 in {excludes} of {n} seeds.",
        "",
        "|  | mean | std |",
        "| --- | --- | --- |",
        *(f"| {name} | {mean:.4f} | {std:.4f} |" for name, mean, std in summary_rows),
        f"| two-stage minus direct, points | {signed_points(s.mean['two_stage_minus_direct'])} | "
        f"{_plain(s.std['two_stage_minus_direct'])} |",
        "",
        f"| seed | test images | two-stage accuracy | direct accuracy | two-stage minus direct, points [{level} CI] |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {r.seed} | {r.n_test_images:,} | {r.accuracy_two_stage:.4f} | {r.accuracy_direct:.4f} | "
            f"{signed_points(r.two_stage_minus_direct)} [{signed_points(r.two_stage_minus_direct_ci_low)}, {signed_points(r.two_stage_minus_direct_ci_high)}] |"
            for r in s.rows
        ),
        "",
    ]
    if n < 3:
        lines += [
            f"*{n} seed{'s' if n != 1 else ''}: a standard deviation from so few values is itself very "
            "uncertain; use 3 or more seeds to judge the spread.*",
            "",
        ]
    return "\n".join(lines)


def _finite(value):
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
