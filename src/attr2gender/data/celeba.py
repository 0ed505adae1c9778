"""Reader for the standard CelebA layout, validating every file it reads.

Layout under a root (torchvision's ``CelebA`` uses the same names)::

    ROOT/
      img_align_celeba/000001.jpg ...
      list_attr_celeba.txt            count line, 40 names, then "<id> <40 x -1/1>"
      list_eval_partition.txt         "<id> <0|1|2>"  (train / val / test)
      identity_CelebA.txt             "<id> <identity>"
      list_bbox_celeba.txt            optional
      list_landmarks_align_celeba.txt optional

Works on a partial copy: only images present on disk are used, and one warning says how many
annotated images are missing.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CelebAFormatError, CelebANotFoundError
from .attributes import ATTRIBUTE_NAMES, STAGE_ONE_ATTRIBUTES, TARGET

IMAGE_DIR = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IDENTITY_FILE = "identity_CelebA.txt"
BBOX_FILE = "list_bbox_celeba.txt"
LANDMARKS_FILE = "list_landmarks_align_celeba.txt"

PARTITION_NAMES = {0: "train", 1: "val", 2: "test"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

EXPECTED_LAYOUT = f"""Expected the standard CelebA layout:
  ROOT/{IMAGE_DIR}/000001.jpg ...
  ROOT/{ATTR_FILE}        (required: count line, header of 40 names, rows of id + 40 values -1/1)
  ROOT/{PARTITION_FILE}   (optional: id and 0/1/2)
  ROOT/{IDENTITY_FILE}       (optional: id and identity number)
No CelebA at hand? `attr2gender data synth --out ROOT` writes a synthetic one in this layout."""


def _read_rows(path: Path, n_values: int, header_lines: int) -> tuple[list[str], pd.DataFrame]:
    """Read the lines after ``header_lines`` as ``id`` + ``n_values`` integer columns.

    Returns the header lines and the frame; every error names the file and its line number.
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        head = [f.readline() for _ in range(header_lines)]
    try:
        frame = pd.read_csv(
            path,
            sep=r"\s+",
            skiprows=header_lines,
            header=None,
            dtype={0: str},
            engine="c",
            names=range(n_values + 1),
            skip_blank_lines=True,
        )
    except pd.errors.ParserError as exc:
        # pandas says "Expected N fields in line L, saw M" with L counted from the first data line.
        import re

        m = re.search(r"line (\d+), saw (\d+)", str(exc))
        line = int(m.group(1)) if m else None  # pandas counts lines of the whole file
        saw = f"{int(m.group(2))} fields" if m else "a different number of fields"
        raise CelebAFormatError(
            path, line, f"expected {n_values + 1} fields (id + {n_values}), saw {saw}"
        ) from None
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame(columns=range(n_values + 1), dtype=str)
    except UnicodeDecodeError:
        raise CelebAFormatError(
            path, None, "is not UTF-8 text; CelebA's annotation files are plain text tables"
        ) from None
    short = frame[n_values].isna().to_numpy().nonzero()[0] if len(frame) else []
    if len(short):
        line = _line_of(path, header_lines, int(short[0]))
        n = int(frame.iloc[int(short[0])].notna().sum())
        raise CelebAFormatError(path, line, f"expected {n_values + 1} fields (id + {n_values}), saw {n}")
    dup = frame[0].duplicated().to_numpy().nonzero()[0]
    if len(dup):
        row = int(dup[0])
        raise CelebAFormatError(
            path, _line_of(path, header_lines, row), f"duplicate image id {frame.iloc[row, 0]!r}"
        )
    return head, frame


def _line_of(path: Path, header_lines: int, row: int) -> int:
    """1-based line number of data row ``row`` (blank lines are skipped by the parser)."""
    seen = -1
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, text in enumerate(f, start=1):
            if number <= header_lines or not text.strip():
                continue
            seen += 1
            if seen == row:
                return number
    return header_lines + row + 1


def _to_int(path: Path, frame: pd.DataFrame, header_lines: int, allowed: set[int] | None) -> np.ndarray:
    values = frame.iloc[:, 1:]
    if not all(pd.api.types.is_integer_dtype(t) for t in values.dtypes):  # slow path only when needed
        values = values.apply(pd.to_numeric, errors="coerce")
    bad = values.isna().to_numpy().copy()
    if allowed is not None:
        bad |= ~values.isin(list(allowed)).to_numpy()
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        want = f"one of {sorted(allowed)}" if allowed is not None else "an integer"
        raise CelebAFormatError(
            path,
            _line_of(path, header_lines, row),
            f"value {str(frame.iloc[row, col + 1])!r} in column {col + 2} for {frame.iloc[row, 0]} is not {want}",
        )
    return values.to_numpy(dtype=np.int64)


