"""What both pipelines share: streaming ``predict``, ``predict_proba``, devices, bundle save/load.

A pipeline holds a plain ``nn.Module`` (:class:`attr2gender.models.ProbabilityModel`: backbone + probability
function), so loading and predicting never import Lightning. This package is inference only: training a route
(:mod:`attr2gender.training.routes`) sits in the layer above, builds a pipeline and hands it over.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..constants import MAX_WORKERS
from ..data.faces import MIN_EYE_DISTANCE, FaceAlignment, FaceDetector, FaceTemplate, save_template
from ..data.images import ImageLoadError
from ..data.transforms import EvalPreprocessing, preprocessing_spec
from ..errors import ConfigError, FaceNotUsableError
from ..metrics import MetricsDict
from ..models.inference import RUNTIME_PRECISIONS, ProbabilityModel, TorchRuntime, resolve_device, save_model
from ..models.registry import backbone_provenance
from ..progress import progress as progress_bar
from .adapt import AdaptRecord
from .adapt import adapt as adapt_head
from .bundle import TEMPLATE_FILE, write_manifest
from .calibration import TEMPERATURE_BOUNDS, apply_temperature
from .inputs import FaceInfo, expand_images, stream_batches
from .runtime import ONNX_FILE, OnnxRuntime, export_onnx, onnx_export_available, resolve_runtime

LABELS = ("Female", "Male")
MAX_BATCH_SIZE = 65_536  # the ONNX export's batch axis ends there
PROGRESS_MIN_IMAGES = 512  # show a progress bar on calls at least this long (or with progress=True)


def checked_count(name: str, value, low: int, high: int) -> int:
    """``value`` as a count from ``low`` to its maximum, or a ``ValueError`` naming ``name`` and the range:
    ``batch_size=-1`` once returned no rows and no error, and ``batch_size="8"`` a raw TypeError."""
    if not (isinstance(value, int | np.integer) and not isinstance(value, bool) and low <= value <= high):
        raise ConfigError(f"{name} must be an integer from {low} to {high:,}, got {value!r}")
    return int(value)


class _MovedToTraining:
    """A class attribute that says, in one line, where a training call went: the pipelines are inference only,
    and training a whole route is :func:`attr2gender.train_two_stage` / :func:`attr2gender.train_direct`."""

    def __init__(self, replacement: str):
        self.replacement = replacement

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner):
        raise AttributeError(
            f"{owner.__name__}.{self.name} moved to the training layer: use {self.replacement}"
        )


@dataclass
class PredictionRows:
    """What a streamed call produced, one entry per output row (input order; faces of one image together)."""

    names: list  # the input's ``image`` value
    positions: list[int]  # which input image the row comes from
    errors: list[str]
    outputs: dict[str, np.ndarray]  # NaN where the row got no prediction
    faces: list[FaceInfo | None]
    alignment: FaceAlignment


class GenderPredictor:
    """Base of :class:`Attr2GenderPipeline` and :class:`DirectGenderClassifier`.

    Subclasses implement ``_predict_batch(x) -> dict[str, np.ndarray]`` with at least
    ``male_probability`` (B,), and ``route`` (``"two_stage"`` or ``"direct"``).
    """

    route = ""  # the class of route: "two_stage" or "direct" (a bundle's manifest calls it "kind")
    extra_columns: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # the ProbabilityModel output kinds this pipeline accepts
    trained_model = ""  # the training module that produces them (attr2gender.training)

    def __init__(
        self,
        image_model,
        preprocessing: dict | int = 224,
        threshold: float = 0.5,
        batch_size: int = 64,
        device: str = "auto",
        num_workers: int = 2,
        runtime: str = "auto",
        precision: str = "auto",
        onnx_path: str | Path | None = None,
        metrics: dict | None = None,
        config: dict | None = None,
        face_template: FaceTemplate | None = None,
        crop_layout: FaceTemplate | None = None,
        align: str = "auto",
        temperature: float = 1.0,
        data_kind: str = "unknown",
    ):
        if hasattr(image_model, "inference_module"):  # a trained Lightning module: keep only what predicts
            image_model = image_model.inference_module()
        if not isinstance(image_model, ProbabilityModel) or image_model.output not in self.outputs:
            got = getattr(image_model, "output", type(image_model).__name__)
            raise TypeError(
                f"{type(self).__name__} needs a trained {self.trained_model} or a ProbabilityModel with "
                f"{' or '.join(self.outputs)} outputs; got {got}"
            )
        self.image_model = image_model.eval()
        self.preprocessing = (
            preprocessing_spec(preprocessing) if isinstance(preprocessing, int) else dict(preprocessing)
        )
        self.threshold = float(threshold)
        self.batch_size = checked_count(
            "batch_size", batch_size, 1, MAX_BATCH_SIZE
        )  # images per forward pass
        self.num_workers = checked_count(
            "num_workers", num_workers, 0, MAX_WORKERS
        )  # decode threads/processes
        self.metrics = metrics  # test metrics of the run that trained it (a MetricsDict: see the property)
        self.config: dict = dict(config or {})  # that run's resolved config
        self._transform = EvalPreprocessing(self.preprocessing)
        self._model_hash: str | None = None
        self.onnx_path = Path(onnx_path) if onnx_path is not None else None  # model.onnx of a loaded bundle
        self._device = device  # "auto": CUDA when present, else CPU
        self.set_runtime(runtime, precision)
        # Where the 5 landmarks sit in the training crops (measured when the pipeline is trained); photos are
        # warped onto it. Without one: CelebA's published aligned-crop template.
        self.face_template = face_template or FaceTemplate.celeba()
        # Where the landmarks sit in the training crops (measured on them): align="crops" warps crops like them
        # onto face_template with the fixed transform it gives. None: CelebA's published layout.
        self.crop_layout = crop_layout
        FaceAlignment(align)  # validated now, not on the first predict
        self.align = (
            align  # predict's default: "auto" (find and align the face), "celeba" or "none" (see predict)
        )
        # Temperature scaling of P(Male), fitted on validation when trained with calibrate: true; 1 = off.
        self.temperature = self._checked_temperature(temperature)
        # What it was trained on: "celeba", "custom" (another dataset in CelebA's layout), "synthetic" (no real
        # faces: predictions on real photos are near chance, and every entry point says so) or "unknown".
        self.data_kind = data_kind
        # Every source it learned from, in order: name, root, layout, licence, image counts, what it taught
        # (attr2gender.training.routes.training_data_record); empty when built from parts.
        self.training_data: list[dict] = []
        self.adapted: AdaptRecord | None = None  # set by adapt(): what the head was refitted on
        # Set by load_pretrained(): a shipped model's record (data, licences, commit, validation numbers).
        self.pretrained = None

    @property
    def metrics(self) -> MetricsDict:
        """Test metrics of the run that trained it. Whatever is assigned is kept as a :class:`MetricsDict`,
        so a renamed metric still reads (with a warning naming the new name) however the metrics arrived."""
        return self._metrics

    @metrics.setter
    def metrics(self, value) -> None:
        self._metrics = MetricsDict(value or {})

    @property
    def kind(self) -> str:
        """Deprecated name of :attr:`route` (``"two_stage"`` or ``"direct"``)."""
        warnings.warn(
            "pipeline.kind is now pipeline.route; the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.route

    @property
    def report(self):
        """Gone: a pipeline is what predicts, not what its training measured."""
        raise AttributeError(
            "a pipeline no longer carries its training report: train_two_stage / train_direct return it, "
            "pipe, report = attr2gender.train_two_stage(...)"
        )

    def __repr__(self) -> str:
        """One line: route, backbone and image size, stage two (two-stage), training data, test accuracy.

        Read from ``config`` (the training run's; empty for a pipeline built from parts, so the backbone
        falls back to the image model's own record) and ``metrics``; what is unknown is said or left out,
        never raised: a repr must work on any half-built pipeline in a debugger. A shipped pretrained model
        says what its record says: data, licences, commit and validation numbers with CIs."""
        pretrained = getattr(self, "pretrained", None)
        if pretrained is not None and getattr(self, "adapted", None) is None:
            return f"{type(self).__name__}({pretrained.line()})"
        hparams = getattr(self.image_model, "meta", {}).get("hparams") or {}
        backbone = self.config.get("backbone") or hparams.get("backbone") or "unknown backbone"
        crop = self.preprocessing.get("crop")
        parts = [self.route or "pipeline", f"{backbone} at {crop} px" if crop else str(backbone)]
        if hasattr(self, "stage_two"):  # the two-stage route; a stage-one-only pipeline has no model name
            parts.append(f"stage two {getattr(self.stage_two, 'model', None) or 'not fitted'}")
        data = getattr(self, "data_kind", None) or self.config.get("data_kind") or "unknown data"
        sources = [str(d.get("name", "?")) for d in getattr(self, "training_data", None) or []]
        if len(sources) > 1:
            data = " + ".join(sources)
        parts.append(f"trained on {'unknown data' if data == 'unknown' else data}")
        adapted = getattr(self, "adapted", None)
        if adapted is not None:
            parts.append(adapted.describe())
        try:
            accuracy = float(self.metrics.get("accuracy"))
        except (TypeError, ValueError):  # missing (built from parts) or not a number
            accuracy = math.nan
        if math.isfinite(accuracy):
            n = self.metrics.get("n") or self.metrics.get("n_images")
            try:
                n = int(n) if n is not None and math.isfinite(float(n)) else None
            except (TypeError, ValueError):
                n = None
            parts.append(f"test accuracy {accuracy:.4f}" + (f" (n={n:,})" if n else ""))
        return f"{type(self).__name__}({', '.join(parts)})"

    @staticmethod
    def _checked_temperature(value) -> float:
        """Within the range :func:`~attr2gender.pipeline.calibration.fit_temperature` can produce: a
        temperature of 1e-300 would turn every probability into 0 or 1."""
        low, high = TEMPERATURE_BOUNDS
        if not (isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high):
            raise ConfigError(f"temperature must be a number from {low} to {high} (1 = off), got {value!r}")
        return float(value)

    def calibrated(self, male_probability: np.ndarray) -> np.ndarray:
        """P(Male) after this pipeline's temperature (unchanged when it is 1)."""
        return apply_temperature(male_probability, self.temperature)

    # --- where the forward pass runs ---
    @property
    def device(self) -> str:
        return self._device

    @device.setter
    def device(self, value: str) -> None:
        self._device = value
        self._runtime = None  # rebuilt for the new device on the next call

    @property
    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    def set_runtime(self, runtime="auto", precision: str = "auto") -> GenderPredictor:
        """Run the forward pass in ``runtime`` (``auto`` | ``torch`` | ``onnx``), with ``precision``
        (``auto`` | ``fp32`` | ``bf16``, torch only). Checked now: ``onnx`` without the extra or without
        ``model.onnx`` raises, naming the fix. A runtime object (a callable from a preprocessed batch to
        probabilities, with ``name`` and ``describe()``, like :class:`TorchRuntime`) is used as it is."""
        if not isinstance(runtime, str):
            self.runtime, self.precision, self._runtime = (
                getattr(runtime, "name", "custom"),
                precision,
                runtime,
            )
            return self
        if precision not in RUNTIME_PRECISIONS:
            raise ValueError(f"precision={precision!r} is not valid; choose one of {RUNTIME_PRECISIONS}")
        resolve_runtime(runtime, self.device, self.onnx_path)
        self.runtime, self.precision, self._runtime = runtime, precision, None
        return self

    @property
    def forward_runtime(self):
        """The runtime object that runs the forward pass (built on first use)."""
        if self._runtime is None:
            chosen = resolve_runtime(self.runtime, self.device, self.onnx_path)
            if chosen == "onnx":
                self._runtime = OnnxRuntime(self.onnx_path)
            else:
                self._runtime = TorchRuntime(self.image_model, self.device, self.precision)
        return self._runtime

    def _forward(self, x: torch.Tensor) -> np.ndarray:
        """Probabilities of a preprocessed batch, as float64: (B, 39) for stage one, (B,) for direct."""
        return self.forward_runtime(x)

    def export_onnx(self, path: str | Path) -> Path:
        """The image model (exactly what ``predict`` runs, probabilities out) as a standalone ONNX file with
        a dynamic batch axis. Needs the ``[onnx]`` extra."""
        return export_onnx(self.image_model, path, int(self.preprocessing["crop"]))

    def adapt(
        self,
        images,
        labels,
        holdout: float = 0.2,
        original_weight: float = 0.0,
        C: float | str = "auto",
        seed: int = 0,
        progress: bool | None = None,
        align: str | None = None,
        prior: str = "original",
        original=None,
    ) -> GenderPredictor:
        """A new pipeline whose head is refitted on a user's labelled photos (``labels``: 1/0 or
        Male/Female, one per image); the image model is kept and this pipeline is unchanged. Two-stage (and
        joint): stage two is refitted on stage one's outputs; direct: the final Linear on the features it
        reads, starting from the current head and held near it (``prior="original"``; ``"none"``: from
        scratch), ``C`` the inverse strength (``"auto"``: chosen by cross-validation on the photos). ``holdout`` of the photos (stratified) is scored before and
        after, and a drop is warned about. ``original_weight`` > 0 mixes in ``original``, the rows stage two
        was first fitted on (``report.stage_two_data`` from training). See :mod:`attr2gender.pipeline.adapt`."""
        return adapt_head(
            self, images, labels, holdout, original_weight, C, seed, progress, align, prior, original=original
        )

    # --- alignment of a user's photos ---
    def alignment(
        self,
        align: str | None = None,
        faces: str = "center",
        fallback: str = "error",
        min_eye_distance: float = MIN_EYE_DISTANCE,
    ) -> FaceAlignment:
        """The :class:`~attr2gender.data.faces.FaceAlignment` of a call: ``align`` (default: this pipeline's
        ``align`` attribute, ``"auto"``) with this pipeline's face template. Raises on an invalid value."""
        return FaceAlignment(
            self.align if align is None else align,
            faces,
            fallback,
            min_eye_distance,
            self.face_template,
            getattr(self, "crop_layout", None),
        )

    def _run(
        self,
        images,
        errors: str,
        progress: bool | None,
        batch_size: int | None,
        batch_fn=None,
        alignment: FaceAlignment | None = None,
        max_pixels: int | None = None,
    ) -> PredictionRows:
        """Stream ``images`` through ``batch_fn`` (default ``_predict_batch``), aligned by ``alignment``
        (default: this pipeline's). One row per input image, or per face with ``faces="all"``, in input
        order; NaN outputs where an image gave nothing."""
        batch_fn = batch_fn or self._predict_batch
        alignment = alignment or self.alignment()
        if errors not in ("coerce", "raise"):
            raise ValueError(f"errors must be 'coerce' (error rows) or 'raise', got {errors!r}")
        if alignment.enabled:
            FaceDetector.shared()  # a missing or altered detector fails the call here, not every row
        items = expand_images(images)
        names = [name for name, _ in items]
        sources = [source for _, source in items]
        n = len(items)
        batch_size = (
            self.batch_size
            if batch_size is None
            else checked_count("batch_size", batch_size, 1, MAX_BATCH_SIZE)
        )
        order: list[tuple[int, int]] = []  # per row: (input position, face index), the sort key of the rows
        faces: list = []  # per row: its FaceInfo (None: no alignment, or no image)
        row_errors: list[str] = []
        value_rows: list[int] = []  # the rows that got outputs, in the order of the blocks below
        blocks: dict[str, list[np.ndarray]] = {}
        show = progress if progress is not None else n >= PROGRESS_MIN_IMAGES
        with progress_bar(total=n, desc=f"{self.route} predict", unit="img", disable=not show) as bar:
            batches = stream_batches(
                sources, self._transform, batch_size, self.num_workers, alignment, max_pixels=max_pixels
            )
            for batch in batches:
                for position, message, face in batch.errors:
                    if errors == "raise":
                        reason = message.split(": ", 1)[-1]
                        if face is not None:  # no face, or one too small
                            raise FaceNotUsableError(str(names[position]), reason, face.n_faces, face.box)
                        raise ImageLoadError(str(names[position]), reason)
                    order.append((position, face.index if face is not None else 0))
                    faces.append(face)
                    row_errors.append(message)
                if batch.positions:
                    for chunk in range(0, len(batch.positions), batch_size):  # faces="all" can give more rows
                        result = batch_fn(batch.images[chunk : chunk + batch_size])
                        for key, values in result.items():
                            blocks.setdefault(key, []).append(values)
                    for position, face in zip(batch.positions, batch.faces):
                        value_rows.append(len(order))
                        order.append((position, face.index if face is not None else 0))
                        faces.append(face)
                        row_errors.append(face.note if face is not None else "")
                bar.update(len({*batch.positions, *(position for position, _, _ in batch.errors)}))
        m = len(order)
        outputs: dict[str, np.ndarray] = {}
        for key, parts in blocks.items():
            values = np.concatenate(parts)
            outputs[key] = np.full((m, *values.shape[1:]), np.nan, dtype=np.float64)
            outputs[key][value_rows] = values
        if "male_probability" not in outputs:
            outputs["male_probability"] = np.full(m, np.nan)
        rank = sorted(range(m), key=order.__getitem__)  # batches arrive in order; errors and rows interleave
        return PredictionRows(
            [names[order[r][0]] for r in rank],
            [order[r][0] for r in rank],
            [row_errors[r] for r in rank],
            {key: values[rank] for key, values in outputs.items()},
            [faces[r] for r in rank],
            alignment,
        )

    def predict(
        self,
        images,
        errors: str = "coerce",
        progress: bool | None = None,
        batch_size: int | None = None,
        align: str | None = None,
        faces: str = "center",
        fallback: str = "error",
        min_eye_distance: float = MIN_EYE_DISTANCE,
        max_pixels: int | None = None,
    ) -> pd.DataFrame:
        """One row per input image, in input order: ``image``, ``male_probability``, ``label``, ``error``
        (and, for the two-stage pipeline, the 39 attribute probabilities). An unreadable image gets an
        ``error`` and no prediction; ``errors="raise"`` raises instead.

        ``align="auto"`` (the default; see :attr:`align`): each photo's face is found, the one nearest the
        centre is picked, and it is warped onto the template of this pipeline's training crops before the
        model reads it. The rows then also say where: ``face_box`` (x0, y0, x1, y1 in the input image) and
        ``n_faces``. ``faces="all"``: one row per face (``face_index`` 0 is the one nearest the centre), all
        keyed by the input's ``image``. No face is an error row (``fallback="whole_image"``: predicted on the
        whole image, noted in ``error``); so is a face with eyes closer than ``min_eye_distance`` px (a turned
        face, eyes under 0.3 x its box width, is judged by its box: at least ``min_eye_distance / 0.45`` px).
        ``align="crops"``: the images are crops laid out like the training images (CelebA's, at any scale):
        each is warped onto the template by the fixed transform that layout gives (:attr:`crop_layout`,
        measured on the training crops), no detection; a face bundle then scores on them what ``auto`` does. ``align="none"``: the images are laid out as this pipeline reads already and
        are read as they are; a face bundle reads dlib's 150 px chips, so any other size is an error row.
        ``max_pixels``: an image larger than this (default 50 Mpx, :data:`attr2gender.data.images.MAX_PIXELS`)
        is an error row, found from its header before it is decoded."""
        rows = self._run(
            images,
            errors,
            progress,
            batch_size,
            alignment=self.alignment(align, faces, fallback, min_eye_distance),
            max_pixels=max_pixels,
        )
        return self._frame(rows)

    def _frame(self, rows: PredictionRows) -> pd.DataFrame:
        prob = rows.outputs["male_probability"]
        m = len(rows.names)
        label = np.where(np.isnan(prob), None, np.where(prob >= self.threshold, LABELS[1], LABELS[0]))
        # Numeric columns as one block (cheap to build, even at batch 1), then the text columns.
        # The same columns whatever was readable: a call where every image failed still has them all (NaN).
        blocks = [prob[:, None]] + [
            rows.outputs.get(k, np.full((m, len(self.extra_column_names(k))), np.nan))
            for k in self.extra_columns
        ]
        numeric = ["male_probability"] + [c for k in self.extra_columns for c in self.extra_column_names(k)]
        frame = pd.DataFrame(np.hstack(blocks), columns=numeric)
        # object dtype: file names that are not UTF-8 (surrogate-escaped) cannot live in an Arrow string column
        frame.insert(0, "image", pd.Series(rows.names, dtype=object))
        frame.insert(2, "label", label)
        if rows.alignment.enabled:
            if rows.alignment.faces == "all":
                index = [f.index if f is not None and f.box is not None else None for f in rows.faces]
                frame.insert(1, "face_index", pd.array(index, dtype="Int64"))
            frame["face_box"] = pd.Series(
                [f.box if f is not None else None for f in rows.faces], dtype=object
            )
            frame["n_faces"] = pd.array(
                [f.n_faces if f is not None else None for f in rows.faces], dtype="Int64"
            )
        frame["error"] = rows.errors
        return frame

    def extra_column_names(self, key: str) -> list[str]:
        return [key]

    def predict_proba(
        self,
        images,
        batch_size: int | None = None,
        progress: bool | None = None,
        align: str | None = None,
        fallback: str = "error",
        min_eye_distance: float = MIN_EYE_DISTANCE,
    ) -> np.ndarray:
        """(n, 2) array of P(Female), P(Male), one row per input image in input order (the face nearest the
        centre with ``align="auto"``); raises on an unreadable image or one with no usable face."""
        alignment = self.alignment(align, "center", fallback, min_eye_distance)
        male = self._run(images, "raise", progress, batch_size, alignment=alignment).outputs[
            "male_probability"
        ]
        return np.column_stack([1.0 - male, male])

    # --- identity and persistence ---
    @property
    def model_hash(self) -> str:
        """SHA-256 of the image model's weights: the key of cached stage-one outputs."""
        if self._model_hash is None:
            digest = hashlib.sha256()
            for key, tensor in sorted(self.image_model.state_dict().items()):
                digest.update(key.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._model_hash = digest.hexdigest()
        return self._model_hash

    def _manifest(self) -> dict:
        hparams = getattr(self.image_model, "meta", {}).get("hparams") or {}
        provenance = backbone_provenance(str(self.config.get("backbone") or hparams.get("backbone") or ""))
        adapted = {"adapted": self.adapted.to_json()} if getattr(self, "adapted", None) is not None else {}
        return (
            ({"backbone_weights": provenance} if provenance else {})
            | adapted
            | {
                "kind": self.route,
                "threshold": self.threshold,
                "preprocessing": self.preprocessing,
                "metrics": self.metrics,
                "config": self.config,
                "model_hash": self.model_hash,
                "temperature": self.temperature,
                "data_kind": self.data_kind,
            }
            | ({"training_data": self.training_data} if getattr(self, "training_data", None) else {})
            | ({"crop_layout": self.crop_layout.to_json()} if getattr(self, "crop_layout", None) else {})
        )

    def _save_parts(self, directory: Path) -> None:
        """Subclasses write their extra files here."""

    def save(self, directory: str | Path, onnx: bool | None = None, backbone: str = "include") -> Path:
        """Write a bundle: safetensors weights, JSON everything else, hashes in ``pipeline.json``; and
        ``model.onnx`` when the ``[onnx]`` extra is installed (``onnx=None``), always (``True``) or never.

        ``backbone="reference"`` (a frozen face network): the bundle holds the heads only, kilobytes, and
        names the installed weights file with its SHA-256; loading reads the network from there (the
        package's pretrained bundles are saved so). ONNX is then best left out (it would hold the network)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_model(
            self.image_model,
            directory,
            {"image_size": int(self.preprocessing["crop"]), "preprocessing": self.preprocessing},
            backbone=backbone,
        )
        self._save_parts(directory)
        save_template(self.face_template, directory / TEMPLATE_FILE)
        if onnx or (onnx is None and onnx_export_available()):
            self.export_onnx(directory / ONNX_FILE)
        else:
            (directory / ONNX_FILE).unlink(missing_ok=True)  # never ship a stale export of other weights
        write_manifest(directory, self._manifest())
        return directory

    def _restore_common(self, manifest: dict) -> None:
        # Strict JSON stores NaN metrics (e.g. an AUC with one class) as null: they come back as NaN.
        self.metrics = {k: float("nan") if v is None else v for k, v in manifest.get("metrics", {}).items()}
        self.config = manifest.get("config", {})
        self.temperature = self._checked_temperature(manifest.get("temperature", 1.0))
        self.data_kind = manifest.get("data_kind", "unknown")
        self.training_data = list(manifest.get("training_data", []))
        self.crop_layout = (
            FaceTemplate.from_json(manifest["crop_layout"]) if "crop_layout" in manifest else None
        )
        self.adapted = AdaptRecord.from_json(manifest["adapted"]) if "adapted" in manifest else None
