"""Trained image models on disk without pickle: weights as safetensors, everything else as JSON.

The files are :func:`attr2gender.models.save_model`'s, so inference reads them back with
:func:`attr2gender.models.load_model` (a plain ``nn.Module``, no Lightning); :func:`load_image_model`
rebuilds the trainable Lightning module instead, e.g. to train further.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..models import load_model, save_model
from ..models.registry import model_preprocessing
from .modules import ImageModel, model_class


def save_image_model(
    model: ImageModel, directory: str | Path, image_size: int, extra: dict | None = None
) -> Path:
    """``model.safetensors`` + ``model.json`` for ``model``, with its evaluation preprocessing (and ``extra``)."""
    preprocessing = model_preprocessing(model.hparams.backbone, image_size)
    extra = {"image_size": preprocessing["crop"], "preprocessing": preprocessing} | (extra or {})
    return save_model(model.inference_module(), directory, extra)


def load_image_model(directory: str | Path) -> tuple[ImageModel, dict]:
    """The trainable model saved in ``directory`` and its ``model.json``."""
    plain = load_model(directory)
    meta = json.loads((Path(directory) / "model.json").read_text())
    hparams = dict(meta["hparams"]) | {"weights": "none"}
    model = model_class(meta["task"], "joint" if "concept_weight" in hparams else "staged")(**hparams)
    model.net.load_state_dict(
        plain.net.state_dict()
    )  # a joint model's Male head is its stage two, not saved here
    return model.eval(), meta


def load_weights_from_checkpoint(model: ImageModel, checkpoint: str | Path) -> int | None:
    """Copy a Lightning checkpoint's weights into ``model`` (tensors only: ``weights_only=True``); returns the
    epoch the checkpoint was written at (0-based, as in the history), None when it does not say."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(saved["state_dict"])
    epoch = saved.get("epoch")
    return int(epoch) if isinstance(epoch, int) else None
