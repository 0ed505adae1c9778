"""Accuracy on real faces: direct vs two-stage on the CelebA sample, and the attribute route's ceiling.

On ``../shared/celeba`` (12,072 real crops from CelebA's test partition, 695 people) with a seeded
identity-disjoint train/val/test split and the CPU preset (the ``cpu`` preset: pretrained
EfficientNet-Lite0, 128 px):

- direct accuracy (``DirectGenderClassifier``);
- two-stage accuracy, stage two fitted
    * on stage one's predicted probabilities for the validation images (``predicted``), and
    * on the true 39 attributes of every official-training-partition row (``labels``), applied to
      thresholded stage-one outputs (the safe way) and to raw probabilities (the trap: the library
      refuses that for a model fitted on 0/1 inputs; here it is computed on purpose to measure it),
  for logistic regression and LightGBM; stage one runs once, its outputs are reused;
- stage one's mean accuracy over the 39 attributes;
- the ceiling of the attribute route: stage two on the *true* attributes, trained on the official train
  partition (162,770 rows) and scored on the official test partition (19,962 rows);
- a user's photos, simulated: 500 test crops pasted into larger canvases (2-4x, +-25 degrees, some with a
  second face): detection recall, whether the central face is picked, and Male accuracy on the original
  crops vs the composites with and without alignment (``predict(align="auto")`` vs ``"none"``);
each with a 95 % bootstrap confidence interval over test images, and how long each step took.

    python benchmarks/bench_accuracy.py                 # real sample; under an hour on 2 cores
    python benchmarks/bench_accuracy.py --quick         # CI: synthetic data, tiny model, proves it runs

Results: ``benchmarks/results/bench_accuracy.{json,md}``, logged to MLflow (experiment
``attr2gender-benchmarks``) unless ``--no-mlflow``.
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
from attr2gender.config import load_preset  # noqa: E402
from attr2gender.data import STAGE_ONE_ATTRIBUTES, TARGET, load_celeba  # noqa: E402
from attr2gender.data.corruptions import CORRUPTIONS  # noqa: E402
from attr2gender.data.splits import Splits  # noqa: E402
from attr2gender.metrics import accuracy_ci, expected_calibration_error, paired_accuracy_difference_ci  # noqa: E402
from attr2gender.pipeline import Attr2GenderPipeline  # noqa: E402
from attr2gender.pipeline.concepts import curve_from_probabilities  # noqa: E402
from attr2gender.pipeline.evaluation import evaluate_probabilities  # noqa: E402
from attr2gender.pipeline.robustness import corruption_accuracy  # noqa: E402
from attr2gender.tabular import StageTwoClassifier  # noqa: E402
from attr2gender.tabular.fitting import fit_stage_two  # noqa: E402
from attr2gender.training import train_direct, train_two_stage  # noqa: E402
from attr2gender.training.routes import stage_two_label_rows  # noqa: E402
from common import REPO_ROOT, machine_info, md_table, text_table, write_results  # noqa: E402

SHARED = REPO_ROOT.parent / "shared" / "celeba"


def scores(y: np.ndarray, prob: np.ndarray, seed: int, threshold: float = 0.5, truth=None) -> dict:
    """A row's numbers, from the library's evaluation: accuracy with its 95 % CI (2,000 resamples),
    calibration (ECE, 15 bins, with its CI; Brier) and, when the true attributes are given, the worst
    group's accuracy with its CI."""
    ev = evaluate_probabilities(
        y, prob, threshold, attributes=truth, n_boot=1000, seed=seed, accuracy_n_boot=2000
    )
    d = ev.to_dict(strict=False)
    keys = ["accuracy", "ci_low", "ci_high", "n", "ece", "ece_ci", "brier"]
    if truth is not None:
        keys += ["worst_group", "worst_group_accuracy", "worst_group_ci", "worst_group_gap"]
    return {k: d[k] for k in keys}


