"""What the demo page computes, without Gradio: read a photo's faces with one or two bundles, explain a face,
apply a person's concept edits, describe a bundle, and score a folder. ``page.py`` only lays it out.

Every function returns what the page shows or a :class:`PageMessage` saying what went wrong in words; none
lets an exception reach the browser (Gradio would show "Error" and the server's log a stack trace).
"""

from __future__ import annotations

import html
import io
import math
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from attr2gender.constants import DEMO_MAX_PIXELS
from attr2gender.data.attributes import STAGE_ONE_ATTRIBUTES
from attr2gender.data.images import clean_message, describe, load_image, shrunk
from attr2gender.pipeline import load_pipeline, load_pretrained
from attr2gender.pipeline.concept_quality import NOT_CONCEPTS
from attr2gender.pipeline.inputs import expand_images
from attr2gender.pipeline.loading import synthetic_warning
from attr2gender.pipeline.two_stage import Explanation
from attr2gender.plots.explanation import plot_explanation_waterfall

ATTRIBUTES = list(STAGE_ONE_ATTRIBUTES)
MAX_FOLDER_IMAGES = 2_000  # the folder tab scores at most this many per click (about a minute on 2 cores)
SHOWN_SIDE = 640  # the photo is shown (with its boxes) at most this many pixels on its longest side
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"  # synthetic faces: no real person, no licence


class PageMessage(Exception):
    """Something the page says instead of an answer (bad input, no face): one sentence, no stack trace."""


@dataclass
class DemoModel:
    """One bundle on the page: the loaded pipeline, its name there, and what loading it warned."""

    name: str
    pipeline: object
    warnings: list[str] = field(default_factory=list)

    @property
    def two_stage(self) -> bool:
        return hasattr(self.pipeline, "attribute_contributions")

    @property
    def concepts_unreliable(self) -> bool:
        record = getattr(self.pipeline, "concepts", None)
        return record is not None and not record.reliable

    def about(self) -> str:
        """Markdown: what the bundle is, what it learned from (sources, counts, licences), how reliable its
        concepts are, and the warnings its loading gave (the synthetic one among them)."""
        p = self.pipeline
        pretrained = getattr(p, "pretrained", None)
        lines = [f"**{html.escape(self.name)}**: {html.escape(pretrained.line() if pretrained else repr(p))}"]
        for source in getattr(p, "training_data", None) or []:
            images = source.get("images") or {}
            counts = ", ".join(f"{k} {v:,}" for k, v in images.items() if isinstance(v, int))
            lines.append(
                f"- learned from **{html.escape(str(source.get('name', '?')))}** ({counts or 'counts unknown'}; "
                f"{html.escape(str(source.get('learnt', '')))}): {html.escape(str(source.get('licence', '')))}"
            )
        if getattr(p, "data_kind", None) == "synthetic":
            lines.append(f"- **warning**: {html.escape(synthetic_warning('this bundle'))}")
        if not self.two_stage:
            lines.append("- direct route: one output, P(Male), and no concepts to show or set")
        elif p.concepts is None:
            lines.append(
                "- concept quality: **unknown** (the bundle records none); read its concepts with care"
            )
        else:
            verdict = f"**not reliable**: {NOT_CONCEPTS}" if self.concepts_unreliable else "reliable"
            lines.append(f"- concept quality: {verdict} ({html.escape(p.concepts.why())})")
        lines += [f"- warning: {html.escape(w)}" for w in self.warnings if "synthetic faces" not in w]
        return "\n".join(lines)


def load_demo_model(source: str | Path | None, route: str | None = None) -> DemoModel:
    """A bundle folder, or with ``source`` None the shipped ``route`` (two-stage by default). A bad bundle
    raises the library's own error (``BundleError``), which the command turns into exit 2."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if source is None:
            pipeline = load_pretrained(route or "two_stage")
            name = f"the shipped {pipeline.route.replace('_', '-')} model"
        else:
            pipeline = load_pipeline(source)
            name = str(source)
    pipeline.batch_size = min(pipeline.batch_size, 16)  # a photo's faces, not a dataset: small batches
    return DemoModel(name, pipeline, [str(w.message) for w in caught])


@dataclass
class Reading:
    """One face as one bundle read it: P(Male), the concepts stage two read (two-stage), and why not."""

    male_probability: float
    label: str | None
    concepts: np.ndarray | None = None  # (39,) stage one's values, before any edit
    error: str = ""


@dataclass
class Face:
    box: tuple[int, int, int, int] | None  # in the photo; None: the whole image (a bundle that reads crops)
    readings: list[Reading]  # one per model, in the page's order


@dataclass
class Photo:
    path: str
    faces: list[Face]
    shown: object  # the photo, upright and at most SHOWN_SIDE, with each face's box and number drawn


def _read_faces(model: DemoModel, image, max_pixels: int) -> pd.DataFrame:
    """predict()'s rows for every face of the decoded photo (a bundle that reads crops: one row)."""
    p = model.pipeline
    faces = "all" if p.align == "auto" else "center"
    with warnings.catch_warnings():  # its concept warning is on the page already (DemoModel.about)
        warnings.simplefilter("ignore")
        return p.predict([image], faces=faces, max_pixels=max_pixels, progress=False)