def read_attributes(path: str | os.PathLike) -> pd.DataFrame:
    """``list_attr_celeba.txt`` as a 0/1 ``int8`` frame indexed by image id, columns in file order."""
    path = _require_file(path)
    head, frame = _read_rows(path, len(ATTRIBUTE_NAMES), header_lines=2)
    try:
        count = int(head[0].strip())
    except ValueError:
        raise CelebAFormatError(
            path, 1, f"first line must be the image count, got {head[0].strip()!r}"
        ) from None
    names = head[1].split()
    if len(names) != len(ATTRIBUTE_NAMES):
        raise CelebAFormatError(
            path, 2, f"header must name {len(ATTRIBUTE_NAMES)} attributes, found {len(names)}"
        )
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        missing = sorted(set(ATTRIBUTE_NAMES) - set(names))
        raise CelebAFormatError(
            path,
            2,
            f"duplicate attribute name {', '.join(duplicated)}"
            + (f" (and {', '.join(missing)} missing)" if missing else ""),
        )
    if set(names) != set(ATTRIBUTE_NAMES):
        unknown = sorted(set(names) - set(ATTRIBUTE_NAMES))
        raise CelebAFormatError(path, 2, f"unknown attribute name(s) {unknown}; expected CelebA's 40 names")
    if count != len(frame):
        raise CelebAFormatError(path, 1, f"count line says {count} images but the file has {len(frame)} rows")
    values = _to_int(path, frame, 2, allowed={-1, 1})
    out = pd.DataFrame(
        (values > 0).astype(np.int8), index=pd.Index(frame[0].to_numpy(), name="image_id"), columns=names
    )
    return out


def _read_id_int(path: str | os.PathLike, allowed: set[int] | None, name: str) -> pd.Series:
    path = _require_file(path)
    _, frame = _read_rows(path, 1, header_lines=0)
    values = _to_int(path, frame, 0, allowed)[:, 0]
    return pd.Series(values, index=pd.Index(frame[0].to_numpy(), name="image_id"), name=name)


def read_partition(path: str | os.PathLike) -> pd.Series:
    """``list_eval_partition.txt``: 0 train, 1 val, 2 test, indexed by image id."""
    return _read_id_int(path, {0, 1, 2}, "partition").astype(np.int8)


def read_identity(path: str | os.PathLike) -> pd.Series:
    """``identity_CelebA.txt``: identity number per image id."""
    return _read_id_int(path, None, "identity")


