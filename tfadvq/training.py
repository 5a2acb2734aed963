"""The training engine: fit an embedding model with an objective, and whole training runs.

:func:`fit_embedding_model` is the reusable core (training, and fine-tuning of
quantized models with the AAM or the distillation objective of
:mod:`tfadvq.objectives`); :func:`train` runs a :class:`~tfadvq.train_config.TrainConfig`
under its ``tf.distribute`` strategy and writes a :class:`~tfadvq.rundir.TrainDir`
(the embedding model without head, the config it was trained with, the speaker
labels, the AAM head and the history).

Interruption: ``keras.callbacks.BackupAndRestore`` snapshots model, optimizer
and epoch counter at every epoch end in the run's backup directory;
re-running the same run after a crash (even ``kill -9``) resumes from the last
finished epoch, so at most the interrupted epoch is lost.  Resuming with a
different config is refused (naming what differs), and a finished run is not
overwritten unless asked.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import logging

import numpy as np

from tfadvq import frontend, rundir
from tfadvq.callbacks import MarginWarmup, standard_callbacks
from tfadvq.compat import keras, tf
from tfadvq.config import dump_yaml, load_yaml, to_dict
from tfadvq.errors import ConfigError, DataError
from tfadvq.objectives import (
    AAMTrainer,
    CosineDistance,
    DistillationTrainer,
    Objective,
    parse_objective,
)
from tfadvq.optim import make_optimizer
from tfadvq.pipeline import num_classes, speaker_labels, train_dataset
from tfadvq.strategies import is_chief, make_strategy
from tfadvq.train_config import DataConfig, TrainConfig
from tfadvq.voxceleb import Utterance

log = logging.getLogger(__name__)


def fit_embedding_model(
    embedding_model: keras.Model,
    train_ds: tf.data.Dataset,
    num_classes: int | None,
    config: TrainConfig,
    objective: str | Objective = Objective.AAM,
    *,
    teacher: keras.Model | None = None,
    head_weights: Sequence[np.ndarray] | None = None,
    steps_per_epoch: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    out_dir: str | os.PathLike | None = None,
    verbose: int | str = "auto",
) -> keras.callbacks.History:
    """Train ``embedding_model`` in place on ``train_ds`` with ``objective``; return the history.

    ``train_ds`` yields ``(features, labels)`` batches (labels unused by
    ``"distill"``, which also accepts features alone).  It is repeated and cut
    into ``steps_per_epoch`` steps (default: ``config.steps_per_epoch``, else
    one pass over the dataset, which must then have a known cardinality) so
    every worker of a cluster runs the same number of steps.  Optimizer,
    schedule, epochs and the AAM head come from ``config``.  ``out_dir`` adds
    :func:`standard_callbacks` (checkpoints, resume, TensorBoard).  Call this
    inside ``strategy.scope()`` when distributing (the model must have been
    built there too).  Works for tfmot-wrapped (``quantize_apply``) models.
    ``head_weights`` (:meth:`TrainDir.load_head` of the run that trained the
    model) restores the trained AAM class centres, so an AAM fine-tune does not
    start from a random classifier; their shape must match ``num_classes``.
    """
    objective = parse_objective(objective)
    steps = steps_per_epoch or config.steps_per_epoch or _cardinality(train_ds)
    all_callbacks = list(callbacks)
    if objective is Objective.AAM:
        if not num_classes or num_classes < 2:
            raise ConfigError(f"objective aam: needs num_classes >= 2 speakers, got {num_classes}")
        from tfadvq.heads import AAMSoftmax

        head = AAMSoftmax(num_classes, margin=config.head.margin, scale=config.head.scale)
        if head_weights is not None:
            head.build((None, int(embedding_model.output_shape[-1])))
            _set_head(head, head_weights, num_classes)
            head.margin.assign(config.head.margin)
        trainer = AAMTrainer(embedding_model, head)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="acc")]
        all_callbacks.insert(0, MarginWarmup(head.margin, config.head.margin,
                                             config.head.margin_warmup_start,
                                             config.head.margin_warmup_epochs, steps))
    else:
        if teacher is None:
            raise ConfigError("objective distill: pass teacher=<the FP32 embedding model>")
        trainer = DistillationTrainer(embedding_model, teacher)
        loss, metrics = CosineDistance(), []
    trainer.compile(optimizer=make_optimizer(config, steps), loss=loss, metrics=metrics)
    if out_dir is not None:
        all_callbacks += standard_callbacks(out_dir, embedding_model, config.keep_checkpoints)
    dataset = _distributable(trainer.prepare(train_ds))
    return trainer.fit(dataset, epochs=config.epochs, steps_per_epoch=steps,
                       callbacks=all_callbacks, verbose=verbose)


def _set_head(head: Any, weights: Sequence[np.ndarray], classes: int) -> None:
    expected = [tuple(w.shape) for w in head.get_weights()]
    got = [tuple(np.shape(w)) for w in weights]
    if expected != got:
        raise ConfigError(f"head weights: shapes {got} do not fit a head of {classes} classes {expected}; "
                          "the fine-tuning data must have the speakers (and speed perturbation) the "
                          "head was trained with, or start without the trained head")
    head.set_weights(list(weights))


def _cardinality(dataset: tf.data.Dataset) -> int:
    n = int(dataset.cardinality())
    if n <= 0:
        raise ConfigError("steps_per_epoch: the training dataset is infinite or of unknown length; "
                          "set steps_per_epoch in the config or pass it")
    return n


def _distributable(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Repeat forever and shard by element across workers (file sharding needs many files)."""
    if int(dataset.cardinality()) != int(tf.data.INFINITE_CARDINALITY):
        dataset = dataset.repeat()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