def _box(value) -> tuple[int, int, int, int] | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return tuple(int(v) for v in value)


def _overlap(a, b) -> float:
    if a is None or b is None:
        return 1.0 if a is b else 0.0
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def _reading(row, two_stage: bool) -> Reading:
    p = float(row["male_probability"])
    if math.isnan(p):
        return Reading(math.nan, None, None, str(row.get("error", "")) or "no prediction")
    concepts = row[ATTRIBUTES].to_numpy(dtype=float) if two_stage else None
    return Reading(p, str(row["label"]), concepts)


def read_photo(models: list[DemoModel], path, max_pixels: int = DEMO_MAX_PIXELS) -> Photo:
    """Every face the first model finds in ``path``, each read by every model (faces matched by their box).
    The photo is decoded once (upright, its pixels capped from the header first) and every model reads that.
    :class:`PageMessage` when the photo cannot be read or holds no face, naming why, as predict says it."""
    if path is None:
        raise PageMessage("drop a photo (JPEG, PNG, WebP, ...) or pick an example first")
    path, name = str(path), Path(str(path)).name  # the file's name only: never the server's folders
    try:
        image = load_image(path, name=name, max_pixels=max_pixels)
    except Exception as exc:  # predict's own message for this file: not an image, over the cap, a bomb
        raise PageMessage(clean_message(exc)) from None
    frames = [_read_faces(m, image, max_pixels) for m in models[:1]]
    first = frames[0]
    ok = first["male_probability"].notna().to_numpy()
    if not ok.any():
        error = str(first["error"].iloc[0]) if len(first) else "no prediction"
        raise PageMessage(error.replace(describe(image), name))
    frames += [_read_faces(m, image, max_pixels) for m in models[1:]]
    others = [
        (model, frame, [_box(b) for b in frame.get("face_box", [None] * len(frame))])
        for model, frame in zip(models[1:], frames[1:], strict=True)
    ]
    faces = []
    for _, row in first[ok].iterrows():
        box = _box(row.get("face_box"))
        readings = [_reading(row, models[0].two_stage)]
        for model, frame, boxes in others:
            overlaps = [_overlap(box, other) for other in boxes]
            best = int(np.argmax(overlaps)) if overlaps else None
            if best is None or (box is not None and boxes[best] is not None and overlaps[best] < 0.3):
                readings.append(Reading(math.nan, None, None, "this bundle did not find this face"))
            else:
                readings.append(_reading(frame.iloc[best], model.two_stage))
        faces.append(Face(box, readings))
    return Photo(path, faces, _shown(image, [f.box for f in faces]))


def _shown(image, boxes):
    """The photo at most SHOWN_SIDE px, each face's box and number drawn on it."""
    image, scale = shrunk(image, SHOWN_SIDE)
    image = image.copy() if scale == 1.0 else image  # drawn on: never the decoded photo itself
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 200))
    for i, box in enumerate(boxes):
        if box is None:
            continue
        x0, y0, x1, y1 = (v * scale for v in box)
        draw.rectangle((x0, y0, x1, y1), outline=(255, 196, 0), width=width)
        draw.rectangle((x0, y0, x0 + 8 * width + 6, y0 + 6 * width + 4), fill=(255, 196, 0))
        draw.text((x0 + 3, y0 + 1), str(i + 1), fill=(0, 0, 0))
    return image


def face_choices(photo: Photo) -> list[str]:
    """The face picker's labels: "face 1" ... (or "the whole image" for a bundle that reads crops)."""
    if len(photo.faces) == 1 and photo.faces[0].box is None:
        return ["the whole image"]
    return [f"face {i + 1}" for i in range(len(photo.faces))]


