"""One flat, loggable config per run (nanoGPT style): every default carries the reason for it.

A YAML preset sets any of these keys; a preset may also hold ``runs:``, a list of named override sets
(the source study's six runs live in one file). ``key=value`` overrides from the command line come last.
Everything is validated before any work starts, and errors list the valid choices.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from .constants import MAX_IMAGE_SIZE, MAX_WORKERS, THRESHOLD_BOUNDS
from .errors import ConfigError
from .files import check_writable, nearest_existing

# Choices that only the config has. Those owned by a lower layer (tasks and losses: models; split strategies
# and augmentations: data; stage-two models and objectives: tabular) are read from there when validating,
# so each list lives once, and importing the config stays cheap (no torch, for a fast --help).
OPTIMIZERS = ("adam", "adamw", "lbfgs")  # lbfgs: full-batch, for heads on a face backbone's features
ACCELERATORS = ("auto", "cpu", "cuda", "gpu")
# Lightning's strategy names that make sense for one image model (Lightning's registry holds more variants).
STRATEGIES = (
    "auto",
    "ddp",
    "ddp_spawn",
    "ddp_find_unused_parameters_true",
    "fsdp",
    "deepspeed",
    "single_device",
)
MAX_PRESET_BYTES = 1 << 20  # a preset is a few dozen lines
TRAINING_PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")  # Lightning's names
MODES = ("staged", "joint")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
BALANCES = ("none", "male", "groups")
LOSS_REWEIGHTINGS = ("none", "groups")
ROBUST = ("none", "group_dro")
CHECKPOINT_METRICS = ("auto", "val_loss", "val_worst_group_acc")
STAGE_TWO_FIT_ON = ("predicted", "labels")
TRACKING = ("mlflow", "none")
KEEP_CHECKPOINTS = ("best", "last", "none")
MALE_SOURCES = ("both", "celeba", "labelled_faces")
FRACTION_KEYS = ("split_fractions", "labelled_faces_split")  # train/val/test shares


@dataclass
class RunConfig:
    # --- data ---
    data_root: str = ""  # CelebA root; "" makes/uses a synthetic CelebA so a fresh machine runs end to end
    split: str = "auto"  # official partition when it can serve, else an identity-disjoint split
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train/val/test, by images
    # "male" (or true): downsample the training set to equal Male/Female (the source study's resampling);
    # "groups": sample batches so each Male x makeup group is equally likely (group-robust training)
    balance: str = "none"
    group_by: str = "makeup"  # the Male x <attribute> groups that group-robust training and checkpoints use
    augment: str = (
        "standard"  # the source's crop + flip; "strong" adds colour, grayscale, blur, JPEG, rotation
    )
    image_size: int = 224  # crop size; the source study's 224 (CPU presets use 112-160)
    max_train_images: int = 0  # 0 = all; a cap keeps CPU runs short
    max_eval_images: int = 0  # 0 = all; caps val and test alike
    num_workers: int = 2  # decode processes; 2 matches the 2-core CI machine
    decode_cache: bool = False  # decode-once uint8 cache (helps when decoding is the bottleneck, i.e. GPU)
    cache_dir: str = ".cache/attr2gender"  # decode cache and stage-one probability cache
    # Training images whose median landmark positions become the bundle's face template (what predict's
    # align="auto" warps photos onto); 0 = CelebA's published aligned-crop template.
    face_template_images: int = 2000
    # --- a second source of gender-labelled faces: everyday photos of every age and ethnicity ---
    # A folder with labels.csv (path,male[,age,race,group]) or UTKFace's own file names; "" = none; "auto" =
    # <data_root>/../utkface (or ./data/utkface) when it is there, else CelebA alone, said in one line.
    # Stage one still learns the 39 attributes from CelebA alone (the concepts stay CelebA's); the Male head
    # (stage two, direct, the joint Male loss) learns from both.
    labelled_faces: str = ""
    labelled_faces_split: list[float] = field(default_factory=lambda: [0.6, 0.2, 0.2])  # by group
    male_sources: str = "both"  # what the Male head learns from: both | celeba | labelled_faces
    # How the two sources weigh in the Male loss: "rows" (each photo once), "sources" (each source half),
    # "cells" (each source half, and within the labelled faces every gender x age band cell the same).
    source_weighting: str = "cells"
    # --- model ---
    task: str = "attributes"  # "attributes": stage one (39 logits); "direct": Male from pixels
    backbone: str = "resnet18"  # any name from attr2gender.models or timm
    # "pretrained": the backbone's own pretraining (ImageNet for an image CNN, faces for a face network);
    # "imagenet" (image CNNs) | "none" | path to a .pth/.safetensors file
    weights: str = "pretrained"
    dropout: float = 0.0  # before the new head; the source used none
    freeze_backbone: bool = False  # linear probing: train only the head (fast on CPU; fine-tuning is better)
    loss: str = ""  # "" = the task's default: multilabel_soft_margin (attributes), cross_entropy (direct)
    threshold: float = 0.5  # probability above which an attribute / Male is predicted (source: 0.5)
    calibrate: bool = False  # temperature-scale P(Male) on the validation split (labels at 0.5 unchanged)
    loss_reweighting: str = "none"  # "groups": each sample's loss weighted by 1 / its group's frequency
    robust: str = "none"  # "group_dro": the GroupDRO objective (Sagawa et al., ICLR 2020)
    group_dro_step: float = 0.01  # GroupDRO's step size for the group weights (Sagawa et al.: 0.01)
    checkpoint_metric: str = (
        "auto"  # auto: val_worst_group_acc when any group-robust key is on, else val_loss
    )
    # --- optimisation ---
    optimizer: str = "adam"  # the source study used Adam throughout; "lbfgs" only for face-backbone heads
    lr: float | str = 1e-3  # source study 1: 0.001; "auto" runs Lightning's learning-rate finder
    # The L2 penalty's strength; what it multiplies is the optimiser's, said here once:
    #   adam:  coupled L2 (added to the gradient, as torch.optim.Adam's weight_decay);
    #   adamw: decoupled decay of the weights (torch.optim.AdamW's);
    #   lbfgs: the objective is mean loss + weight_decay / 2 * |W|^2 over the head's weights (not biases), the
    #          optimum of scikit-learn's LogisticRegression(C=1 / (weight_decay * n_rows)) for a single-logit head.
    weight_decay: float = 0.0  # source study 3: 1e-3 (VGG-16), 1e-4 (ResNet-50)
    batch_size: int = 128  # source study 1: 128; study 3: 32
    epochs: int = 10  # source study: 10
    max_steps: int = -1  # -1 = no cap; tests and smoke runs cap steps
    early_stopping_patience: int = 0  # 0 = off; else epochs without val-loss improvement before stopping
    # --- engine ---
    accelerator: str = "auto"  # CUDA when present, CPU otherwise; no code change needed
    devices: int | str = "auto"  # number of GPUs (or "auto")
    strategy: str = "auto"  # "ddp" for several GPUs / nodes (launch with torchrun or SLURM)
    precision: str = "auto"  # auto = bf16-mixed on CUDA; on CPU the faster of the two (bench_training.py)
    memory_format: str = "auto"  # auto = channels_last (CPU and CUDA: 1.4-2x faster convolutions)
    seed: int = 0  # seeds python, numpy, torch and the data split
    deterministic: bool = True  # same seed + config give the same metrics on CPU
    output_dir: str = "runs"  # each run writes runs/<run_name>/ (checkpoints, config, plots)
    run_name: str = ""  # "" = <task>-<backbone>-<timestamp>
    resume: bool = False  # continue from <output_dir>/<run_name>/checkpoints/last.ckpt
    # Lightning checkpoints left in <run>/checkpoints after training (the model itself is saved in <run>/model
    # and the bundle either way): "none" (the default) deletes the folder, 40 MB of a smoke run's 83 MB;
    # "best" keeps best.ckpt; "last" keeps last.ckpt (what resume=true continues from) and best.ckpt. Each
    # checkpoint also holds the optimizer state: several times the model's size.
    keep_checkpoints: str = "none"
    log_every_n_steps: int = 10
    progress: bool = True  # progress bars with images/s
    system_metrics: bool = False  # MLflow CPU/memory charts per run (opt-in: they crowd the compare view)
    # --- the concept bottleneck (Koh et al., ICML 2020) ---
    # "staged": stage one is trained alone, then stage two is fitted (stage_two_fit_on says on what);
    # "joint": one network, the 39 attributes and a linear Male head on their probabilities, trained end to
    # end on BCE(Male) + concept_weight * the attribute loss; the head becomes a logistic stage two.
    mode: str = "staged"
    concept_weight: float = 1.0  # joint: lambda, the weight of the attribute loss next to the Male loss
    # How far a model's validation mean concept AUC may fall below the sequential model's and its outputs still
    # count as concepts (a sweep picks its lambda among those; explain() and interventions warn below it).
    concept_auc_tolerance: float = 0.01
    # "soft": stage two reads stage one's probabilities; "hard": thresholded at 0.5, at fit and predict time
    # (the leakage-free bottleneck: only the 39 concepts reach stage two). auto: hard for labels, else soft.
    bottleneck: str = "auto"
    # --- stage two ---
    # "logistic" | "lightgbm" | "auto": logistic when stage two learns from CelebA alone, LightGBM when from
    # labelled faces too (chosen on validation; see resolved_stage_two)
    stage_two_model: str = "logistic"
    # "predicted": stage one's probabilities on held-out (validation) images, the *sequential* model of the
    # literature; "labels": the true attributes of every training-partition row, the *independent* model.
    stage_two_fit_on: str = "predicted"
    stage_two_class_weight: str = ""  # "" or "balanced"
    stage_two_exclude: list[str] = field(
        default_factory=list
    )  # concept editing: attributes stage two ignores
    # "worst_group": fitted for its worst Male x <group_by> group; "auto": worst_group on CelebA alone, erm
    # (with source_weighting) when labelled faces join it
    stage_two_objective: str = "erm"
    # --- tracking ---
    tracking: str = "mlflow"  # "none" disables MLflow logging
    experiment: str = "attr2gender"  # MLflow experiment name
    tensorboard: bool = False  # also write TensorBoard logs (the source used TensorBoard)

    def resolved_loss(self) -> str:
        # lazy: models imports torch; config stays importable without it (--help)
        from .models.inference import LOSSES

        return self.loss or LOSSES[self.task][0]

    @property
    def group_robust(self) -> bool:
        """Whether any group-robust training key is on (then checkpoints follow val worst-group accuracy)."""
        return self.balance == "groups" or self.loss_reweighting != "none" or self.robust != "none"

    def resolved_bottleneck(self) -> str:
        if self.bottleneck != "auto":
            return self.bottleneck
        return "hard" if self.stage_two_fit_on == "labels" and self.mode == "staged" else "soft"

    def resolved_stage_two(self, two_sources: bool) -> tuple[str, str]:
        """(model, objective) of stage two, ``auto`` resolved by what it learns from, as chosen on validation
        (benchmarks/results/bench_wild.md, wild_dev): on CelebA alone a worst-group logistic regression
        (96.5 %; LightGBM read about a point lower); with labelled faces beside it, LightGBM with ERM and the
        sources weighted (97.4 %, against 96.5 % for a logistic regression and 94.1 % worst-group, whose group
        DRO over 20 groups chases the smallest)."""
        model = self.stage_two_model
        if model == "auto":
            model = "lightgbm" if two_sources else "logistic"
        objective = self.stage_two_objective
        if objective == "auto":
            objective = "erm" if two_sources else "worst_group"
        return model, objective

    def resolved_checkpoint_metric(self) -> str:
        if self.checkpoint_metric != "auto":
            return self.checkpoint_metric
        return "val_worst_group_acc" if self.group_robust else "val_loss"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> RunConfig:
        # lazy: data and models import torch, tabular scikit-learn; config imports without them (--help)
        from .data.groups import GROUPINGS, SOURCE_WEIGHTINGS
        from .data.splits import SPLIT_STRATEGIES
        from .data.transforms import AUGMENTS
        from .models.inference import BOTTLENECKS, LOSSES
        from .tabular import MODELS
        from .tabular.robust import OBJECTIVES

        _choice("task", self.task, tuple(LOSSES))
        if self.loss:
            _choice("loss", self.loss, LOSSES[self.task], f" for task={self.task}")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.optimizer == "lbfgs":
            # lazy: models imports torch; config stays importable without it (--help)
            from .models.registry import BACKBONES

            if (
                self.backbone.strip().lower() not in BACKBONES
                or BACKBONES[self.backbone.strip().lower()].source != "face"
            ):
                raise ConfigError(
                    f"optimizer=lbfgs fits heads on a face backbone's cached features; backbone={self.backbone} "
                    "trains on images: use optimizer=adam or adamw"
                )
        _choice("split", self.split, SPLIT_STRATEGIES)
        _choice("accelerator", self.accelerator, ACCELERATORS)
        _choice("strategy", self.strategy, STRATEGIES)
        if self.tracking == "mlflow" and not self.experiment.strip():
            raise ConfigError(
                "experiment is empty; name the MLflow experiment (default attr2gender) or set tracking=none"
            )
        _choice("precision", self.precision, TRAINING_PRECISIONS)
        _choice("memory_format", self.memory_format, MEMORY_FORMATS)
        if isinstance(self.balance, bool):  # the source study's `balance: true` keeps working
            self.balance = "male" if self.balance else "none"
        _choice("balance", self.balance, BALANCES)
        _choice("group_by", self.group_by, tuple(GROUPINGS))
        _choice("augment", self.augment, AUGMENTS)
        _choice("loss_reweighting", self.loss_reweighting, LOSS_REWEIGHTINGS)
        _choice("robust", self.robust, ROBUST)
        _choice("checkpoint_metric", self.checkpoint_metric, CHECKPOINT_METRICS)
        _choice("keep_checkpoints", self.keep_checkpoints, KEEP_CHECKPOINTS)
        _choice("stage_two_objective", self.stage_two_objective, (*OBJECTIVES, "auto"))
        _choice("mode", self.mode, MODES)
        _choice("bottleneck", self.bottleneck, ("auto", *BOTTLENECKS))
        if self.mode == "joint" and self.task != "attributes":
            raise ConfigError(
                "mode=joint trains stage one with a Male head: it needs task=attributes (the "
                "two-stage route), not task=direct"
            )
        if not (isinstance(self.concept_auc_tolerance, int | float) and 0 <= self.concept_auc_tolerance <= 1):
            raise ConfigError(
                f"concept_auc_tolerance must be a number from 0 to 1, got {self.concept_auc_tolerance}"
            )
        if not (math.isfinite(self.concept_weight) and self.concept_weight >= 0):
            raise ConfigError(f"concept_weight must be a number >= 0, got {self.concept_weight}")
        if self.mode == "staged" and self.stage_two_fit_on == "labels" and self.bottleneck == "soft":
            raise ConfigError(
                "bottleneck=soft with stage_two_fit_on=labels: a stage two fitted on 0/1 labels "
                "cannot read probabilities (the trap; a LightGBM called nearly every face male). "
                "Use bottleneck=hard (or auto), or stage_two_fit_on=predicted"
            )
        if not self.group_dro_step > 0:
            raise ConfigError(f"group_dro_step must be a positive number, got {self.group_dro_step}")
        # lazy: the data package imports torch; config stays importable without it (--help)
        from .data.attributes import STAGE_ONE_ATTRIBUTES

        for name in self.stage_two_exclude:
            if name not in STAGE_ONE_ATTRIBUTES:
                close = difflib.get_close_matches(str(name), STAGE_ONE_ATTRIBUTES, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"stage_two_exclude names {name!r}{hint}, which is not one of the 39 attributes: "
                    f"{', '.join(STAGE_ONE_ATTRIBUTES)}"
                )
        if len(self.stage_two_exclude) >= len(STAGE_ONE_ATTRIBUTES):
            raise ConfigError("stage_two_exclude names every attribute; stage two needs at least one to use")
        _choice("stage_two_model", self.stage_two_model, (*MODELS, "auto"))
        _choice("stage_two_fit_on", self.stage_two_fit_on, STAGE_TWO_FIT_ON)
        _choice("stage_two_class_weight", self.stage_two_class_weight, ("", "balanced"))
        _choice("tracking", self.tracking, TRACKING)
        if isinstance(self.lr, str):
            if self.lr != "auto":
                raise ConfigError(
                    f"lr must be a positive number or 'auto' (learning-rate finder), got {self.lr!r}"
                )
        elif not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive finite number or 'auto', got {self.lr}")
        for name in ("threshold", "weight_decay", "dropout", "group_dro_step"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"{name} must be a finite number, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout is a probability in [0, 1), got {self.dropout}")
        if self.max_steps != -1 and self.max_steps < 1:
            raise ConfigError(f"max_steps must be -1 (no cap) or at least 1, got {self.max_steps}")
        if self.devices != "auto" and not (isinstance(self.devices, int) and self.devices >= 1):
            raise ConfigError(f"devices must be a positive integer or 'auto', got {self.devices!r}")
        if self.run_name and (
            self.run_name in (".", "..") or any(c in self.run_name for c in "/\\") or ".." in self.run_name
        ):
            raise ConfigError(f"run_name {self.run_name!r} must be a plain folder name: no '/', '\\' or '..'")
        for name in ("batch_size", "epochs", "image_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 16 <= self.image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(
                f"image_size must be from 16 to {MAX_IMAGE_SIZE} px, got {self.image_size} (the study used 224)"
            )
        if self.num_workers > MAX_WORKERS:
            raise ConfigError(
                f"num_workers must be from 0 to {MAX_WORKERS}, got {self.num_workers} (about one per CPU core)"
            )
        for name in (
            "weight_decay",
            "dropout",
            "max_train_images",
            "max_eval_images",
            "num_workers",
            "face_template_images",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        low, high = THRESHOLD_BOUNDS
        if not low <= self.threshold <= high:
            raise ConfigError(f"threshold must be from {low} to {high}, got {self.threshold}")
        for key in FRACTION_KEYS:
            fractions = getattr(self, key)
            if (
                len(fractions) != 3
                or any(not math.isfinite(f) or f < 0 for f in fractions)
                or abs(sum(fractions) - 1) > 1e-6
            ):
                raise ConfigError(
                    f"{key} must be three non-negative numbers summing to 1 (train, val, test), "
                    f"got {fractions}"
                )
        _choice("male_sources", self.male_sources, MALE_SOURCES)
        _choice("source_weighting", self.source_weighting, SOURCE_WEIGHTINGS)
        if self.male_sources == "labelled_faces" and not self.labelled_faces.strip():
            raise ConfigError(
                "male_sources=labelled_faces but labelled_faces is empty; name the folder "
                "(labelled_faces=../shared/utkface, or auto) or use male_sources=both"
            )
        if self.labelled_faces_split[0] <= 0 or self.labelled_faces_split[1] <= 0:
            raise ConfigError(
                f"labelled_faces_split needs a training and a validation share above 0, got "
                f"{self.labelled_faces_split} (the validation side is where the weak cells are seen)"
            )
        # lazy: models imports torch; config stays importable without it (--help)
        from .models import check_backbone_name

        try:
            check_backbone_name(self.backbone)
        except ValueError as exc:
            raise ConfigError(f"backbone: {exc}") from None
        return self

    def check_weights(self) -> RunConfig:
        """Raise ``WeightsNotFoundError`` (naming the file and where to put it) unless the weights are here,
        and a library error unless this machine can run the config: a weights file that is not one, an
        ``output_dir`` that cannot be written, ``accelerator=cuda`` with no GPU visible.

        Separate from :meth:`validate` so presets can be read on another machine; the training entry points
        call it before any image is read."""
        # lazy: models imports torch; config stays importable without it (--help)
        from .models import check_backbone_name, locate_weights

        locate_weights(check_backbone_name(self.backbone), self.weights)
        self.check_output_dir()
        if self.cache_dir:  # found now, not when training ends and the first entry is written
            self.check_writable_folder("cache_dir", self.cache_dir)
        if self.accelerator in ("cuda", "gpu"):
            import torch

            if not torch.cuda.is_available():
                raise ConfigError(
                    f"accelerator={self.accelerator} but no CUDA device is visible here; use accelerator=auto or cpu"
                )
        return self

    def check_output_dir(self) -> Path:
        """``output_dir``, after proving a file can be written in it, or in the nearest folder above it that
        exists when it does not exist yet (it is made when a run starts, so a run refused before that leaves
        no empty folder behind)."""
        return self.check_writable_folder("output_dir", self.output_dir)

    @staticmethod
    def check_writable_folder(key: str, folder: str) -> Path:
        """``folder`` (``output_dir``, ``cache_dir``) is a folder a file can be written in, or the nearest
        folder above it that exists is; a :class:`ConfigError` naming ``key`` otherwise."""
        out = Path(folder).expanduser()
        try:
            if out.exists() and not out.is_dir():
                raise ConfigError(f"{key}={folder} is a file; give a folder")
            existing = nearest_existing(out)
            if not existing.is_dir():
                raise ConfigError(f"{key}={folder}: {existing} is a file; give a folder")
            check_writable(existing)
        except OSError as exc:
            raise ConfigError(
                f"{key}={folder}: cannot write there ({exc.strerror}); choose a writable folder"
            ) from None
        return out


def _choice(name: str, value, choices, extra: str = "") -> None:
    if value not in choices:
        raise ConfigError(
            f"{name}={value!r} is not valid{extra}; choose one of: {', '.join(map(repr, choices))}"
        )


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def _coerce(key: str, value: Any, from_text: bool = False) -> Any:
    """A command line's ``key=value`` text (``from_text``: parsed as YAML) or a typed value (from a YAML
    file or Python), checked against the field's type.

    Text from the command line is parsed (``epochs=2`` is an int); YAML and Python values are taken as
    typed, so ``epochs: 2.5``, ``batch_size: true``, ``backbone: 123`` or a quoted ``weight_decay: "0.01"``
    (a string) fail here, naming the key."""
    default = (
        FIELDS[key].default
        if FIELDS[key].default is not dataclasses.MISSING
        else FIELDS[key].default_factory()
    )
    from_text = from_text and isinstance(value, str)
    parsed = (plain_yaml(value, f"{key}=") if value != "" else "") if from_text else value
    shown = repr(value)

    def number(v) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    if key == "balance":  # true/false (the source study's) or a mode name
        if isinstance(parsed, bool):
            return parsed
        if isinstance(parsed, str):
            return parsed
        raise ConfigError(f"balance must be true, false or one of {BALANCES}, got {shown}")
    if key == "devices":  # a count, or "auto"
        if parsed == "auto" or (isinstance(parsed, int) and not isinstance(parsed, bool) and parsed >= 1):
            return parsed
        raise ConfigError(f"devices must be a positive integer or 'auto', got {shown}")
    if key == "lr":
        if parsed == "auto" or number(parsed):
            return parsed if parsed == "auto" else float(parsed)
        raise ConfigError(f"lr must be a positive number or 'auto' (learning-rate finder), got {shown}")
    if isinstance(default, list):
        if from_text and isinstance(parsed, str) and key not in FRACTION_KEYS:
            return [part.strip() for part in parsed.split(",") if part.strip()]  # a,b,c from the command line
        if not isinstance(parsed, list):
            raise ConfigError(f"{key} must be a list, got {shown}")
        if key in FRACTION_KEYS and not all(number(v) for v in parsed):
            raise ConfigError(f"{key} must be three numbers, got {shown}")
        if key not in FRACTION_KEYS and not all(isinstance(v, str) for v in parsed):
            raise ConfigError(f"{key} must be a list of names, got {shown}")
        return [float(v) for v in parsed] if key in FRACTION_KEYS else list(parsed)
    if isinstance(default, bool):
        if not isinstance(parsed, bool):
            raise ConfigError(f"{key} must be true or false, got {shown}")
        return parsed
    if isinstance(default, int):
        if not isinstance(parsed, int) or isinstance(parsed, bool):
            raise ConfigError(f"{key} must be an integer, got {shown}")
        return parsed
    if isinstance(default, float):
        if not number(parsed):
            raise ConfigError(f"{key} must be a number, got {shown}")
        return float(parsed)
    if isinstance(default, str):
        if from_text:
            return value  # the command line's text as typed: backbone=123 is the name "123"
        if not isinstance(parsed, str):
            raise ConfigError(f"{key} must be a string, got {shown}")
        return parsed
    return parsed


class _PlainLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without anchors and aliases: presets never need them, and 354 bytes of nested
    aliases (a "billion laughs") expand to billions of values in whatever walks the result."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (*name) are not allowed in presets", event.start_mark
            )
        return super().compose_node(parent, index)


def plain_yaml(text: str, where: str):
    """``text`` parsed as plain YAML (mappings, lists, numbers, strings), or a ``ConfigError`` naming
    ``where``: tags, aliases, and documents nested deeper than Python can walk are refused."""
    try:
        return yaml.load(text, Loader=_PlainLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:  # includes !!python/... tags, which a SafeLoader never constructs
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"{where}{at} is not plain YAML: {problem}. Presets hold keys and plain values (numbers, "
            "strings, lists), no tags or aliases"
        ) from None
    except RecursionError:
        raise ConfigError(
            f"{where} is nested too deep to be a preset; presets are flat keys and lists"
        ) from None


def check_keys(keys, where: str) -> None:
    unknown = [k for k in keys if k not in FIELDS]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, FIELDS, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(
            f"unknown config key(s) in {where}: {', '.join(hints)}. Valid keys: {', '.join(FIELDS)}"
        )


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=0.01", "backbone=vgg16"]`` into a dict, validating key names."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. epochs=2)")
        key, value = item.split("=", 1)
        check_keys([key.strip()], "the command line")
        out[key.strip()] = _coerce(key.strip(), value.strip(), from_text=True)
    return out


def build_config(values: dict[str, Any], where: str = "config") -> RunConfig:
    check_keys(values, where)
    return RunConfig(**{k: _coerce(k, v) for k, v in values.items()}).validate()


PRESETS_PACKAGE = "attr2gender.presets"


def list_presets() -> list[str]:
    """Names of the presets that ship with the package (``attr2gender/presets/*.yaml``)."""
    return sorted(
        p.name[: -len(".yaml")] for p in files(PRESETS_PACKAGE).iterdir() if p.name.endswith(".yaml")
    )


def preset_text(name_or_path: str | Path) -> tuple[str, str]:
    """(where, YAML text) of a preset: a file path, or the name of a shipped preset (``cpu``, ``cpu.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        if path.stat().st_size > MAX_PRESET_BYTES:
            raise ConfigError(
                f"{path} is {path.stat().st_size:,} bytes; a preset is a short YAML file of keys"
            )
        return str(path), _read_text(path)
    name = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    if str(path) in (name, f"{name}.yaml") and name in list_presets():
        return f"preset {name}", files(PRESETS_PACKAGE).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    raise ConfigError(
        f"config {name_or_path} is neither a file nor a preset; presets: {', '.join(list_presets())} "
        "(or pass a path to a YAML file; `attr2gender presets show NAME` prints one to edit)"
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; presets are YAML files") from None


def load_preset(preset: str | Path | None, overrides: list[str] | None = None) -> list[tuple[str, RunConfig]]:
    """A preset (a shipped name like ``cpu``, or a YAML file) plus ``key=value`` overrides into one or more
    named configs (several when it has ``runs:``)."""
    base: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    where = "the command line"
    if preset is not None:
        where, text = preset_text(preset)
        path = where
        loaded = plain_yaml(text, path) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of config keys")
        runs = loaded.pop("runs", None) or []
        if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
            raise ConfigError(f"{path}: runs must be a list of mappings (name: ..., key: value ...)")
        base = loaded
        check_keys(base, where)
    extra = parse_overrides(overrides or [])
    if not runs:
        return [(base.get("run_name", "") or "", build_config({**base, **extra}, where))]
    out = []
    for i, run in enumerate(runs):
        run = dict(run)
        name = run.pop("name", f"run{i}")
        check_keys(run, f"{where} runs[{i}]")
        values = {**base, **run, **extra}
        values.setdefault("run_name", name)
        out.append((name, build_config(values, f"{where} runs[{i}]")))
    return out


def save_config(config: RunConfig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path
