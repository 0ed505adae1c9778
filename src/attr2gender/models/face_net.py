"""A face backbone with a head: the pretrained face network's features, standardised, then a Linear.

``FaceFeatureNet`` maps aligned 150 px faces (ImageNet-normalised, like every other backbone's input) to
logits, so a face backbone is an ordinary ``nn.Module`` to the rest of the library: predict, bundles,
ONNX export and CUDA work unchanged. Training keeps the face network frozen and fits only ``norm`` and
``head`` on cached features (:mod:`attr2gender.training.face_heads`): every head trains in seconds.

``norm`` holds the training features' mean and standard deviation as buffers (saved in the bundle's
safetensors): the multi-level features mix stages whose scales differ by orders of magnitude, and a
standardised input lets one learning rate and one weight decay suit every head.
"""

from __future__ import annotations

import torch
from torch import nn

from .face import DlibFaceResNet
from .heads import new_head

FEATURE_KINDS = ("multilevel", "descriptor", "regions")


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

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The face network's raw (unstandardised) features of aligned faces: what the cache stores."""
        return self.backbone.features(x, self.features_kind)

    def forward_features(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from raw features (training on the cache uses this; ``forward`` is the same on images)."""
        return self.head(self.norm(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(self.features(x))
