"""Figures for the experiment, as plain functions of arrays.

Every ``plot_*`` function builds a :class:`matplotlib.figure.Figure` directly (no ``pyplot``, no global
backend switch), so it is safe headless and from worker threads. When ``path`` is given the figure is
also written there as a PNG (120 dpi, tight bounding box, white background). The figure is returned so
callers can log it elsewhere (e.g. MLflow's ``log_figure``).

The package is split by who draws the figure; every public function is importable from here:

* :mod:`.training`: learning curves, the learning-rate finder;
* :mod:`.evaluation`: confusion matrix, prediction examples, group accuracy, reliability, per-attribute
  accuracy;
* :mod:`.network`: first-layer filters and feature maps (the arrays come from
  :mod:`attr2gender.models.internals`; no plot runs a model);
* :mod:`.explanation`: attribute importance and its change, one image's waterfall, interventions, the
  concept front;
* :mod:`.comparison`: the two routes side by side, the cost ratios;
* :mod:`.faces`: the alignment contact sheet;
* :mod:`._style`: colours, the headless figure, saving.
"""

# The shared colours and constants stay importable from here, as before the split (``X as X``: re-exported,
# not listed in __all__).
from ._style import CORRECT_COLOR as CORRECT_COLOR
from ._style import DPI as DPI
from ._style import FEMALE_COLOR as FEMALE_COLOR
from ._style import IMAGENET_MEAN as IMAGENET_MEAN
from ._style import IMAGENET_STD as IMAGENET_STD
from ._style import MALE_COLOR as MALE_COLOR
from ._style import NEUTRAL_COLOR as NEUTRAL_COLOR
from ._style import ROUTE_COLORS as ROUTE_COLORS
from ._style import TRAIN_COLOR as TRAIN_COLOR
from ._style import VAL_COLOR as VAL_COLOR
from ._style import WRONG_COLOR as WRONG_COLOR
from ._style import save_figure
from .comparison import plot_comparison, plot_cost_ratios
from .evaluation import (
    plot_attribute_accuracy,
    plot_cell_heatmap,
    plot_cell_recall,
    plot_confusion_matrix,
    plot_group_accuracy,
    plot_prediction_grid,
    plot_reliability,
    select_prediction_examples,
)
from .explanation import POLICY_STYLE as POLICY_STYLE
from .explanation import (
    plot_attribute_importance,
    plot_concept_front,
    plot_explanation_waterfall,
    plot_importance_change,
    plot_intervention_curve,
)
from .faces import contact_sheet
from .network import plot_conv_filters, plot_feature_maps
from .training import plot_learning_curves, plot_lr_finder

# Exactly the public functions (tests/test_architecture.py checks it against the submodules and against
# every `from attr2gender.plots import ...` in the project).
__all__ = [
    "contact_sheet",
    "plot_cell_heatmap",
    "plot_cell_recall",
    "plot_attribute_accuracy",
    "plot_attribute_importance",
    "plot_comparison",
    "plot_concept_front",
    "plot_confusion_matrix",
    "plot_conv_filters",
    "plot_cost_ratios",
    "plot_explanation_waterfall",
    "plot_feature_maps",
    "plot_group_accuracy",
    "plot_importance_change",
    "plot_intervention_curve",
    "plot_learning_curves",
    "plot_lr_finder",
    "plot_prediction_grid",
    "plot_reliability",
    "save_figure",
    "select_prediction_examples",
]
