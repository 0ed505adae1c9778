"""The loop (Lightning ``Trainer``): ``train(config)`` fits one image model and evaluates it on test.

CUDA when present (bf16 mixed precision, channels-last), the CPU otherwise (channels-last, and the precision
:data:`CPU_PRECISION` that ``benchmarks/bench_training.py`` measured faster); the user changes nothing, and
``precision=32-true memory_format=contiguous`` turns both off.
For several GPUs set ``devices`` and ``strategy=ddp``; launch with ``torchrun`` or SLURM ``srun``
(Lightning reads their environment), e.g.::

    torchrun --nproc_per_node 4 -m attr2gender.cli train --config two_stage devices=4 strategy=ddp
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import secrets
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from ..config import RunConfig, save_config
from ..errors import ConfigError, UnsafeCheckpointError
from ..metrics import MIN_GROUP_SIZE
from ..models.weights_files import torch_refusal_reason
from ..pipeline.bundle import disk_bytes
from ..plots import plot_lr_finder
from ..progress import interactive
from ..stamps import run_stamp
from .callbacks import EpochLossTQDMProgressBar, LineProgressBar, ThroughputMonitor
from .datamodule import CelebADataModule
from .evaluate import SplitPredictions, predict_dataset, split_metrics
from .export import load_weights_from_checkpoint, save_image_model
from .modules import ImageModel, model_class


@dataclass
class TrainResult:
    """What one training run produced."""

    config: RunConfig  # resolved: data root, lr after the finder, accelerator, precision
    run_dir: Path
    model: ImageModel | None  # best weights, in eval mode (None on non-zero DDP ranks)
    model_dir: Path | None  # safetensors + JSON export of the best weights
    metrics: dict[str, float] = field(default_factory=dict)  # test split
    history: pd.DataFrame | None = None  # one row per epoch: train/val loss and metrics
    test_predictions: SplitPredictions | None = None
    datamodule: CelebADataModule | None = None
    train_seconds: float = 0.0
    epochs_run: int = 0
    lr_finder: dict | None = None  # {"lr": [...], "loss": [...], "suggestion": x}
    run_dir_bytes: int = 0  # the run folder's size when training ended (after keep_checkpoints pruned it)
    checkpoints: str | None = None  # what keep_checkpoints left, in words (None: a head writes none)
    # Per side ("train", "val"): {source: (images the head learnt from, images without a usable face)}
    sources: dict = field(default_factory=dict)
    # The epoch whose weights ``model`` holds (0-based, a row of ``history``) and the validation metric that
    # chose it (``val_loss``, or ``val_worst_group_acc`` for a group-robust config): recorded once, where the
    # checkpoint is chosen, and read wherever "the kept epoch" is said.
    kept_epoch: int | None = None
    kept_by: str = ""

    def kept_validation(self) -> dict[str, float]:
        """``val_accuracy`` / ``val_auc`` of the kept epoch (empty when unknown)."""
        history = self.history
        if history is None or self.kept_epoch is None or "epoch" not in history:
            return {}
        rows = history[history["epoch"] == self.kept_epoch]
        if rows.empty:
            return {}
        row = rows.iloc[-1]
        return {
            k: float(row[c])
            for k, c in (("val_accuracy", "val_acc"), ("val_auc", "val_auc"))
            if c in row and pd.notna(row[c])
        }

    def summary_line(self) -> str:
        key = "accuracy" if self.config.task == "direct" else "concept_mean_accuracy"
        value = self.metrics.get(key, float("nan"))
        return (
            f"{self.config.task} {self.config.backbone}: test {key} {value:.4f} after {self.epochs_run} "
            f"epoch(s), {self.train_seconds:.0f}s training; results in {self.run_dir}; "
            + run_folder_line(Path(self.run_dir), disk_bytes(Path(self.run_dir)), self.checkpoints)
        )


# CPU training precision under precision=auto. Measured in one interleaved run on a 2-core AVX-512 (bf16)
# EPYC (benchmarks/results/bench_training.md): channels-last fp32 trained faster than bf16-mixed, which
# pays for casting every weight each step; so fp32 stays the CPU default.
CPU_PRECISION = "32-true"


def resolve_engine(config: RunConfig) -> dict:
    """Accelerator, precision, memory format and devices for this machine."""
    cuda = torch.cuda.is_available()
    accelerator = config.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if cuda else "cpu"
    if accelerator in ("cuda", "gpu"):
        if not cuda:
            raise ConfigError("accelerator=cuda but no CUDA device is visible; use accelerator=auto or cpu")
        accelerator = "gpu"
    precision = config.precision
    if precision == "auto":
        precision = "bf16-mixed" if accelerator == "gpu" else CPU_PRECISION
    memory_format = "channels_last" if config.memory_format == "auto" else config.memory_format
    devices = config.devices
    if devices == "auto":
        devices = 1
    return {
        "accelerator": accelerator,
        "precision": precision,
        "devices": devices,
        "strategy": config.strategy,
        "memory_format": memory_format,
        "channels_last": memory_format == "channels_last",
    }


def default_run_name(prefix: str, stamp: str | None = None) -> str:
    """``<prefix>-<time>-<6 random hex digits>``: two runs started in the same second never share a folder."""
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}" if stamp else f"{prefix}-{run_stamp()}"


RUN_NAME_ENV = "ATTR2GENDER_RUN_NAME"  # the run name rank 0 chose, for the DDP processes Lightning starts


def _distributed_rank() -> int | None:
    """This process's rank under a distributed launch (torchrun, SLURM, Lightning's DDP), else None."""
    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return None


def run_directory(config: RunConfig) -> tuple[Path, str]:
    """The run folder. Without a ``run_name``, a new unique one; under DDP every rank uses rank 0's."""
    name = config.run_name or os.environ.get(RUN_NAME_ENV, "")
    if not name:
        job = os.environ.get("SLURM_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID", "")
        if _distributed_rank() is not None and job and job != "none":  # ranks started independently agree
            name = f"{config.task}-{config.backbone}-job{job}"
        else:
            name = default_run_name(f"{config.task}-{config.backbone}")
    return Path(config.output_dir).resolve() / name, name