def read_named_table(path: str | os.PathLike) -> pd.DataFrame:
    """Bbox or landmark file: count line, a header of names, rows of id + integers."""
    path = _require_file(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        f.readline()
        names = f.readline().split()
    if names and names[0] == "image_id":
        names = names[1:]
    _, frame = _read_rows(path, len(names), header_lines=2)
    values = _to_int(path, frame, 2, None)
    return pd.DataFrame(values, index=pd.Index(frame[0].to_numpy(), name="image_id"), columns=names)


def _require_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CelebANotFoundError(f"missing file {path}\n{EXPECTED_LAYOUT}")
    return path


CELEBA_ROWS = 202_599  # images annotated in CelebA's list_attr_celeba.txt
SYNTHETIC_MARKER = "SYNTHETIC"  # written by make_synthetic_celeba beside its README
# What each kind of root may be used for; a model trained on it inherits the terms (bundles record them).
LICENCES = {
    "celeba": "CelebA (Liu et al., ICCV 2015): non-commercial research only (the CelebA agreement); "
    "a model trained on it inherits that",
    "synthetic": "synthetic faces drawn by attr2gender (MIT licence): no real person",
    "custom": "not stated: a dataset in CelebA's layout; record its licence before sharing a model trained on it",
}


@dataclass
class CelebA:
    """A CelebA root, read and validated. ``table`` holds the images present on disk."""

    root: Path
    attributes: pd.DataFrame  # every annotated image, 0/1 int8, 40 columns in file order
    partition: pd.Series | None  # 0/1/2 per image id, None when the file is absent
    identity: pd.Series | None  # identity per image id, None when the file is absent
    present: pd.Index  # annotated image ids whose file is on disk, sorted
    unannotated: list[str] = field(default_factory=list)  # image files with no annotation row
    bbox: pd.DataFrame | None = None
    landmarks: pd.DataFrame | None = None

    @property
    def image_dir(self) -> Path:
        return self.root / IMAGE_DIR

    @property
    def kind(self) -> str:
        """``synthetic`` (written by make_synthetic_celeba: no real faces), ``celeba`` (CelebA's own
        annotation file, all 202,599 rows) or ``custom`` (another dataset in CelebA's layout). Recorded in
        every bundle so a model trained on synthetic faces says so wherever it is used."""
        readme = self.root / "README.md"
        if (self.root / SYNTHETIC_MARKER).is_file() or (
            readme.is_file() and readme.read_text(errors="replace").startswith("# Synthetic CelebA")
        ):
            return "synthetic"
        return "celeba" if len(self.attributes) == CELEBA_ROWS else "custom"

    @property
    def licence(self) -> str:
        return LICENCES[self.kind]

    def record(self, images: dict[str, int]) -> dict:
        """What a bundle says it learned from this root: name, root, licence and image counts."""
        return {
            "name": self.kind,
            "root": str(self.root),
            "layout": "celeba",
            "licence": self.licence,
            "images": dict(images),
        }

    @property
    def missing_count(self) -> int:
        """Annotated images whose file is not on disk."""
        return len(self.attributes) - len(self.present)

    def image_path(self, image_id: str) -> Path:
        return self.image_dir / image_id

    @property
    def table(self) -> pd.DataFrame:
        """Present images: 40 attributes, ``partition`` and ``identity`` (-1 where unknown)."""
        out = self.attributes.loc[self.present].copy()
        for name, series in (("partition", self.partition), ("identity", self.identity)):
            col = series.reindex(self.present) if series is not None else None
            out[name] = -1 if col is None else col.fillna(-1).astype(np.int64).to_numpy()
        return out

    def stage_one_targets(self, image_ids) -> np.ndarray:
        """(n, 39) float32 attribute targets, ``STAGE_ONE_ATTRIBUTES`` order."""
        return self.attributes.loc[list(image_ids), list(STAGE_ONE_ATTRIBUTES)].to_numpy(np.float32)

    def male(self, image_ids) -> np.ndarray:
        return self.attributes.loc[list(image_ids), TARGET].to_numpy(np.int64)


def load_celeba(root: str | os.PathLike, warn_missing: bool = True) -> CelebA:
    """Read and validate a CelebA root. Raises with the missing path and the expected layout."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CelebANotFoundError(f"CelebA root {root} does not exist or is not a folder.\n{EXPECTED_LAYOUT}")
    image_dir = root / IMAGE_DIR
    if not image_dir.is_dir():
        raise CelebANotFoundError(f"missing image folder {image_dir}\n{EXPECTED_LAYOUT}")
    attributes = read_attributes(root / ATTR_FILE)
    partition = read_partition(root / PARTITION_FILE) if (root / PARTITION_FILE).is_file() else None
    identity = read_identity(root / IDENTITY_FILE) if (root / IDENTITY_FILE).is_file() else None
    bbox = read_named_table(root / BBOX_FILE) if (root / BBOX_FILE).is_file() else None
    landmarks = read_named_table(root / LANDMARKS_FILE) if (root / LANDMARKS_FILE).is_file() else None

    on_disk = {
        e.name for e in os.scandir(image_dir) if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)
    }
    annotated = attributes.index
    present = annotated[annotated.isin(list(on_disk))].sort_values()
    unannotated = sorted(on_disk.difference(annotated))
    data = CelebA(root, attributes, partition, identity, present, unannotated, bbox, landmarks)
    if warn_missing and data.missing_count:
        warnings.warn(
            f"{data.missing_count:,} of {len(attributes):,} annotated images are not in {image_dir}; "
            f"using the {len(present):,} present.",
            stacklevel=2,
        )
    return data


def export_target_table(celeba: CelebA, out: str | os.PathLike) -> Path:
    """The source study's ``output_list_attrib`` table: columns ``id`` and ``Male`` (0/1), present images."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(
        {"id": celeba.present, TARGET: celeba.attributes.loc[celeba.present, TARGET].to_numpy()}
    )
    table.to_csv(out, index=False)
    return out
