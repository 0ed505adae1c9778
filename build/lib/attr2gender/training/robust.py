"""Group-robust objectives for the image models: inverse-frequency group weights and GroupDRO.

Both act on per-sample losses and the batch's ``group`` ids (Male x makeup by default, see
:mod:`attr2gender.data.groups`).

GroupDRO (Sagawa et al., "Distributionally Robust Neural Networks", ICLR 2020, Algorithm 1): keep a
weight ``q_g`` per group; each step, ``q_g <- q_g * exp(step * loss_g)`` on the batch's group losses,
renormalise, and minimise ``sum_g q_g * loss_g``. The weights drift toward the groups the model serves
worst, so the model is pushed to serve them.
"""

from __future__ import annotations

import torch
from torch import nn


def group_mean_losses(
    per_sample: torch.Tensor, groups: torch.Tensor, n_groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss per group in the batch, and which groups are present."""
    sums = torch.zeros(n_groups, device=per_sample.device, dtype=per_sample.dtype).scatter_add(
        0, groups, per_sample
    )
    counts = torch.bincount(groups, minlength=n_groups).to(per_sample.dtype)
    return sums / counts.clamp(min=1), counts > 0


class GroupDRO(nn.Module):
    """The GroupDRO objective with its group weights ``q`` as a buffer (saved in checkpoints)."""

    def __init__(self, n_groups: int = 4, step_size: float = 0.01):
        super().__init__()
        self.n_groups, self.step_size = n_groups, step_size
        self.register_buffer("q", torch.full((n_groups,), 1.0 / n_groups))

    def forward(self, per_sample: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        group_loss, present = group_mean_losses(per_sample, groups, self.n_groups)
        if self.training:
            with torch.no_grad():  # exponentiated gradient ascent on the groups seen in this batch
                q = self.q * torch.exp(self.step_size * group_loss.detach().float() * present)
                self.q.copy_(q / q.sum())
        return (self.q.to(group_loss.dtype) * group_loss).sum()


class GroupReweightedLoss(nn.Module):
    """Mean of per-sample losses weighted by 1 / (training images in the sample's group), scaled so the
    weights average 1 over the training set."""

    def __init__(self, group_counts: list[int]):
        super().__init__()
        counts = torch.tensor(group_counts, dtype=torch.float32)
        weights = torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * (counts > 0).sum()), 0.0)
        self.register_buffer("weights", weights)

    def forward(self, per_sample: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        return (per_sample * self.weights.to(per_sample.dtype)[groups]).mean()
