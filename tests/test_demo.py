"""Issue 34, the demo page's server side (``attr2gender.demo.session``), without a browser: what a person
sees for a photo is what ``predict`` and ``explain`` say, a concept they set moves the decision exactly as
``predict(intervene=...)`` does, and bad input is a sentence on the page. The browser tests are in
``test_demo_browser.py``."""

from __future__ import annotations

import math
import re
import sys

import pytest
from PIL import Image

from attr2gender.cli import main
from attr2gender.pipeline.concept_quality import ConceptRecord

pytest.importorskip("gradio", reason="the demo page needs the [demo] extra: pip install -e '.[demo]'")

from attr2gender.demo.session import (  # noqa: E402
    ATTRIBUTES,
    DEMO_MAX_PIXELS,
    PageMessage,
    concept_bars_html,
    decide,
    decision_html,
    example_photos,
    folder_table,
    load_demo_model,
    read_photo,
)


@pytest.fixture(scope="module")
def shipped():
    return [load_demo_model(None, "two-stage"), load_demo_model(None, "direct")]


def test_the_examples_ship_and_each_shows_a_face(shipped):
    examples = example_photos()
    assert len(examples) >= 3
    for path in examples:
        photo = read_photo(shipped, path)
        assert len(photo.faces) >= 1 and photo.faces[0].box is not None
        assert max(photo.shown.size) <= 640


def test_a_set_concept_moves_the_decision_as_predict_intervene_does(shipped):
    path = example_photos()[0]
    photo = read_photo(shipped[:1], path)
    edits = {"Wearing_Lipstick": 1.0, "No_Beard": 0.25}
    (before,) = decide(shipped[:1], photo.faces[0])
    (after,) = decide(shipped[:1], photo.faces[0], edits)
    reference = shipped[0].pipeline.predict([path], faces="all", intervene=edits, progress=False)
    assert after.male_probability == pytest.approx(reference["male_probability_intervened"].iloc[0], abs=1e-9)
    assert before.male_probability == pytest.approx(reference["male_probability"].iloc[0], abs=1e-9)
    assert after.concepts[ATTRIBUTES.index("Wearing_Lipstick")] == 1.0 and after.edited == tuple(edits)
    # the bars add up: bias + 39 pushes = the log-odds of the P(Male) shown
    for decision in (before, after):
        p = decision.male_probability
        assert decision.contributions.sum() == pytest.approx(math.log(p / (1 - p)), abs=1e-6)


def test_lipstick_set_to_one_lowers_p_male_and_the_bars_say_so(shipped):
    photo = read_photo(shipped[:1], example_photos()[0])
    (before,) = decide(shipped[:1], photo.faces[0], {"Wearing_Lipstick": 0.0})
    (after,) = decide(shipped[:1], photo.faces[0], {"Wearing_Lipstick": 1.0})
    assert after.male_probability < before.male_probability
    bars = concept_bars_html(after)
    assert bars.count('class="a2g-concept"') == 39 and bars.count('class="a2g-bias"') == 1
    assert 'data-name="Wearing_Lipstick"' in bars and "(set)" in bars
    # sorted by push: the rows come in order of |push|
    rows = re.findall(r'class="a2g-concept" data-name="[^"]*" data-push="([^"]*)"', bars)
    pushes = [abs(float(push)) for push in rows]
    assert len(pushes) == 39 and pushes == sorted(pushes, reverse=True)
    assert f"{after.male_probability:.3f}" in decision_html(after)


def test_two_models_read_the_same_face_side_by_side(shipped):
    photo = read_photo(shipped, example_photos()[0])
    two_stage, direct = decide(shipped, photo.faces[0], {"Wearing_Lipstick": 1.0})
    alone = shipped[1].pipeline.predict([example_photos()[0]], faces="all", progress=False)
    assert direct.male_probability == pytest.approx(alone["male_probability"].iloc[0], abs=1e-9)
    assert direct.contributions is None and "no concepts" in concept_bars_html(direct)
    assert two_stage.edited == ("Wearing_Lipstick",) and direct.edited == ()


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda p: p.write_text("not an image at all"), "not a readable image"),
        (lambda p: Image.new("RGB", (200, 200), (128, 128, 128)).save(p, "JPEG"), "no face found"),
        (lambda p: Image.new("L", (8000, 6500)).save(p, "PNG"), f"{DEMO_MAX_PIXELS:,}"),  # 52 Mpx
    ],
    ids=["text-renamed-jpg", "no-face", "over-the-pixel-cap"],
)
def test_bad_photos_are_one_sentence_naming_why(shipped, tmp_path, make, says):
    path = tmp_path / "photo.jpg"
    make(path)
    with pytest.raises(PageMessage) as message:
        read_photo(shipped[:1], path)
    assert says in str(message.value) and "Traceback" not in str(message.value)
    assert str(tmp_path) not in str(message.value)  # the server's folder is not shown, the file's name is