@contextlib.contextmanager
def _restore_env(name: str, owned: bool):
    """Remove the environment variable ``name`` after the block when this call set it."""
    try:
        yield
    finally:
        if owned:
            os.environ.pop(name, None)


def check_checkpoint(path: Path) -> None:
    """Load ``path`` the safe way (``weights_only=True``: tensors, containers, numbers, strings) before
    Lightning does; a checkpoint that needs anything more is refused and nothing in it runs."""
    import pickle  # lazy: only its UnpicklingError is used; nothing here unpickles

    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError, ValueError) as exc:
        first = torch_refusal_reason(exc) if str(exc).strip() else type(exc).__name__
        raise UnsafeCheckpointError(
            f"{path} cannot be loaded as plain tensors and containers ({first[:200]}); attr2gender never unpickles "
            "other objects, so it refuses to resume from it. Delete it and start the run again without resume=true"
        ) from None


def build_module(
    config: RunConfig, lr: float, channels_last: bool = False, group_counts: list[int] | None = None
) -> ImageModel:
    """The LightningModule ``config`` trains (its backbone's pretrained weights loaded): not
    :func:`attr2gender.models.build_model`, which rebuilds a saved inference module from ``model.json``."""
    joint = {"concept_weight": config.concept_weight, "bottleneck": config.resolved_bottleneck()}
    return model_class(config.task, config.mode)(
        **(joint if config.mode == "joint" else {}),
        backbone=config.backbone,
        weights=config.weights,
        loss=config.resolved_loss(),
        lr=lr,
        weight_decay=config.weight_decay,
        optimizer=config.optimizer,
        dropout=config.dropout,
        threshold=config.threshold,
        channels_last=channels_last,
        freeze_backbone=config.freeze_backbone,
        loss_reweighting=config.loss_reweighting,
        robust=config.robust,
        group_dro_step=config.group_dro_step,
        group_counts=group_counts if config.loss_reweighting == "groups" else None,
    )


