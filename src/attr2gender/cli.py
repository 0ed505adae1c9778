"""The ``attr2gender`` command line: the one entry point, with one error policy.

    attr2gender run two-stage|direct|compare ... train, evaluate and track a route, or compare both
    attr2gender train --config PRESET k=v        train one image model (stage one or direct)
    attr2gender predict [BUNDLE] IMAGE|DIR ...   predict (the shipped model, or a saved bundle), CSV out
    attr2gender align IN_DIR OUT_DIR             the faces as the model sees them, and a contact sheet
    attr2gender serve [BUNDLE|MODEL_URI]         REST scoring (MLflow's /invocations) with a body cap
    attr2gender demo [BUNDLE [BUNDLE2]]          a local web page: drop a photo, see why, edit the concepts
    attr2gender presets [show NAME]              the presets that ship with the package
    attr2gender data summary|synth|export-target inspect, make or export CelebA-format data

Every error the library raises on purpose prints one ``error:`` line with the fix and exits 2; heavy
imports (torch, Lightning, MLflow) happen after the arguments are parsed, so ``--help`` is instant.
``pipelines/run_two_stage.py``, ``run_direct.py`` and ``compare.py`` are thin scripts over ``run``.
"""

# Lazy imports: each command imports what it runs (torch, Lightning, MLflow, numpy) after the arguments are
# parsed, so --help stays instant; config, constants and errors, which building the parser needs, stay light.

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

from .cli_args import (
    MAX_SIDE,
    MAX_SYNTH,
    MIN_SIDE,
    bundle_and_images,
    check_device,
    check_folder_target,
    check_output_path,
    image_side,
    non_negative_float,
    penalty_c,
    positive_int,
    seed_number,
    shown,
    synth_count,
)
from .cli_servers import add_server_parsers
from .config import FIELDS, list_presets, load_preset, parse_overrides, preset_text
from .constants import ALIGN_MODES, FACE_MODES, FALLBACKS, MIN_EYE_DISTANCE
from .errors import Attr2GenderError, UsageError


def _data_summary(args) -> int:
    from .data import load_celeba
    from .data.celeba import ATTR_FILE
    from .data.labelled_faces import LABELS_FILE, load_labelled_faces
    from .data.summary import summarize, summarize_labelled

    if not (args.root / ATTR_FILE).is_file() and (
        (args.root / LABELS_FILE).is_file() or args.root.name.lower().startswith("utkface")
    ):  # a folder of labelled faces (the second training source), not a CelebA root
        print(summarize_labelled(load_labelled_faces(args.root)))
        return 0
    print(summarize(load_celeba(args.root), decode=args.decode, progress=not args.quiet))
    return 0


def _data_synth(args) -> int:
    from .data.synth import make_synthetic_celeba

    check_folder_target(args.out, "--out")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    out = make_synthetic_celeba(
        args.out, n=args.n, seed=args.seed, image_size=args.size, progress=not args.quiet
    )
    print(f"wrote {args.n:,} synthetic images to {out} in {time.perf_counter() - start:.1f}s")
    return 0


def _data_export(args) -> int:
    from .data import export_target_table, load_celeba

    try:  # its folder is made, as before; a name too long or a place like /proc is one error line
        args.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"--out {args.out}: cannot write there ({exc.strerror}); choose another path"
        ) from None
    check_output_path(args.out)  # a folder, /proc, a name too long: one error line before CelebA is read
    out = export_target_table(load_celeba(args.root), args.out)
    print(f"wrote {out}")
    return 0


def _train(args) -> int:
    from .training import train

    runs = load_preset(args.config, args.overrides)
    if args.run:
        runs = [(n, c) for n, c in runs if n in args.run]
        if not runs:
            names = ", ".join(n for n, _ in load_preset(args.config, args.overrides))
            raise UsageError(
                f"--run {', '.join(args.run)}: no such run in {args.config}; choose among {names}"
            )
    for name, config in runs:
        result = train(config)
        print(f"[{name or config.run_name}] {result.summary_line()}")
    return 0


