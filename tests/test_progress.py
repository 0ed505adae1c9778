"""Progress on long work: a bar on a terminal, one line per 10 % in a log."""

from __future__ import annotations

import io

import pytest

from attr2gender import progress as progress_module
from attr2gender.progress import LineProgress, progress


def test_off_a_terminal_progress_prints_one_line_per_tenth(capsys):
    assert not progress_module.interactive()  # pytest captures stderr: not a terminal
    bar = progress(total=1000, desc="predict", unit="img")
    assert isinstance(bar, LineProgress)
    with bar:
        for _ in range(1000):
            bar.update(1)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 10  # 10 %, 20 %, ... 90 %, then the final line at close
    assert lines[0].startswith("predict: 10% (100/1,000 img") and lines[-1].startswith("predict: 100%")


def test_iterating_a_list_and_disabled_progress(capsys):
    assert list(progress(range(25), desc="align")) == list(range(25))
    assert capsys.readouterr().err.count("\n") == 10  # 25 items: 12 %, 20 %, ... then 100 %
    assert list(progress(range(5), desc="x", disable=True)) == list(range(5))
    assert capsys.readouterr().err == ""


def test_a_terminal_gets_a_bar_redrawn_in_place(monkeypatch):
    """On a terminal the bar is redrawn on one line (carriage returns) and ends at 3/3; a log file gets
    separate lines instead (the tests above)."""
    fake = io.StringIO()
    fake.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stderr", fake)
    with progress(total=3, desc="align", unit="img") as bar:
        for _ in range(3):
            bar.update(1)
    text = fake.getvalue()
    assert "\r" in text and "align" in text and "3/3" in text and "img" in text
    assert text.count("\n") <= 1  # one line, redrawn: not a line per update


@pytest.mark.parametrize("total", [1, 7])
def test_small_totals_still_end_with_one_line(capsys, total):
    with progress(total=total, desc="s") as bar:
        bar.update(total)
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("s: 100%")


def test_a_pandas_index_or_numpy_array_iterates_off_a_terminal(capsys):
    import numpy as np
    import pandas as pd

    # `attr2gender data summary` iterates an Index of image ids; off a terminal it crashed on its truth value.
    assert list(progress(pd.Index(["a.jpg", "b.jpg"]), desc="summary")) == ["a.jpg", "b.jpg"]
    assert list(progress(np.arange(3), desc="x")) == [0, 1, 2]
    assert "summary: 100% (2/2" in capsys.readouterr().err


class _FakeTrainer:
    """What LineProgressBar reads from Lightning's Trainer: the epoch, the batches per epoch and the
    progress-bar metrics, where ``train_loss`` is the *last* epoch's mean (it is logged per epoch)."""

    max_epochs, max_steps, global_step = 2, -1, 0
    is_global_zero, sanity_checking = True, False

    def __init__(self, num_training_batches: int):
        self.num_training_batches = num_training_batches
        self.current_epoch = 0
        self.progress_bar_metrics: dict[str, float] = {}


def _run_epochs(bar, trainer, losses_per_epoch):
    import torch

    batch = {"image": torch.zeros(4, 3, 8, 8)}
    for epoch, losses in enumerate(losses_per_epoch):
        trainer.current_epoch = epoch
        bar.on_train_epoch_start(trainer, None)
        for i, loss in enumerate(losses):
            bar.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss)}, batch, i)
        trainer.progress_bar_metrics["train_loss"] = sum(losses) / len(losses)  # Lightning's epoch mean


def test_line_progress_shows_the_current_epochs_running_loss_not_the_last_epochs_mean(capsys):
    """During epoch 1 every line said ``train_loss 0.6000``: epoch 0's mean, which Lightning keeps in
    progress_bar_metrics until epoch 1 ends. The line now shows the mean of epoch 1's batches so far."""
    from attr2gender.training.callbacks import LineProgressBar

    bar = LineProgressBar()
    trainer = _FakeTrainer(num_training_batches=2)
    bar._trainer = trainer
    _run_epochs(bar, trainer, [[0.6, 0.6], [0.2, 0.4]])
    lines = capsys.readouterr().err.strip().splitlines()
    epoch1 = [line for line in lines if line.startswith("epoch 1:")]
    assert epoch1 and all("train_loss 0.6000" not in line for line in epoch1), lines
    assert "train_loss 0.2000" in epoch1[0] and "train_loss 0.3000" in epoch1[-1], epoch1
    assert "train_loss 0.6000" in [line for line in lines if line.startswith("epoch 0:")][-1]


def test_the_terminal_bar_shows_the_running_loss_too():
    import torch

    from attr2gender.training.callbacks import EpochLossTQDMProgressBar

    bar = EpochLossTQDMProgressBar()
    bar._add_batch_loss({"loss": torch.tensor(0.2)}, {"image": torch.zeros(2, 1)})
    bar._add_batch_loss(torch.tensor(0.5), {"image": torch.zeros(1, 1)})  # weighted by batch size
    bar._add_batch_loss(None, {"image": torch.zeros(0, 1)})  # an all-unreadable batch returns nothing
    assert abs(bar.epoch_train_loss() - 0.3) < 1e-6
    trainer = _FakeTrainer(num_training_batches=3)
    trainer.loggers, trainer.progress_bar_metrics = [], {"train_loss": 0.6, "val_loss": 0.5}
    assert bar.get_metrics(trainer, None) == {"train_loss": bar.epoch_train_loss(), "val_loss": 0.5}
    bar._reset_epoch_loss()
    assert bar.epoch_train_loss() is None
