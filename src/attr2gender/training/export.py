"""Trained image models on disk without pickle: weights as safetensors, everything else as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .. import __version__
from ..data.transforms import preprocessing_spec
from .modules import ImageModel, model_class

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"


def image_model_meta(model: ImageModel, task: str, image_size: int) -> dict:
    hp = dict(model.hparams)
    hp["weights"] = "none"  # the saved tensors replace whatever the backbone started from
    return {
        "task": task,
        "hparams": hp,
        "image_size": image_size,
        "preprocessing": preprocessing_spec(image_size),
        "attribute_names": list(getattr(model, "attribute_names", ())),
        "library_version": __version__,
    }


def save_image_model(model: ImageModel, directory: str | Path, task: str, image_size: int, extra: dict | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    meta = image_model_meta(model, task, image_size) | (extra or {})
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return directory


def build_image_model(meta: dict) -> ImageModel:
    hp = dict(meta["hparams"])
    hp["weights"] = "none"
    return model_class(meta["task"])(**hp)


def load_image_model(directory: str | Path, map_location: str = "cpu") -> tuple[ImageModel, dict]:
    """Rebuild the architecture from JSON and load safetensors weights (no code runs from the files)."""
    directory = Path(directory)
    for name in (WEIGHTS_FILE, META_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} is missing; expected a model saved by save_image_model")
    meta = json.loads((directory / META_FILE).read_text())
    model = build_image_model(meta)
    state = load_file(str(directory / WEIGHTS_FILE), device=map_location)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{directory / WEIGHTS_FILE} does not match the architecture in {META_FILE}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")  # fmt: skip
    return model.eval(), meta


def load_weights_from_checkpoint(model: ImageModel, checkpoint: str | Path) -> None:
    """Copy a Lightning checkpoint's weights into ``model`` (tensors only: ``weights_only=True``)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict(state)