def _predict(args) -> int:
    from .pipeline import load_pipeline, load_pretrained

    bundle, image_paths = bundle_and_images(args.paths, args.pretrained)
    if args.out is not None:
        check_output_path(args.out)
    check_device(args.device)
    options = dict(
        device=args.device, batch_size=args.batch_size, runtime=args.runtime, precision=args.precision
    )
    with warnings.catch_warnings(record=True) as caught:  # one line each, not Python's two-line format
        warnings.simplefilter("always")
        if bundle is None:
            pipeline = load_pretrained(args.pretrained or "two_stage", **options)
        else:
            pipeline = load_pipeline(bundle, **options)
    if bundle is None:  # the first line says which model answers, on what terms, and how right it is
        print(f"model: {pipeline.pretrained.line()}", file=sys.stderr)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    alignment = dict(
        align=args.align, faces=args.faces, fallback=args.fallback, min_eye_distance=args.min_eye_distance
    )
    if args.align != "auto" and (args.faces != "center" or args.fallback != "error"):
        raise UsageError(
            f"--faces and --fallback apply to detected faces; drop them with --align {args.align}"
        )
    if args.explain and not hasattr(pipeline, "explain"):
        raise UsageError(
            f"--explain needs a two-stage bundle; {bundle or 'the shipped direct model'} holds a "
            f"{pipeline.route} pipeline"
        )
    images = [os.fspath(p) for p in image_paths]
    from .pipeline.inputs import expand_images

    with warnings.catch_warnings(record=True) as caught:  # "not images and were skipped", once, below
        warnings.simplefilter("always")
        found = expand_images(images)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if not found:
        print(
            f"error: no images found in {', '.join(map(shown, images))}; give image files or folders of them",
            file=sys.stderr,
        )
        return 3
    images = [source for _, source in found]  # expanded once: the folders' skipped files are said once
    progress = False if args.quiet else None
    if args.explain:
        explanation = pipeline.explain(images, progress=progress, **alignment)
        frame = explanation.predictions
        for i, name in enumerate(frame["image"]):
            if not frame["male_probability"].isna().iloc[i]:
                print(f"{shown(name)}{_face_of(frame, i)}: {explanation.line(i, 3)}", file=sys.stderr)
    else:
        frame = pipeline.predict(images, progress=progress, **alignment)
    failed = int(frame["male_probability"].isna().sum())  # a whole-image fallback has a note, not a failure
    # File names that are not UTF-8 keep their original bytes (surrogateescape) instead of failing the write.
    if args.out:
        frame.to_csv(args.out, index=False, errors="surrogateescape")
        print(f"wrote {len(frame):,} rows to {args.out} ({failed} unreadable)")
    else:
        text = frame.to_csv(index=False)
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8", errors="surrogateescape"))
        sys.stdout.buffer.flush()
    if len(frame) and failed == len(frame):
        print(
            f"error: none of the {len(frame):,} inputs could be read (see the error column)", file=sys.stderr
        )
        return 3
    return 0


def _face_of(frame, i: int) -> str:
    """Which face of its photo row ``i`` is, when the photo had several: with one row per photo the one
    nearest the centre was chosen, and the line says so."""
    if "n_faces" not in frame or frame["n_faces"].isna().iloc[i] or int(frame["n_faces"].iloc[i]) < 2:
        return ""
    n = int(frame["n_faces"].iloc[i])
    if "face_index" in frame and not frame["face_index"].isna().iloc[i]:
        return f" (face {int(frame['face_index'].iloc[i]) + 1} of {n})"
    return f" (face nearest the centre of {n}; --faces all explains each)"


