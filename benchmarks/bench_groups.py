"""CelebA's shortcut, measured and fought: worst-group accuracy and CelebA-C for every combination tried.

Both routes learn "makeup means female". This benchmark trains the CPU preset (the ``cpu`` preset:
EfficientNet-Lite0, ImageNet weights, 128 px, 2 epochs) on the real sample ``../shared/celeba`` with an
identity-disjoint split that keeps a large test side (``--fractions``, default 0.6 / 0.1 / 0.3: about 210
people and 3,600 test images, so the rare groups have enough images to be measured), and for each variant
reports on the test split:

* Male accuracy with its 95 % bootstrap CI, and the paired difference to the baseline of its route;
* accuracy per Male x makeup and Male x blond group ("too few" under 30 images), the worst group and
  its gap to the average;
* CelebA-C: accuracy under 6 deterministic corruptions and their mean (:mod:`attr2gender.data.corruptions`);
* the selection criterion, computed on validation only: the validation split's worst-group accuracy
  (image models), or the out-of-fold worst-group accuracy of stage two on its own rows, folds by identity.

Variants. Image models (``IMAGE_VARIANTS``): the baseline (ERM), ``augment: strong``, ``balance: groups``,
``robust: group_dro`` and the combination of balancing and strong augmentation, for stage one and for the
direct route (``loss_reweighting: groups`` and GroupDRO with strong augmentation were left out to fit the
CPU budget: each image model costs 10-15 minutes on 2 cores). Every stage one is combined with every stage two (``STAGE_TWO_VARIANTS``): ERM, the
``no_cosmetics`` concept edit, the worst-group objective, and both. Stage one runs once per image model;
its outputs are reused for every stage two and every corruption.

    python benchmarks/bench_groups.py                 # real sample; about two hours on 2 cores
    python benchmarks/bench_groups.py --resume        # after a stop: only the variants not measured yet
    python benchmarks/bench_groups.py --only direct_erm,direct_strong
    python benchmarks/bench_groups.py --quick         # CI: synthetic data, tiny model, proves it runs

Results: ``benchmarks/results/bench_groups.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attr2gender  # noqa: E402, F401  (before torch: OMP_WAIT_POLICY=PASSIVE on shared machines)
from attr2gender.config import load_preset  # noqa: E402
from attr2gender.data import STAGE_ONE_ATTRIBUTES, load_celeba  # noqa: E402
from attr2gender.data.corruptions import CORRUPTIONS, corrupted_versions  # noqa: E402
from attr2gender.data.groups import group_ids  # noqa: E402
from attr2gender.metrics import paired_accuracy_difference_ci  # noqa: E402
from attr2gender.pipeline.evaluation import evaluate_probabilities  # noqa: E402
from attr2gender.pipeline.robustness import corruption_table  # noqa: E402
from attr2gender.tabular.fitting import StageTwoData, fit_stage_two  # noqa: E402
from attr2gender.tabular.robust import worst_group_accuracy  # noqa: E402
from attr2gender.training import train_direct, train_two_stage  # noqa: E402
from common import REPO_ROOT, machine_info, md_table, text_table, write_results  # noqa: E402

SHARED = REPO_ROOT.parent / "shared" / "celeba"
NO_COSMETICS = load_preset("no_cosmetics")[0][1].stage_two_exclude

# name -> (route, config overrides)
IMAGE_VARIANTS: dict[str, tuple[str, dict]] = {
    "two_stage_erm": ("two_stage", {}),
    "two_stage_strong": ("two_stage", {"augment": "strong"}),
    "two_stage_balanced_strong": ("two_stage", {"balance": "groups", "augment": "strong"}),
    "direct_erm": ("direct", {}),
    "direct_strong": ("direct", {"augment": "strong"}),
    "direct_balanced": ("direct", {"balance": "groups"}),
    "direct_dro": ("direct", {"robust": "group_dro"}),
    "direct_balanced_strong": ("direct", {"balance": "groups", "augment": "strong"}),
}
# name -> fit_stage_two keywords
STAGE_TWO_VARIANTS: dict[str, dict] = {
    "erm": {},
    "no_cosmetics": {"exclude": NO_COSMETICS},
    "worst_group": {"objective": "worst_group"},
    "no_cosmetics_worst_group": {"exclude": NO_COSMETICS, "objective": "worst_group"},
}
N_BOOT = 1000


def out_of_fold_worst_group(data: StageTwoData, seed: int, folds: int = 5, **kw) -> float:
    """Stage two's worst-group accuracy on its own rows, predicted out of fold (folds by identity)."""
    from sklearn.model_selection import GroupKFold

    groups = group_ids(data.truth)
    pred = np.empty(len(data.y), dtype=int)
    for train, test in GroupKFold(n_splits=folds).split(data.X, data.y, data.identities):
        part = StageTwoData(
            data.X.iloc[train], data.y[train], data.truth.iloc[train], data.identities[train], data.input_kind
        )
        est, _ = fit_stage_two(part, seed=seed, **kw)
        pred[test] = est.predict(data.X.iloc[test])
    return worst_group_accuracy(data.y, pred, groups)


