"""Callbacks of a training run: margin warm-up, lr logging, loss curves, per-epoch checkpoints, resume, TensorBoard."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from tfadvq import rundir
from tfadvq.compat import keras, tf
from tfadvq.strategies import is_chief


class MarginWarmup(keras.callbacks.Callback):
    """Ramps the AAM head's ``margin`` variable from 0 to its final value, batch by batch.

    A full margin on a random network makes the target logit hopeless and
    training stalls; starting at 0 (plain normalised softmax) and ramping up is
    the recipes' fix.  The value depends only on (epoch, batch), so a resumed
    run picks up where it stopped.
    """

    def __init__(self, margin: tf.Variable, final_margin: float, start_epoch: float,
                 warmup_epochs: float, steps_per_epoch: int):
        super().__init__()
        self.margin = margin
        self.final_margin = float(final_margin)
        self.start_epoch = float(start_epoch)
        self.warmup_epochs = float(warmup_epochs)
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        self._epoch = 0

    def value_at(self, epoch: float) -> float:
        """Margin at fractional ``epoch`` (0-based)."""
        if self.warmup_epochs <= 0:
            return self.final_margin if epoch >= self.start_epoch else 0.0
        ramp = np.clip((epoch - self.start_epoch) / self.warmup_epochs, 0.0, 1.0)
        return float(self.final_margin * ramp)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.margin.assign(self.value_at(self._epoch + batch / self.steps_per_epoch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["margin"] = float(self.margin.numpy())


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the learning rate of the epoch's last step to the logs (hence TensorBoard, history)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(keras.backend.get_value(self.model.optimizer.learning_rate))


class StepLosses(keras.callbacks.Callback):
    """The loss of every training step (``losses``), so a fine-tune can show its curve.

    One epoch's mean says nothing about convergence (a fine-tune is often one
    epoch).  Keras reports the *running mean* of the epoch after each batch;
    the loss of batch ``k`` (1-based) is recovered exactly as
    ``k * m_k - (k - 1) * m_(k-1)``, so the training step does no extra work.
    """

    def __init__(self):
        super().__init__()
        self.losses: list[float] = []
        self._mean = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._mean = 0.0

    def on_train_batch_end(self, batch, logs=None):
        mean = float(logs["loss"])
        self.losses.append((batch + 1) * mean - batch * self._mean)
        self._mean = mean


class EmbeddingCheckpoint(keras.callbacks.Callback):
    """Saves the embedding model's weights every epoch, keeping the newest ``keep``.

    These are the per-epoch checkpoints a user picks or averages; the resume
    state (optimizer included) lives separately in the BackupAndRestore dir.
    Every worker must save (reading BatchNorm statistics under a multi-worker
    strategy is a collective op), but non-chief workers write to a temporary
    directory that is thrown away.
    """

    def __init__(self, embedding_model: keras.Model, run: rundir.TrainDir, keep: int, chief: bool):
        super().__init__()
        self.embedding_model = embedding_model
        self.run = run
        self.keep = max(int(keep), 1)
        self.chief = chief

    def on_epoch_end(self, epoch, logs=None):
        target = self.run.checkpoint(epoch + 1)
        if not self.chief:
            with tempfile.TemporaryDirectory(prefix="tfadvq-worker-") as scratch:
                self.embedding_model.save_weights(Path(scratch) / target.name)
            return
        rundir.atomic_save_with(target, self.embedding_model.save_weights)
        for old in self.run.checkpoint_files()[:-self.keep]:
            old.unlink()


def standard_callbacks(out_dir: str | os.PathLike, embedding_model: keras.Model,
                       keep_checkpoints: int = 3, tensorboard: bool = True) -> list[keras.callbacks.Callback]:
    """Per-epoch checkpoints, resume state and TensorBoard logs in the run directory ``out_dir``.

    Non-chief workers of a multi-worker run keep their backup in a temporary
    directory (Keras handles that) and write no checkpoints or logs.
    """
    run = rundir.TrainDir(out_dir)
    chief = is_chief()
    callbacks: list[keras.callbacks.Callback] = [
        LearningRateLogger(),
        EmbeddingCheckpoint(embedding_model, run, keep_checkpoints, chief),
        # kept after fit; train() removes it once the model is saved, so no kill loses the run
        keras.callbacks.BackupAndRestore(str(run.backup), delete_checkpoint=False),
    ]
    if tensorboard and chief:
        callbacks.append(keras.callbacks.TensorBoard(str(run.tensorboard), write_graph=False))
    return callbacks
