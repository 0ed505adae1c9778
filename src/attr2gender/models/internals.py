"""What a network computes inside, for the figures of :mod:`attr2gender.plots.network`: its first
convolution (whose weights are the input filters) and the output of a layer for one image (a forward
pass with a hook). The plots take the arrays these return; they never run a model themselves."""

from __future__ import annotations

import torch


def first_conv(model: torch.nn.Module) -> torch.nn.Conv2d:
    """The first ``nn.Conv2d`` of ``model`` (its input filters, e.g. for visualisation)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            return module
    raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer; pass `layer=` explicitly")


def feature_maps_of(
    model: torch.nn.Module, image_tensor: torch.Tensor, layer: torch.nn.Module | None = None
) -> torch.Tensor:
    """Output ``(C, H, W)`` of ``layer`` (default: the model's first ``nn.Conv2d``) for one image.

    Registers a forward hook, runs an eval-mode ``no_grad`` forward pass on ``image_tensor``
    (``(1, 3, H, W)``; a 3-D image gets a batch dim) moved to the model's device, and removes the hook
    and restores the model's train/eval mode afterwards. Returns a detached CPU tensor.
    """
    layer = first_conv(model) if layer is None else layer
    x = image_tensor if image_tensor.dim() == 4 else image_tensor.unsqueeze(0)
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype if param.is_floating_point() else x.dtype)

    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        if not captured:
            out = output[0] if isinstance(output, tuple | list) else output
            captured.append(out.detach())

    was_training = model.training
    handle = layer.register_forward_hook(hook)
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
        model.train(was_training)
    if not captured:
        raise RuntimeError("the chosen layer was not called during the forward pass")
    return captured[0][0].float().cpu()