def read_history(log_dir: Path) -> pd.DataFrame:
    """Lightning's CSV logs (one version per attempt, resumes included) as one row per epoch."""
    files = sorted(log_dir.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    frames = [pd.read_csv(f) for f in files if f.stat().st_size]
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    if "epoch" not in frame:
        return pd.DataFrame()
    frame = frame.drop(columns=[c for c in ("step",) if c in frame]).dropna(subset=["epoch"])
    history = frame.groupby("epoch").last().reset_index()
    history["epoch"] = history["epoch"].astype(int)
    return history


def train(
    config: RunConfig,
    loggers: list | None = None,
    callbacks: list | None = None,
    datamodule: CelebADataModule | None = None,
    evaluate_test: bool = True,
) -> TrainResult:
    """Fit one image model per ``config``, keep the best checkpoint, evaluate it on the test split."""
    config = dataclasses.replace(config).validate().check_weights()
    if (
        not config.data_root
    ):  # training never invents data; the run commands (experiments) make synthetic data
        raise ConfigError(
            "data_root is empty: pass a CelebA root (`attr2gender data synth --out DIR` writes a "
            "synthetic one; `attr2gender run two-stage` without --data-root makes it for you)"
        )
    config.data_root = str(Path(config.data_root).expanduser().resolve())
    engine = resolve_engine(config)
    # The resolved config records what actually ran on this machine, not "auto".
    config.precision, config.memory_format = engine["precision"], engine["memory_format"]
    run_dir, run_name = run_directory(config)
    config.run_name = run_name
    last = run_dir / "checkpoints" / "last.ckpt"
    if config.resume:
        if not last.is_file():
            raise ConfigError(
                f"resume=true but {last} does not exist; pass the run_name of an earlier run (and the "
                "same output_dir) that was trained with keep_checkpoints=last (the default, none, deletes "
                "the checkpoints when training ends)"
            )
        check_checkpoint(last)
    with claim_run_folder(run_dir, config.resume):
        return _fit(config, engine, run_dir, last, loggers, callbacks, datamodule, evaluate_test)


RUN_LOCK = ".run.lock"


@contextlib.contextmanager
def claim_run_folder(run_dir: Path, resume: bool = False):
    """Hold ``run_dir`` for one run. A new run creates the folder itself, atomically: a second run with the
    same ``run_name``, started at the same moment, is refused (exit 2) instead of sharing it (mixed logs and
    checkpoints, one bundle). Both also hold an exclusive lock on ``.run.lock`` inside it while they run, so
    two ``resume=true`` runs of one folder cannot overlap either. A folder this call created is removed
    again when the run fails before writing anything into it."""
    rank = _distributed_rank()
    if rank:  # DDP ranks > 0 use the folder rank 0 made and holds
        yield run_dir
        return
    created = False
    made_parent = not run_dir.parent.exists()  # output_dir made for this run: removed too if it fails early
    if not resume:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            run_dir.mkdir()
            created = True
        except FileExistsError:
            raise ConfigError(
                f"run folder {run_dir} exists already; pass resume=true to continue that run, or another "
                "run_name (leave it empty for a new unique one)"
            ) from None
    lock = os.open(run_dir / RUN_LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        _lock_exclusively(lock, run_dir)
        yield run_dir
    except BaseException:
        os.close(lock)
        lock = -1
        if created and {p.name for p in run_dir.iterdir()} <= {RUN_LOCK}:  # nothing of the run's own yet
            (run_dir / RUN_LOCK).unlink(missing_ok=True)
            run_dir.rmdir()
            if made_parent and not any(run_dir.parent.iterdir()):
                run_dir.parent.rmdir()  # no empty runs/ left behind by a run that never started
        raise
    finally:
        if lock >= 0:
            os.close(lock)  # closing the descriptor releases the lock


def _lock_exclusively(descriptor: int, run_dir: Path) -> None:
    try:
        import fcntl  # POSIX only: on Windows the import fails (below)
    except ImportError:  # Windows: the atomic folder creation above is the only guard
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(
            f"run folder {run_dir} is in use by another run right now; wait for it to finish, or pass "
            "another run_name"
        ) from None


def _fit(
    config: RunConfig,
    engine: dict,
    run_dir: Path,
    last: Path,
    loggers: list | None,
    callbacks: list | None,
    datamodule: CelebADataModule | None,
    evaluate_test: bool,
) -> TrainResult:
    """The body of :func:`train`, inside its claimed run folder."""
    L.seed_everything(config.seed, workers=True, verbose=False)

    dm = datamodule or CelebADataModule(config)
    dm.config = config
    dm.prepare()  # bad roots and empty splits fail here, before any model is built
    if (
        dm.labelled is not None
        and config.male_sources != "celeba"
        and (config.task == "direct" or config.mode == "joint")
    ):
        # The image loop reads CelebA's layout only; a face backbone's Male head learns from both sources.
        raise ConfigError(
            f"labelled faces ({dm.labelled.root}) with backbone={config.backbone} and "
            f"{'task=direct' if config.task == 'direct' else 'mode=joint'}: the image loop trains on CelebA "
            "alone. Use a face backbone (--config face, backbone=dlib_resnet), whose Male head learns from "
            "both, the two-stage route (stage two learns from both), or male_sources=celeba"
        )
    lr = 1e-3 if config.lr == "auto" else float(config.lr)  # the finder's start; replaced by its suggestion
    model = build_module(config, lr, channels_last=engine["channels_last"], group_counts=dm.group_counts())
    if engine["channels_last"]:
        model = model.to(memory_format=torch.channels_last)

    # Group-robust runs keep the checkpoint whose worst group does best on validation, not the lowest loss.
    monitor = checkpoint_monitor(config, dm.val_group_ids())
    mode = "min" if monitor == "val_loss" else "max"
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode, save_last=True
    )
    cbs: list[Callback] = [checkpoint, ThroughputMonitor()]
    if config.progress:
        cbs.append(EpochLossTQDMProgressBar(refresh_rate=1) if interactive() else LineProgressBar())
    if config.early_stopping_patience:
        cbs.append(EarlyStopping(monitor=monitor, patience=config.early_stopping_patience, mode=mode))
    csv_logger = CSVLogger(save_dir=run_dir, name="logs")  # a new version per attempt keeps resumed history
    all_loggers = [csv_logger, *(loggers or [])]
    if config.tensorboard:
        from lightning.pytorch.loggers import TensorBoardLogger

        all_loggers.append(TensorBoardLogger(save_dir=run_dir, name="", version="tensorboard"))

    # Lightning's banner lines (GPU available, tips) say less than this one line.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated.*")
    if config.progress:
        print(
            f"training {config.task} model {config.backbone} ({config.weights}) on {engine['accelerator']} "
            f"({engine['precision']}, {engine['memory_format']}), {describe_split(dm.splits, config)}, run {run_dir}",
            flush=True,
        )
    trainer = L.Trainer(
        accelerator=engine["accelerator"],
        devices=engine["devices"],
        strategy=engine["strategy"],
        precision=engine["precision"],
        max_epochs=config.epochs,
        max_steps=config.max_steps,
        callbacks=cbs + list(callbacks or []),
        logger=all_loggers,
        default_root_dir=run_dir,
        log_every_n_steps=config.log_every_n_steps,
        enable_progress_bar=config.progress,
        deterministic=True
        if engine["accelerator"] == "cpu" and config.deterministic
        else ("warn" if config.deterministic else False),
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )

    lr_finder = None
    if config.lr == "auto" and not config.resume:
        lr_finder = find_learning_rate(engine, model, dm, run_dir, progress=config.progress)
        config.lr = float(lr_finder["suggestion"])
        model.lr = config.lr
        model.hparams.lr = config.lr

    if trainer.is_global_zero:
        save_config(config, run_dir / "config.yaml")
        (run_dir / "engine.json").write_text(json.dumps(engine | {"torch": torch.__version__}, indent=2))

    start = time.perf_counter()
    spawned = os.environ.get(RUN_NAME_ENV) is None  # processes Lightning starts for DDP inherit the run name
    if spawned:
        os.environ[RUN_NAME_ENV] = config.run_name
    with warnings.catch_warnings(), _restore_env(RUN_NAME_ENV, spawned):
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        trainer.fit(model, datamodule=dm, ckpt_path=str(last) if config.resume else None, weights_only=True)
    train_seconds = time.perf_counter() - start
    result = TrainResult(
        config,
        run_dir,
        None,
        None,
        datamodule=dm,
        train_seconds=train_seconds,
        epochs_run=trainer.current_epoch,
        lr_finder=lr_finder,
    )
    if not trainer.is_global_zero:
        return result

    best = _inside(run_dir / "checkpoints", checkpoint.best_model_path) or _inside(
        run_dir / "checkpoints", checkpoint.last_model_path
    )
    model = model.float().to(memory_format=torch.contiguous_format).cpu()
    kept = load_weights_from_checkpoint(model, best) if best else None
    model.eval()
    result.model = model
    result.kept_epoch = kept if kept is not None else max(trainer.current_epoch - 1, 0)
    result.kept_by = monitor
    result.history = read_history(run_dir / "logs")
    result.history.to_csv(run_dir / "history.csv", index=False)
    if evaluate_test:
        dm.setup("test")
        pred = predict_dataset(
            model,
            dm.datasets["test"],
            batch_size=config.batch_size,
            num_workers=config.num_workers,
            progress=config.progress,
            desc="test",
        )
        result.test_predictions = pred
        result.metrics = split_metrics(config.task, pred, config.threshold)
    result.metrics["train_seconds"] = train_seconds
    result.metrics["kept_epoch"] = float(result.kept_epoch)
    result.model_dir = save_image_model(
        model,
        run_dir / "model",
        config.image_size,
        extra={"metrics": result.metrics, "config": config.to_dict()},
    )
    (run_dir / "metrics.json").write_text(json.dumps(result.metrics, indent=2, sort_keys=True))
    result.checkpoints = prune_checkpoints(run_dir / "checkpoints", config.keep_checkpoints, best)
    result.run_dir_bytes = disk_bytes(run_dir)
    return result


def checkpoint_monitor(config: RunConfig, val_groups) -> str:
    """The validation metric that chooses the kept epoch: ``config``'s, except that a group-robust run whose
    validation side has no group of :data:`~attr2gender.metrics.MIN_GROUP_SIZE` images (its worst group is
    then not a number, by the one rule) keeps the lowest validation loss, and says so."""
    monitor = config.resolved_checkpoint_metric()
    if monitor != "val_worst_group_acc":
        return monitor
    groups = np.asarray(val_groups, dtype=np.int64)
    groups = groups[groups >= 0]
    if groups.size and (np.bincount(groups) >= MIN_GROUP_SIZE).any():
        return monitor
    warnings.warn(
        f"no validation group has {MIN_GROUP_SIZE} images, so the worst group is not a number: the checkpoint "
        "keeps the lowest validation loss instead (more validation images, or max_eval_images=0, fix it)",
        stacklevel=2,
    )
    return "val_loss"


def describe_split(splits, config: RunConfig) -> str:
    """``split official {'train': 600, 'val': 200, 'test': 200}``, plus which splits ``max_train_images`` /
    ``max_eval_images`` cut down, e.g. ``(train capped at 600 by max_train_images, val/test at 200 by
    max_eval_images)``: else a 600-image train split reads like all the data there is."""
    sizes = splits.sizes()
    notes = []
    if config.max_train_images and sizes["train"] == config.max_train_images:
        notes.append(f"train capped at {config.max_train_images} by max_train_images")
    capped = [
        name for name in ("val", "test") if config.max_eval_images and sizes[name] == config.max_eval_images
    ]
    if capped:
        verb = "" if notes else "capped "
        notes.append(f"{'/'.join(capped)} {verb}at {config.max_eval_images} by max_eval_images")
    return f"split {splits.strategy} {sizes}" + (f" ({', '.join(notes)})" if notes else "")


def prune_checkpoints(folder: Path, keep: str, best: str) -> str:
    """Apply ``keep_checkpoints`` to the run's checkpoint folder once the model is saved in ``<run>/model``:
    ``best`` leaves only the best checkpoint, ``last`` leaves ``last.ckpt`` (what ``resume=true`` continues
    from) and the best one, ``none`` removes the folder. Returns what is left, in words."""
    if keep == "none":
        if folder.is_symlink():
            folder.unlink()
        elif folder.is_dir():
            shutil.rmtree(folder)
        return "none kept"
    if not folder.is_dir() or folder.is_symlink():
        return "none"
    wanted = {Path(best).resolve()} if best else set()
    if keep == "last":
        wanted.add((folder / "last.ckpt").resolve())
    for path in folder.iterdir():
        if path.suffix == ".ckpt" and path.resolve() not in wanted:
            path.unlink()
    left = sorted(p.name for p in folder.glob("*.ckpt"))
    if not left:
        return "none"
    if len(left) == 1:  # with no validation run, the best checkpoint is last.ckpt
        return "last.ckpt only" if left == ["last.ckpt"] else "best only"
    return " and ".join(left)


def run_folder_line(run_dir: Path, size: int, checkpoints: str | None = None) -> str:
    """``run folder runs/<name>: 12.3 MB (checkpoints: best only; keep_checkpoints=last keeps what resume
    needs)``: what the run left on the disk."""
    try:
        shown = run_dir.relative_to(Path.cwd())
    except ValueError:
        shown = run_dir
    line = f"run folder {shown}: {size / 1e6:.1f} MB"
    if checkpoints is None:
        return line
    if checkpoints == "best only":
        hint = "; keep_checkpoints=last keeps what resume needs"
    elif "last.ckpt" in checkpoints:
        hint = "; resume=true can continue this run"
    else:
        hint = "; the model is in model/"
    return f"{line} (checkpoints: {checkpoints}{hint})"


def _inside(folder: Path, path: str) -> str:
    """``path`` when it lies inside ``folder``, else "" (with a warning): a resumed checkpoint carries the
    best checkpoint's path as data, and a planted one could point anywhere on the disk."""
    if not path:
        return ""
    if Path(path).resolve().is_relative_to(folder.resolve()):
        return path
    warnings.warn(
        f"ignoring the checkpoint path {path!r} recorded in {folder}: it lies outside the run folder",
        stacklevel=3,
    )
    return ""


LR_FINDER_STEPS = 100  # Lightning's default range-test length: enough points for a stable suggestion


def find_learning_rate(
    engine: dict, model: ImageModel, dm: CelebADataModule, run_dir: Path, progress: bool = True
) -> dict:
    """Lightning's LR range test (the source's "learning rate finder"); saves its plot and results.

    Runs on a throwaway trainer so the range test spans epochs on small data and touches no checkpoint.
    """
    from lightning.pytorch.tuner import Tuner

    dm.setup("fit")
    batches = max(1, len(dm.train_dataloader()))
    trainer = L.Trainer(
        accelerator=engine["accelerator"],
        devices=1,
        precision=engine["precision"],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        max_epochs=math.ceil(LR_FINDER_STEPS / batches) + 1,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=run_dir,
    )
    finder = Tuner(trainer).lr_find(
        model, datamodule=dm, num_training=LR_FINDER_STEPS, min_lr=1e-6, max_lr=1.0, update_attr=False
    )
    lrs = [float(x) for x in finder.results["lr"]]
    losses = [float(x) for x in finder.results["loss"]]
    suggestion = finder.suggestion()
    if suggestion is None or not np.isfinite(suggestion):
        # Too few finite points for a gradient estimate: a tenth of the lowest-loss lr.
        finite = [(loss, lr) for lr, loss in zip(lrs, losses) if np.isfinite(loss)]
        suggestion = min(finite)[1] / 10 if finite else 1e-3
        warnings.warn(f"the LR finder gave no suggestion; using {suggestion:.2e}", stacklevel=2)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = {"lr": lrs, "loss": losses, "suggestion": float(suggestion)}
    (run_dir / "lr_finder.json").write_text(json.dumps(out))
    plot_lr_finder(lrs, losses, suggestion=float(suggestion), path=run_dir / "lr_finder.png")
    return out
