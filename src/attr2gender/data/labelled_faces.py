"""A folder of gender-labelled face photos: the second training source beside CelebA.

CelebA is young celebrities with makeup and studio light; a head fitted on it alone calls most women over 60
"male" on everyday photos. A folder of ordinary photos of every age and ethnicity, labelled Male or not,
teaches what CelebA cannot. Two layouts are read, the first that is there:

    ROOT/labels.csv      path,male (required), age, race, group (optional); paths relative to ROOT
    ROOT/**/AGE_GENDER_RACE_DATETIME.jpg[.chip.jpg]
                         UTKFace's own file names (gender 0 = male, race 0-4), as UTKFace ships them

``male`` is 1/0 or Male/Female. ``group``: photos of one person share a group, so a split by group keeps a
person on one side (:func:`attr2gender.data.splits.group_split`); without it every photo is its own group.
A row that cannot be used (no such file, a label that is not one, an age that is not a number of years,
a path given twice or outside ROOT) is left out with one line in :attr:`LabelledFaces.problems` saying why;
the others are read.

The licence travels with the data into every bundle trained on it: ROOT/LICENSE (or LICENCE, .txt, .md) when
there is one, UTKFace's terms when the photos are UTKFace's, else "not stated".
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import LabelledFacesError
from .celeba import IMAGE_SUFFIXES
from .groups import age_bands
from .splits import Splits, group_split

LABELS_FILE = "labels.csv"
REQUIRED_COLUMNS = ("path", "male")
OPTIONAL_COLUMNS = ("age", "race", "group")
MAX_AGE = 130
# UTKFace's names: AGE_GENDER_RACE_DATETIME (gender 0 male, 1 female; race 0 White, 1 Black, 2 Asian,
# 3 Indian, 4 Others), then .jpg, or .jpg.chip.jpg for its aligned and cropped faces.
UTKFACE_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_\d+")
UTKFACE_RACES = ("White", "Black", "Asian", "Indian", "Others")
UTKFACE_LICENCE = (
    "UTKFace (Zhang, Song & Qi, CVPR 2017): non-commercial research only; a model trained on it inherits that"
)
NO_LICENCE = (
    "not stated: put the photos' licence in LICENSE beside labels.csv before sharing a model trained on them"
)
LICENCE_FILES = ("LICENSE", "LICENCE", "LICENSE.txt", "LICENCE.txt", "LICENSE.md", "LICENCE.md")
LABEL_WORDS = {"1": 1, "0": 0, "male": 1, "female": 0, "m": 1, "f": 0}
SHOWN_PROBLEMS = 20  # lines of a warning; all of them stay in LabelledFaces.problems


def parse_male_label(value) -> int:
    """1 / 0, or Male / Female (any case); anything else raises ValueError naming the choices."""
    if isinstance(value, bool):
        raise ValueError(f"label {value!r}: use 1/0 or Male/Female")
    if isinstance(value, int | np.integer) and int(value) in (0, 1):
        return int(value)
    if isinstance(value, float | np.floating) and float(value) in (0.0, 1.0):
        return int(value)
    key = str(value).strip().lower()
    if key in LABEL_WORDS:
        return LABEL_WORDS[key]
    if key in ("1.0", "0.0"):  # a number written by a spreadsheet or pandas: read as the API reads 1.0
        return int(float(key))
    raise ValueError(f"label {value!r} is not 1/0 or Male/Female")


@dataclass
class LabelledFaces:
    """A folder of labelled face photos, read and checked. ``table`` is indexed by each photo's path
    relative to ``root`` (POSIX separators: the same id on every machine) with columns ``male`` (0/1),
    ``age`` (years, NaN unknown), ``race`` ("" unknown) and ``group`` (a string)."""

    root: Path
    table: pd.DataFrame
    name: str  # "utkface" for UTKFace's photos, else the folder's name
    layout: str  # "labels.csv" or "utkface names"
    licence: str
    problems: list[str] = field(default_factory=list)  # one line per row left out
    has_groups: bool = True  # False: no group column, every photo is its own group

    def image_path(self, image_id: str) -> Path:
        return self.root / image_id

    def male(self, ids) -> np.ndarray:
        return self.table.loc[list(ids), "male"].to_numpy(np.int64)

    def age(self, ids) -> np.ndarray:
        return self.table.loc[list(ids), "age"].to_numpy(np.float64)

    def race(self, ids) -> np.ndarray:
        return self.table.loc[list(ids), "race"].to_numpy(dtype=object)

    def record(self, images: dict[str, int] | None = None) -> dict:
        """What a bundle says it learned from: name, root, layout, licence and image counts."""
        return {
            "name": self.name,
            "root": str(self.root),
            "layout": self.layout,
            "licence": self.licence,
            "images": dict(images) if images is not None else {"all": len(self.table)},
        }


def _licence(root: Path, utkface: bool) -> str:
    for name in LICENCE_FILES:
        path = root / name
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            first = next((line.strip() for line in text.splitlines() if line.strip()), "")
            if first:
                return first[:300]
    return UTKFACE_LICENCE if utkface else NO_LICENCE


def _images_under(root: Path) -> list[str]:
    """Every image file under ``root``, as POSIX paths relative to it, sorted."""
    found, seen = [], set()
    # Linked folders are followed (a folder of links to photos kept elsewhere), each real folder once.
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        base = Path(folder).relative_to(root)
        for name in files:
            if name.lower().endswith(IMAGE_SUFFIXES):
                found.append((base / name).as_posix())
    return sorted(found)


def _age(text: str) -> float:
    """Years as a number from 0 to MAX_AGE ("" is unknown: NaN); ValueError otherwise."""
    text = text.strip()
    if not text:
        return float("nan")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"age {text!r} is not a number of years") from None
    if not (np.isfinite(value) and 0 <= value <= MAX_AGE):
        raise ValueError(f"age {text!r} is not from 0 to {MAX_AGE} years")
    return value


def _from_utkface_names(root: Path, problems: list[str]) -> pd.DataFrame:
    rows = []
    for image_id in _images_under(root):
        m = UTKFACE_NAME.match(Path(image_id).name)
        if m is None:
            problems.append(
                f"{image_id}: not a UTKFace name (AGE_GENDER_RACE_DATETIME.jpg) and not in {LABELS_FILE}"
            )
            continue
        age = float(m.group(1))
        if age > MAX_AGE:
            problems.append(f"{image_id}: age {m.group(1)} is not from 0 to {MAX_AGE} years")
            continue
        rows.append((image_id, 1 - int(m.group(2)), age, UTKFACE_RACES[int(m.group(3))], image_id))
    return pd.DataFrame(rows, columns=["id", "male", "age", "race", "group"])


def _from_labels_csv(root: Path, path: Path, problems: list[str]) -> tuple[pd.DataFrame, bool]:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError:
        raise LabelledFacesError(
            f"{path}: is not UTF-8 text; save it as UTF-8 CSV (path,male[,age,race,group])"
        ) from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise LabelledFacesError(
            f"{path}: cannot read it as CSV ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            "give a CSV with columns path,male[,age,race,group]"
        ) from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise LabelledFacesError(
            f"{path} has no {' or '.join(missing)} column (columns: {', '.join(frame.columns) or 'none'}); "
            "give path (relative to the folder) and male (1/0 or Male/Female)"
        )
    on_disk = set(_images_under(root))
    has_groups = "group" in frame.columns
    rows, seen = [], {}
    for line, record in enumerate(frame.to_dict("records"), start=2):  # line 1 is the header
        name = record["path"].strip()
        where = f"{path.name} line {line} ({name!r})"
        if not name:
            problems.append(f"{path.name} line {line}: empty path")
            continue
        if "\x00" in name or Path(name).is_absolute():
            problems.append(f"{where}: give the path relative to {root}")
            continue
        image_id = Path(os.path.normpath(name)).as_posix()
        if image_id == ".." or image_id.startswith("../"):  # lexically: a symlinked photo is fine
            problems.append(f"{where}: points outside {root}")
            continue
        if image_id in seen:
            problems.append(f"{where}: the same photo as line {seen[image_id]}; kept the first")
            continue
        if image_id not in on_disk:
            problems.append(f"{where}: no such image under {root}")
            continue
        try:
            male = parse_male_label(record["male"])
            age = _age(record.get("age", ""))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        group = record.get("group", "").strip() if has_groups else image_id
        if has_groups and not group:
            problems.append(f"{where}: empty group (photos of one person share a group; give each one)")
            continue
        race = record.get("race", "").strip()
        seen[image_id] = line
        rows.append((image_id, male, age, race, group))
    return pd.DataFrame(rows, columns=["id", "male", "age", "race", "group"]), has_groups


def load_labelled_faces(root: str | os.PathLike, warn: bool = True) -> LabelledFaces:
    """Read a folder of labelled face photos (``labels.csv``, else UTKFace's file names). Raises
    :class:`~attr2gender.errors.LabelledFacesError` when the folder cannot serve (no folder, neither layout,
    no usable row); rows left out are listed in ``problems`` and, with ``warn``, in one warning."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise LabelledFacesError(
            f"labelled faces folder {root} does not exist or is not a folder; give a folder with {LABELS_FILE} "
            "(path,male[,age,race,group]) or UTKFace's photos under their own names"
        )
    problems: list[str] = []
    csv = root / LABELS_FILE
    if csv.is_file():
        frame, has_groups = _from_labels_csv(root, csv, problems)
        layout = LABELS_FILE
    else:
        frame, has_groups = _from_utkface_names(root, problems), False
        layout = "utkface names"
        if frame.empty and not problems:
            raise LabelledFacesError(
                f"{root} holds no {LABELS_FILE} and no images; give a folder with {LABELS_FILE} "
                "(path,male[,age,race,group]) or UTKFace's photos under their own names"
            )
    if frame.empty:
        raise LabelledFacesError(
            f"{root}: no usable labelled photo ({len(problems)} rows left out; first: {problems[0]})"
            if problems
            else f"{root}/{LABELS_FILE} holds no rows; give one row per photo: path,male"
        )
    names = frame["id"].map(lambda p: Path(p).name)
    utkface = bool(names.str.match(UTKFACE_NAME).mean() >= 0.9)
    if utkface and layout == LABELS_FILE:
        # UTKFace's race codes, named as UTKFace names them; other values are kept as given.
        codes = {str(k): name for k, name in enumerate(UTKFACE_RACES)}
        frame["race"] = frame["race"].map(lambda r: codes.get(r, r))
    table = frame.set_index("id")
    table["male"] = table["male"].astype(np.int8)
    table["age"] = table["age"].astype(np.float64)
    table["group"] = table["group"].astype(str)
    faces = LabelledFaces(
        root=root,
        table=table,
        name="utkface" if utkface else root.name,
        layout=layout,
        licence=_licence(root, utkface),
        problems=problems,
        has_groups=has_groups,
    )
    if warn and problems:
        shown = problems[:SHOWN_PROBLEMS]
        more = len(problems) - len(shown)
        warnings.warn(
            f"{root}: {len(problems)} of {len(problems) + len(table)} photos left out:\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more (LabelledFaces.problems lists them all)" if more else ""),
            stacklevel=2,
        )
    return faces


