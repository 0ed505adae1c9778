"""The training loop's Lightning callbacks: the progress display (a bar on a terminal, one line per tenth of an
epoch in a log, with the running mean training loss) and the images-per-second monitor. Kept apart from the
loop (:mod:`attr2gender.training.engine`), as Lightning keeps callbacks apart from the Trainer."""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ProgressBar, TQDMProgressBar


class _EpochTrainLoss:
    """The running mean training loss of the current epoch, for the progress display.

    Lightning's ``train_loss`` is logged per epoch (``on_epoch=True``), so during epoch 1 its progress-bar
    value is still epoch 0's mean: every line of epoch 1 showed the same number. This mean is accumulated
    from each ``on_train_batch_end``'s ``outputs`` (weighted by batch size, as the logged mean is) and reset
    at each epoch's start. Under DDP it covers this process's batches."""

    _loss_sum: float = 0.0
    _loss_images: int = 0

    def _reset_epoch_loss(self) -> None:
        self._loss_sum, self._loss_images = 0.0, 0

    def _add_batch_loss(self, outputs, batch) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:  # a batch whose every image was unreadable returns nothing
            return
        try:
            value = float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
        except (TypeError, ValueError, RuntimeError):
            return
        if not np.isfinite(value):
            return
        images = batch.get("image") if isinstance(batch, dict) else None
        n = len(images) if images is not None else 1
        self._loss_sum += value * n
        self._loss_images += n

    def epoch_train_loss(self) -> float | None:
        """The current epoch's mean training loss so far (None before its first batch)."""
        return self._loss_sum / self._loss_images if self._loss_images else None


class LineProgressBar(_EpochTrainLoss, ProgressBar):
    """Lightning's progress where stderr is not a terminal (CI, a log file): one line per 10 % of each
    training epoch, and one line with the validation metrics, instead of a bar redrawn per step. The
    ``train_loss`` on a line is the mean over the current epoch's batches so far."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._next_tenth = 1

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _say(self, text: str) -> None:
        if self._enabled and self.trainer.is_global_zero:
            print(text, file=sys.stderr, flush=True)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._next_tenth = 1
        self._start = time.perf_counter()
        self._reset_epoch_loss()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._add_batch_loss(outputs, batch)
        total = self.total_train_batches
        if not isinstance(total, int) or total <= 0:
            return
        done = batch_idx + 1
        if 10 * done // total >= self._next_tenth:
            self._next_tenth = 10 * done // total + 1
            loss = self.epoch_train_loss()
            rate = done / max(time.perf_counter() - self._start, 1e-9)
            self._say(
                f"epoch {trainer.current_epoch}: {100 * done // total}% ({done}/{total} batches, "
                f"{rate:.2f} batches/s" + (f", train_loss {loss:.4f}" if loss is not None else "") + ")"
            )

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        shown = {k: v for k, v in trainer.progress_bar_metrics.items() if k.startswith("val_")}
        if shown:
            self._say(
                f"epoch {trainer.current_epoch} validation: "
                + ", ".join(f"{k} {float(v):.4f}" for k, v in shown.items())
            )


class EpochLossTQDMProgressBar(_EpochTrainLoss, TQDMProgressBar):
    """Lightning's terminal bar, with ``train_loss`` the current epoch's running mean (not the last
    epoch's mean, which Lightning's bar shows until the epoch ends)."""

    def on_train_epoch_start(self, trainer, *args) -> None:
        self._reset_epoch_loss()
        super().on_train_epoch_start(trainer, *args)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._add_batch_loss(outputs, batch)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer, pl_module) -> dict:
        items = super().get_metrics(trainer, pl_module)
        loss = self.epoch_train_loss()
        if loss is not None:
            items["train_loss"] = loss
        return items


class ThroughputMonitor(Callback):
    """Images/s in the progress bar (per step) and per epoch in the logged metrics."""

    def on_train_epoch_start(self, trainer, pl_module):
        self._epoch_start, self._images = time.perf_counter(), 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        n = len(batch["image"])
        self._images += n
        seconds = max(time.perf_counter() - self._batch_start, 1e-9)
        pl_module.log("img_s", n / seconds, prog_bar=True, on_step=True, on_epoch=False, logger=False)

    def on_train_epoch_end(self, trainer, pl_module):
        seconds = max(time.perf_counter() - self._epoch_start, 1e-9)
        pl_module.log("train_images_per_s", self._images / seconds, on_epoch=True)