def checked_edits(edits: dict) -> dict[str, float]:
    """A person's concept edits, each a known concept set to a number in [0, 1]; PageMessage otherwise."""
    out = {}
    for name, value in (edits or {}).items():
        if name not in ATTRIBUTES:
            raise PageMessage(f"{name!r} is not one of the 39 concepts")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise PageMessage(f"{name}: give a number from 0 to 1, got {value!r}") from None
        if not 0.0 <= value <= 1.0:
            raise PageMessage(f"{name}: give a number from 0 to 1, got {value:g}")
        out[name] = value
    return out


@dataclass
class Decision:
    """One model's decision on one face after the edits, and why (two-stage)."""

    model: DemoModel
    male_probability: float
    label: str | None
    concepts: np.ndarray | None = None  # (39,) after the edits
    contributions: np.ndarray | None = None  # (40,): 39 pushes, then the bias
    edited: tuple[str, ...] = ()
    error: str = ""

    def explanation(self, image_name: str) -> Explanation:
        """The one-row :class:`Explanation` ``explain()`` would give for these concept values."""
        predictions = pd.DataFrame(
            {"image": [image_name], "male_probability": [self.male_probability], "label": [self.label]}
            | {name: [float(v)] for name, v in zip(ATTRIBUTES, self.concepts, strict=True)}
        )
        contributions = pd.DataFrame(
            [self.contributions], columns=[*ATTRIBUTES, "bias"], index=pd.Index([image_name], name="image")
        )
        pipeline = self.model.pipeline
        return Explanation(
            predictions, contributions, pipeline.global_importance(), bias_label=pipeline.bias_label
        )


def decide(models: list[DemoModel], face: Face, edits: dict | None = None) -> list[Decision]:
    """Each model's decision on ``face`` with the concept ``edits`` applied (as ``predict(intervene=...)``
    does: the value replaces stage one's, stage two reads it; a direct model has nothing to edit)."""
    edits = checked_edits(edits or {})
    out = []
    for model, reading in zip(models, face.readings, strict=True):
        if reading.error:
            out.append(Decision(model, math.nan, None, error=reading.error))
            continue
        if not model.two_stage:
            out.append(Decision(model, reading.male_probability, reading.label))
            continue
        concepts = reading.concepts.copy()
        for name, value in edits.items():
            concepts[ATTRIBUTES.index(name)] = value
        p = model.pipeline
        male = float(p.stage_two_probability(concepts[None])[0])
        label = "Male" if male >= p.threshold else "Female"
        contributions = p.attribute_contributions(concepts[None])[0]
        out.append(Decision(model, male, label, concepts, contributions, tuple(edits)))
    return out


def decision_html(decision: Decision) -> str:
    """The decision in large type: label and P(Male), calibrated when the bundle is."""
    name = html.escape(decision.model.name)
    if decision.error:
        return f'<div class="a2g-decision" data-model="{name}"><b>{name}</b>: {html.escape(decision.error)}</div>'
    p = decision.model.pipeline
    calibrated = (
        f" (calibrated: temperature {p.temperature:.2f})" if getattr(p, "temperature", 1.0) != 1.0 else ""
    )
    edited = f" after setting {', '.join(decision.edited)}" if decision.edited else ""
    return (
        f'<div class="a2g-decision" data-model="{name}" data-p="{decision.male_probability:.6f}">'
        f"<div>{name}{html.escape(edited)}</div>"
        f'<div style="font-size:1.6em"><b class="a2g-label">{decision.label}</b> · P(Male) '
        f'<b class="a2g-p">{decision.male_probability:.3f}</b>{calibrated}</div></div>'
    )


def concept_bars_html(decision: Decision) -> str:
    """The 39 concepts as bars, sorted by their push on the decision: each concept's probability, and its
    push in Male log-odds (blue toward Male, pink toward Female), with the bias first and the sum last."""
    if decision.contributions is None:
        why = decision.error or "a direct bundle has no concepts: it maps pixels straight to P(Male)"
        return f'<div class="a2g-concepts-none">{html.escape(why)}</div>'
    pushes = decision.contributions[:-1]
    bias = float(decision.contributions[-1])
    order = sorted(range(len(ATTRIBUTES)), key=lambda j: -abs(pushes[j]))
    largest = max(float(np.max(np.abs(pushes))), abs(bias), 1e-9)
    warn = ""
    if decision.model.concepts_unreliable:
        warn = f'<div class="a2g-warning">Warning: {html.escape(NOT_CONCEPTS)}</div>'
    rows = [
        _bar_row("bias " + decision.model.pipeline.bias_label, None, bias, largest, "a2g-bias", False),
        *(
            _bar_row(
                ATTRIBUTES[j],
                decision.concepts[j],
                pushes[j],
                largest,
                "a2g-concept",
                ATTRIBUTES[j] in decision.edited,
            )
            for j in order
        ),
    ]
    total = bias + float(pushes.sum())
    return (
        f'{warn}<table class="a2g-bars" style="width:100%;border-collapse:collapse;font-size:0.9em">'
        "<tr><th style='text-align:left'>concept</th><th style='text-align:left'>probability</th>"
        "<th style='text-align:left'>push on Male log-odds (pink: Female, blue: Male)</th></tr>"
        + "".join(rows)
        + f"<tr class='a2g-total'><td><b>log-odds</b></td><td></td><td><b>{total:+.2f}</b> → P(Male) "
        f"{decision.male_probability:.3f}</td></tr></table>"
    )


