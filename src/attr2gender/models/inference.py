"""Inference without Lightning: logits to probabilities, the plain ``nn.Module`` that predict and ONNX
export run, and the PyTorch forward pass (device, memory format, precision).

The training modules (Lightning) and the inference path share :func:`probabilities`, so the numbers a
pipeline predicts are the numbers its metrics were computed from.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)

# What a network's logits mean.
#   multilabel: (B, k) independent logits -> (B, k) sigmoid probabilities (stage one's 39 attributes)
#   softmax:    (B, 2) class logits       -> (B,) P(class 1)               (direct route, cross-entropy)
#   sigmoid:    (B, 1) one logit          -> (B,) P(class 1)               (direct route, BCE)
OUTPUTS = ("multilabel", "softmax", "sigmoid")


def probabilities(logits: torch.Tensor, output: str) -> torch.Tensor:
    """Probabilities from ``logits`` for an ``output`` kind of :data:`OUTPUTS` (always float32)."""
    logits = logits.float()
    if output == "multilabel":
        return torch.sigmoid(logits)
    if output == "softmax":
        return torch.softmax(logits, dim=1)[:, 1]
    if output == "sigmoid":
        return torch.sigmoid(logits)[:, 0]
    raise ValueError(f"output {output!r} is not one of {OUTPUTS}")


class ProbabilityModel(nn.Module):
    """``net`` followed by its probability function: images (B, 3, H, W) in, probabilities out.

    This is exactly what ``predict`` runs and what ``export_onnx`` writes."""

    def __init__(self, net: nn.Module, output: str):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output {output!r} is not one of {OUTPUTS}")
        self.net = net
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return probabilities(self.net(x), self.output)


class TorchRuntime:
    """The PyTorch forward: channels-last memory format (CPU and CUDA), bf16 autocast when asked
    (``precision="auto"``: bf16 on CUDA, fp32 on CPU, where bf16 changes some labels)."""

    name = "torch"

    def __init__(self, module: nn.Module, device: str | torch.device = "auto", precision: str = "auto",
                 channels_last: bool = True):  # fmt: skip
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r} is not valid; choose one of {PRECISIONS}")
        self.device = resolve_device(device)
        self.precision = ("bf16" if self.device.type == "cuda" else "fp32") if precision == "auto" else precision
        self.channels_last = channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # .to() walks every module: once here, never per batch.
        self.module = module.eval().to(self.device, memory_format=self.memory_format)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> np.ndarray:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = self.module(x)
        return out.float().cpu().numpy().astype(np.float64)

    def describe(self) -> str:
        layout = "channels-last" if self.channels_last else "contiguous"
        return f"torch ({self.device.type}, {self.precision}, {layout})"