def ceiling(celeba, seed: int) -> list[dict]:
    """Stage two on ground-truth attributes: official train partition -> official test partition."""
    part = celeba.partition.reindex(celeba.attributes.index).to_numpy()
    train, test = celeba.attributes[part == 0], celeba.attributes[part == 2]
    rows = []
    for model in ("logistic", "lightgbm"):
        start = time.perf_counter()
        est = StageTwoClassifier(model=model, input_kind="binary", random_state=seed)
        est.fit(train[list(STAGE_ONE_ATTRIBUTES)].astype(float), train[TARGET].to_numpy())
        prob = est.predict_proba(test[list(STAGE_ONE_ATTRIBUTES)].astype(float))[:, 1]
        rows.append(
            {
                "route": "ceiling: true attributes",
                "stage_two": model,
                "fit_on": f"labels ({len(train):,} rows)",
                "applied_to": f"true attributes ({len(test):,} rows)",
                **scores(test[TARGET].to_numpy(), prob, seed, truth=test),
                "seconds": time.perf_counter() - start,
            }
        )
    return rows


def two_stage_variants(
    pipeline: Attr2GenderPipeline, report, celeba, splits: Splits, seed: int, threshold: float
) -> list[dict]:
    """Every stage-two variant on the same stage-one outputs (one CNN pass over val and test, cached)."""
    y_test = report.test_male
    test_probs = report.test_attribute_probabilities
    val_paths = [celeba.image_path(i) for i in splits.val]
    start = time.perf_counter()
    val_probs, errors = pipeline.attribute_probabilities(val_paths, align="none")  # from the stage-one cache
    ok = np.array([not e for e in errors])
    y_val = celeba.male(np.asarray(splits.val)[ok])
    cached_seconds = time.perf_counter() - start
    label_rows = stage_two_label_rows(celeba, splits)
    X_labels = label_rows[list(STAGE_ONE_ATTRIBUTES)].astype(float)
    y_labels = label_rows[TARGET].to_numpy()
    cols = list(STAGE_ONE_ATTRIBUTES)
    rows = []
    for model in ("logistic", "lightgbm"):
        variants = [
            (
                "predicted",
                f"stage-one probabilities, val ({ok.sum():,} images)",
                "probabilities",
                StageTwoClassifier(model=model, input_kind="probability", random_state=seed),
                pd.DataFrame(val_probs[ok], columns=cols),
                y_val,
            ),
            (
                "labels",
                f"true attributes ({len(label_rows):,} rows)",
                "thresholded probabilities",
                StageTwoClassifier(model=model, input_kind="binary", threshold=threshold, random_state=seed),
                X_labels,
                y_labels,
            ),
            (
                "labels",
                f"true attributes ({len(label_rows):,} rows)",
                "raw probabilities (the trap)",
                StageTwoClassifier(model=model, input_kind="probability", random_state=seed),
                X_labels,
                y_labels,
            ),
        ]
        for fit_on, fit_desc, applied, est, X, y in variants:  # fit_on: "predicted" | "labels"
            start = time.perf_counter()
            est.fit(X, y)
            X_test = pd.DataFrame(test_probs, columns=cols)
            if applied.startswith("raw"):
                # The library refuses this (InputKindMismatchError); bypass it on purpose to measure it.
                prob = est.estimator_.predict_proba(X_test)[:, 1]
            else:
                prob = est.predict_proba(X_test)[:, 1]
            rows.append(
                {
                    "route": "two-stage",
                    "stage_two": model,
                    "fit_on": fit_desc,
                    "fit_on_kind": fit_on,
                    "applied_to": applied,
                    "_prob": prob,
                    **scores(y_test, prob, seed, threshold, truth=report.test_truth),
                    "seconds": time.perf_counter() - start,
                }
            )
    rows.append(
        {
            "route": "note",
            "stage_two": "",
            "fit_on": "stage-one cache hit for val",
            "applied_to": "",
            "accuracy": float("nan"),
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "n": int(ok.sum()),
            "seconds": cached_seconds,
        }
    )
    return rows


