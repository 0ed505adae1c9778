"""The ``attr2gender`` command line.

    attr2gender data summary ROOT            what a CelebA root holds and what is wrong with it
    attr2gender data synth --out DIR         write a synthetic CelebA in the standard layout
    attr2gender data export-target ROOT      the source study's (id, Male) table as CSV
    attr2gender train --config X.yaml k=v    train a preset (stage one or direct)
    attr2gender predict BUNDLE IMAGE|DIR ...  predict with a saved pipeline, CSV to stdout or --out
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _data_summary(args) -> int:
    from .data import load_celeba
    from .data.summary import summarize

    print(summarize(load_celeba(args.root), decode=args.decode, progress=not args.quiet))
    return 0


def _data_synth(args) -> int:
    from .data.synth import make_synthetic_celeba

    start = time.perf_counter()
    out = make_synthetic_celeba(args.out, n=args.n, seed=args.seed, image_size=args.size, progress=not args.quiet)
    print(f"wrote {args.n:,} synthetic images to {out} in {time.perf_counter() - start:.1f}s")
    return 0


def _data_export(args) -> int:
    from .data import export_target_table, load_celeba

    out = export_target_table(load_celeba(args.root), args.out)
    print(f"wrote {out}")
    return 0


def _train(args) -> int:
    from .config import load_preset
    from .training import train

    runs = load_preset(args.config, args.overrides)
    if args.run:
        runs = [(n, c) for n, c in runs if n in args.run]
        if not runs:
            names = ", ".join(n for n, _ in load_preset(args.config, args.overrides))
            raise UsageError(f"--run {', '.join(args.run)}: no such run in {args.config}; choose among {names}")
    for name, config in runs:
        result = train(config)
        print(f"[{name or config.run_name}] {result.summary_line()}")
    return 0


class UsageError(ValueError):
    """A command-line value that cannot work; printed as one ``error:`` line, exit status 2."""


def _check_output_path(out: Path) -> None:
    """Before any work: the folder of ``--out`` exists and is writable."""
    import os

    folder = out.expanduser().resolve().parent
    if not folder.is_dir():
        raise UsageError(f"--out {out}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--out {out}: the folder {folder} is not writable; choose another path")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file path such as {out / 'predictions.csv'}")


def _check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is visible here; use --device auto or cpu")
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise UsageError(f"--device {device!r} is not valid; choose auto, cpu or cuda (cuda:N)")


def _predict(args) -> int:
    from .pipeline import load_pipeline

    if args.out is not None:
        _check_output_path(args.out)
    _check_device(args.device)
    pipeline = load_pipeline(args.bundle, device=args.device, batch_size=args.batch_size, runtime=args.runtime,
                             precision=args.precision)  # fmt: skip
    if args.explain and not hasattr(pipeline, "explain"):
        raise UsageError(f"--explain needs a two-stage bundle; {args.bundle} holds a {pipeline.kind} pipeline")
    images = [os.fspath(p) for p in args.images]
    progress = False if args.quiet else None
    if args.explain:
        explanation = pipeline.explain(images, progress=progress)
        frame = explanation.predictions
        for i, name in enumerate(frame["image"]):
            if not frame["error"].iloc[i]:
                top = explanation.top(i, 3)
                print(f"{name}: " + ", ".join(f"{k} {v:+.2f}" for k, v in top.items()), file=sys.stderr)
    else:
        frame = pipeline.predict(images, progress=progress)
    failed = int((frame["error"] != "").sum())
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
        print(f"error: none of the {len(frame):,} inputs could be read (see the error column)", file=sys.stderr)
        return 3
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attr2gender", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect, make or export CelebA-format data")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("summary", help="images found, partitions, Male rate, identities, problems")
    p.add_argument("root", type=Path)
    p.add_argument("--decode", action="store_true", help="fully decode every image (slower, finds more)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_data_summary)
    p = dsub.add_parser("synth", help="write a synthetic CelebA in the standard layout")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128, help="image side in px (default 128)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_data_synth)
    p = dsub.add_parser("export-target", help="write the source study's output_list_attrib table (id, Male)")
    p.add_argument("root", type=Path)
    p.add_argument("--out", type=Path, default=Path("output_list_attrib.csv"))
    p.set_defaults(func=_data_export)

    p = sub.add_parser("train", help="train a preset: attr2gender train --config configs/X.yaml [key=value ...]")
    p.add_argument("--config", type=Path, default=None, help="YAML preset (configs/)")
    p.add_argument("--run", action="append", help="only the named run(s) of a multi-run preset")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=2 backbone=vgg16")
    p.set_defaults(func=_train)

    p = sub.add_parser("predict", help="predict Male with a saved pipeline bundle",
                       description="Predict Male for image files and folders with a saved pipeline bundle. One CSV "
                       "row per image; an unreadable image gets an error row and the others are still predicted.",
                       epilog="exit status: 0 when at least one image was predicted; 2 on a usage error (a bad "
                       "option, bundle or output path; nothing is predicted); 3 when every input failed.")  # fmt: skip
    p.add_argument("bundle", type=Path, help="folder written by pipeline.save()")
    p.add_argument("images", nargs="+", type=Path, help="image files and/or folders")
    p.add_argument("--out", type=Path, help="CSV path (default: stdout)")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    p.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx"),
                   help="forward pass: auto (ONNX Runtime on CPU when installed and the bundle has model.onnx, "
                        "else PyTorch), torch, onnx")  # fmt: skip
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="PyTorch runtime only: auto (bf16 on CUDA, fp32 on CPU), fp32, bf16")  # fmt: skip
    p.add_argument("--explain", action="store_true", help="two-stage: print each image's top 3 attributes")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError
    from .data import CelebAError, ImageLoadError
    from .models import UnknownBackboneError, WeightsNotFoundError
    from .pipeline.bundle import BundleError
    from .pipeline.runtime import RuntimeUnavailableError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CelebAError, ConfigError, ImageLoadError, BundleError, WeightsNotFoundError, UnknownBackboneError,
            RuntimeUnavailableError, UsageError) as exc:  # fmt: skip
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