def evaluate(
    name: str,
    route: str,
    stage_two: str,
    y,
    prob,
    truth,
    corrupted_probs: dict,
    val_criterion: float,
    seed: int,
    seconds: float,
) -> dict:
    ev = evaluate_probabilities(y, prob, attributes=truth, n_boot=N_BOOT, seed=seed)
    # CelebA-C accuracies alone (n_boot=0: no CI), from the probabilities on the corrupted test images
    corruption = corruption_table(y, corrupted_probs, seed=seed, n_boot=0)["accuracy"]
    d = ev.to_dict(strict=False)
    return {
        "variant": name,
        "route": route,
        "stage_two": stage_two,
        **{k: d[k] for k in ("accuracy", "ci_low", "ci_high", "worst_group", "worst_group_accuracy")},
        "worst_group_gap": d["worst_group_gap"],
        "groups": d["groups"],
        "celeba_c": {c: float(corruption[c]) for c in corrupted_probs},
        "celeba_c_mean": float(corruption["mean"]),
        "val_worst_group_accuracy": val_criterion,
        "seconds": seconds,
        "_prob": np.asarray(prob),
        "_y": np.asarray(y),
    }


def run_variant(
    name: str, route: str, overrides: dict, base_overrides: list[str], preset: Path, corrupted_paths, args
) -> list[dict]:
    ((_, config),) = load_preset(preset, [*base_overrides, *[f"{k}={v}" for k, v in overrides.items()]])
    start = time.perf_counter()
    if route == "direct":
        pipe, report = train_direct(config)
        result = report.train_result
        history = result.history
        kept = history[history["epoch"] == result.kept_epoch] if "epoch" in history else history.iloc[:0]
        val_wga = (  # the epoch the checkpoint kept, not the last one trained
            float(kept["val_worst_group_acc"].iloc[-1])
            if "val_worst_group_acc" in kept and len(kept)
            else float("nan")
        )
        seconds = time.perf_counter() - start
        corrupted_probs = {
            c: pipe.predict(images, progress=False, align="none")["male_probability"].to_numpy()
            for c, images in corrupted_paths(report).items()
            if c != "clean"
        }
        return [
            evaluate(
                name,
                route,
                "",
                report.test_male,
                report.test_male_probability,
                report.test_truth,
                corrupted_probs,
                val_wga,
                config.seed,
                seconds,
            )
        ]
    pipe, report = train_two_stage(config)
    seconds = time.perf_counter() - start
    stage_one = {
        c: pipe.attribute_probabilities(images, progress=False, align="none")[0]
        for c, images in corrupted_paths(report).items()
        if c != "clean"
    }
    X_test = pd.DataFrame(report.test_attribute_probabilities, columns=list(STAGE_ONE_ATTRIBUTES))
    rows = []
    for s2_name, kw in STAGE_TWO_VARIANTS.items():
        est, _ = fit_stage_two(report.stage_two_data, seed=config.seed, **kw)
        prob = est.predict_proba(X_test)[:, 1]
        corrupted_probs = {
            c: est.predict_proba(pd.DataFrame(p, columns=list(STAGE_ONE_ATTRIBUTES)))[:, 1]
            for c, p in stage_one.items()
        }
        criterion = out_of_fold_worst_group(report.stage_two_data, config.seed, **kw)
        rows.append(
            evaluate(
                f"{name}+{s2_name}",
                route,
                s2_name,
                report.test_male,
                prob,
                report.test_truth,
                corrupted_probs,
                criterion,
                config.seed,
                seconds,
            )
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=SHARED)
    parser.add_argument("--config", default="cpu", help="preset name or YAML file (default: cpu)")
    parser.add_argument(
        "--fractions", default="0.6,0.1,0.3", help="identity-disjoint train,val,test fractions"
    )
    parser.add_argument("--only", default="", help="comma-separated image variants (default: all)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument(
        "--quick", action="store_true", help="synthetic data, tiny model: proves the script runs"
    )
    parser.add_argument(
        "--resume", action="store_true", help="skip the variants a stopped run already measured"
    )
    parser.add_argument("overrides", nargs="*", help="key=value config overrides for every variant")
    args = parser.parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    overrides = list(args.overrides)
    variants = dict(IMAGE_VARIANTS)
    if args.only:
        unknown = set(args.only.split(",")) - set(variants)
        if unknown:
            parser.error(f"unknown variant(s) {sorted(unknown)}; choose among {', '.join(variants)}")
        variants = {k: v for k, v in variants.items() if k in args.only.split(",")}
    if args.quick:
        from attr2gender.data.synth import make_synthetic_celeba

        args.data_root = make_synthetic_celeba(Path(tmp.name) / "celeba", n=300, seed=0, image_size=40)
        overrides = [
            "backbone=test_efficientnet",
            "weights=none",
            "image_size=32",
            "epochs=1",
            "batch_size=32",
            "num_workers=0",
            *overrides,
        ]
        variants = {k: variants[k] for k in ("two_stage_erm", "direct_erm", "direct_dro")}
    if not (Path(args.data_root) / "list_attr_celeba.txt").is_file():
        print(f"no CelebA at {args.data_root}; pass --data-root or use --quick", file=sys.stderr)
        return 2
    base = [
        f"data_root={args.data_root}",
        "split=identity",
        f"split_fractions=[{args.fractions}]",
        "tracking=none",
        f"output_dir={Path(tmp.name) / 'runs'}",
        f"cache_dir={Path(tmp.name) / 'cache'}",
        "progress=false",
        *overrides,
    ]
    celeba = load_celeba(args.data_root, warn_missing=False)
    seed = load_preset(args.config, base)[0][1].seed
    cache: dict[str, dict] = {}

    def corrupted_paths(report) -> dict[str, list]:
        key = ",".join(report.test_ids[:3]) + str(len(report.test_ids))
        if key not in cache:  # every variant shares the split, so the corrupted images are made once
            paths = [celeba.image_path(i) for i in report.test_ids]
            cache[key] = dict(corrupted_versions(paths, CORRUPTIONS, seed))
        return cache[key]

    partial = Path(args.out) / (
        "bench_groups_quick.partial.json" if args.quick else "bench_groups.partial.json"
    )
    rows: list[dict] = load_partial(partial, args) if args.resume else []
    done = {r["variant"].split("+")[0] for r in rows}
    for name, (route, kw) in variants.items():
        if name in done:
            print(f"[{name}] done in {partial.name}, not run again", flush=True)
            continue
        print(f"[{name}] {route} {kw or '(baseline)'}", flush=True)
        rows += run_variant(name, route, kw, base, args.config, corrupted_paths, args)
        save_partial(partial, rows, args)  # an hour-long run keeps what it measured if it is stopped
        for r in rows[-len(STAGE_TWO_VARIANTS) if route == "two_stage" else -1 :]:
            print(
                f"  {r['variant']:<45} acc {r['accuracy']:.4f}  worst group {r['worst_group_accuracy']:.4f} "
                f"({r['worst_group']})  CelebA-C {r['celeba_c_mean']:.4f}  val criterion "
                f"{r['val_worst_group_accuracy']:.4f}",
                flush=True,
            )

    # Paired differences against the baseline of each route, on the same test images.
    baselines = {r["route"]: r for r in rows if r["variant"] in ("two_stage_erm+erm", "direct_erm")}
    for r in rows:
        b = baselines.get(r["route"])
        if b is not None and b is not r:
            d = paired_accuracy_difference_ci(
                r["_y"],
                (r["_prob"] >= 0.5).astype(int),
                (b["_prob"] >= 0.5).astype(int),
                n_boot=N_BOOT,
                seed=seed,
            )
            r["minus_baseline"], r["minus_baseline_ci"] = d["difference"], [d["low"], d["high"]]
    for r in rows:
        del r["_prob"], r["_y"]
    print_and_write(args, celeba, rows)
    partial.unlink(missing_ok=True)
    tmp.cleanup()
    return 0


