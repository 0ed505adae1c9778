"""Retrain the pretrained bundles that ship inside the package, measure them, and write them together with
their record, their pins and the README's numbers: ``python pipelines/refresh_pretrained.py``.

Both routes are trained by the project's own trainer with the ``face`` preset on CelebA (identity split
60/10/30, seed 0) plus the labelled faces (UTKFace, split by group), exactly as ``attr2gender run
two-stage --data-root ../shared/celeba`` trains them. Each is then measured where nothing was chosen by
looking at it twice:

- CelebA's test people (30 %, never seen): accuracy with a 95 % bootstrap CI, and for the two-stage route
  its concept quality (mean AUC of the 39 attributes);
- ``wild_dev`` (validation only, never trained on), per source, each photo's face found and aligned as
  ``predict`` does;
- the labelled faces' validation side: each gender's weakest age band from 10 up, with its CI and count.

A fixed check sample (CelebA test crops and wild_dev photos, a few dozen) is stored with each photo's
P(Male): the test suite predicts it again with the shipped files and compares.

``--check`` retrains into a temporary folder and compares the heads with the shipped ones
(:func:`head_differences`), changing nothing: the same data must give the same coefficients.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import load_file

from .._version import __version__
from ..data.attributes import STAGE_ONE_ATTRIBUTES
from ..metrics import accuracy_ci, concept_quality, worst_cell
from ..pipeline.bundle import sha256_file
from ..pipeline.pretrained import (
    PRETRAINED_DIR,
    PRETRAINED_ROUTES,
    RECORD_FILE,
    RECORD_FORMAT,
    USE_TERMS,
    PretrainedRecord,
    percent_ci,
)
from ..tabular import load_stage_two

REFRESH_COMMAND = "python pipelines/refresh_pretrained.py"
PRESET = "face"
SEED = 0
CHECK_CELEBA = 16  # CelebA test crops in the check sample
CHECK_WILD = 8  # wild_dev photos per source in it (a face found and aligned each: the slow part)
PINS_FILE = Path(__file__).resolve().parents[1] / "pipeline" / "pretrained_pins.py"
README_BEGIN = "<!-- pretrained numbers: written by python pipelines/refresh_pretrained.py -->"
README_END = "<!-- end of pretrained numbers -->"
# Coefficients of a retrain agree with the shipped ones to this much of each tensor's largest magnitude,
# and the stage twos' P(Male) on the same probe inputs to this much (threads may sum in another order).
RELATIVE_TOLERANCE = 1e-3
PROBABILITY_TOLERANCE = 2e-3
WIDTH = 112  # the README's prose line length


def wild_dev_labels(root: Path) -> pd.DataFrame:
    """wild_dev's ``labels.csv`` (``path``, ``male``, ``source``) with each photo's ``file``."""
    labels = pd.read_csv(root / "labels.csv")
    missing = {"path", "male", "source"} - set(labels.columns)
    if missing:
        raise ValueError(f"{root / 'labels.csv'} lacks the column(s) {sorted(missing)}")
    labels["file"] = [str(root / p) for p in labels["path"]]
    return labels


def git_commit(repo: Path) -> tuple[str, bool]:
    """(HEAD's commit, whether tracked files differ from it); ("unknown", True) outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True
    return commit, bool(status)


def check_not_training_on(wild_dev: Path | None, **sources) -> None:
    """ValueError when a training source (``data_root=...``, ``labelled_faces=...``) is wild_dev or inside it:
    wild_dev is for validation and selection only, and the record's numbers on it must stay held out."""
    if wild_dev is None:
        return
    held_out = Path(wild_dev).resolve()
    for name, root in sources.items():
        if Path(root).resolve().is_relative_to(held_out):
            raise ValueError(
                f"{name}={root} is wild_dev ({held_out}), which is for validation only: never trained on; "
                "the shipped models learn from CelebA and UTKFace"
            )


def train_route(route: str, data_root, labelled_faces, cache_dir, output_dir, seed: int, progress: bool):
    """One route, as ``attr2gender run`` trains it with the face preset: (pipeline, report)."""
    from ..training import train_direct, train_two_stage  # lazy: Lightning only when training

    trainer = train_two_stage if route == "two_stage" else train_direct
    return trainer(
        PRESET,
        data_root=str(data_root),
        labelled_faces=str(labelled_faces),
        cache_dir=str(cache_dir),
        output_dir=str(output_dir),
        run_name=f"pretrained-{route}",
        tracking="none",
        seed=seed,
        progress=progress,
    )


def _entry(male, prob, seed: int) -> dict:
    point, low, high = accuracy_ci(np.asarray(male), np.asarray(prob, dtype=float), seed=seed)
    return {"accuracy": point, "low": low, "high": high, "n": int(len(male))}


def weakest_cells(report) -> dict:
    """Each gender's weakest age band from 10 up on the labelled faces' validation side (where choices are
    made), with the side's accuracy: ``{"source", "all", "women": {...}, "men": {...}}``; ``{}`` without it."""
    side = report.labelled.get("val")
    if side is None:
        return {}
    out = {"source": side.source, "all": _entry(side.male, side.male_probability, side.seed)}
    for gender in ("women", "men"):
        out[gender] = worst_cell(side.cells, "age_band", skip=("0-9",), genders=(gender,))
    return out


def measure(pipe, report, wild: pd.DataFrame | None, seed: int) -> dict:
    """A trained route's numbers (see the module docstring) and its training data."""
    out = {
        "training_data": [
            {k: d[k] for k in ("name", "licence", "images", "learnt") if k in d} for d in pipe.training_data
        ],
        "celeba_test": _entry(report.test_male, report.test_male_probability, seed),
        "labelled_val": weakest_cells(report),
    }
    if report.test_attribute_probabilities is not None:
        quality = concept_quality(
            report.test_attributes, report.test_attribute_probabilities, STAGE_ONE_ATTRIBUTES
        )
        out["concepts"] = {
            "mean_auc": quality["concept_mean_auc"],
            "mean_balanced_accuracy": quality["concept_mean_balanced_accuracy"],
            "n": int(len(report.test_attributes)),
        }
    if wild is not None:
        frame = pipe.predict(list(wild["file"]), progress=False)
        prob = frame["male_probability"].to_numpy(dtype=float)
        found = ~np.isnan(prob)
        male = wild["male"].to_numpy()
        out["wild_dev"] = {"all": _entry(male[found], prob[found], seed), "no_face": int((~found).sum())}
        for source in sorted(wild["source"].unique()):
            mask = (wild["source"] == source).to_numpy() & found
            out["wild_dev"][source] = _entry(male[mask], prob[mask], seed)
    return out


def check_sample(report, wild: pd.DataFrame | None, wild_root: Path | None, seed: int):
    """The fixed photos the tests predict again: CelebA test crops (read as the crops they are,
    ``align="crops"``) and wild_dev photos per source (``align="auto"``), paths relative to their roots."""
    rng = np.random.default_rng(seed)
    test_ids = sorted(report.test_ids)
    picked = sorted(rng.choice(len(test_ids), size=min(CHECK_CELEBA, len(test_ids)), replace=False))
    male = dict(zip(report.test_ids, report.test_male))
    sample = [
        {"set": "celeba", "path": f"img_align_celeba/{test_ids[i]}", "male": int(male[test_ids[i]])}
        for i in picked
    ]
    if wild is not None and wild_root is not None:
        for source in sorted(wild["source"].unique()):
            rows = wild[wild["source"] == source]
            for i in sorted(rng.choice(len(rows), size=min(CHECK_WILD, len(rows)), replace=False)):
                sample.append(
                    {"set": "wild_dev", "path": rows["path"].iloc[i], "male": int(rows["male"].iloc[i])}
                )
    return sample


def predict_check_sample(pipe, sample: list[dict], roots: dict[str, Path]) -> np.ndarray:
    """P(Male) of each check photo: CelebA crops read as crops, wild_dev photos found and aligned."""
    prob = np.full(len(sample), np.nan)
    for name, align in (("celeba", "crops"), ("wild_dev", "auto")):
        idx = [i for i, s in enumerate(sample) if s["set"] == name]
        if idx:
            files = [str(roots[name] / sample[i]["path"]) for i in idx]
            prob[idx] = pipe.predict(files, align=align, progress=False)["male_probability"].to_numpy(float)
    return prob


def readme_block(record: dict) -> str:
    """The README's lines on the shipped models, from ``record``: what they learned from, on what terms,
    and how right they are, every number with its CI and count."""
    two, direct = (PretrainedRecord(k, record) for k in PRETRAINED_ROUTES)
    lines = [
        README_BEGIN,
        *textwrap.wrap(
            f"The shipped models (commit `{two.commit}`, `{record['command']}`, {record['date']}) learned from "
            f"(were fitted on, or chose settings on) {two.data_text()} (two-stage) and {direct.data_text()} "
            f"(direct), {USE_TERMS}: use them for research, not in a product. Measured on photos no "
            "coefficient was fitted on:",
            WIDTH,
        ),
        "",
        "| | two-stage (default) | direct (`--pretrained direct`) |",
        "|---|---|---|",
    ]

    def row(label, get):
        values = []
        for r in (two, direct):
            entry = get(r.numbers)
            values.append(percent_ci(entry) if entry else "not measured")
        lines.append(f"| {label} | {values[0]} | {values[1]} |")

    row("CelebA, 30 % of the people held out", lambda n: n["celeba_test"])
    row("wild_dev, real photos from outside CelebA", lambda n: n.get("wild_dev", {}).get("all"))
    for source, label in (("lfw", "wild_dev LFW news photos"), ("utkface", "wild_dev UTKFace web photos")):
        row(label, lambda n, s=source: n.get("wild_dev", {}).get(s))
    for gender, said in (("women", "called women"), ("men", "called men")):
        cells = []
        for r in (two, direct):
            w = r.numbers.get("labelled_val", {}).get(gender)
            cells.append(
                f"{w['cell']}: {100 * w['recall']:.0f} % [{100 * w['low']:.0f}, {100 * w['high']:.0f}] "
                f"(n={w['n']})"
                if w and w.get("cell")
                else "not measured"
            )
        lines.append(f"| weakest age band, {gender} {said} (UTKFace validation) | {cells[0]} | {cells[1]} |")
    concepts = two.numbers.get("concepts")
    if concepts:
        lines += [
            "",
            *textwrap.wrap(
                f"The two-stage model's 39 attributes are still concepts: mean AUC {concepts['mean_auc']:.3f} on "
                f"the CelebA test people (n={concepts['n']:,}). 95 % bootstrap CIs. CelebA's held-out people "
                "are a test side; wild_dev and UTKFace's validation side are where settings were chosen (the "
                "direct model's kept epoch among them), so read those as validation numbers.",
                WIDTH,
            ),
        ]
    lines.append(README_END)
    return "\n".join(lines)


def write_readme(readme: Path, record: dict) -> None:
    text = readme.read_text()
    pattern = re.compile(re.escape(README_BEGIN) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{readme} has no block between {README_BEGIN!r} and {README_END!r}")
    readme.write_text(pattern.sub(lambda _: readme_block(record), text, count=1))


def write_pins(out: Path, pins_file: Path) -> dict[str, str]:
    pins = {
        name: sha256_file(out / name)
        for name in [f"{k}/pipeline.json" for k in PRETRAINED_ROUTES] + [RECORD_FILE]
    }
    body = "".join(f'    "{k}": "{v}",\n' for k, v in pins.items())
    pins_file.write_text(
        '"""Written by ``python pipelines/refresh_pretrained.py``; do not edit. The SHA-256 of each shipped file the\n'
        'pretrained loader reads first: each bundle\'s ``pipeline.json`` (which hashes the rest) and ``record.json``."""\n'
        f"\nPINNED_SHA256: dict[str, str] = {{\n{body}}}\n"
    )
    return pins


def refresh_pretrained(
    data_root: Path,
    labelled_faces: Path,
    wild_dev: Path | None,
    cache_dir: Path,
    out: Path = PRETRAINED_DIR,
    readme: Path | None = None,
    pins_file: Path = PINS_FILE,
    repo: Path | None = None,
    seed: int = SEED,
    progress: bool = True,
) -> dict:
    """Train both routes, save them as heads-only bundles under ``out``, measure them, and write
    ``record.json``, the pins and (``readme``) the README's block. Returns the record."""
    check_not_training_on(wild_dev, data_root=data_root, labelled_faces=labelled_faces)
    commit, dirty = git_commit(repo or Path.cwd())
    wild = wild_dev_labels(wild_dev) if wild_dev is not None else None
    record = {
        "format": RECORD_FORMAT,
        "commit": commit,
        "dirty": dirty,
        "command": REFRESH_COMMAND,
        "date": dt.date.today().isoformat(),
        "library_version": __version__,
        "preset": PRESET,
        "seed": seed,
        "use": USE_TERMS,
        "bundles": {},
    }
    with tempfile.TemporaryDirectory(prefix="attr2gender-pretrained-") as tmp:
        staged = Path(tmp) / "pretrained"
        for route in PRETRAINED_ROUTES:
            print(f"== pretrained {route}: training (face preset, seed {seed})", flush=True)
            pipe, report = train_route(
                route, data_root, labelled_faces, cache_dir, Path(tmp) / "runs", seed, progress
            )
            pipe.save(staged / route, onnx=False, backbone="reference")
            print(f"== pretrained {route}: measuring", flush=True)
            numbers = measure(pipe, report, wild, seed)
            sample = check_sample(report, wild, wild_dev, seed)
            prob = predict_check_sample(pipe, sample, {"celeba": Path(data_root), "wild_dev": wild_dev})
            numbers["check"] = [s | {"p": round(float(p), 6)} for s, p in zip(sample, prob)]
            record["bundles"][route] = numbers
        (staged / RECORD_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(staged, out)
    write_pins(out, pins_file)
    if readme is not None:
        write_readme(readme, record)
    return record


def head_differences(shipped: Path, retrained: Path, gaps: dict | None = None) -> list[str]:
    """What differs between two bundles' heads beyond the tolerances (empty when they agree): every tensor
    of ``model.safetensors``, the threshold and temperature, and stage two's P(Male) on 2,000 seeded probe
    inputs (a LightGBM's trees are compared by what they compute). ``gaps``, when given, receives the largest
    gap of each route (``coefficients``: relative; ``stage_two_probability``: absolute)."""
    gaps = {} if gaps is None else gaps
    gaps.update(coefficients=0.0, stage_two_probability=0.0)
    problems = []
    for route in PRETRAINED_ROUTES:
        a, b = shipped / route, retrained / route
        ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
        if set(ta) != set(tb):
            problems.append(f"{route}: tensors differ in name: {sorted(set(ta) ^ set(tb))[:4]}")
            continue
        for key in sorted(ta):
            scale = max(float(np.abs(ta[key]).max()), 1e-12)
            gap = float(np.abs(ta[key] - tb[key]).max()) / scale if ta[key].shape == tb[key].shape else np.inf
            gaps["coefficients"] = max(gaps["coefficients"], gap)
            if ta[key].shape != tb[key].shape or gap > RELATIVE_TOLERANCE:
                problems.append(f"{route}: {key} differs by {gap:.2e} of its largest value")
        ma, mb = (json.loads((d / "pipeline.json").read_text()) for d in (a, b))
        for key in ("threshold", "temperature"):
            if abs(float(ma.get(key, 1.0)) - float(mb.get(key, 1.0))) > 1e-3:
                problems.append(f"{route}: {key} {ma.get(key)} vs {mb.get(key)}")
        if route == "two_stage":
            names = ma["attribute_names"]
            probe = pd.DataFrame(np.random.default_rng(0).uniform(size=(2000, len(names))), columns=names)
            pa = load_stage_two(a).predict_proba(probe)[:, 1]
            pb = load_stage_two(b).predict_proba(probe)[:, 1]
            gap = float(np.abs(pa - pb).max())
            gaps["stage_two_probability"] = gap
            if gap > PROBABILITY_TOLERANCE:
                problems.append(
                    f"{route}: stage two's P(Male) differs by up to {gap:.4f} on the probe inputs"
                )
    return problems


def check_retrain(
    data_root,
    labelled_faces,
    cache_dir,
    shipped: Path = PRETRAINED_DIR,
    seed: int = SEED,
    progress: bool = True,
) -> list[str]:
    """Retrain both routes on the same data into a temporary folder and compare their heads with the
    shipped ones; nothing shipped changes. The differences (empty: the same coefficients)."""
    with tempfile.TemporaryDirectory(prefix="attr2gender-retrain-") as tmp:
        for route in PRETRAINED_ROUTES:
            print(f"== retraining {route} to compare with the shipped heads", flush=True)
            pipe, _ = train_route(
                route, data_root, labelled_faces, cache_dir, Path(tmp) / "runs", seed, progress
            )
            pipe.save(Path(tmp) / "retrained" / route, onnx=False, backbone="reference")
        gaps: dict = {}
        problems = head_differences(shipped, Path(tmp) / "retrained", gaps)
        print(
            f"largest gaps: coefficients {gaps['coefficients']:.1e} of a tensor's largest value (tolerance "
            f"{RELATIVE_TOLERANCE:.0e}), stage two's P(Male) {gaps['stage_two_probability']:.1e} (tolerance "
            f"{PROBABILITY_TOLERANCE:.0e})",
            flush=True,
        )
        return problems
