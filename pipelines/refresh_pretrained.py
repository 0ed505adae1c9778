"""Retrain the pretrained face bundles that ship inside the package, from the data beside this checkout, and
write them with their record (data, licences, commit, command, numbers with CIs), their pinned SHA-256 and
the README's numbers, together:

    python pipelines/refresh_pretrained.py           # about 5 minutes on 2 cores from an empty feature cache
    python pipelines/refresh_pretrained.py --check   # retrain into a temporary folder and compare the heads

Run it on a clean checkout and commit what it writes (src/attr2gender/pretrained/, the pins, README.md): the
record names the commit it trained at. ``--check`` changes nothing and exits 1 when a retrain's
coefficients differ from the shipped ones beyond the tolerances.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path("..") / "shared"  # read from the checkout (the script runs there): the record says ../shared


def main(argv=None) -> int:
    from attr2gender.experiments.pretrained_refresh import (
        check_not_training_on,
        check_retrain,
        refresh_pretrained,
    )

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-root", type=Path, default=SHARED / "celeba", help="CelebA root (default ../shared/celeba)"
    )
    parser.add_argument(
        "--labelled-faces",
        type=Path,
        default=SHARED / "utkface",
        help="second source (default ../shared/utkface)",
    )
    parser.add_argument(
        "--wild-dev",
        type=Path,
        default=SHARED / "wild_dev",
        help="validation photos (default ../shared/wild_dev)",
    )
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache") / "attr2gender")
    parser.add_argument("--check", action="store_true", help="retrain and compare with the shipped heads")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    for name in ("data_root", "labelled_faces", "wild_dev", "cache_dir"):
        if getattr(args, name) != parser.get_default(name):  # a path the user typed: from where they are
            setattr(args, name, getattr(args, name).resolve())
    os.chdir(REPO)  # the defaults are beside the checkout
    for flag, path in (("--data-root", args.data_root), ("--labelled-faces", args.labelled_faces)):
        if not path.is_dir():
            parser.error(f"{flag} {path}: no such folder; the shipped models learn from CelebA and UTKFace")
    try:
        check_not_training_on(args.wild_dev, data_root=args.data_root, labelled_faces=args.labelled_faces)
    except ValueError as exc:
        parser.error(str(exc))
    if args.check:
        problems = check_retrain(args.data_root, args.labelled_faces, args.cache_dir, progress=not args.quiet)
        for line in problems:
            print(f"differs: {line}", file=sys.stderr)
        print(
            "retrain check: " + ("the same coefficients" if not problems else f"{len(problems)} differences")
        )
        return 1 if problems else 0
    wild = args.wild_dev if (args.wild_dev / "labels.csv").is_file() else None
    if wild is None:
        print(f"no wild_dev at {args.wild_dev}: its numbers are left out of the record", file=sys.stderr)
    record = refresh_pretrained(
        args.data_root,
        args.labelled_faces,
        wild,
        args.cache_dir,
        readme=REPO / "README.md",
        repo=REPO,
        progress=not args.quiet,
    )
    if record["dirty"]:
        print("warning: the checkout had uncommitted changes; the record says so", file=sys.stderr)
    print(
        "wrote src/attr2gender/pretrained/, src/attr2gender/pipeline/pretrained_pins.py and README.md's numbers"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
