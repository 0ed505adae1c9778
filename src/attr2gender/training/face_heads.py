"""Face backbones: each image's face aligned as the face network expects, its features computed once and
cached, and the heads of every route trained on them in seconds.

One alignment for training and predict: CelebA's crops and a user's photos alike go through the same
RetinaFace detection and the same warp onto the backbone's template (dlib's 150 px chips), so the network
never sees faces laid out two ways. A CelebA image whose face cannot be found is skipped and counted, as an
unreadable one is.

The face network stays frozen (what it learnt from millions of faces is what the routes need, and 2 CPU
cores cannot fine-tune it on CelebA in minutes); only the standardiser and the head learn:

- stage one: a Linear from the features to the 39 attribute logits, ``MultiLabelSoftMarginLoss`` as ever;
- direct: a Linear to Male;
- joint: the 39 attribute logits, then the Male head on their probabilities, ``BCE + lambda * concepts``.

The losses are the Lightning modules' own (:meth:`attr2gender.training.modules.ImageModel.batch_loss`),
so a head trained here is the module a Lightning run would have made, saved and loaded the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..config import RunConfig, save_config
from ..data.attributes import STAGE_ONE_ATTRIBUTES
from ..data.faces import TEMPLATES, FaceAlignment, FaceDetector, FaceTemplate
from ..data.groups import CELEBA_SOURCE, age_bands, group_ids, group_names, source_weights
from ..data.transforms import EvalPreprocessing, preprocessing_spec
from ..errors import ConfigError
from ..metrics import binary_metrics, concept_quality
from ..models.face_net import FaceFeatureNet
from ..models.registry import BackboneSpec, face_backbone, model_preprocessing
from ..pipeline.bundle import disk_bytes
from ..pipeline.cache import StageOneCache
from ..pipeline.inputs import stream_batches
from ..progress import progress as progress_bar
from .datamodule import CelebADataModule
from .engine import (
    TrainResult,
    build_module,
    checkpoint_monitor,
    claim_run_folder,
    describe_split,
    run_directory,
    train,
)
from .export import save_image_model


@dataclass(frozen=True)
class RouteInputs:
    """How a route's image model reads faces, in training and in predict: the preprocessing, whether the
    splits' CelebA images are aligned first (``align``), and the template faces are warped onto (None:
    measured from the training crops)."""

    preprocessing: dict
    align: str
    template: FaceTemplate | None


def route_inputs(config: RunConfig) -> RouteInputs:
    """Image CNNs read CelebA's crops as they are (``align="none"``) and photos aligned onto the crops'
    measured template; face backbones read every image, CelebA's too, aligned onto their own template."""
    spec = face_backbone(config.backbone)
    if spec is None:
        return RouteInputs(preprocessing_spec(config.image_size), "none", None)
    return RouteInputs(model_preprocessing(spec.name, config.image_size), "auto", TEMPLATES[spec.template]())


def check_face_config(config: RunConfig, spec: BackboneSpec) -> None:
    """What a face backbone cannot do, said before any image is read."""
    problems = []
    if not config.freeze_backbone:
        problems.append(
            "freeze_backbone=false (face backbones train their heads on cached features of the frozen "
            "network; set freeze_backbone=true)"
        )
    if config.image_size != spec.input_size:
        problems.append(f"image_size={config.image_size} (it reads {spec.input_size} px faces)")
    if config.augment != "standard":
        problems.append(f"augment={config.augment} (cached features are of the faces as they are)")
    if config.robust != "none":
        problems.append(f"robust={config.robust} (use loss_reweighting=groups or balance=groups)")
    if config.lr == "auto" and config.optimizer != "lbfgs":
        problems.append("lr=auto (the learning-rate finder runs on images; give a number)")
    if config.resume:
        problems.append("resume=true (a head trains in seconds: start again)")
    if problems:
        raise ConfigError(f"backbone={spec.name} cannot run with " + "; ".join(problems))


