"""Stage two: the tabular classifier from 39 stage-one attribute probabilities to ``Male``."""

from attr2gender.tabular.estimators import (
    INPUT_KINDS,
    MODELS,
    InputKindMismatchError,
    StageTwoClassifier,
    logistic_from_coefficients,
)
from attr2gender.tabular.persistence import (
    StageTwoFormatError,
    from_json_dict,
    load_stage_two,
    save_stage_two,
    to_json_dict,
)

__all__ = [
    "INPUT_KINDS",
    "MODELS",
    "InputKindMismatchError",
    "StageTwoClassifier",
    "StageTwoFormatError",
    "logistic_from_coefficients",
    "from_json_dict",
    "load_stage_two",
    "save_stage_two",
    "to_json_dict",
]
