"""Where :func:`evaluate_pipeline` and :func:`evaluate_probabilities` lived before 0.3: they moved below the
training layer, to :mod:`attr2gender.pipeline.evaluation`, so that training computes a run's evaluation
once with them. This name keeps working for one release."""

from ..pipeline.evaluation import (  # noqa: F401  (re-exported under the old module name)
    GROUP_ATTRIBUTES,
    Evaluation,
    evaluate_pipeline,
    evaluate_probabilities,
    slice_report,
)