def backbone_hash(net: FaceFeatureNet) -> str:
    """SHA-256 of the face network's tensors and feature kind: the cache key's model part."""
    digest = hashlib.sha256(net.features_kind.encode())
    for name, tensor in sorted(net.backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def extract_features(
    net: FaceFeatureNet,
    paths: list[Path],
    inputs: RouteInputs,
    batch_size: int = 64,
    num_workers: int = 2,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    desc: str = "face features",
    model_hash: str | None = None,
) -> tuple[np.ndarray, list[str], float | None]:
    """(n, d) raw features (NaN rows where no face was usable), per-row errors, and, when the cache served
    them, the seconds computing them took then (None: computed now). Cached by (network hash,
    preprocessing, alignment, files) when ``cache_dir`` is set."""
    alignment = FaceAlignment(inputs.align, template=inputs.template or FaceTemplate.celeba())
    dim = net.feature_dim
    # A face network's features are bounded by its weights (dlib's: about -1 to 5); far outside is planted.
    cache = StageOneCache(cache_dir, kind="features", value_range=FEATURE_RANGE) if cache_dir else None
    key = described = None
    if cache is not None:
        what = inputs.preprocessing | ({"align": alignment.cache_key()} if alignment.enabled else {})
        key, described = cache.key(model_hash or backbone_hash(net), what, list(paths))
        hit = cache.load(key, len(paths), dim)
        if hit is not None:
            return hit[0], hit[1], float(cache.meta(key).get("seconds", 0.0))
    if alignment.enabled:
        FaceDetector.shared()  # a missing detector fails here, before any image is read
    start = time.perf_counter()
    net = net.eval()
    transform = EvalPreprocessing(inputs.preprocessing)
    features = np.full((len(paths), dim), np.nan, dtype=np.float32)
    errors = [""] * len(paths)
    with progress_bar(total=len(paths), desc=desc, unit="img", disable=not progress) as bar:
        for batch in stream_batches(list(paths), transform, batch_size, num_workers, alignment):
            for position, message, _ in batch.errors:
                errors[position] = message
            if batch.positions:
                x = batch.images.contiguous(memory_format=torch.channels_last)
                features[batch.positions] = net.features(x).float().numpy()
            bar.update(len(batch.positions) + len(batch.errors))
    if cache is not None:
        # The time the pass took is kept with it: a route that reads the cache still reports its cost.
        cache.store(key, described | {"seconds": time.perf_counter() - start}, features, errors)
    return features.astype(np.float64), errors, None


def _targets(celeba, ids: list[str], grouping: str) -> dict[str, torch.Tensor]:
    truth = celeba.attributes.loc[ids]
    return {
        "attributes": torch.from_numpy(celeba.stage_one_targets(ids).astype(np.float32)),
        "male": torch.from_numpy(celeba.male(ids).astype(np.int64)),
        "group": torch.from_numpy(group_ids(truth, grouping=grouping).astype(np.int64)),
    }


def _labelled_targets(faces, ids: list[str]) -> dict[str, torch.Tensor]:
    """A labelled face's targets: Male alone. Its 39 attributes are unknown (zeros, masked out of every
    concept loss and metric) and it is in no CelebA group (-1)."""
    n = len(ids)
    return {
        "attributes": torch.zeros(n, len(STAGE_ONE_ATTRIBUTES)),
        "male": torch.from_numpy(faces.male(ids).astype(np.int64)),
        "group": torch.full((n,), -1, dtype=torch.int64),
    }


def _subset(batch: dict[str, torch.Tensor], index) -> dict[str, torch.Tensor]:
    return {k: v[index] for k, v in batch.items()}


def loss_weights(
    config: RunConfig, y: dict, sources: np.ndarray, bands: np.ndarray, group_robust: bool = True
) -> torch.Tensor | None:
    """Per-row loss weights (mean 1), or None when every row weighs the same: the two sources as
    ``source_weighting`` says; with group-robust keys, CelebA's Male x makeup groups each get an equal share of
    CelebA's weight. Rows outside the Male loss (CelebA's, with ``male_sources=labelled_faces`` in a joint
    model) weigh 0 there."""
    n = len(sources)
    in_male_loss = np.ones(n, dtype=bool)
    # Only a model with a Male loss (direct, joint) leaves CelebA's rows out of it; a staged stage one's
    # loss is the attributes', on every CelebA row, whatever male_sources says.
    if config.male_sources == "labelled_faces" and (config.task == "direct" or config.mode == "joint"):
        in_male_loss = sources != CELEBA_SOURCE
    weights = np.zeros(n)
    if in_male_loss.any():
        weights[in_male_loss] = source_weights(
            sources[in_male_loss],
            y["male"].numpy()[in_male_loss],
            bands[in_male_loss],
            config.source_weighting,
        )
    if group_robust and (config.balance == "groups" or config.loss_reweighting == "groups"):
        groups = y["group"].numpy()
        celeba = groups >= 0
        totals = np.bincount(
            groups[celeba], weights=weights[celeba], minlength=len(group_names(config.group_by))
        )
        share = weights[celeba].sum() / max(int((totals > 0).sum()), 1)
        weights[celeba] = weights[celeba] * share / np.where(totals > 0, totals, 1.0)[groups[celeba]]
    if np.allclose(weights, weights[0]) and in_male_loss.all():
        return None
    return torch.from_numpy(weights * (n / weights.sum())).float()


FEATURE_RANGE = (-1e3, 1e3)  # what a cached face-feature value may be (a planted 3e38 is refused)
LBFGS_ITERATIONS = 20  # L-BFGS iterations per history row ("epoch"): the kept row is chosen on validation


def train_heads(
    model, train_x: torch.Tensor, train_y: dict, val_x: torch.Tensor, val_y: dict, config: RunConfig
) -> tuple[pd.DataFrame, int, str]:
    """Fit the standardiser and every trainable head parameter on features; keep the epoch with the lowest
    validation loss (the highest validation worst-group score when group-robust), as the image loop does.
    Returns the per-epoch history, the kept epoch and the metric that chose it.

    ``optimizer=lbfgs`` (the face preset): full-batch L-BFGS with a line search on the route's loss plus
    ``weight_decay / 2 * |W|^2`` on the head weights (not the biases). A staged head is a logistic
    regression: convex, so it converges to the same optimum from any start, in seconds, with nothing to tune
    but the penalty. Each epoch is :data:`LBFGS_ITERATIONS` iterations. ``adam`` / ``adamw``: mini-batches
    of ``batch_size`` with ``lr``, as for images."""
    net: FaceFeatureNet = model.net
    net.norm.fit(train_x)
    for p in net.backbone.parameters():
        p.requires_grad = False
    named = [
        (n, p) for n, p in model.named_parameters() if p.requires_grad and not n.startswith("net.backbone")
    ]
    params = [p for _, p in named]

    def objective(x, batch) -> torch.Tensor:
        # ``batch`` carries the row weights and the concept mask where two sources are mixed.
        return model.batch_loss(net.forward_features(x), batch)

    lbfgs = config.optimizer == "lbfgs"
    if lbfgs:
        penalised = [p for n, p in named if n.endswith("weight")]
        optimizer = torch.optim.LBFGS(
            params, lr=1.0, max_iter=LBFGS_ITERATIONS, history_size=20, line_search_fn="strong_wolfe"
        )
    else:
        cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        optimizer = cls(params, lr=float(config.lr), weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    monitor = checkpoint_monitor(config, val_y["group"].numpy())
    best, best_state, kept_epoch, rows = None, None, 0, []
    n, steps = len(train_x), 0
    for epoch in range(config.epochs):
        model.train()
        if lbfgs:

            def closure():
                optimizer.zero_grad(set_to_none=True)
                loss = objective(train_x, train_y)
                loss = loss + config.weight_decay / 2 * sum(p.pow(2).sum() for p in penalised)
                loss.backward()
                return loss

            train_loss = float(optimizer.step(closure).detach())
            steps += LBFGS_ITERATIONS
        else:
            order = torch.randperm(n, generator=generator)
            total = 0.0
            for start in range(0, n, config.batch_size):
                index = order[start : start + config.batch_size]
                loss = objective(train_x[index], _subset(train_y, index))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(index)
                steps += 1
                if 0 < config.max_steps <= steps:
                    break
            train_loss = total / n
        model.eval()
        with torch.no_grad():
            logits = net.forward_features(val_x)
            val_loss = float(model.batch_loss(logits, val_y))
            prob = model.probabilities(logits).float().numpy()
        attributes, male = val_y["attributes"].numpy(), val_y["male"].numpy()
        metrics = _epoch_metrics(model, prob, attributes, male, val_y.get("concept_mask"))
        worst = model.worst_group_accuracy(prob, attributes, male, val_y["group"].numpy())
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_worst_group_acc": worst}
        row |= {f"val_{k}": float(v) for k, v in metrics.items()}
        rows.append(row)
        score = -val_loss if monitor == "val_loss" else worst
        if best is None or score > best:
            best, kept_epoch = score, epoch
            best_state = {
                k: v.detach().clone()
                for k, v in model.state_dict().items()
                if not k.startswith("net.backbone")
            }
        if 0 < config.max_steps <= steps:
            break
    model.load_state_dict(best_state, strict=False)
    return pd.DataFrame(rows), kept_epoch, monitor


def _epoch_metrics(model, prob, attributes, male, concept_mask) -> dict[str, float]:
    """The model's validation metrics; with a concept mask (a joint model on two sources) its concept
    metrics come from the rows that have CelebA's attributes and its Male metrics from every row."""
    if concept_mask is None:
        return model.epoch_metrics(prob, attributes, male)
    rows = concept_mask.numpy().astype(bool)
    metrics = model.epoch_metrics(prob[rows], attributes[rows], male[rows])
    both = binary_metrics(male, model.male_probability(prob), threshold=model.hparams.threshold)
    return metrics | {"acc": both["accuracy"], "auc": both["roc_auc"]}


def train_on_features(config: RunConfig, loggers: list | None = None) -> TrainResult:
    """Train a face backbone's head for ``config.task`` (and ``config.mode``): align every training and
    validation image, compute (or read) its features, fit the head, save the model like ``train`` does."""
    config = dataclasses.replace(config).validate().check_weights()
    spec = face_backbone(config.backbone)
    check_face_config(config, spec)
    if not config.data_root:
        raise ConfigError("data_root is empty: pass a CelebA root (`attr2gender data synth --out DIR`)")
    config.data_root = str(Path(config.data_root).expanduser().resolve())
    config.precision, config.memory_format = "32-true", "channels_last"
    run_dir, run_name = run_directory(config)
    config.run_name = run_name
    with claim_run_folder(run_dir):
        return _train_heads_in(config, spec, run_dir, loggers)


def _train_heads_in(
    config: RunConfig, spec: BackboneSpec, run_dir: Path, loggers: list | None
) -> TrainResult:
    """The body of :func:`train_on_features`, inside its claimed run folder."""
    torch.manual_seed(config.seed)
    dm = CelebADataModule(config)
    dm.prepare()
    celeba, splits = dm.celeba, dm.splits
    model = build_module(config, 1.0 if config.lr == "auto" else float(config.lr))
    inputs = route_inputs(config)
    save_config(config, run_dir / "config.yaml")
    if config.progress:
        print(
            f"training {config.task} head on {spec.name} features (frozen; cached in {config.cache_dir}), "
            f"{describe_split(splits, config)}, run {run_dir}",
            flush=True,
        )
    start = time.perf_counter()
    model_hash = backbone_hash(model.net)
    served, recorded = [], 0.0

    def features_of(paths: list[Path], desc: str) -> tuple[np.ndarray, list[str]]:
        nonlocal recorded
        feats, errors, hit = extract_features(
            model.net,
            paths,
            inputs,
            batch_size=config.batch_size,
            num_workers=config.num_workers,
            cache_dir=config.cache_dir or None,
            progress=config.progress,
            desc=desc,
            model_hash=model_hash,
        )
        served.append(hit is not None)
        recorded += hit or 0.0
        return feats, errors

    # The Male head learns from the labelled faces too (direct, and a joint model's Male loss); stage one's
    # attributes come from CelebA alone, so its concepts stay CelebA's.
    labelled = dm.labelled if male_head_reads_labelled(config) else None
    celeba_rows = not (config.task == "direct" and config.male_sources == "labelled_faces")
    data, celeba_data, sources = {}, {}, {}
    for name in ("train", "val"):
        parts = []  # (features, targets, source, age bands, images without a face)
        if celeba_rows:
            ids = list(getattr(splits, name))
            feats, errors = features_of([celeba.image_path(i) for i in ids], f"face features ({name})")
            ok = np.array([not e for e in errors], dtype=bool)
            if ok.sum() < 2:
                raise ConfigError(
                    f"no usable face in the {name} split of {celeba.root} ({len(ids)} images; first error: "
                    f"{next((e for e in errors if e), '')}); face backbones need real faces"
                )
            kept = list(np.asarray(ids)[ok])
            parts.append(
                (feats[ok], _targets(celeba, kept, config.group_by), CELEBA_SOURCE, None, (~ok).sum())
            )
        if labelled is not None:
            ids = list(getattr(dm.labelled_splits, name))
            feats, errors = features_of(
                [labelled.image_path(i) for i in ids], f"face features ({labelled.name}, {name})"
            )
            ok = np.array([not e for e in errors], dtype=bool)
            kept = list(np.asarray(ids)[ok])
            if len(np.unique(labelled.male(kept))) < 2:
                raise ConfigError(
                    f"the {name} side of {labelled.root} has {ok.sum()} usable faces of one gender or none "
                    f"({len(ids)} photos; first error: {next((e for e in errors if e), '')}); use more photos"
                )
            bands = age_bands(labelled.age(kept))
            parts.append((feats[ok], _labelled_targets(labelled, kept), labelled.name, bands, (~ok).sum()))
        _warn_unusable(name, parts, config)
        data[name] = _rows(config, parts, name)
        if celeba_rows:
            celeba_data[name] = _rows(config, parts[:1], name)
        sources[name] = {
            source: (len(part[1]["male"]), int(part[4])) for part, source in ((p, p[2]) for p in parts)
        }
    # Both routes pay for the features: a route served from the cache counts the seconds the pass took when
    # it was computed, so training-time ratios compare like with like.
    feature_seconds = time.perf_counter() - start + recorded
    start = time.perf_counter()
    history, kept_epoch, monitor = train_heads(
        model, data["train"][0], data["train"][1], data["val"][0], data["val"][1], config
    )
    head_seconds = time.perf_counter() - start
    model.eval()
    reference = sequential_reference(config, celeba_data) if config.mode == "joint" else None
    history.to_csv(run_dir / "history.csv", index=False)
    for logger in loggers or []:
        for row in history.to_dict("records"):
            logger.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
    metrics = {
        "train_seconds": feature_seconds + head_seconds,
        "feature_seconds": feature_seconds,
        "head_train_seconds": head_seconds,
        "feature_cache_hit": float(all(served)),
        "train_images_without_face": float(sources["train"].get(CELEBA_SOURCE, (0, 0))[1]),
        "val_images_without_face": float(sources["val"].get(CELEBA_SOURCE, (0, 0))[1]),
        "kept_epoch": float(kept_epoch),
    }
    if labelled is not None:
        for name in ("train", "val"):
            used, missing = sources[name][labelled.name]
            metrics[f"labelled_faces_{name}_images"] = float(used)
            metrics[f"labelled_faces_{name}_without_face"] = float(missing)
    if reference is not None:
        metrics["reference_val_concept_mean_auc"] = reference
    result = TrainResult(
        config,
        run_dir,
        model,
        None,
        metrics=metrics,
        history=history,
        datamodule=dm,
        train_seconds=feature_seconds + head_seconds,
        epochs_run=len(history),
        kept_epoch=kept_epoch,
        kept_by=monitor,
    )
    result.sources = sources
    result.model_dir = save_image_model(
        model, run_dir / "model", config.image_size, extra={"metrics": metrics, "config": config.to_dict()}
    )
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    result.run_dir_bytes = disk_bytes(run_dir)
    if config.progress:
        faces = " + ".join(
            f"{used:,} {source} ({missing:,} without a usable face)"
            for source, (used, missing) in sources["train"].items()
        )
        cached = " (computed earlier, read from the cache)" if all(served) else ""
        print(
            f"{spec.name} head: training faces {faces}, features {feature_seconds:.0f} s{cached}, head "
            f"{head_seconds:.1f} s, kept epoch {kept_epoch} (by {result.kept_by})",
            flush=True,
        )
    return result


UNUSABLE_WARNING = 0.5  # share of a side's images without a usable face above which a run says so loudly


def _warn_unusable(side: str, parts: list, config: RunConfig) -> None:
    """A face route trained on a handful of the images it was given is a different model from the one its
    numbers suggest (the face preset on synthetic faces found faces in 81 of 1,600): say so, loudly."""
    for features, _, source, _, missing in parts:
        total = len(features) + int(missing)
        if total and missing / total > UNUSABLE_WARNING:
            message = (
                f"only {len(features):,} of {total:,} {source} {side} images had a usable face "
                f"({missing:,} without one): this head learns from those {len(features):,}; face backbones "
                "need real photos of faces"
            )
            warnings.warn(message, stacklevel=3)
            if config.progress:
                print(f"WARNING: {message}", flush=True)


def male_head_reads_labelled(config: RunConfig) -> bool:
    """Whether a face route's trained head learns Male from the labelled faces: the direct head and a joint
    model's Male head do (unless ``male_sources=celeba``); a staged stage one learns CelebA's attributes."""
    return config.male_sources != "celeba" and (config.task == "direct" or config.mode == "joint")


def _rows(config: RunConfig, parts: list, side: str) -> tuple[torch.Tensor, dict, int]:
    """One side's rows from its sources: (features, targets, images without a usable face). Two sources
    add the row weights (``source_weighting``; group-robust weights on the training side only, as the image
    loop's validation loss is unweighted) and, for a joint model, the mask of the rows that have CelebA's
    attributes; one source keeps the plain objective."""
    x = torch.from_numpy(np.concatenate([p[0] for p in parts])).float()
    y = {k: torch.cat([p[1][k] for p in parts]) for k in parts[0][1]}
    sources = np.concatenate([np.full(len(p[0]), p[2], dtype=object) for p in parts])
    bands = np.concatenate(
        [p[3] if p[3] is not None else np.full(len(p[0]), "", dtype=object) for p in parts]
    )
    weights = loss_weights(config, y, sources, bands, group_robust=side == "train")
    if weights is not None:
        y["weight"] = weights
    if config.mode == "joint" and len(parts) > 1:
        y["concept_mask"] = torch.from_numpy((sources == CELEBA_SOURCE).astype(np.float32))
    return x, y, int(sum(p[4] for p in parts))


def sequential_reference(config: RunConfig, data: dict) -> float:
    """The validation mean concept AUC of the sequential model on the same features (a staged attribute
    head, fitted in seconds): what a joint model's concepts are judged against."""
    staged = dataclasses.replace(config, mode="staged")
    model = build_module(staged, 1.0 if config.lr == "auto" else float(config.lr))
    train_heads(model, data["train"][0], data["train"][1], data["val"][0], data["val"][1], staged)
    with torch.no_grad():
        prob = torch.sigmoid(model.net.forward_features(data["val"][0])).numpy()
    return concept_quality(data["val"][1]["attributes"].numpy(), prob, STAGE_ONE_ATTRIBUTES)[
        "concept_mean_auc"
    ]


def train_image_model(config: RunConfig, loggers: list | None = None) -> TrainResult:
    """The route's image model: on cached features for a face backbone, else the Lightning loop."""
    if face_backbone(config.backbone) is not None:
        return train_on_features(config, loggers)
    return train(config, loggers=loggers, evaluate_test=False)