def concept_rows(
    two, report, config, seed: int, weights: list[float]
) -> tuple[list[dict], list[dict], list[dict]]:
    """The concept-bottleneck variants (Koh et al. 2020) on the same split: sequential hard, joint for each
    concept weight (the best on validation is the joint row; the test set never chooses), and the
    intervention curve of the default sequential pipeline and of its hard variant.

    Returns (table rows with ``_prob`` for the paired difference, the joint sweep, the curve points)."""
    X_test = pd.DataFrame(report.test_attribute_probabilities, columns=list(STAGE_ONE_ATTRIBUTES))
    rows, curves = [], []
    hard, _ = fit_stage_two(report.stage_two_data, seed=seed, bottleneck="hard")
    prob = hard.predict_proba(X_test)[:, 1]
    rows.append(
        {
            "route": "two-stage: sequential, hard bottleneck",
            "stage_two": "logistic",
            "fit_on": "stage-one outputs thresholded, val",
            "applied_to": "thresholded probabilities",
            "_prob": prob,
            **scores(report.test_male, prob, seed, truth=report.test_truth),
            "seconds": 0.0,
        }
    )
    for name, pipe in (("sequential, soft", two), ("sequential, hard", two.with_stage_two(hard))):
        curve = curve_from_probabilities(
            pipe, report.test_attribute_probabilities, report.test_truth, policies=("uncertainty", "random")
        )
        for _, r in curve.iterrows():
            curves.append(
                {"pipeline": name, "policy": r["policy"], "k": int(r["k"]), "accuracy": r["accuracy"]}
            )
    sweep = []
    for weight in weights:
        start = time.perf_counter()
        joint, joint_report = train_two_stage(config, mode="joint", concept_weight=weight)
        val = joint_report.train_result.kept_validation().get("val_accuracy", float("nan"))
        m = joint.metrics
        sweep.append(
            {
                "concept_weight": weight,
                "val_accuracy": val,
                # Concept quality next to the accuracy: a lambda whose 39 outputs stopped describing the face
                # is not a concept bottleneck, however accurate.
                "val_concept_auc": m.get("val_concept_mean_auc", float("nan")),
                "concept_accuracy": m.get("concept_mean_accuracy", float("nan")),
                "concept_balanced_accuracy": m.get("concept_mean_balanced_accuracy", float("nan")),
                "concept_auc": m.get("concept_mean_auc", float("nan")),
                "concepts_reliable": bool(joint.concepts.reliable) if joint.concepts is not None else None,
                "_prob": joint_report.test_male_probability,
                "report": joint_report,
                "seconds": time.perf_counter() - start,
                **scores(
                    joint_report.test_male,
                    joint_report.test_male_probability,
                    seed,
                    truth=joint_report.test_truth,
                ),
            }
        )
        print(f"  joint concept_weight={weight}: val {val:.4f}, test {sweep[-1]['accuracy']:.4f}", flush=True)
    if sweep:
        # lambda is chosen on validation among those that keep their concepts (validation concept AUC within
        # concept_auc_tolerance of the sequential model's), as the library's sweep does.
        floor = two.metrics.get("val_concept_mean_auc", float("nan")) - config.concept_auc_tolerance
        kept = [r for r in sweep if r["val_concept_auc"] >= floor] or sweep
        best = max(kept, key=lambda r: r["val_accuracy"])
        rows.append(
            {
                "route": f"two-stage: joint, concept_weight {best['concept_weight']:g} (chosen on validation)",
                "stage_two": "the joint head (logistic)",
                "fit_on": "end to end, train images",
                "applied_to": "probabilities",
                "_prob": best["_prob"],
                **{
                    k: best[k]
                    for k in (
                        "accuracy",
                        "ci_low",
                        "ci_high",
                        "n",
                        "worst_group",
                        "worst_group_accuracy",
                        "worst_group_ci",
                        "worst_group_gap",
                        "ece",
                        "ece_ci",
                        "brier",
                        "seconds",
                    )
                },
            }
        )
        for r in sweep:
            r.pop("report")
    return rows, sweep, curves


def runtime_agreement(pipeline, paths: list[Path], bundle_dir: Path) -> list[dict]:
    """The same bundle on each runtime, against PyTorch fp32 on the same images: max |delta P(Male)| and
    the share of predicted labels that agree (the bar: 1e-4 and 99.9 % for a runtime to be a default)."""
    from attr2gender.pipeline import load_pipeline
    from attr2gender.pipeline.runtime import onnx_runtime_available

    pipeline.save(bundle_dir)
    reference = load_pipeline(bundle_dir, device="cpu", runtime="torch", precision="fp32", align="none")
    ref = reference.predict(paths, progress=False)
    variants = [("torch", "bf16")] + ([("onnx", "auto")] if onnx_runtime_available() else [])
    rows = []
    for runtime, precision in variants:
        other = load_pipeline(bundle_dir, device="cpu", runtime=runtime, precision=precision, align="none")
        frame = other.predict(paths, progress=False)
        ok = (ref["error"] == "") & (frame["error"] == "")
        delta = np.abs(
            frame.loc[ok, "male_probability"].to_numpy() - ref.loc[ok, "male_probability"].to_numpy()
        )
        rows.append(
            {
                "pipeline": pipeline.route,
                "runtime": other.forward_runtime.describe(),
                "images": int(ok.sum()),
                "max_abs_difference": float(delta.max()),
                "mean_abs_difference": float(delta.mean()),
                "label_agreement": float((frame.loc[ok, "label"] == ref.loc[ok, "label"]).mean()),
            }
        )
    return rows


