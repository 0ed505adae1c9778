"""A bottleneck whose outputs are no longer concepts says so: the rule, the bundle that keeps it, the
warnings a user sees, and the sweep that picks its concept weight with the concepts in view."""

from __future__ import annotations

import hashlib
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from attr2gender.data.attributes import STAGE_ONE_ATTRIBUTES
from attr2gender.errors import BundleError
from attr2gender.experiments.comparison_run import choose_concept_weight
from attr2gender.metrics import concept_quality
from attr2gender.pipeline import Attr2GenderPipeline, load_pipeline
from attr2gender.pipeline.bundle import _canonical
from attr2gender.pipeline.concept_quality import NOT_CONCEPTS, ConceptRecord
from attr2gender.tabular import StageTwoClassifier
from attr2gender.training import AttributeModel

ATTRS = list(STAGE_ONE_ATTRIBUTES)
NOISE = ConceptRecord(0.62, 0.58, 0.805, reference_val_mean_auc=0.894)  # the joint 0.1 model users met
KEPT = ConceptRecord(0.89, 0.88, 0.805, reference_val_mean_auc=0.894)


@pytest.mark.parametrize(
    "record, reliable",
    [
        (KEPT, True),
        (NOISE, False),
        (ConceptRecord(0.95, 0.79, 0.805), False),  # below always-the-common-value, whatever its AUC
        (ConceptRecord(0.80, 0.86, 0.805), True),  # no reference known: only the majority rule
        (ConceptRecord(0.880, 0.86, 0.805, 0.894, tolerance=0.01), False),  # 0.014 below the sequential
        (ConceptRecord(0.885, 0.86, 0.805, 0.894, tolerance=0.01), True),
    ],
)
def test_the_rule_that_calls_outputs_concepts(record, reliable):
    assert record.reliable is reliable


def test_concept_quality_reports_the_baseline_and_the_worst_five():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, (300, 39))
    good = np.clip(truth * 0.8 + rng.random((300, 39)) * 0.2, 0, 1)
    q = concept_quality(truth, good, ATTRS)
    assert q["concept_mean_accuracy"] == 1.0 and q["concept_mean_auc"] == 1.0
    noise = concept_quality(truth, rng.random((300, 39)), ATTRS)
    assert abs(noise["concept_mean_auc"] - 0.5) < 0.05 and len(noise["concept_worst"]) == 5
    assert 0.5 <= noise["concept_majority_accuracy"] <= 1.0


@pytest.mark.parametrize("bad", [{"val_mean_auc": math.nan}, {"val_mean_auc": 3.0}, {"tolerance": -1}, {}])
def test_a_stored_record_is_checked(bad):
    values = KEPT.to_json() | bad if bad else {}
    with pytest.raises(ValueError, match="concepts"):
        ConceptRecord.from_json(values)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X = rng.random((300, 39))
    y = (X[:, ATTRS.index("Goatee")] > 0.5).astype(int)
    pipe = Attr2GenderPipeline(
        AttributeModel(backbone="test_efficientnet", weights="none"),
        StageTwoClassifier().fit(pd.DataFrame(X, columns=ATTRS), y),
        32,
        num_workers=0,
        align="none",
        runtime="torch",
    )
    folder = tmp_path_factory.mktemp("faces")
    images = []
    for i in range(2):
        images.append(folder / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(images[-1])
    return pipe, images


def _concept_warnings(call) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in caught if NOT_CONCEPTS in str(w.message)]


def test_explanations_and_interventions_warn_when_the_concepts_are_noise(pipeline):
    pipe, images = pipeline
    pipe.concepts = NOISE
    try:
        explained = _concept_warnings(lambda: pipe.explain(images))
        intervened = _concept_warnings(lambda: pipe.predict(images, intervene={"Goatee": 1}))
        assert len(explained) == 1 and explained[0].startswith("explain(): ")
        assert "0.620" in explained[0] and "0.894" in explained[0]  # the numbers behind it
        assert len(intervened) == 1
        assert NOT_CONCEPTS in repr(pipe)
        assert _concept_warnings(lambda: pipe.predict(images)) == []  # a plain prediction needs no concepts
        pipe.concepts = KEPT
        assert _concept_warnings(lambda: pipe.explain(images)) == [] and NOT_CONCEPTS not in repr(pipe)
    finally:
        pipe.concepts = None


def test_a_bundle_keeps_its_concept_quality_and_refuses_a_forged_one(pipeline, tmp_path):
    pipe, _ = pipeline
    pipe.concepts = NOISE
    try:
        bundle = pipe.save(tmp_path / "b", onnx=False)
    finally:
        pipe.concepts = None
    loaded = load_pipeline(bundle)
    assert loaded.concepts == NOISE and not loaded.concepts.reliable
    path = bundle / "pipeline.json"
    manifest = json.loads(path.read_text())
    manifest["concepts"]["val_mean_auc"] = 7.0  # re-hashed, as a careful forger would
    manifest["manifest_sha256"] = hashlib.sha256(_canonical(manifest)).hexdigest()
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="concepts"):
        load_pipeline(bundle)


def _row(name, mode, val_acc, val_auc, fit_on="predicted"):
    return {
        "variant": name,
        "mode": mode,
        "stage two fit on": fit_on,
        "val Male accuracy": val_acc,
        "val concept AUC": val_auc,
        "test accuracy": 0.9,
        "test concept accuracy": 0.85,
        "test concept AUC": val_auc,
    }


def test_the_sweep_picks_the_most_accurate_lambda_that_keeps_its_concepts():
    rows = [
        _row("sequential", "staged", math.nan, 0.894),
        _row("independent", "staged", math.nan, 0.894, fit_on="labels"),
        _row("joint_0.1", "joint", 0.985, 0.619),  # most accurate, concepts gone
        _row("joint_1", "joint", 0.979, 0.889),
        _row("joint_10", "joint", 0.925, 0.893),
    ]
    text, metrics, front = choose_concept_weight(rows, tolerance=0.01)
    assert "**joint_1**" in text and "Concepts lost (below the floor): joint_0.1" in text
    assert metrics["chosen_is_sequential"] == 0.0
    assert list(front.loc[front["chosen"], "name"]) == ["joint_1"]


def test_the_sweep_falls_back_to_sequential_when_no_lambda_keeps_its_concepts():
    rows = [_row("sequential", "staged", math.nan, 0.894), _row("joint_0.1", "joint", 0.985, 0.62)]
    text, metrics, _ = choose_concept_weight(rows, tolerance=0.01)
    assert "No joint model kept its concepts" in text and metrics["chosen_is_sequential"] == 1.0
