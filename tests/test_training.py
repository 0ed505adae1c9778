"""Training engine on tiny synthetic CelebA: steps, learning, resume, LR finder, config errors, DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from attr2gender.config import ConfigError, RunConfig, load_preset, parse_overrides
from attr2gender.data import build_transforms, collate_skipping_corrupt, load_celeba
from attr2gender.data.dataset import CelebADataset
from attr2gender.data.synth import make_synthetic_celeba
from attr2gender.training import AttributeModel, DirectModel, load_image_model, train

TINY = "test_efficientnet"  # timm's test-sized EfficientNet: ~0.1M parameters, fast on 2 cores
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    return make_synthetic_celeba(tmp_path_factory.mktemp("synth") / "celeba", n=240, seed=0, image_size=40)


def tiny_config(root, out, **kw) -> RunConfig:
    values = dict(
        data_root=str(root),
        output_dir=str(out),
        backbone=TINY,
        weights="none",
        image_size=32,
        batch_size=16,
        epochs=1,
        max_steps=-1,
        num_workers=0,
        progress=False,
        tracking="none",
        max_train_images=64,
        max_eval_images=32,
    )
    values.update(kw)
    return RunConfig(**values).validate()


@pytest.mark.parametrize(
    "task,loss",
    [
        ("attributes", "multilabel_soft_margin"),
        ("attributes", "bce"),
        ("direct", "cross_entropy"),
        ("direct", "bce"),
    ],
)
def test_one_training_run_per_model_and_loss(synth_root, tmp_path, task, loss):
    result = train(
        tiny_config(
            synth_root, tmp_path, task=task, loss=loss, max_steps=2, run_name="r", keep_checkpoints="best"
        )
    )
    assert result.epochs_run >= 0
    # keep_checkpoints=best: one checkpoint (last.ckpt here: 2 steps end before validation)
    assert len(list((tmp_path / "r" / "checkpoints").glob("*.ckpt"))) == 1
    n_test = len(result.datamodule.splits.test)
    assert n_test > 10
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["data_root"] == str(Path(synth_root).resolve()) and saved["loss"] == loss  # resolved config
    if task == "attributes":
        assert 0 <= result.metrics["concept_mean_accuracy"] <= 1 and "attr_auc_Bald" in result.metrics
        assert result.test_predictions.prob.shape == (n_test, 39)
    else:
        assert {"accuracy", "precision", "recall", "f1", "roc_auc"} <= set(result.metrics)
        assert result.test_predictions.prob.shape == (n_test,)
    model, meta = load_image_model(result.model_dir)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.predict_proba(x), result.model.predict_proba(x))
    assert meta["preprocessing"]["crop"] == 32


def _fixed_batch(root, n=64):
    celeba = load_celeba(root)
    ds = CelebADataset(celeba, celeba.present[:n], build_transforms(32, train=False))
    return collate_skipping_corrupt([ds[i] for i in range(n)])


@pytest.mark.parametrize("cls", [AttributeModel, DirectModel])
def test_loss_falls_over_a_few_dozen_steps(synth_root, cls):
    torch.manual_seed(0)
    batch = _fixed_batch(synth_root)
    model = cls(backbone=TINY, weights="none", lr=3e-3)
    optimizer = model.configure_optimizers()
    losses = []
    for _ in range(30):
        loss = model.loss_of(model(batch["image"]), model.target_of(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses


def test_probabilities_shapes_and_ranges():
    x = torch.randn(3, 3, 32, 32)
    attr = AttributeModel(backbone=TINY, weights="none").eval().predict_proba(x)
    ce = DirectModel(backbone=TINY, weights="none", loss="cross_entropy").eval().predict_proba(x)
    bce = DirectModel(backbone=TINY, weights="none", loss="bce").eval().predict_proba(x)
    assert attr.shape == (3, 39) and ce.shape == (3,) and bce.shape == (3,)
    for p in (attr, ce, bce):
        assert torch.all((p >= 0) & (p <= 1))


def test_resume_continues_epoch_count(synth_root, tmp_path):
    # resume continues from last.ckpt, which only keep_checkpoints=last leaves behind
    first = train(
        tiny_config(synth_root, tmp_path, task="direct", epochs=1, run_name="res", keep_checkpoints="last")
    )
    assert first.epochs_run == 1
    second = train(tiny_config(synth_root, tmp_path, task="direct", epochs=2, run_name="res", resume=True))
    assert second.epochs_run == 2
    history = pd.read_csv(tmp_path / "res" / "history.csv")
    assert sorted(history["epoch"].unique()) == [0, 1]
    assert {"train_loss", "val_loss", "val_acc"} <= set(history.columns)


def test_resume_without_checkpoint_names_the_fix(synth_root, tmp_path):
    with pytest.raises(ConfigError, match="last.ckpt does not exist"):
        train(tiny_config(synth_root, tmp_path, run_name="never", resume=True))


@pytest.mark.parametrize(
    "keep,left",
    [("best", ["best.ckpt"]), ("last", ["best.ckpt", "last.ckpt"]), ("none", None)],
)
def test_keep_checkpoints_leaves_exactly_what_it_says(synth_root, tmp_path, capsys, keep, left):
    """Three smoke commands left 493 MB in runs/, 80 MB of it checkpoints that nothing reads once the model
    is saved in model/: keep_checkpoints (default none) says which stay; the run folder's size is returned,
    and the summary line says it with what was kept."""
    from attr2gender.pipeline.bundle import disk_bytes

    result = train(
        tiny_config(
            synth_root,
            tmp_path,
            task="direct",
            run_name="k",
            keep_checkpoints=keep,
            progress=True,
            max_eval_images=20,
        )
    )
    run = tmp_path / "k"
    folder = run / "checkpoints"
    if left is None:
        assert not folder.exists()
    else:
        assert sorted(p.name for p in folder.iterdir()) == left
    assert (run / "model").is_dir() and load_image_model(result.model_dir)[0] is not None
    assert result.run_dir_bytes == disk_bytes(run) > 0
    out = capsys.readouterr().out
    summary = result.summary_line()
    line = [summary[summary.index("run folder ") :]]
    assert f"{result.run_dir_bytes / 1e6:.1f} MB" in line[0], summary
    expected = {
        "best": "(checkpoints: best only; keep_checkpoints=last keeps what resume needs)",
        "last": "(checkpoints: best.ckpt and last.ckpt; resume=true can continue this run)",
        "none": "(checkpoints: none kept; the model is in model/)",
    }[keep]
    assert line[0].endswith(expected), line[0]
    # the startup line says the caps cut the split (the synthetic root has 25 val and 25 test images)
    assert "(train capped at 64 by max_train_images, val/test at 20 by max_eval_images)" in out, out
    if keep == "best":
        with pytest.raises(ConfigError, match="keep_checkpoints=last"):  # resume names the fix
            train(tiny_config(synth_root, tmp_path, task="direct", run_name="k", resume=True))


def test_the_split_line_says_which_caps_cut_the_split():
    from attr2gender.data.splits import Splits
    from attr2gender.training.engine import describe_split

    splits = Splits(["a"] * 600, ["b"] * 200, ["c"] * 150, "official")
    config = RunConfig(max_train_images=600, max_eval_images=200)
    assert describe_split(splits, config) == (
        "split official {'train': 600, 'val': 200, 'test': 150} "
        "(train capped at 600 by max_train_images, val at 200 by max_eval_images)"
    )
    assert describe_split(splits, RunConfig(max_eval_images=200)) == (
        "split official {'train': 600, 'val': 200, 'test': 150} (val capped at 200 by max_eval_images)"
    )
    assert describe_split(splits, RunConfig()) == "split official {'train': 600, 'val': 200, 'test': 150}"
    assert describe_split(splits, RunConfig(max_train_images=5000)).endswith("150}")  # the cap cut nothing


def test_same_seed_same_metrics(synth_root, tmp_path):
    a = train(tiny_config(synth_root, tmp_path / "a", task="direct", max_steps=3, run_name="x"))
    b = train(tiny_config(synth_root, tmp_path / "b", task="direct", max_steps=3, run_name="x"))
    np.testing.assert_array_equal(a.test_predictions.prob, b.test_predictions.prob)
    c = train(tiny_config(synth_root, tmp_path / "c", task="direct", max_steps=3, run_name="x", seed=1))
    assert not np.array_equal(a.test_predictions.prob, c.test_predictions.prob)


def test_lr_finder_returns_finite_suggestion(synth_root, tmp_path):
    result = train(tiny_config(synth_root, tmp_path, task="direct", lr="auto", max_steps=2, run_name="lr"))
    assert np.isfinite(result.lr_finder["suggestion"]) and result.lr_finder["suggestion"] > 0
    assert result.config.lr == result.lr_finder["suggestion"]
    assert (tmp_path / "lr" / "lr_finder.png").stat().st_size > 2000
    saved = yaml.safe_load((tmp_path / "lr" / "config.yaml").read_text())
    assert saved["lr"] == result.lr_finder["suggestion"]


@pytest.mark.parametrize(
    "override,needle",
    [
        ("backbone=resnet181", "resnet18"),
        ("loss=hinge", "multilabel_soft_margin"),
        ("lr=-0.1", "positive"),
        ("optimizer=sgd", "adamw"),
        ("batch_size=0", "at least 1"),
        ("epochz=3", "did you mean 'epochs'"),
        ("keep_checkpoints=all", "'best', 'last', 'none'"),
    ],
)
def test_bad_config_fails_before_training_listing_choices(override, needle, tmp_path):
    with pytest.raises(ConfigError, match=needle):
        load_preset("smoke", [override, f"output_dir={tmp_path}"])
    assert not any(tmp_path.iterdir())  # nothing was started


def test_presets_resolve_as_the_source_study():
    study1 = load_preset("seed_study_1")
    assert len(study1) == 6
    assert {(c.backbone, c.weights) for _, c in study1} == {
        (b, w) for b in ("vgg16", "resnet18", "googlenet") for w in ("none", "imagenet")
    }
    for _, c in study1:
        assert (c.loss, c.optimizer, c.batch_size, c.lr, c.epochs, c.balance) == (
            "cross_entropy",
            "adam",
            128,
            0.001,
            10,
            "male",
        )
    study3 = dict(load_preset("seed_study_3"))
    assert study3["vgg16_transfer"].weight_decay == 1e-3 and study3["resnet50_transfer"].weight_decay == 1e-4
    assert all(c.loss == "bce" and c.batch_size == 32 and c.lr == "auto" for c in study3.values())
    ((_, two_stage),) = load_preset("two_stage")
    assert (two_stage.task, two_stage.backbone, two_stage.resolved_loss()) == (
        "attributes",
        "resnet18",
        "multilabel_soft_margin",
    )
    assert parse_overrides(["epochs=3", "lr=auto", "balance=true"]) == {
        "epochs": 3,
        "lr": "auto",
        "balance": True,
    }


def test_decode_cache_gives_same_eval_batches(synth_root, tmp_path):
    from attr2gender.data import CachedCelebADataset, DecodedImageCache

    celeba = load_celeba(synth_root)
    ids = list(celeba.present[:8])
    tf = build_transforms(32)
    cache = DecodedImageCache(celeba, ids, 32, tmp_path, progress=False)
    plain = CelebADataset(celeba, ids, tf)
    cached = CachedCelebADataset(celeba, ids, tf, cache)
    # Synthetic images are square, so the cached square crop equals the eval resize + crop.
    diff = (plain[3]["image"] - cached[3]["image"]).abs().max().item()
    assert diff < 0.1
    assert DecodedImageCache(celeba, ids, 32, tmp_path, progress=False).path == cache.path  # reused


@pytest.mark.skipif(sys.platform != "linux", reason="gloo DDP test runs on Linux")
def test_ddp_two_processes_on_cpu(synth_root, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "attr2gender.cli",
        "train",
        f"data_root={synth_root}",
        f"output_dir={tmp_path}",
        f"backbone={TINY}",
        "weights=none",
        "image_size=32",
        "batch_size=8",
        "max_steps=3",
        "epochs=1",
        "num_workers=0",
        "progress=false",
        "tracking=none",
        "accelerator=cpu",
        "devices=2",
        "strategy=ddp",
        "max_train_images=64",
        "max_eval_images=16",
        "run_name=ddp",
        "task=direct",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stderr + proc.stdout
    assert (tmp_path / "ddp" / "model" / "model.safetensors").is_file()


def test_freeze_backbone_trains_only_the_head(synth_root):
    torch.manual_seed(0)
    batch = _fixed_batch(synth_root, n=16)
    model = DirectModel(backbone=TINY, weights="none", lr=1e-2, freeze_backbone=True).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = model.configure_optimizers()
    for _ in range(3):
        loss = model.loss_of(model(batch["image"]), model.target_of(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"net.classifier.weight", "net.classifier.bias"}  # BN running stats untouched too


def test_the_kept_epoch_is_the_one_its_monitor_chose_not_the_lowest_loss(tmp_path):
    """A group-robust run keeps its best worst-group epoch; its "validation accuracy" is that epoch's, not the
    lowest-loss epoch's (which it once reported, reading val_loss whatever chose the checkpoint)."""
    from attr2gender.training.engine import TrainResult

    history = pd.DataFrame(
        {
            "epoch": [0, 1, 2],
            "val_loss": [0.50, 0.40, 0.30],  # the lowest loss: epoch 2
            "val_worst_group_acc": [0.90, 0.80, 0.70],  # the best worst group: epoch 0, the one kept
            "val_acc": [0.91, 0.92, 0.93],
        }
    )
    config = RunConfig(balance="groups")
    assert config.resolved_checkpoint_metric() == "val_worst_group_acc"
    result = TrainResult(
        config, tmp_path, None, None, history=history, kept_epoch=0, kept_by="val_worst_group_acc"
    )
    assert result.kept_validation() == {"val_accuracy": 0.91}


