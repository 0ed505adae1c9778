"""Backbone networks by name: ``create_backbone(name, num_outputs, weights, dropout)``."""

from attr2gender.models.inference import (
    OUTPUTS,
    ProbabilityModel,
    TorchRuntime,
    probabilities,
    resolve_device,
)
from attr2gender.models.registry import (
    BACKBONES,
    DEFAULT_BACKBONE,
    BackboneRegistry,
    BackboneSpec,
    LinearHead,
    UnknownBackboneError,
    backbone_first_conv,
    check_backbone_name,
    create_backbone,
    list_backbones,
)
from attr2gender.models.weights import (
    WEIGHTS_DIR_ENV,
    WEIGHTS_HELP,
    IncompatibleWeightsError,
    UnsafeWeightsFileError,
    WeightsNotFoundError,
    describe_weights,
    hub_checkpoints_dir,
    load_state_dict_file,
    locate_weights,
)

__all__ = [
    "BACKBONES",
    "OUTPUTS",
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
    "backbone_first_conv",
    "check_backbone_name",
    "create_backbone",
    "describe_weights",
    "hub_checkpoints_dir",
    "list_backbones",
    "load_state_dict_file",
    "locate_weights",
]
