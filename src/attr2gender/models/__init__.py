"""Backbone networks by name: ``create_backbone(name, num_outputs, weights, dropout)``."""

from attr2gender.errors import (
    IncompatibleWeightsError,
    UnknownBackboneError,
    UnsafeWeightsFileError,
    WeightsNotFoundError,
)
from attr2gender.models.heads import LinearHead
from attr2gender.models.inference import (
    BOTTLENECKS,
    LOSSES,
    OUTPUTS,
    ProbabilityModel,
    TorchRuntime,
    build_loss,
    build_model,
    head_of,
    load_model,
    probabilities,
    resolve_device,
    save_model,
)
from attr2gender.models.internals import feature_maps_of, first_conv
from attr2gender.models.registry import (
    BACKBONES,
    DEFAULT_BACKBONE,
    BackboneRegistry,
    BackboneSpec,
    check_backbone_name,
    create_backbone,
    list_backbones,
)
from attr2gender.models.weights import (
    WEIGHTS_DIR_ENV,
    WEIGHTS_HELP,
    describe_weights,
    hub_checkpoints_dir,
    load_state_dict_file,
    locate_weights,
)

__all__ = [
    "BACKBONES",
    "BOTTLENECKS",
    "LOSSES",
    "OUTPUTS",
    "build_loss",
    "build_model",
    "head_of",
    "load_model",
    "save_model",
    "ProbabilityModel",
    "TorchRuntime",
    "probabilities",
    "resolve_device",
    "DEFAULT_BACKBONE",
    "WEIGHTS_DIR_ENV",
    "WEIGHTS_HELP",
    "BackboneRegistry",
    "BackboneSpec",
    "IncompatibleWeightsError",
    "LinearHead",
    "UnknownBackboneError",
    "UnsafeWeightsFileError",
    "WeightsNotFoundError",
    "check_backbone_name",
    "create_backbone",
    "describe_weights",
    "feature_maps_of",
    "first_conv",
    "hub_checkpoints_dir",
    "list_backbones",
    "load_state_dict_file",
    "locate_weights",
]