def _adapt(args) -> int:
    from .data.labelled_faces import SHOWN_PROBLEMS
    from .pipeline import load_pipeline
    from .pipeline.adapt import read_labels_csv

    check_folder_target(args.out_bundle, "OUT_BUNDLE", must_be_empty=True)
    try:
        labels_file = args.labels.is_file()
    except OSError:  # a name too long for the file system
        labels_file = False
    if not labels_file:
        raise UsageError(f"LABELS {args.labels} is not a file; give a CSV with columns path,male")
    paths, labels, problems = read_labels_csv(args.labels)
    for line in problems[:SHOWN_PROBLEMS]:  # the first few; a million bad rows are not a million lines
        print(f"skipped {line}", file=sys.stderr)
    if len(problems) > SHOWN_PROBLEMS:
        print(
            f"skipped {len(problems) - SHOWN_PROBLEMS:,} more rows (the first {SHOWN_PROBLEMS} are above)",
            file=sys.stderr,
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline = load_pipeline(args.bundle)
        adapted = pipeline.adapt(
            paths,
            labels,
            holdout=args.holdout,
            original_weight=0.0,
            C=args.C,
            seed=args.seed,
            progress=False if args.quiet else None,
            align=args.align,
            prior=args.prior,
        )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    adapted.save(args.out_bundle)
    record = adapted.adapted
    print(
        f"used {len(paths):,} of {len(paths) + len(problems):,} rows ({len(problems)} skipped), "
        f"{record.n_photos} to fit and {record.n_holdout} held out: {record.describe()}; wrote {args.out_bundle}"
    )
    return 0


def _align(args) -> int:
    from .data.faces import FaceTemplate
    from .pipeline.aligned_crops import align_folder, check_output_folder

    if not args.in_dir.is_dir():
        raise UsageError(f"IN_DIR {args.in_dir} is not a folder; give the folder of photos to align")
    try:
        out_exists = args.out_dir.exists()
    except OSError as exc:  # a name too long for the file system: one error line, no traceback
        raise UsageError(f"OUT_DIR {args.out_dir}: {exc.strerror}; choose another folder") from None
    if out_exists and args.out_dir.resolve() == args.in_dir.resolve():
        raise UsageError("OUT_DIR must differ from IN_DIR (aligned crops would mix with the photos)")
    if args.bundle is not None:
        from .pipeline.loading import bundle_face_template

        template = bundle_face_template(args.bundle)
    else:
        template = FaceTemplate.celeba()
    check_output_folder(args.out_dir, "OUT_DIR")  # a file, /proc, unwritable: one error line, no image read
    with warnings.catch_warnings(record=True) as caught:  # one line each, not Python's two-line format
        warnings.simplefilter("always")
        table = align_folder(
            args.in_dir,
            args.out_dir,
            template,
            faces=args.faces,
            fallback=args.fallback,
            min_eye_distance=args.min_eye_distance,
            progress=not args.quiet,
        )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if table.empty:
        print(
            f"error: IN_DIR {args.in_dir} holds no image files (.jpg, .png, ...); give the folder of photos",
            file=sys.stderr,
        )
        return 3
    written = int((table["file"] != "").sum())
    failed = int((table["file"] == "").sum())
    where = f"{args.bundle}'s" if args.bundle is not None else "CelebA's published"
    print(
        f"aligned {written:,} face(s) onto {where} template ({template.size[0]}x{template.size[1]} px) in "
        f"{args.out_dir}; {failed} image(s) failed (see faces.csv); contact sheet: "
        f"{args.out_dir / 'contact_sheet.png'}"
    )
    if not written:
        print(
            f"error: no face could be aligned in the {len(table):,} image(s) (see faces.csv)", file=sys.stderr
        )
        return 3
    return 0


def _presets(args) -> int:
    if args.action == "show":
        if not args.name:
            raise UsageError(f"presets show needs a NAME; one of {', '.join(list_presets())}")
        print(preset_text(args.name)[1], end="")
    else:
        print("\n".join(list_presets()))
    return 0


# --------------------------------------------------------------------------------------------------
# attr2gender run two-stage | direct | compare
# --------------------------------------------------------------------------------------------------

RUN_ROUTES = {"two-stage": "two_stage", "direct": "direct"}
PRESETS_HELP = "list the presets that ship with the package, or print one to edit"
PRESETS_DESCRIPTION = (
    "attr2gender presets (list them); attr2gender presets show NAME > my.yaml (a copy to edit "
    "and pass as --config my.yaml)"
)


def _measure_spec(args):
    from .tracking.measure import MeasureSpec

    try:
        return MeasureSpec.parse(args.latency, repeats=args.latency_repeats)
    except ValueError as exc:
        raise UsageError(f"--latency: {exc}") from None


def _run_single(args) -> int:
    from .experiments.plan import materialize, plan_run
    from .experiments.route_run import run_lines, run_pipeline
    from .tracking.mlflow_tracking import is_rank_zero, make_tracker

    measure = _measure_spec(args)
    plan = plan_run(RUN_ROUTES[args.route], args.config, args.data_root, args.overrides, run=args.run)
    materialize([plan])
    tracker = make_tracker(plan.config)
    run = run_pipeline(plan, tracker, measure=measure)
    if not is_rank_zero():
        return 0
    print(
        "\n".join(["", "Results:", *run_lines(run, tracker), f"To see them: {tracker.ui_line()}"]),
        flush=True,
    )
    return 0


def _check_seeds(args) -> None:
    """--seeds: before any work, refuse what cannot mean a per-seed comparison."""
    if args.mlflow_runs:
        raise UsageError(
            "--seeds and --mlflow-runs do not combine: --mlflow-runs compares two finished runs (one seed "
            "each); drop one of them"
        )
    if len(args.seeds) < 2:
        raise UsageError(
            f"--seeds {args.seeds[0]}: give two or more seeds (a spread needs several); for one seed "
            f"pass seed={args.seeds[0]}"
        )
    if len(set(args.seeds)) != len(args.seeds):
        raise UsageError(f"--seeds {' '.join(map(str, args.seeds))}: each seed once")
    if "seed" in parse_overrides(args.overrides):
        raise UsageError("--seeds sets the seed of each comparison; drop the seed=... override")


def _run_compare(args) -> int:
    from .experiments.compare_command import run_comparison_command

    if args.old_runs:
        if args.mlflow_runs:
            raise UsageError("--runs is the old name of --mlflow-runs; give one of them")
        print("warning: --runs is now --mlflow-runs; the old name goes in the next release", file=sys.stderr)
        args.mlflow_runs = args.old_runs
    if args.seeds:
        _check_seeds(args)
    lines = run_comparison_command(
        args.config_two_stage,
        args.config_direct,
        args.data_root,
        args.overrides,
        runs=args.mlflow_runs,
        seeds=args.seeds,
        measure=None if args.mlflow_runs else _measure_spec(args),
        n_boot=args.bootstrap,
        corruptions=args.corruptions,
    )
    if lines:
        print("\n".join(["", "Results:", *lines]), flush=True)
    return 0


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-root", default=None, help="CelebA root (default: data/celeba, else synthetic)"
    )
    parser.add_argument(
        "--latency",
        default="1:16,64:128",
        metavar="B:N,...",
        help="inference timing: batch:images pairs (default 1:16,64:128)",
    )
    parser.add_argument(
        "--latency-repeats", type=positive_int, default=3, help="timed calls per batch size (median)"
    )
    parser.add_argument(
        "overrides", nargs="*", help="key=value config overrides, e.g. epochs=2 backbone=vgg16"
    )