AUTO = "auto"
AUTO_FOLDER = "utkface"  # the folder "auto" looks for: beside the CelebA root, then under ./data


def find_labelled_faces(setting: str, data_root: str | os.PathLike | None) -> tuple[Path | None, str]:
    """The folder ``RunConfig.labelled_faces`` names, and a one-line note when ``auto`` found none.

    ``""``: none. ``auto``: ``<data_root>/../utkface``, else ``./data/utkface``. A path: that folder, which
    must exist (a typo must not quietly train on CelebA alone)."""
    setting = (setting or "").strip()
    if not setting:
        return None, ""
    if setting != AUTO:
        path = Path(setting).expanduser()
        if not path.is_dir():
            raise LabelledFacesError(
                f"labelled_faces={setting}: no such folder; give a folder with {LABELS_FILE} or UTKFace's "
                "photos, labelled_faces=auto to use one beside the CelebA root when there, or labelled_faces="
            )
        return path.resolve(), ""
    candidates = ([Path(data_root).expanduser().resolve().parent / AUTO_FOLDER] if data_root else []) + [
        Path("data") / AUTO_FOLDER
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve(), ""
    return None, (
        f"labelled_faces=auto: no {AUTO_FOLDER}/ beside the CelebA root or in ./data, so the Male head learns "
        "from CelebA alone (weak on older women and everyday photos); set labelled_faces=FOLDER to add one"
    )


def split_labelled_faces(faces: LabelledFaces, fractions, seed: int = 0) -> Splits:
    """Train/val/test ids of ``faces`` by :attr:`~LabelledFaces.table`'s ``group`` (no person on two sides),
    each gender x age band keeping its share on every side."""
    table = faces.table
    strata = table["male"].astype(str).to_numpy() + "|" + age_bands(table["age"].to_numpy()).astype(str)
    return group_split(table["group"].to_numpy(), strata, tuple(fractions), seed=seed, ids=table.index)
