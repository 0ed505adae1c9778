"""The demo page's layout and events (Gradio). What each event computes is in ``session.py``; every handler
here turns a :class:`PageMessage`, or any other failure, into a sentence on the page, so the browser never
sees a stack trace and the server keeps serving."""

from __future__ import annotations

import html
import logging
import math
import tempfile
from pathlib import Path

import gradio as gr

from .session import (
    ATTRIBUTES,
    DEMO_MAX_PIXELS,
    DemoModel,
    PageMessage,
    Photo,
    checked_edits,
    concept_bars_html,
    decide,
    decision_html,
    example_photos,
    face_choices,
    folder_table,
    read_photo,
    waterfall_image,
)

log = logging.getLogger("attr2gender.demo")

INTRO = (
    "# attr2gender: why a face reads as Male or Female\n"
    "Drop a photo. Each face found gets a box; pick one to see P(Male) and, for a two-stage model, the 39 "
    "concepts stage two read, sorted by how hard each pushed the decision. Set a concept the model got wrong "
    "and watch the decision follow (`predict(intervene=...)`)."
)


def _sentence(exc: Exception) -> str:
    """What the page says for a failure: a PageMessage as it is, anything else in one line (its trace goes
    to the server's log, never to the page)."""
    if isinstance(exc, PageMessage):
        return str(exc)
    log.exception("the demo failed on a request")
    return f"Something went wrong here ({type(exc).__name__}); the server's log says where."


def _failure(exc: Exception) -> str:  # for a Markdown output
    return f"**{_sentence(exc)}**"


def _failure_html(exc: Exception) -> str:  # for an HTML output
    return f'<div class="a2g-error"><b>{html.escape(_sentence(exc))}</b></div>'


def build_page(models: list[DemoModel], max_pixels: int = DEMO_MAX_PIXELS) -> gr.Blocks:
    """The page for one model, or two side by side (two-stage and direct, or before and after adapt())."""
    explainers = [i for i, m in enumerate(models) if m.two_stage]
    # The Folder tab's CSV is rewritten in this one folder each click (Gradio copies what it serves), and
    # the folder goes with the page.
    csv_folder = tempfile.TemporaryDirectory(prefix="attr2gender-demo-")
    csv_dir = Path(csv_folder.name)
    with gr.Blocks(title="attr2gender demo", analytics_enabled=False, delete_cache=(900, 3600)) as page:
        gr.Markdown(INTRO)
        with gr.Accordion("What the model learned from, and how far to trust its concepts", open=True):
            gr.Markdown("\n\n".join(m.about() for m in models), elem_id="a2g-about")
        photo_state = gr.State(None)
        edits_state = gr.State({})
        with gr.Tab("Photo"):
            message = gr.Markdown(elem_id="a2g-message")
            with gr.Row():
                with gr.Column(scale=2):
                    upload = gr.File(
                        label="Drop a photo here, or click to choose one",
                        file_types=["image"],
                        type="filepath",
                        elem_id="a2g-upload",
                    )
                    gr.Examples(
                        examples=[[p] for p in example_photos()],
                        inputs=[upload],
                        label="Examples (synthetic faces: no real person)",
                    )
                    shown = gr.Image(label="faces found", interactive=False, type="pil", elem_id="a2g-shown")
                    face = gr.Radio(choices=[], label="face", elem_id="a2g-face")
                with gr.Column(scale=3):
                    decisions = gr.HTML(elem_id="a2g-decisions")
                    if explainers:
                        with gr.Row():
                            concept = gr.Dropdown(
                                choices=ATTRIBUTES,
                                value=ATTRIBUTES[0],
                                label="concept",
                                elem_id="a2g-concept",
                            )
                            value = gr.Number(
                                value=1, minimum=0, maximum=1, label="set to (0 to 1)", elem_id="a2g-value"
                            )
                        with gr.Row():
                            apply = gr.Button("Set this concept", variant="primary", elem_id="a2g-set")
                            reset = gr.Button("Reset to the predicted values", elem_id="a2g-reset")
                    # one under the other: each table needs the column's width for its push bars
                    bars = [gr.HTML(elem_id=f"a2g-bars-{i}") for i in range(len(models))]
                    waterfall = gr.Image(label="the waterfall: bias + pushes = log-odds", interactive=False)
        with gr.Tab("Folder"):
            folder_message = gr.Markdown(elem_id="a2g-folder-message")
            folder = gr.Textbox(label="a folder on the server", elem_id="a2g-folder")
            many = gr.File(file_count="multiple", file_types=["image"], label="or upload photos")
            run = gr.Button("Predict", variant="primary", elem_id="a2g-run")
            table = gr.Dataframe(label=f"{models[0].name}: predict()'s rows", elem_id="a2g-table")
            download = gr.File(label="download as CSV", elem_id="a2g-download")

        def render(photo: Photo | None, choice, edits):
            empty = [""] * len(models)
            if photo is None:
                return "", *empty, None
            try:  # every step: a failure anywhere is a sentence where the decision would be
                found = decide(models, photo.faces[_face_index(photo, choice)], edits)
                figure = None
                first = next((d for d in found if d.contributions is not None), None)
                if first is not None and not math.isnan(first.male_probability):
                    figure = waterfall_image(first, Path(photo.path).name)
                bars = [concept_bars_html(d) for d in found]
                return "".join(decision_html(d) for d in found), *bars, figure
            except Exception as exc:
                return _failure_html(exc), *empty, None

        def on_upload(path):
            try:
                photo = read_photo(models, path, max_pixels)
            except Exception as exc:
                cleared = [""] * len(models)
                return _failure(exc), None, None, gr.update(choices=[], value=None), {}, "", *cleared, None
            choices = face_choices(photo)
            note = f"{len(choices)} faces found; pick one below the photo" if len(choices) > 1 else ""
            return (
                note,
                photo,
                photo.shown,
                gr.update(choices=choices, value=choices[0]),
                {},
                *render(photo, choices[0], {}),
            )

        shown_outputs = [decisions, *bars, waterfall]
        upload.change(on_upload, [upload], [message, photo_state, shown, face, edits_state, *shown_outputs])
        # .input, not .change: a person's pick, not the upload setting the first face (that renders already)
        face.input(render, [photo_state, face, edits_state], shown_outputs)

        if explainers:

            def on_apply(photo, choice, edits, name, number):
                if photo is None:
                    return "**drop a photo first**", edits, *render(photo, choice, edits)
                new = dict(edits) | {name: number}
                try:
                    checked_edits(new)  # a bad edit is said, and the decision stays as it was
                except Exception as exc:
                    return _failure(exc), edits, *render(photo, choice, edits)
                return "", new, *render(photo, choice, new)

            apply.click(
                on_apply,
                [photo_state, face, edits_state, concept, value],
                [message, edits_state, *shown_outputs],
            )
            reset.click(
                lambda p, c: ("", {}, *render(p, c, {})),
                [photo_state, face],
                [message, edits_state, *shown_outputs],
            )

        def on_run(text, uploads):
            try:
                frame, csv = folder_table(models[0], uploads if uploads else text, max_pixels, csv_dir)
            except Exception as exc:
                return _failure(exc), None, None
            failed = int((frame["error"] != "").sum()) if "error" in frame else 0
            return f"{len(frame):,} rows, {failed:,} with an error (see the error column)", frame, str(csv)

        run.click(on_run, [folder, many], [folder_message, table, download])
    page.a2g_csv_folder = csv_folder  # kept alive (and removed) with the page
    return page


def _face_index(photo: Photo, choice) -> int:
    choices = face_choices(photo)
    return choices.index(choice) if choice in choices else 0