def _add_run_parsers(sub) -> None:
    run = sub.add_parser(
        "run",
        help="train, evaluate and track a route (two-stage, direct) or compare both",
        description="Train, evaluate and track a pipeline, logged to MLflow. Without --data-root and "
        "without ./data/celeba a synthetic CelebA is made and the smoke preset runs.",
    )
    rsub = run.add_subparsers(dest="run_command", required=True)
    for name, route in RUN_ROUTES.items():
        what = "image -> 39 attributes -> Male" if route == "two_stage" else "image -> Male"
        p = rsub.add_parser(
            name,
            help=f"the {name} route ({what})",
            description=f"Train, evaluate and track the {name} route ({what}).",
        )
        p.add_argument(
            "--config",
            default=None,
            help=f"preset name or YAML file (default: {route}, or smoke on synthetic data)",
        )
        p.add_argument("--run", default=None, help="the named run of a multi-run preset")
        _add_run_arguments(p)
        p.set_defaults(func=_run_single, route=name)
    p = rsub.add_parser(
        "compare",
        help="both routes on the same split and seed, as nested MLflow runs",
        description="Two-stage vs direct on the same split and seed, as nested MLflow runs under one "
        "comparison run; or two finished MLflow runs with --mlflow-runs; or one comparison per seed with --seeds. Writes "
        "report.md and a self-contained report.html (plots embedded).",
    )
    p.add_argument("--config-two-stage", default=None, help="preset or YAML file (default: two_stage)")
    p.add_argument("--config-direct", default=None, help="preset or YAML file (default: direct)")
    p.add_argument(
        "--mlflow-runs",
        nargs=2,
        metavar=("RUN_ID_TWO_STAGE", "RUN_ID_DIRECT"),
        help="compare two finished MLflow runs (their run ids) instead of training",
    )
    # The old name (a preset's entries are "runs" too, --run picks one): kept for one release, with a warning.
    p.add_argument("--runs", nargs=2, dest="old_runs", help=argparse.SUPPRESS)
    p.add_argument(
        "--seeds",
        nargs="+",
        type=seed_number,
        metavar="N",
        help="one comparison per seed (split, initialisation and data order change; split=auto becomes "
        "identity), reported as mean ± std across seeds; put key=value overrides before --seeds",
    )
    p.add_argument("--bootstrap", type=positive_int, default=2000, help="resamples for the accuracy-loss CI")
    p.add_argument(
        "--corruptions",
        action="store_true",
        help="also score both routes on CelebA-C: the test images under 6 corruptions",
    )
    _add_run_arguments(p)
    p.set_defaults(func=_run_compare)