@pytest.mark.parametrize(
    "edits, says",
    [
        ({"Wearing_Lipstik": 1}, "not one of the 39"),
        ({"Eyeglasses": 2}, "from 0 to 1"),
        ({"Eyeglasses": "x"}, "number"),
    ],
)
def test_a_bad_edit_is_refused_by_name(shipped, edits, says):
    photo = read_photo(shipped[:1], example_photos()[0])
    with pytest.raises(PageMessage, match=says):
        decide(shipped[:1], photo.faces[0], edits)


def test_the_page_says_what_the_model_learned_from_and_how_reliable_its_concepts_are(shipped):
    about = shipped[0].about()
    assert "celeba" in about and "utkface" in about and "non-commercial" in about
    assert "concept quality: reliable" in about
    assert "no concepts" in shipped[1].about()
    model = load_demo_model(None, "two-stage")
    model.pipeline.concepts = ConceptRecord(0.55, 0.70, 0.80)  # worse than always answering the common value
    assert "not reliable" in model.about()
    photo = read_photo([model], example_photos()[0])
    assert "a2g-warning" in concept_bars_html(decide([model], photo.faces[0])[0])
    model.pipeline.data_kind = "synthetic"
    assert "synthetic faces" in model.about()


def test_the_folder_tab_gives_predict_s_rows_errors_included_and_a_csv(shipped, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in example_photos()[:2]:
        (folder / path.rsplit("/", 1)[1]).write_bytes(open(path, "rb").read())
    (folder / "broken.jpg").write_text("not an image")
    frame, csv = folder_table(shipped[0], str(folder))
    assert len(frame) == 3 and list(frame.columns[:3]) == ["image", "male_probability", "label"]
    assert (frame["error"] != "").sum() == 1 and csv.read_text().count("\n") == 4
    uploaded, _ = folder_table(shipped[0], example_photos()[:2])
    assert uploaded["male_probability"].notna().all()
    for bad, says in ((str(tmp_path / "nowhere"), "not a folder"), ("", "type a folder")):
        with pytest.raises(PageMessage, match=says):
            folder_table(shipped[0], bad)


def test_the_page_builds_for_one_model_and_for_two(shipped):
    from attr2gender.demo.page import build_page

    for models in (shipped[:1], shipped[1:], shipped):
        page = build_page(models)
        assert page.title == "attr2gender demo"


def test_demo_usage_errors_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    cases = [
        ([str(tmp_path / "nowhere")], "no such bundle folder"),
        ([str(tmp_path / "empty")], "empty"),
        ([str(tmp_path), str(tmp_path), "--pretrained", "direct"], "one or two models"),
    ]
    for argv, says in cases:
        assert main(["demo", *argv, "--port", "7999"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], (argv, err)
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if the [demo] extra were not installed
    assert main(["demo"]) == 2
    assert "pip install 'attr2gender[demo]'" in capsys.readouterr().err


def test_the_page_reads_a_face_bundle_trained_on_celeba(shared_celeba, tmp_path):
    """The face preset on CelebA alone (a small run), saved as a user saves it, shown on the page."""
    from attr2gender.training import train_two_stage
    from conftest import train_small_face

    pipe, _ = train_small_face(train_two_stage, tmp_path)
    model = load_demo_model(pipe.save(tmp_path / "bundle", onnx=False))
    assert "celeba" in model.about() and "concept quality" in model.about()
    crop = sorted((shared_celeba / "img_align_celeba").glob("*.jpg"))[0]
    photo = read_photo([model], crop)
    (decision,) = decide([model], photo.faces[0], {"Wearing_Lipstick": 1.0})
    reference = pipe.predict([str(crop)], faces="all", intervene={"Wearing_Lipstick": 1.0}, progress=False)
    assert decision.male_probability == pytest.approx(
        reference["male_probability_intervened"].iloc[0], abs=1e-9
    )
    assert concept_bars_html(decision).count('class="a2g-concept"') == 39
