"""Keras callbacks of the training loop: one progress line per epoch, and each epoch's losses
logged into the MLflow run by its id."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import keras
import numpy as np


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch (epoch, loss, val_loss, seconds, images/s) and the timings behind it.

    Training throughput counts the training steps only: the clock stops at the epoch's last
    training batch, before the validation pass.
    """

    def __init__(self, n_train: int, epochs: int, verbose: bool = True, prefix: str = "") -> None:
        super().__init__()
        self.n_train = n_train
        self.epochs = epochs
        self.verbose = verbose
        self.prefix = prefix
        self.epoch_seconds: list[float] = []
        self.train_seconds: list[float] = []
        self._epoch_start = 0.0
        self._last_batch_end = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = self._last_batch_end = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._last_batch_end = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        now = time.perf_counter()
        train_time = max(self._last_batch_end - self._epoch_start, 1e-9)
        self.epoch_seconds.append(now - self._epoch_start)
        self.train_seconds.append(train_time)
        if self.verbose:
            width = len(str(self.epochs))
            print(
                f"{self.prefix}epoch {epoch + 1:>{width}}/{self.epochs}  "
                f"loss {float(logs.get('loss', math.nan)):.5f}  "
                f"val_loss {float(logs.get('val_loss', math.nan)):.5f}  "
                f"{now - self._epoch_start:6.1f}s  {self.n_train / train_time:8,.0f} img/s",
                flush=True,
            )

    def images_per_second(self) -> float:
        """Steady-state training throughput: the first epoch (tracing, cache fill) is left out
        when there are later ones."""
        seconds = self.train_seconds[1:] or self.train_seconds
        if not seconds:
            return 0.0
        return self.n_train / statistics.median(seconds)


class MlflowEpochLogger(keras.callbacks.Callback):
    """Log every epoch's metrics (step = epoch) into one MLflow run by its id.

    Uses an explicit ``MlflowClient`` and run id, not the global active run, so that concurrent
    processes and nested trial runs never log into each other's runs.
    """

    def __init__(self, client: Any, run_id: str) -> None:
        super().__init__()
        self.client = client
        self.run_id = run_id

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [
            Metric(key=name, value=float(value), timestamp=stamp, step=epoch)
            for name, value in (logs or {}).items()
            if np.ndim(value) == 0
        ]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics, synchronous=True)