def _add_alignment_arguments(parser: argparse.ArgumentParser, with_none: bool) -> None:
    if with_none:
        parser.add_argument(
            "--align",
            default="auto",
            choices=ALIGN_MODES,
            help="auto: find the face and align it as the bundle reads faces (default); crops: the images are "
            "crops laid out like the training images, CelebA's (a fixed warp, no detection); none: they are "
            "laid out as the bundle reads already (a face bundle: dlib's 150 px chips; anything else is "
            "refused)",
        )
    parser.add_argument(
        "--faces",
        default="center",
        choices=FACE_MODES,
        help="center: the face nearest the image centre (default); all: one row per face",
    )
    parser.add_argument(
        "--fallback",
        default="error",
        choices=FALLBACKS,
        help="no face found: an error row (default), or predict on the whole image and say so",
    )
    parser.add_argument(
        "--min-eye-distance",
        type=non_negative_float,
        default=MIN_EYE_DISTANCE,
        metavar="PX",
        help=f"smaller faces are refused (default {MIN_EYE_DISTANCE:g} px between the eyes)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attr2gender", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect, make or export CelebA-format data")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser(
        "summary",
        help="images found, partitions, Male rate, identities, problems; or a labelled faces folder's "
        "photos by age band and race",
    )
    p.add_argument("root", type=Path)
    p.add_argument("--decode", action="store_true", help="fully decode every image (slower, finds more)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_data_summary)
    p = dsub.add_parser("synth", help="write a synthetic CelebA in the standard layout")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--n", type=synth_count, default=2000, help=f"number of images, 1 to {MAX_SYNTH:,} (default 2000)"
    )
    p.add_argument("--seed", type=seed_number, default=0)
    p.add_argument(
        "--size",
        type=image_side,
        default=128,
        help=f"image side in px, {MIN_SIDE} to {MAX_SIDE} (default 128)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_data_synth)
    p = dsub.add_parser("export-target", help="write the source study's output_list_attrib table (id, Male)")
    p.add_argument("root", type=Path)
    p.add_argument("--out", type=Path, default=Path("output_list_attrib.csv"))
    p.set_defaults(func=_data_export)

    _add_run_parsers(sub)

    p = sub.add_parser(
        "train",
        help="train one image model: attr2gender train --config PRESET [key=value ...]",
        description="Train one image model (stage one or direct) from a preset plus key=value "
        "overrides; the resolved config is saved with the run.",
        epilog=f"presets: {', '.join(list_presets())} (or a YAML file). Keys: {', '.join(FIELDS)}.",
    )
    p.add_argument("--config", default=None, help="preset name (see below) or YAML file")
    p.add_argument("--run", action="append", help="only the named run(s) of a multi-run preset")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=2 backbone=vgg16")
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "predict",
        help="predict Male for photos (the shipped face model, or a saved bundle)",
        description="Predict Male for image files and folders, with the pretrained face model that ships "
        "in the package (two-stage; --pretrained direct for the other) or with a saved bundle given first. "
        "One CSV row per image; an unreadable image gets an error row and the others are still predicted.",
        epilog="exit status: 0 when at least one image was predicted; 2 on a usage error (a bad "
        "option, bundle or output path; nothing is predicted); 3 when every input failed.",
    )
    p.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="[BUNDLE] IMAGE",
        help="image files and/or folders, after a bundle folder written by pipeline.save() when you have one",
    )
    p.add_argument(
        "--pretrained",
        choices=("two-stage", "direct"),
        help="which shipped model answers when no bundle is given (default two-stage)",
    )
    p.add_argument("--out", type=Path, help="CSV path (default: stdout)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    for flag, choices, text in (
        (
            "--runtime",
            ("auto", "torch", "onnx"),
            "forward pass: auto (ONNX Runtime on CPU when installed and the "
            "bundle has model.onnx, else PyTorch), torch, onnx",
        ),
        (
            "--precision",
            ("auto", "fp32", "bf16"),
            "PyTorch runtime only: auto (bf16 on CUDA, fp32 on CPU), fp32, bf16",
        ),
    ):
        p.add_argument(flag, default="auto", choices=choices, help=text)
    _add_alignment_arguments(p, with_none=True)
    p.add_argument("--explain", action="store_true", help="two-stage: print each image's top 3 attributes")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "align",
        help="write each photo's face as the model sees it, and a contact sheet",
        description="Find each photo's face, warp it onto a bundle's face template (or CelebA's) as "
        "predict does, and write the crops, faces.csv and contact_sheet.png (the first 64: original with "
        "box and landmarks | aligned crop) into OUT_DIR.",
        epilog="exit status: 0 when at least one face was written; 2 on a usage error; 3 when every image "
        "failed.",
    )
    p.add_argument("in_dir", type=Path, metavar="IN_DIR", help="folder of photos")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder for the aligned crops (created)")
    p.add_argument(
        "--bundle", type=Path, default=None, help="align to this bundle's template (default: CelebA's)"
    )
    _add_alignment_arguments(p, with_none=False)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_align)

    p = sub.add_parser(
        "adapt",
        help="refit a bundle's head on your own labelled photos: attr2gender adapt BUNDLE LABELS.csv OUT",
        description="Refit a saved pipeline's head (two-stage: stage two; direct: its last layer) on your "
        "own photos, keeping the image model. LABELS.csv has columns path,male (1/0 or Male/Female; "
        "relative paths are read from the CSV's folder). A bad row is skipped with a line naming it; a "
        "share of the photos is held out and scored before and after.",
        epilog="exit status: 0 when the adapted bundle was written; 2 on a usage error (a bad bundle, CSV or "
        "output folder, or fewer than 10 usable photos of either class).",
    )
    p.add_argument("bundle", type=Path, help="folder written by pipeline.save()")
    p.add_argument("labels", type=Path, help="CSV with columns path,male")
    p.add_argument("out_bundle", type=Path, help="new folder for the adapted bundle")
    p.add_argument("--holdout", type=float, default=0.2, help="share held out to compare (default 0.2)")
    p.add_argument(
        "--C",
        type=penalty_c,
        default="auto",
        help="inverse strength of the L2 penalty, or auto: chosen by cross-validation on the photos (default)",
    )
    p.add_argument(
        "--prior",
        choices=("original", "none"),
        default="original",
        help="original: start from the bundle's head and stay near it (default); none: refit from scratch",
    )
    p.add_argument(
        "--align",
        choices=ALIGN_MODES,
        default="auto",
        help="auto: find and align each photo's face, as predict does (default); crops: crops laid out like "
        "the training images (CelebA's); none: already laid out as the bundle reads (a face bundle: dlib's "
        "150 px chips)",
    )
    p.add_argument("--seed", type=seed_number, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_adapt)

    add_server_parsers(sub)

    p = sub.add_parser("presets", help=PRESETS_HELP, description=PRESETS_DESCRIPTION)
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    p.add_argument("name", nargs="?", help="the preset to print (with show)")
    p.set_defaults(func=_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Attr2GenderError as exc:  # every error the library raises on purpose: one line, the fix in it
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main_two_stage(argv: list[str] | None = None) -> int:
    """``pipelines/run_two_stage.py``: ``attr2gender run two-stage``."""
    return main(["run", "two-stage", *(sys.argv[1:] if argv is None else argv)])


def main_direct(argv: list[str] | None = None) -> int:
    """``pipelines/run_direct.py``: ``attr2gender run direct``."""
    return main(["run", "direct", *(sys.argv[1:] if argv is None else argv)])


def main_compare(argv: list[str] | None = None) -> int:
    """``pipelines/compare.py``: ``attr2gender run compare``."""
    return main(["run", "compare", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