# --------------------------------------------------------------------------- whole run


def load_training_utterances(data: DataConfig) -> list[Utterance]:
    """The training utterances named by ``data`` (``corpus`` dev part, Kaldi lists or a tree)."""
    from tfadvq import voxceleb

    if data.corpus is not None:
        train, owner = [], {}
        for corpus in (data.corpus, *data.extra_corpora):
            part = voxceleb.load_corpus(corpus).train
            if not part:
                raise ConfigError(f"data corpus {corpus}: has no training (dev) part; an evaluation corpus "
                                  "(`tfadvq data real` without --train-speakers) cannot train a model")
            shared = sorted({u.speaker for u in part} & owner.keys())
            if shared:
                raise ConfigError(f"data corpus {corpus}: speakers {shared[:5]} are also in {owner[shared[0]]}; "
                                  "the training corpora must have disjoint speakers")
            owner.update({u.speaker: corpus for u in part})
            train += part
        return train
    if data.extra_corpora:
        raise ConfigError(f"data.extra_corpora {list(data.extra_corpora)}: add to a `corpus`; set data.corpus "
                          "(or pass --corpus) too")
    if data.wav_scp is not None:
        return voxceleb.read_kaldi_lists(data.wav_scp, data.utt2spk)
    if data.wav_root is not None:
        return voxceleb.scan_tree(data.wav_root)
    raise ConfigError("data: no training data; set corpus, wav_scp+utt2spk or wav_root")