def _bar_row(name, probability, push, largest, css, edited) -> str:
    width = 100 * abs(push) / largest / 2
    color = "#3b7dd8" if push > 0 else "#e0559b"
    left = 50 if push > 0 else 50 - width
    push_bar = (
        f'<div style="position:relative;height:14px;background:#f2f2f2">'
        f'<div style="position:absolute;left:50%;top:0;bottom:0;width:1px;background:#999"></div>'
        f'<div style="position:absolute;left:{left:.1f}%;width:{width:.1f}%;top:2px;bottom:2px;'
        f'background:{color}"></div></div>'
    )
    if probability is None:
        prob = ""
    else:
        prob = (
            f'<div style="display:flex;align-items:center;gap:4px"><div style="width:80px;height:10px;'
            f'background:#eee"><div style="width:{100 * probability:.0f}%;height:10px;background:#888"></div>'
            f"</div><span>{probability:.2f}</span></div>"
        )
    mark = " <b>(set)</b>" if edited else ""
    return (
        f'<tr class="{css}" data-name="{html.escape(name)}" data-push="{push:.6f}">'
        f"<td>{html.escape(name)}{mark}</td><td>{prob}</td>"
        f'<td><div style="display:flex;align-items:center;gap:6px"><div style="flex:1">{push_bar}</div>'
        f"<span style='width:4em;text-align:right'>{push:+.2f}</span></div></td></tr>"
    )


def folder_table(
    model: DemoModel, sources, max_pixels: int = DEMO_MAX_PIXELS, out_dir: Path | None = None
) -> tuple[pd.DataFrame, Path]:
    """predict()'s table for a server folder (a path) or uploaded files (a list of paths), errors as rows,
    and a CSV of it to download, written as ``out_dir/predictions.csv`` (the page passes its one folder, so
    clicks do not pile up files; a new temporary folder without it). PageMessage for a folder that is not
    there or holds no image."""
    if isinstance(sources, str | Path):
        folder = Path(str(sources).strip()).expanduser()
        if not str(sources).strip():
            raise PageMessage("type a folder on the server, or upload photos")
        if not folder.is_dir():
            raise PageMessage(f"{folder}: not a folder on the server")
        sources = [folder]
    sources = [str(s) for s in sources or []]
    if not sources:
        raise PageMessage("type a folder on the server, or upload photos")
    with warnings.catch_warnings():  # "N files were not images": said on the page as the count below
        warnings.simplefilter("ignore")
        found = expand_images(sources)
    if not found:
        raise PageMessage("no images there (every format Pillow reads counts)")
    if len(found) > MAX_FOLDER_IMAGES:
        raise PageMessage(
            f"{len(found):,} images: the page scores up to {MAX_FOLDER_IMAGES:,} per click; use "
            "`attr2gender predict FOLDER --out table.csv` for more"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = model.pipeline.predict([s for _, s in found], max_pixels=max_pixels, progress=False)
    keep = [c for c in ("image", "male_probability", "label", "face_box", "n_faces", "error") if c in frame]
    frame = frame[keep + [c for c in frame.columns if c not in keep]]
    out = Path(out_dir or tempfile.mkdtemp(prefix="attr2gender-demo-")) / "predictions.csv"
    frame.to_csv(out, index=False)
    return frame, out


def waterfall_image(decision: Decision, image_name: str):
    """The waterfall ``explain()`` draws (plots.explanation), for these concept values, as a PIL image."""
    edited = f" after setting {', '.join(decision.edited)}" if decision.edited else ""
    figure = plot_explanation_waterfall(
        decision.explanation(image_name), 0, k=10, title=f"Why {Path(image_name).name}{edited}?"
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def example_photos() -> list[str]:
    """The bundled example faces (synthetic: no real person)."""
    return sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))