def _composite_chunks(paths: list[Path], n: int, seed: int, chunk: int = 100):
    """``n`` composites whose main faces are ``paths[:n]`` in order, built ``chunk`` at a time (memory)."""
    from attr2gender.data.composites import make_composites

    for start in range(0, n, chunk):
        # Main faces paths[start:start+chunk]; backgrounds and second faces from the whole list.
        pool = paths[start : start + chunk] + paths[:start] + paths[start + chunk :]
        yield make_composites(pool, min(chunk, n - start), seed=seed + start)


def _centre(face) -> tuple[float, float]:
    x0, y0, x1, y1 = face.box
    return ((x0 + x1) / 2, (y0 + y1) / 2)


def composite_rows(pipelines: dict, celeba, ids: list[str], n: int, seed: int, threshold: float) -> dict:
    """Real photos, simulated: ``n`` crops pasted into larger canvases (2-4x, +-25 degrees, some with a
    second smaller face; attr2gender.data.composites). Detection recall (a detected face centred on the
    pasted one), whether the face picked is the pasted central one, and each pipeline's Male accuracy on
    the original crops, on the composites with ``align="auto"`` and with ``align="none"``, with bootstrap
    CIs and the paired aligned - original difference. A composite whose face is not used counts as wrong."""
    from attr2gender.data.faces import FaceDetector

    ids = list(ids)[:n]
    paths = [celeba.image_path(i) for i in ids]
    male = celeba.male(ids)
    detector = FaceDetector.shared()
    found, picked, second = [], [], []
    probs = {name: {"aligned": [], "unaligned": []} for name in pipelines}
    for chunk in _composite_chunks(paths, len(paths), seed):
        images = [c.image for c in chunk]
        for c in chunk:
            faces = detector.detect_central(c.image)  # what predict(align="auto") picks from
            found.append(any(c.main.contains(_centre(f)) for f in faces))
            picked.append(bool(faces) and c.main.contains(_centre(faces[0])))
            second.append(bool(c.others))
        for name, pipe in pipelines.items():
            probs[name]["aligned"].append(pipe.predict(images, progress=False)["male_probability"].to_numpy())
            frame = pipe.predict(images, progress=False, align="none")
            probs[name]["unaligned"].append(frame["male_probability"].to_numpy())
    out = {
        "images": len(paths),
        "with_second_face": int(np.sum(second)),
        "detection_recall": float(np.mean(found)),
        "picked_the_pasted_face": float(np.mean(picked)),
        "rows": [],
    }
    for name, pipe in pipelines.items():
        shown = {"original": pipe.predict(paths, progress=False, align="none")["male_probability"].to_numpy()}
        for how in ("aligned", "unaligned"):
            prob = np.concatenate(probs[name][how])
            shown[how] = np.where(np.isnan(prob), 1 - male, prob)  # a face not used: the wrong answer
        aligned = np.concatenate(probs[name]["aligned"])
        row = {"pipeline": name, "faces_not_used": int(np.isnan(aligned).sum())}
        for how, prob in shown.items():
            acc, low, high = accuracy_ci(male, prob, threshold, n_boot=2000, seed=seed)
            row[how] = {"accuracy": acc, "ci_low": low, "ci_high": high}
        predicted = {how: (prob >= threshold).astype(int) for how, prob in shown.items()}
        for how in ("aligned", "unaligned"):
            d = paired_accuracy_difference_ci(
                male, predicted[how], predicted["original"], n_boot=2000, seed=seed
            )
            row[f"{how}_minus_original"] = {
                "difference": d["difference"],
                "ci_low": d["low"],
                "ci_high": d["high"],
            }
        out["rows"].append(row)
    return out