@dataclasses.dataclass
class TrainingData:
    """A labelled training set ready for :func:`fit_embedding_model`.

    ``speakers`` maps speaker id -> label; ``num_classes`` counts speed-perturbed
    copies as extra speakers; ``steps_per_epoch`` is one pass over the utterances
    (or ``config.steps_per_epoch``); ``bad`` lists the files skipped as
    unreadable, with the reason.
    """

    dataset: tf.data.Dataset
    speakers: dict[str, int]
    num_classes: int
    steps_per_epoch: int
    bad: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def training_data(config: TrainConfig, utterances: Sequence[Utterance] | None = None) -> TrainingData:
    """The batches, labels and epoch length ``config`` trains on (``utterances`` overrides
    ``config.data``, e.g. a fine-tuning set)."""
    from tfadvq.pipeline import check_utterances

    utterances = list(utterances) if utterances is not None else load_training_utterances(config.data)
    utterances, bad = check_utterances(utterances, sample_rate=config.pipeline.fbank.sample_rate)
    if bad:
        log.warning("training data: skipped %d unreadable file(s), e.g. %s (%s)", len(bad), *bad[0])
    speakers = speaker_labels(utterances)
    if len(speakers) < 2:
        raise DataError(f"training data: {len(speakers)} speaker(s); speaker classification needs >= 2")
    pipeline = config.pipeline
    if len(utterances) < pipeline.batch_size:
        raise DataError(f"training data: {len(utterances)} utterances cannot fill one batch of "
                        f"pipeline.batch_size={pipeline.batch_size}; lower the batch size")
    steps = config.steps_per_epoch or max(len(utterances) // pipeline.batch_size, 1)
    return TrainingData(train_dataset(utterances, pipeline, speakers), speakers,
                        num_classes(len(speakers), pipeline), steps, bad)


def config_differences(old: TrainConfig, new: TrainConfig) -> list[str]:
    """``key: old -> new`` for every leaf value that differs (what a resume would silently change)."""
    def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                out.update(leaves(item, f"{prefix}{key}."))
            return out
        return {prefix[:-1]: value}

    a, b = leaves(to_dict(old)), leaves(to_dict(new))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _check_run_dir(run: rundir.TrainDir, config: TrainConfig, force: bool) -> None:
    """Refuse to overwrite a finished run or to resume a run with another config (unless ``force``)."""
    if not run.config.is_file():
        return
    if force:
        evaluations = [evaluation.path for evaluation in run.evaluations()]  # of the model --force replaces
        for stale in (run.backup, run.checkpoints, run.model, run.head, run.history, run.legacy_threshold,
                      *evaluations):
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
        return
    differences = config_differences(load_yaml(TrainConfig, run.config), config)
    if run.model.is_file() and not run.backup.exists():
        raise ConfigError(f"{run.path}: holds a finished training run; pass --force to train it again "
                          "or choose another output directory")
    if differences:
        raise ConfigError(f"{run.path}: holds an unfinished run with another config ({'; '.join(differences)}); "
                          "resume it with its own config, pass --force to start over, or choose "
                          "another output directory")


def train(config: TrainConfig, out_dir: str | os.PathLike,
          strategy: tf.distribute.Strategy | None = None,
          callbacks: Sequence[keras.callbacks.Callback] = (),
          verbose: int | str = "auto", force: bool = False) -> rundir.TrainDir:
    """Run ``config`` into the run directory ``out_dir`` (see module doc) and return it.

    Re-running with the same ``out_dir`` and config after an interruption
    resumes from the last finished epoch.  ``strategy`` overrides
    ``config.strategy``; ``callbacks`` are added to the standard ones.
    """
    from tfadvq.models import build_model

    run = rundir.TrainDir(out_dir)
    strategy = strategy or make_strategy(config.strategy)
    chief = is_chief(strategy)
    lock = rundir.claim_dir(run.path, rundir.TrainDir, force=force, command="tfadvq train",
                            keep_on_failure=True) if chief else contextlib.nullcontext()
    with lock:
        if chief:
            _check_run_dir(run, config, force)
        keras.utils.set_random_seed(config.seed)
        data = training_data(config)
        if chief:
            rundir.atomic_save_with(run.config, lambda tmp: dump_yaml(config, tmp))
            frontend.record(run.path, config.pipeline.fbank)
            rundir.write_json(run.speakers, data.speakers)
            rundir.write_bad_files(run.bad, data.bad)
        with strategy.scope():
            embedding_model = build_model(config.model, **config.model_args)
            frontend.check_input(frontend.FrontEnd(config.pipeline.fbank, "pipeline.fbank of the training config"),
                                 int(embedding_model.input_shape[-1]), f"model {config.model} {config.model_args}")
            history = fit_embedding_model(embedding_model, data.dataset, data.num_classes, config,
                                          Objective.AAM, steps_per_epoch=data.steps_per_epoch,
                                          callbacks=callbacks, out_dir=run.path, verbose=verbose)
        if not chief:  # saving reads BatchNorm statistics collectively: every worker must save
            with tempfile.TemporaryDirectory(prefix="tfadvq-worker-") as scratch:
                embedding_model.save(Path(scratch) / run.MODEL)
            return run
        # The head first, the model last: a model file means the run is complete.  history.json was
        # written epoch by epoch (callbacks.HistoryFile): it holds the epochs before a resume too.
        run.save_head(history.model.head.get_weights())
        rundir.atomic_save_model(embedding_model, run.model)
        shutil.rmtree(run.backup, ignore_errors=True)  # kept until now so a kill above loses no epoch
    return run
