"""Quantization-aware fine-tuning: the training engine plus codebook refresh.

Fine-tuning reuses :func:`tfadvq.training.fit_embedding_model` unchanged (it
trains tfmot-wrapped models), with either objective:

``"aam"``      speaker labels through an AAM-softmax head (the paper).  Pass the
               trained head (``head_weights=<train dir>/head.npz``) so the
               fine-tune does not start from a random classifier; without it
               the head starts random and needs enough steps to be re-learnt.
``"distill"``  cosine distance to the FP32 teacher's embeddings; needs no labels,
               so any speech works, and no head has to be re-learnt.

Fine-tuning is a short continuation, not a new run: :func:`finetune_config`
takes the training config, sets the epoch budget, drops the warm-up (the
network is trained already) and scales the peak learning rate down.
:func:`finetune_utterances` does both for a list of labelled utterances and
returns a summary row (``tfadvq quantize`` and ``tfadvq demo`` call it).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from tfadvq.compat import keras
from tfadvq.errors import ConfigError
from tfadvq.quant.codebook_refresh import CodebookRefresh
from tfadvq.training import TrainConfig, TrainingData, fit_embedding_model, training_data
from tfadvq.voxceleb import Utterance

DEFAULT_LR_SCALE = 0.1


def finetune_config(config: TrainConfig, epochs: int, lr_scale: float = DEFAULT_LR_SCALE) -> TrainConfig:
    """``config`` as a fine-tune: ``epochs`` epochs, no warm-up, peak lr times ``lr_scale``.

    The margin of the AAM head is applied from the first step (no margin
    warm-up): the embedding is already discriminative.
    """
    if epochs < 1:
        raise ConfigError(f"--finetune-epochs: {epochs}; accepted: >= 1 (0 means post-training only)")
    if lr_scale <= 0:
        raise ConfigError(f"lr_scale: {lr_scale}; accepted: > 0")
    optimizer = dataclasses.replace(config.optimizer, lr=config.optimizer.lr * lr_scale)
    final_lr = min(config.schedule.final_lr, optimizer.lr)
    schedule = dataclasses.replace(config.schedule, warmup_epochs=0.0, final_lr=final_lr)
    head = dataclasses.replace(config.head, margin_warmup_start=0.0, margin_warmup_epochs=0.0)
    return dataclasses.replace(config, epochs=epochs, optimizer=optimizer, schedule=schedule, head=head)


def finetune(quantized: keras.Model, data: TrainingData, config: TrainConfig, objective: str = "aam", *,
             teacher: keras.Model | None = None, head_weights: str | os.PathLike | None = None,
             refresh_steps: int = 100, callbacks: Sequence[keras.callbacks.Callback] = (),
             verbose: int | str = "auto") -> keras.callbacks.History:
    """Train the wrapped ``quantized`` model in place, refreshing its k-means codebooks.

    ``data`` comes from :func:`tfadvq.training.training_data`; ``config`` is
    usually a :func:`finetune_config`.  Codebooks are re-fitted every
    ``refresh_steps`` steps (0: only at epoch ends) and after the last epoch,
    so the stripped model matches the codebooks of the trained weights.
    ``teacher`` (the FP32 model) is required by ``"distill"``; it must not be
    the wrapped model itself.  ``head_weights`` (``"aam"``): the trained AAM head
    (``head.npz`` from :func:`tfadvq.training.train`); its class count must
    match ``data.num_classes``.
    """
    refresh = CodebookRefresh(quantized, every_n_steps=refresh_steps)
    return fit_embedding_model(quantized, data.dataset, data.num_classes, config, objective,
                               teacher=teacher, head_weights=head_weights,
                               steps_per_epoch=data.steps_per_epoch,
                               callbacks=[refresh, *callbacks], verbose=verbose)


def finetune_utterances(quantized: keras.Model, utterances: Sequence[Utterance], config: TrainConfig,
                        epochs: int, objective: str = "aam", *, lr_scale: float = DEFAULT_LR_SCALE,
                        teacher: keras.Model | None = None,
                        head_weights: str | os.PathLike | None = None,
                        refresh_steps: int = 100) -> dict[str, Any]:
    """Fine-tune ``quantized`` in place on ``utterances`` for ``epochs`` epochs; return a summary row.

    ``config`` is the *training* config (optimizer, pipeline, head); it is
    turned into a fine-tune by :func:`finetune_config`.  The row carries the
    objective, epochs, steps, peak lr and first/last loss.
    """
    config = finetune_config(config, epochs, lr_scale)
    data = training_data(config, utterances)
    history = finetune(quantized, data, config, objective, teacher=teacher,
                       head_weights=head_weights, refresh_steps=refresh_steps)
    return {"objective": objective, "epochs": epochs, "steps": epochs * data.steps_per_epoch,
            "peak_lr": config.optimizer.lr, "first_loss": history.history["loss"][0],
            "last_loss": history.history["loss"][-1]}