def detect_side_sweep(
    pipelines: dict, celeba, ids: list[str], n: int, seed: int, threshold: float, sides
) -> list:
    """Validation composites: aligned Male accuracy per first-pass detection size (how the default was
    chosen; the test composites are not used for it)."""
    from attr2gender.data import faces as face_module

    ids = list(ids)[:n]
    paths = [celeba.image_path(i) for i in ids]
    male = celeba.male(ids)
    chunks = list(_composite_chunks(paths, len(paths), seed + 1))
    default, rows = face_module.DETECT_MAX_SIDE, []
    try:
        for side in sides:
            face_module.DETECT_MAX_SIDE = side
            for name, pipe in pipelines.items():
                start = time.perf_counter()
                prob = np.concatenate(
                    [
                        pipe.predict([c.image for c in chunk], progress=False)["male_probability"].to_numpy()
                        for chunk in chunks
                    ]
                )
                correct = np.where(np.isnan(prob), False, (prob >= threshold) == male)
                rows.append(
                    {
                        "detect_side": side,
                        "pipeline": name,
                        "val_accuracy": float(correct.mean()),
                        "images": len(ids),
                        "seconds": time.perf_counter() - start,
                    }
                )
    finally:
        face_module.DETECT_MAX_SIDE = default
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=SHARED)
    parser.add_argument("--config", default="cpu", help="preset name or YAML file (default: cpu)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument(
        "--joint-weights", default="0.01,0.1,1,10", help="concept weights of the joint models ('' skips them)"
    )
    parser.add_argument(
        "--composites", type=int, default=500, help="photo-like composites of test crops (alignment section)"
    )
    parser.add_argument(
        "--detect-sides",
        default="96,128,192,320",
        help="first-pass detection sizes compared on validation composites ('' skips the sweep)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="synthetic data, tiny model: proves the script runs"
    )
    parser.add_argument(
        "overrides", nargs="*", help="key=value config overrides, e.g. epochs=2 image_size=112"
    )
    args = parser.parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    overrides = list(args.overrides)
    if args.quick:
        from attr2gender.data.synth import make_synthetic_celeba

        args.data_root = make_synthetic_celeba(Path(tmp.name) / "celeba", n=240, seed=0, image_size=40)
        args.joint_weights, args.composites, args.detect_sides = "1", 12, "128"
        overrides = [
            "backbone=test_efficientnet",
            "weights=none",
            "image_size=32",
            "epochs=1",
            "batch_size=32",
            "num_workers=0",
            *overrides,
        ]
    if not (Path(args.data_root) / "list_attr_celeba.txt").is_file():
        print(f"no CelebA at {args.data_root}; pass --data-root or use --quick", file=sys.stderr)
        return 2
    out_runs = Path(tmp.name) / "runs"
    ((_, config),) = load_preset(
        args.config,
        [
            f"data_root={args.data_root}",
            "split=identity",
            "tracking=none",
            f"output_dir={out_runs}",
            f"cache_dir={Path(tmp.name) / 'cache'}",
            *overrides,
        ],
    )
    seed = config.seed
    celeba = load_celeba(args.data_root, warn_missing=False)
    print(
        f"data: {args.data_root} ({len(celeba.present):,} images); backbone {config.backbone}, "
        f"{config.image_size} px, {config.epochs} epoch(s)",
        flush=True,
    )

    timings = {}
    start = time.perf_counter()
    two, two_report = train_two_stage(config, stage_two_model="logistic", stage_two_fit_on="predicted")
    timings["two_stage_fit_seconds"] = time.perf_counter() - start
    splits = two_report.train_result.datamodule.splits
    start = time.perf_counter()
    direct, direct_report = train_direct(config)
    timings["direct_fit_seconds"] = time.perf_counter() - start
    assert direct_report.train_result.datamodule.splits == splits, "both routes must share one split"

    rows = [
        {
            "route": "direct",
            "stage_two": "",
            "fit_on": f"{len(splits.train):,} train images",
            "applied_to": "pixels",
            **scores(
                direct_report.test_male,
                direct_report.test_male_probability,
                seed,
                config.threshold,
                truth=direct_report.test_truth,
            ),
            "seconds": timings["direct_fit_seconds"],
        }
    ]
    rows += two_stage_variants(two, two_report, celeba, splits, seed, config.threshold)
    print("concept-bottleneck variants (joint training: one model per concept weight)", flush=True)
    extra_rows, joint_sweep, curves = concept_rows(
        two, two_report, config, seed, [float(w) for w in args.joint_weights.split(",") if w]
    )
    rows += extra_rows
    for r in joint_sweep:  # each joint model against direct, on the same test images
        d = paired_accuracy_difference_ci(
            direct_report.test_male,
            (direct_report.test_male_probability >= 0.5).astype(int),
            (r.pop("_prob") >= 0.5).astype(int),
            n_boot=2000,
            seed=seed,
        )
        r["direct_minus_this"], r["direct_minus_this_ci"] = d["difference"], [d["low"], d["high"]]
    # Paired: the same test images, so the difference's interval is much tighter than the two CIs suggest.
    assert list(direct_report.test_ids) == list(two_report.test_ids), "routes scored different test images"
    direct_pred = (direct_report.test_male_probability >= config.threshold).astype(int)
    for r in rows[1:]:
        if "_prob" in r:
            two_pred = (r.pop("_prob") >= config.threshold).astype(int)
            d = paired_accuracy_difference_ci(
                direct_report.test_male, direct_pred, two_pred, n_boot=2000, seed=seed
            )
            r["direct_minus_this"] = d["difference"]
            r["direct_minus_this_ci"] = [d["low"], d["high"]]
    # Runtimes against PyTorch fp32, on the validation and test images (real faces, trained weights).
    agreement_paths = [celeba.image_path(i) for i in [*splits.val, *splits.test]]
    agreement = []
    for pipeline in (two, direct):
        agreement += runtime_agreement(pipeline, agreement_paths, Path(tmp.name) / f"bundle_{pipeline.route}")
    # CelebA-C: both routes (the default two-stage pipeline) on the test images under 6 corruptions.
    test_paths = [celeba.image_path(i) for i in direct_report.test_ids]
    celeba_c = {
        p.kind: corruption_accuracy(p, test_paths, direct_report.test_male, seed=seed) for p in (two, direct)
    }
    # A user's photos, simulated: test crops pasted into larger canvases; aligned as predict() does by default.
    print(f"alignment: {args.composites} composites of test crops", flush=True)
    routes = {"two_stage": two, "direct": direct}
    sides = [int(x) for x in args.detect_sides.split(",") if x.strip()]
    sweep = detect_side_sweep(routes, celeba, splits.val, args.composites, seed, config.threshold, sides)
    composites = composite_rows(
        routes, celeba, direct_report.test_ids, args.composites, seed, config.threshold
    )
    has_partition = celeba.partition is not None and set(np.unique(celeba.partition)) >= {0, 2}
    rows += ceiling(celeba, seed) if has_partition else []
    attr_acc = two.metrics["concept_mean_accuracy"]
    # Stage two reads stage one's probabilities, so their calibration matters too: mean ECE over the 39.
    truth = two_report.test_truth
    attr_ece = float(
        np.mean(
            [
                expected_calibration_error(truth[a].to_numpy(), two_report.test_attribute_probabilities[:, j])
                for j, a in enumerate(STAGE_ONE_ATTRIBUTES)
            ]
        )
    )
    per_attribute = {a: two.metrics[f"attr_accuracy_{a}"] for a in STAGE_ONE_ATTRIBUTES}

    def paired(r):
        if "direct_minus_this" not in r:
            return ""
        low, high = r["direct_minus_this_ci"]
        return f"{r['direct_minus_this']:+.4f} [{low:+.4f}, {high:+.4f}]"

    def interval(r, key, ci_key):
        if not np.isfinite(r.get(key, float("nan"))):
            return ""
        low, high = r.get(ci_key, [float("nan")] * 2)
        return f"{r[key]:.4f} [{low:.4f}, {high:.4f}]"

    table = [
        [
            r["route"],
            r["stage_two"],
            r["fit_on"],
            r["applied_to"],
            r["accuracy"],
            f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]" if np.isfinite(r["ci_low"]) else "",
            paired(r),
            interval(r, "worst_group_accuracy", "worst_group_ci"),
            r.get("worst_group", "").replace("_", " "),
            interval(r, "ece", "ece_ci"),
            r["seconds"],
        ]
        for r in rows
    ]
    headers = [
        "route",
        "stage two",
        "fitted on",
        "applied to",
        "test accuracy",
        "95% CI",
        "direct - this (paired 95% CI)",
        "worst-group accuracy [95% CI]",
        "worst group",
        "ECE (15 bins) [95% CI]",
        "seconds",
    ]
    corruption_headers = ["route", "clean", *CORRUPTIONS, "mean of corruptions"]
    corruption_rows = [
        [kind, *[t.loc[c, "accuracy"] for c in ["clean", *CORRUPTIONS, "mean"]]]
        for kind, t in celeba_c.items()
    ]
    print(text_table(headers, table, digits=4))
    payload = {
        "machine": machine_info(),
        "quick": args.quick,
        "data_root": str(args.data_root),
        "config": config.to_dict(),
        "split": splits.sizes() | {"strategy": splits.strategy},
        "rows": rows,
        "stage_one_mean_attribute_accuracy": attr_acc,
        "stage_one_mean_attribute_ece": attr_ece,
        "stage_one_per_attribute_accuracy": per_attribute,
        "timings": timings,
        "runtime_agreement": agreement,
        "celeba_c": {k: t.reset_index().to_dict(orient="records") for k, t in celeba_c.items()},
        "joint_sweep": joint_sweep,
        "intervention_curves": curves,
        "composites": composites,
        "detect_side_sweep": sweep,
    }
    composite_headers = [
        "pipeline",
        "original crops",
        "composites, aligned",
        "composites, not aligned",
        "aligned - original (paired 95% CI)",
        "not aligned - original (paired 95% CI)",
        "faces not used",
    ]

    def with_ci(c: dict) -> str:
        return f"{c['accuracy']:.4f} [{c['ci_low']:.4f}, {c['ci_high']:.4f}]"

    def diff(d: dict) -> str:
        return f"{d['difference']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"

    composite_table = [
        [
            r["pipeline"],
            with_ci(r["original"]),
            with_ci(r["aligned"]),
            with_ci(r["unaligned"]),
            diff(r["aligned_minus_original"]),
            diff(r["unaligned_minus_original"]),
            r["faces_not_used"],
        ]
        for r in composites["rows"]
    ]
    curve_at = {(c["pipeline"], c["policy"], c["k"]): c["accuracy"] for c in curves}
    curve_rows = [
        [name, policy, *[curve_at.get((name, policy, k)) for k in (0, 5, 10, 20, 39)]]
        for name in ("sequential, soft", "sequential, hard")
        for policy in ("uncertainty", "random")
    ]
    sweep_rows = [
        [
            r["concept_weight"],
            r["val_accuracy"],
            r["accuracy"],
            f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]",
            f"{r['direct_minus_this']:+.4f} [{r['direct_minus_this_ci'][0]:+.4f}, {r['direct_minus_this_ci'][1]:+.4f}]",
            r.get("worst_group_accuracy"),
            r.get("val_concept_auc"),
            r.get("concept_accuracy"),
            r.get("concept_auc"),
            {True: "yes", False: "**no: not concepts**"}.get(r.get("concepts_reliable"), ""),
        ]
        for r in joint_sweep
    ]
    date = payload["machine"]["date"][:10]
    md = "\n\n".join(
        [
            f"Real-face accuracy, `python benchmarks/bench_accuracy.py`, {date}: {len(celeba.present):,} images of "
            f"{args.data_root.name}, identity-disjoint split {splits.sizes()}, `{config.backbone}` "
            f"({config.weights}) at {config.image_size} px, {config.epochs} epoch(s), seed {seed}.",
            md_table(headers, table, digits=4),
            "Worst group: the lowest Male accuracy among the Male x makeup and Male x blond groups with 30+ test "
            "images (true attributes); the 68-person test split has few images in the rare groups, see "
            "`bench_groups.md` for a larger test side.",
            f"Stage one's mean accuracy over the 39 attributes: {attr_acc:.4f}; its mean ECE (15 bins) over "
            f"them: {attr_ece:.4f}. ECE is top-label (Guo et al. 2017); Brier scores are in the JSON.",
            "Joint concept bottleneck models (loss = BCE(Male) + concept_weight x attribute loss), one per concept "
            "weight, each with its concept quality on the same test images; the table's joint row is the one with "
            "the best validation Male accuracy among those whose validation concept AUC is within "
            "concept_auc_tolerance of the sequential model's:",
            md_table(
                [
                    "concept weight",
                    "val Male accuracy",
                    "test accuracy",
                    "95% CI",
                    "direct - this (paired 95% CI)",
                    "worst-group accuracy",
                    "val concept AUC",
                    "concept accuracy",
                    "concept AUC",
                    "concepts kept",
                ],
                sweep_rows,
                digits=4,
            ),
            "Interventions: test Male accuracy after correcting each image's k attributes (most uncertain first, or "
            "at random) to their true values:",
            md_table(["pipeline", "policy", "k=0", "k=5", "k=10", "k=20", "k=39"], curve_rows, digits=4),
            f"A user's photos, simulated: {composites['images']} test crops pasted into canvases 2-4 times their "
            f"size at random positions, scales and rotations (+-25 degrees), {composites['with_second_face']} with "
            f"a second, smaller face. Detection recall {composites['detection_recall']:.4f}; the face picked is "
            f"the pasted central one in {composites['picked_the_pasted_face']:.4f}. Male accuracy (a composite "
            "whose face is not used counts as wrong) on the original crops, on the composites as predict() reads "
            'them by default (`align="auto"`), and read as they are (`align="none"`):',
            md_table(composite_headers, composite_table, digits=4),
            "How the first-pass detection size was chosen: aligned Male accuracy on composites of the "
            "validation crops (the test composites above were not used):",
            md_table(
                ["detect side (px)", "pipeline", "val accuracy", "seconds"],
                [[r["detect_side"], r["pipeline"], r["val_accuracy"], r["seconds"]] for r in sweep],
                digits=4,
            ),
            "CelebA-C: Male accuracy on the test images under deterministic corruptions:",
            md_table(corruption_headers, corruption_rows, digits=4),
            f"Runtimes against PyTorch fp32 on the same {len(agreement_paths):,} validation and test images:",
            md_table(
                [
                    "pipeline",
                    "runtime",
                    "images",
                    "max abs difference",
                    "mean abs difference",
                    "label agreement",
                ],
                [
                    [
                        r["pipeline"],
                        r["runtime"],
                        r["images"],
                        r["max_abs_difference"],
                        r["mean_abs_difference"],
                        r["label_agreement"],
                    ]
                    for r in agreement
                ],
                digits=6,
            ),
        ]
    )
    name = "bench_accuracy_quick" if args.quick else "bench_accuracy"
    written = write_results(args.out, name, payload, md)
    if not args.no_mlflow:
        log_to_mlflow(payload, written, quick=args.quick)
    print(f"results: {written['json']}")
    direct_acc = rows[0]["accuracy"]
    best_two = max(r["accuracy"] for r in rows if r["route"] == "two-stage")
    for r in agreement:
        print(
            f"{r['pipeline']} {r['runtime']}: max |dP| {r['max_abs_difference']:.2e}, labels agree "
            f"{r['label_agreement']:.4%} of {r['images']:,}"
        )
    print(f"stage one mean attribute accuracy {attr_acc:.4f}")
    print(
        f"composites: recall {composites['detection_recall']:.4f}, picked the pasted face "
        f"{composites['picked_the_pasted_face']:.4f}; "
        + "; ".join(
            f"{r['pipeline']} original {r['original']['accuracy']:.4f}, aligned {r['aligned']['accuracy']:.4f}, "
            f"not aligned {r['unaligned']['accuracy']:.4f}"
            for r in composites["rows"]
        )
    )
    print(
        f"test accuracy: direct {direct_acc:.4f}, best two-stage {best_two:.4f} (loss {direct_acc - best_two:+.4f})"
    )
    tmp.cleanup()
    return 0