def test_a_group_robust_run_without_a_30_image_group_keeps_the_lowest_loss_and_says_so(synth_root, tmp_path):
    """The one worst-group rule: a group needs 30 validation images to be ranked on. With none (a tiny
    validation side) the worst group is not a number, so the checkpoint keeps the lowest loss, says so, and
    records that it did."""
    with pytest.warns(UserWarning, match="no validation group has 30 images"):
        result = train(tiny_config(synth_root, tmp_path, task="direct", epochs=3, balance="groups"))
    history = result.history
    assert result.kept_by == "val_loss"
    best = history.loc[history["val_loss"].idxmin(), "epoch"]
    assert result.kept_epoch == best and result.metrics["kept_epoch"] == best
    assert history["val_worst_group_acc"].isna().all()  # logged as unknown, never as the overall accuracy


@pytest.mark.parametrize("planted", ["an object array (a pickle)", "another shape"])
def test_a_planted_decode_cache_is_rebuilt_not_read(synth_root, tmp_path, planted):
    """Issue 33: a decode cache replaced by a pickle or an array of another shape raised ValueError or
    IndexError mid-training; it is rebuilt, with a warning, and never unpickled."""
    from attr2gender.data.dataset import DecodedImageCache

    celeba = load_celeba(synth_root)
    ids = list(celeba.present[:12])
    path = DecodedImageCache(celeba, ids, 32, tmp_path, progress=False).path
    marker = tmp_path / "pwned"
    if planted.startswith("an object"):
        np.save(path, np.array([_Marker(marker)], dtype=object), allow_pickle=True)
    else:
        np.save(path, np.zeros((3, 5, 5, 3), dtype=np.uint8))
    with pytest.warns(UserWarning, match="rebuilding the decode cache"):
        cache = DecodedImageCache(celeba, ids, 32, tmp_path, progress=False)
    assert cache.array.shape[0] == len(ids) and cache.array.dtype == np.uint8
    assert not marker.exists()


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))
