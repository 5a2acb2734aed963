"""Training speaker-embedding models with Keras ``fit``: config, schedule, callbacks, resume.

One YAML (:class:`TrainConfig`, WeSpeaker's "name + args" pattern) drives a run::

    model: ResNet34
    model_args: {embed_dim: 256, base_width: 32}
    data: {wav_scp: lists/wav.scp, utt2spk: lists/utt2spk}
    pipeline: {crop_seconds: 2.0, batch_size: 128}
    optimizer: {name: sgd, lr: 0.1, momentum: 0.9, weight_decay: 1.0e-4}
    schedule: {warmup_epochs: 6, decay: exponential, final_lr: 5.0e-5}
    head: {margin: 0.2, scale: 32, margin_warmup_start: 20, margin_warmup_epochs: 20}
    epochs: 150
    strategy: mirrored

:func:`train` builds everything under the chosen ``tf.distribute`` strategy and
writes ``OUT/model.keras`` (the embedding model, no head) with ``train.yaml``
and ``speakers.json`` beside it.  :func:`fit_embedding_model` is the reusable
core (also used to fine-tune quantized models, with the AAM or the
distillation objective of :mod:`tfadvq.objectives`).

Interruption: ``keras.callbacks.BackupAndRestore`` snapshots model, optimizer
and epoch counter at every epoch end under ``OUT/backup``; re-running the same
command after a crash (even ``kill -9``) resumes from the last finished epoch,
so at most the interrupted epoch is lost.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfadvq.compat import keras, tf
from tfadvq.config import dump_yaml, load_yaml
from tfadvq.errors import ConfigError, DataError
from tfadvq.objectives import (
    AAMTrainer,
    CosineDistance,
    DistillationTrainer,
    Objective,
    parse_objective,
)
from tfadvq.pipeline import PipelineConfig, num_classes, speaker_labels, train_dataset
from tfadvq.voxceleb import Utterance

MODEL_FILE = "model.keras"
CONFIG_FILE = "train.yaml"
SPEAKERS_FILE = "speakers.json"
HEAD_FILE = "head.npz"


class OptimizerName(str, enum.Enum):
    SGD = "sgd"
    ADAMW = "adamw"


class Decay(str, enum.Enum):
    EXPONENTIAL = "exponential"
    COSINE = "cosine"
    CONSTANT = "constant"


class StrategyName(str, enum.Enum):
    NONE = "none"
    MIRRORED = "mirrored"
    MULTI_WORKER = "multi_worker"


@dataclasses.dataclass
class DataConfig:
    """Where the training speakers come from: exactly one of the three sources.

    ``corpus``: a generated (``tfadvq data synth``) or VoxCeleb-like directory
    read by :func:`tfadvq.voxceleb.load_corpus` (its dev part trains);
    ``wav_scp`` + ``utt2spk``: Kaldi lists; ``wav_root``: a VoxCeleb
    ``<spk>/<session>/<utt>.wav`` tree.  ``trials``/``trials_wav_root``
    optionally name an evaluation run after training (the calibrated
    threshold is stored next to the model).
    """

    corpus: str | None = None
    wav_scp: str | None = None
    utt2spk: str | None = None
    wav_root: str | None = None
    trials: str | None = None
    trials_wav_root: str | None = None

    def __post_init__(self) -> None:
        sources = [self.corpus is not None, self.wav_scp is not None or self.utt2spk is not None,
                   self.wav_root is not None]
        if sum(sources) > 1:
            raise ConfigError("data: give only one of corpus, wav_scp+utt2spk, wav_root")
        if (self.wav_scp is None) != (self.utt2spk is None):
            raise ConfigError("data: wav_scp and utt2spk go together; give both or neither")


@dataclasses.dataclass
class OptimizerConfig:
    """SGD with momentum (the SV recipes' choice) or AdamW.

    ``weight_decay`` is decoupled (Keras' ``weight_decay`` argument,
    ``w -= lr * wd * w``); it equals the recipes' L2 coefficient for plain SGD.
    BatchNorm scales/offsets and biases are excluded, as usual.
    """

    name: OptimizerName = OptimizerName.SGD
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1.0e-4


@dataclasses.dataclass
class ScheduleConfig:
    """Linear warm-up from 0 to ``optimizer.lr`` over ``warmup_epochs``, then decay to ``final_lr``."""

    warmup_epochs: float = 0.0
    decay: Decay = Decay.EXPONENTIAL
    final_lr: float = 5.0e-5


@dataclasses.dataclass
class HeadConfig:
    """AAM-softmax: ``margin`` ramps linearly from 0 between epochs ``margin_warmup_start`` and
    ``margin_warmup_start + margin_warmup_epochs`` (0 epochs = full margin from the start)."""

    margin: float = 0.2
    scale: float = 32.0
    margin_warmup_start: float = 0.0
    margin_warmup_epochs: float = 0.0


@dataclasses.dataclass
class TrainConfig:
    """A whole training run (``seed`` seeds model init; ``pipeline.seed`` the data order)."""

    model: str = "TinyResNet"
    model_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    pipeline: PipelineConfig = dataclasses.field(default_factory=PipelineConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    head: HeadConfig = dataclasses.field(default_factory=HeadConfig)
    epochs: int = 10
    steps_per_epoch: int | None = None
    strategy: StrategyName = StrategyName.NONE
    seed: int = 0
    keep_checkpoints: int = 3

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs: must be >= 1, got {self.epochs}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(f"steps_per_epoch: must be >= 1 or null, got {self.steps_per_epoch}")


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read a training YAML; unknown keys anywhere raise :class:`ConfigError` naming the file."""
    return load_yaml(TrainConfig, path)


def packaged_config(name: str) -> Path:
    """Path of a YAML shipped in ``tfadvq/configs`` (``"demo"``, ``"resnet34_vox2"``, ...)."""
    path = Path(__file__).parent / "configs" / f"{Path(name).stem}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"config {name!r}: not a file and not a packaged config; packaged: {known}")
    return path


# --------------------------------------------------------------------------- strategy


def make_strategy(name: StrategyName | str) -> tf.distribute.Strategy:
    """``none`` -> default strategy; ``mirrored`` -> all local devices; ``multi_worker`` -> TF_CONFIG.

    Multi-worker training reads the cluster from the ``TF_CONFIG`` environment
    variable (as every TF cluster launcher sets it) and must be created before
    any other TensorFlow op runs in the process.
    """
    name = StrategyName(name)
    if name is StrategyName.MIRRORED:
        return tf.distribute.MirroredStrategy()
    if name is StrategyName.MULTI_WORKER:
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("strategy multi_worker: set TF_CONFIG (cluster and task) for every worker")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


# --------------------------------------------------------------------------- optimizer


@keras.saving.register_keras_serializable(package="tfadvq")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Per-step learning rate: linear warm-up to ``peak_lr``, then decay to ``final_lr``.

    ``lr(s) = peak * (s + 1) / W`` for ``s < W``; afterwards with progress
    ``p = (s - W) / (T - W)`` clipped to [0, 1]: exponential
    ``peak * (final / peak) ** p`` (WeSpeaker's ExponentialDecrease), cosine
    ``final + (peak - final) * (1 + cos(pi p)) / 2``, or constant ``peak``.
    It depends only on the optimizer's step counter, which the backup
    restores, so a resumed run continues on the same curve.
    """

    def __init__(self, peak_lr: float, final_lr: float, warmup_steps: int, total_steps: int,
                 decay: str = "exponential"):
        self.peak_lr = float(peak_lr)
        self.final_lr = float(final_lr)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.decay = Decay(decay).value

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = float(max(self.warmup_steps, 1))
        warm = self.peak_lr * (step + 1.0) / warmup
        span = float(max(self.total_steps - self.warmup_steps, 1))
        p = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
        if self.decay == Decay.EXPONENTIAL.value:
            after = self.peak_lr * tf.pow(self.final_lr / self.peak_lr, p)
        elif self.decay == Decay.COSINE.value:
            after = self.final_lr + 0.5 * (self.peak_lr - self.final_lr) * (1.0 + tf.cos(math.pi * p))
        else:
            after = tf.constant(self.peak_lr, tf.float32)
        return tf.where(step < self.warmup_steps, warm, after)

    def get_config(self) -> dict[str, Any]:
        return {"peak_lr": self.peak_lr, "final_lr": self.final_lr, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "decay": self.decay}


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The configured optimizer with a :class:`WarmupDecay` schedule over the whole run."""
    opt = config.optimizer
    if opt.lr <= 0 or config.schedule.final_lr <= 0:
        raise ConfigError(f"optimizer.lr and schedule.final_lr must be > 0, got {opt.lr}, "
                          f"{config.schedule.final_lr}")
    schedule = WarmupDecay(opt.lr, config.schedule.final_lr,
                           round(config.schedule.warmup_epochs * steps_per_epoch),
                           config.epochs * steps_per_epoch, config.schedule.decay.value)
    # XLA-compiled updates (Keras' default) break on tfmot-wrapped variables and buy nothing on CPU.
    common = dict(learning_rate=schedule, weight_decay=opt.weight_decay or None, jit_compile=False)
    if opt.name is OptimizerName.ADAMW:
        optimizer = keras.optimizers.AdamW(**common)
    else:
        optimizer = keras.optimizers.SGD(momentum=opt.momentum, nesterov=opt.nesterov, **common)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


# --------------------------------------------------------------------------- callbacks


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


class EmbeddingCheckpoint(keras.callbacks.Callback):
    """Saves the embedding model's weights every epoch, keeping the newest ``keep``.

    These are the per-epoch checkpoints a user picks or averages; the resume
    state (optimizer included) lives separately in the BackupAndRestore dir.
    Every worker must save (reading BatchNorm statistics under a multi-worker
    strategy is a collective op), but non-chief workers write to a temporary
    directory that is thrown away.
    """

    def __init__(self, embedding_model: keras.Model, directory: Path, keep: int, chief: bool):
        super().__init__()
        self.embedding_model = embedding_model
        self.directory = Path(directory)
        self.keep = max(int(keep), 1)
        self.chief = chief

    def on_epoch_end(self, epoch, logs=None):
        name = f"epoch_{epoch + 1:04d}.weights.h5"
        if not self.chief:
            with tempfile.TemporaryDirectory(prefix="tfadvq-worker-") as scratch:
                self.embedding_model.save_weights(Path(scratch) / name)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.embedding_model.save_weights(self.directory / name)
        for old in sorted(self.directory.glob("epoch_*.weights.h5"))[:-self.keep]:
            old.unlink()


def standard_callbacks(out_dir: str | os.PathLike, embedding_model: keras.Model,
                       keep_checkpoints: int = 3, tensorboard: bool = True) -> list[keras.callbacks.Callback]:
    """Per-epoch checkpoints, resume state and TensorBoard logs under ``out_dir``.

    Non-chief workers of a multi-worker run keep their backup in a temporary
    directory (Keras handles that) and write no checkpoints or logs.
    """
    out_dir = Path(out_dir)
    chief = is_chief()
    callbacks: list[keras.callbacks.Callback] = [
        LearningRateLogger(),
        EmbeddingCheckpoint(embedding_model, out_dir / "checkpoints", keep_checkpoints, chief),
        keras.callbacks.BackupAndRestore(str(out_dir / "backup")),
    ]
    if tensorboard and chief:
        callbacks.append(keras.callbacks.TensorBoard(str(out_dir / "tensorboard"), write_graph=False))
    return callbacks


# --------------------------------------------------------------------------- fitting


def fit_embedding_model(
    embedding_model: keras.Model,
    train_ds: tf.data.Dataset,
    num_classes: int | None,
    config: TrainConfig,
    objective: str | Objective = Objective.AAM,
    *,
    teacher: keras.Model | None = None,
    head_weights: str | os.PathLike | None = None,
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
    ``head_weights`` (``HEAD_FILE`` written by :func:`train`) restores the
    trained AAM class centres, so an AAM fine-tune does not start from a
    random classifier.
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
            with np.load(head_weights) as saved:
                head.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
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
        return voxceleb.load_corpus(data.corpus).train
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
    (or ``config.steps_per_epoch``).
    """

    dataset: tf.data.Dataset
    speakers: dict[str, int]
    num_classes: int
    steps_per_epoch: int


def training_data(config: TrainConfig, utterances: Sequence[Utterance] | None = None) -> TrainingData:
    """The batches, labels and epoch length ``config`` trains on (``utterances`` overrides
    ``config.data``, e.g. a fine-tuning set)."""
    utterances = list(utterances) if utterances is not None else load_training_utterances(config.data)
    speakers = speaker_labels(utterances)
    if len(speakers) < 2:
        raise DataError(f"training data: {len(speakers)} speaker(s); speaker classification needs >= 2")
    pipeline = config.pipeline
    if len(utterances) < pipeline.batch_size:
        raise DataError(f"training data: {len(utterances)} utterances cannot fill one batch of "
                        f"pipeline.batch_size={pipeline.batch_size}; lower the batch size")
    steps = config.steps_per_epoch or max(len(utterances) // pipeline.batch_size, 1)
    return TrainingData(train_dataset(utterances, pipeline, speakers), speakers,
                        num_classes(len(speakers), pipeline), steps)


def train(config: TrainConfig, out_dir: str | os.PathLike,
          strategy: tf.distribute.Strategy | None = None,
          callbacks: Sequence[keras.callbacks.Callback] = (),
          verbose: int | str = "auto") -> Path:
    """Run ``config``; write ``out_dir/model.keras`` (+ ``train.yaml``, ``speakers.json``, ``head.npz``).

    Re-running with the same ``out_dir`` after an interruption resumes from the
    last finished epoch.  ``strategy`` overrides ``config.strategy``;
    ``callbacks`` are added to the standard ones.
    """
    from tfadvq.models import build_model

    out_dir = Path(out_dir)
    strategy = strategy or make_strategy(config.strategy)
    keras.utils.set_random_seed(config.seed)
    data = training_data(config)
    chief = is_chief(strategy)
    if chief:
        out_dir.mkdir(parents=True, exist_ok=True)
        dump_yaml(config, out_dir / CONFIG_FILE)
        (out_dir / SPEAKERS_FILE).write_text(json.dumps(data.speakers, indent=0))
    with strategy.scope():
        embedding_model = build_model(config.model, **config.model_args)
        history = fit_embedding_model(embedding_model, data.dataset, data.num_classes, config,
                                      Objective.AAM, steps_per_epoch=data.steps_per_epoch,
                                      callbacks=callbacks, out_dir=out_dir, verbose=verbose)
    if not chief:  # saving reads BatchNorm statistics collectively: every worker must save
        with tempfile.TemporaryDirectory(prefix="tfadvq-worker-") as scratch:
            embedding_model.save(Path(scratch) / MODEL_FILE)
        return out_dir / MODEL_FILE
    embedding_model.save(out_dir / MODEL_FILE)
    np.savez(out_dir / HEAD_FILE, *history.model.head.get_weights())
    (out_dir / "history.json").write_text(json.dumps(history.history, indent=1))
    if config.data.trials is not None:
        calibrate_threshold(embedding_model, config.data, out_dir / MODEL_FILE)
    return out_dir / MODEL_FILE


def calibrate_threshold(model: keras.Model, data: DataConfig, model_path: Path) -> Path:
    """Evaluate on ``data.trials`` and store the decision threshold beside the model."""
    from tfadvq import voxceleb
    from tfadvq.evaluation import evaluate, store_threshold

    if data.trials_wav_root is not None:
        utterances = voxceleb.scan_tree(data.trials_wav_root)
    elif data.corpus is not None:
        utterances = voxceleb.load_corpus(data.corpus).test
    else:
        raise ConfigError("data.trials: also set data.trials_wav_root (where the trial keys live)")
    result = evaluate(model, voxceleb.read_trials(data.trials), utterances)
    return store_threshold(model_path, result, data.trials)