def log_to_mlflow(payload: dict, written: dict, quick: bool) -> None:
    """Into the default store (./mlflow.db, or MLFLOW_TRACKING_URI), experiment attr2gender-benchmarks."""
    import mlflow

    from attr2gender.tracking.mlflow_tracking import MlflowTracker

    tracker = MlflowTracker("attr2gender-benchmarks")
    with tracker.run("bench_accuracy" + ("_quick" if quick else ""), tags={"benchmark": "accuracy"}):
        mlflow.log_params(
            {
                k: v
                for k, v in payload["config"].items()
                if k in ("backbone", "weights", "image_size", "epochs", "batch_size", "lr", "seed", "split")
            }
        )
        for r in payload["rows"]:
            if np.isfinite(r["accuracy"]):
                key = f"{r['route']}_{r['stage_two']}_{r['fit_on'].split(' ')[0]}_{r['applied_to'].split(' ')[0]}"
                mlflow.log_metric(
                    "acc_" + "".join(c if c.isalnum() else "_" for c in key)[:200], r["accuracy"]
                )
        mlflow.log_metric("stage_one_mean_attribute_accuracy", payload["stage_one_mean_attribute_accuracy"])
        for path in written.values():
            mlflow.log_artifact(str(path))


if __name__ == "__main__":
    sys.exit(main())
