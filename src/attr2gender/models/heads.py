"""The fresh classifier head every backbone gets: a Linear, with dropout on its input when asked.

Its own module so the registry (image backbones) and :mod:`attr2gender.models.face_net` (face backbones)
share it without importing each other.
"""

from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Linear):
    """``nn.Linear`` with dropout on its input; parameters named like a plain Linear (weight, bias)
    so state dicts stay interchangeable with the architecture's original classifier."""

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.0):
        super().__init__(in_features, out_features)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.drop(x))


def new_head(in_features: int, num_outputs: int, dropout: float) -> nn.Linear:
    """A fresh head: :class:`LinearHead` when ``dropout`` > 0, else a plain ``nn.Linear``."""
    return (
        LinearHead(in_features, num_outputs, dropout) if dropout > 0 else nn.Linear(in_features, num_outputs)
    )