def save_partial(path: Path, rows: list[dict], args) -> None:
    import json

    plain = [{k: (np.asarray(v).tolist() if k in ("_prob", "_y") else v) for k, v in r.items()} for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"fractions": args.fractions, "overrides": args.overrides, "rows": plain}, default=float)
    )


def load_partial(path: Path, args) -> list[dict]:
    """Rows an earlier, stopped run of the same settings measured (``--resume``)."""
    import json

    if not path.is_file():
        return []
    saved = json.loads(path.read_text())
    if saved.get("fractions") != args.fractions or saved.get("overrides") != args.overrides:
        raise SystemExit(f"{path} was measured with other settings; delete it or drop --resume")
    rows = saved["rows"]
    for r in rows:
        r["_prob"], r["_y"] = np.asarray(r["_prob"]), np.asarray(r["_y"])
    return rows


def _paired(r: dict) -> str:
    if "minus_baseline" not in r:
        return "(baseline)" if r["variant"] in ("two_stage_erm+erm", "direct_erm") else ""
    low, high = r["minus_baseline_ci"]
    return f"{100 * r['minus_baseline']:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"


def print_and_write(args, celeba, rows) -> None:
    headers = [
        "variant",
        "test accuracy [95% CI]",
        "vs baseline, points [95% CI]",
        "worst group",
        "worst-group accuracy",
        "gap",
        "CelebA-C mean",
        "val criterion (worst group)",
    ]
    table = [
        [
            r["variant"],
            f"{r['accuracy']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]",
            _paired(r),
            r["worst_group"].replace("_", " "),
            r["worst_group_accuracy"],
            r["worst_group_gap"],
            r["celeba_c_mean"],
            r["val_worst_group_accuracy"],
        ]
        for r in rows
    ]
    print(text_table(headers, table, digits=4))
    payload = {
        "machine": machine_info(),
        "quick": args.quick,
        "data_root": str(args.data_root),
        "fractions": args.fractions,
        "rows": rows,
    }
    group_names_ = [g["group"] for g in rows[0]["groups"]]
    group_rows = [
        [r["variant"], *[(f"{g['accuracy']:.3f}" if g["enough"] else g["note"]) for g in r["groups"]]]
        for r in rows
    ]
    counts = {g["group"]: g["n"] for g in rows[0]["groups"]}
    corruption_rows = [
        [r["variant"], *[r["celeba_c"][c] for c in CORRUPTIONS], r["celeba_c_mean"]] for r in rows
    ]
    md = "\n\n".join(
        [
            f"Group robustness, `python benchmarks/bench_groups.py`, {payload['machine']['date'][:10]}: "
            f"{len(celeba.present):,} images of {Path(args.data_root).name}, identity-disjoint split {args.fractions}. "
            "Worst group: the lowest accuracy among the Male x makeup and Male x blond groups with 30+ test images. "
            "The val criterion is what a user would select on (validation only): the validation split's worst-group "
            "accuracy for image models, the out-of-fold worst-group accuracy of stage two on its own rows (folds by "
            "identity) for stage-two variants.",
            md_table(headers, table, digits=4),
            "Male accuracy per group of true attributes (test images per group: "
            + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items())
            + "):",
            md_table(["variant", *[g.replace("_", " ") for g in group_names_]], group_rows),
            "CelebA-C: accuracy under each corruption:",
            md_table(["variant", *CORRUPTIONS, "mean"], corruption_rows, digits=4),
        ]
    )
    written = write_results(args.out, "bench_groups_quick" if args.quick else "bench_groups", payload, md)
    print(f"results: {written['json']}")


if __name__ == "__main__":
    sys.exit(main())
