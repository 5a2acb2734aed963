"""Quantization-aware fine-tuning: the training engine plus codebook refresh.

Fine-tuning reuses :func:`tfadvq.training.fit_embedding_model` unchanged (it
trains tfmot-wrapped models), with either objective:

``"aam"``      speaker labels through an AAM-softmax head (the paper).  Pass the
               trained head (``head_weights=<train dir>/head.npz``) so the
               fine-tune does not start from a random classifier; without it
               the head starts random and needs enough steps to be re-learnt.
``"distill"``  cosine distance to the FP32 teacher's embeddings; needs no labels,
               so any speech works, and no head has to be re-learnt.

Fine-tuning is a short continuation of the model's own training run, not a
new recipe: :func:`finetune_config` takes the training config stored with the
model (:class:`~tfadvq.rundir.TrainDir`), sets the epoch budget, drops the
warm-up (the network is trained already) and scales the peak learning rate
down.  :func:`finetune_run` does it all from typed :class:`FinetuneSettings`:
the data sources of training (corpus, Kaldi lists, a VoxCeleb tree: the
model's own ``data`` unless others are given), the trained AAM head, and it
returns the fine-tuned head so the next stage can continue from it, with a
row recording everything it did (``tfadvq quantize`` and the recipe's
``finetune`` stage call it).

**Any model, any input.**  The distillation objective needs no labels, only
what the model eats, so a model with its own front end (a 40-band mel input,
raw audio, ...) is fine-tuned on a ``tf.data.Dataset`` of its inputs:
:func:`input_data` wraps one as :class:`~tfadvq.training.TrainingData` for
:func:`finetune`, checking its shape against the model's input first;
:func:`audio_inputs` makes such a dataset of raw-waveform crops from audio
files (unlabeled speech), for models whose input is the waveform.
:func:`model_inputs` picks, for ``tfadvq quantize`` and the recipe, the fbank
pipeline when the model takes its features, waveform crops when it takes
audio, or an ``.npy`` array of inputs, and says what to pass otherwise.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfadvq.audio_limits import SAMPLE_RATE
from tfadvq.callbacks import StepLosses
from tfadvq.compat import keras, tf
from tfadvq.config import to_dict
from tfadvq.errors import ConfigError, DataError
from tfadvq.objectives import Objective
from tfadvq.quant.codebook_refresh import CodebookRefresh
from tfadvq.train_config import DataConfig, TrainConfig
from tfadvq.training import TrainingData, fit_embedding_model, training_data
from tfadvq.voxceleb import Utterance

DEFAULT_LR_SCALE = 0.1


def finetune_config(config: TrainConfig, epochs: int, lr_scale: float = DEFAULT_LR_SCALE,
                    steps_per_epoch: int | None = None) -> TrainConfig:
    """``config`` as a fine-tune: ``epochs`` epochs, no warm-up, peak lr times ``lr_scale``.

    ``steps_per_epoch`` (when given) sets the budget in steps: a step-based
    fine-tune (an MSFT stage, the mixed fine-tune) is ``epochs=1`` of that many.

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
    steps = config.steps_per_epoch if steps_per_epoch is None else steps_per_epoch
    return dataclasses.replace(config, epochs=epochs, optimizer=optimizer, schedule=schedule, head=head,
                               steps_per_epoch=steps)


@dataclasses.dataclass
class Finetuned:
    """What one fine-tune did: the loss of every step, and the AAM head it ended with (None: distill)."""

    losses: list[float]
    head_weights: list[np.ndarray] | None

    def window(self, last: bool) -> float:
        """Mean loss of the first (or last) tenth of the steps, at least one step."""
        n = max(1, len(self.losses) // 10)
        return float(np.mean(self.losses[-n:] if last else self.losses[:n]))

    def curve(self, points: int = 50) -> list[list[float]]:
        """``[[last step of the window, mean loss of the window], ...]``, about ``points`` windows."""
        every = max(1, -(-len(self.losses) // points))
        return [[min(i + every, len(self.losses)), round(float(np.mean(self.losses[i:i + every])), 5)]
                for i in range(0, len(self.losses), every)]

    def record(self) -> dict[str, Any]:
        """The fields a run record keeps: steps, first/last tenth's loss and the curve."""
        return {"steps": len(self.losses), "first_loss": round(self.window(last=False), 5),
                "last_loss": round(self.window(last=True), 5), "loss_curve": self.curve()}


def finetune(quantized: keras.Model, data: TrainingData, config: TrainConfig, objective: str = "aam", *,
             teacher: keras.Model | None = None, head_weights: Sequence[np.ndarray] | None = None,
             refresh_steps: int = 100, callbacks: Sequence[keras.callbacks.Callback] = (),
             verbose: int | str = "auto") -> Finetuned:
    """Train the wrapped ``quantized`` model in place, refreshing its k-means codebooks.

    ``data`` comes from :func:`tfadvq.training.training_data`; ``config`` is
    usually a :func:`finetune_config`.  Codebooks are re-fitted every
    ``refresh_steps`` steps (0: only at epoch ends) and after the last epoch,
    so the stripped model matches the codebooks of the trained weights.
    ``teacher`` (the FP32 model) is required by ``"distill"``; it must not be
    the wrapped model itself.  ``head_weights`` (``"aam"``): the trained AAM head
    (``head.npz`` from :func:`tfadvq.training.train`); its class count must
    match ``data.num_classes``.  This is the one fine-tune engine: the
    one-shot fine-tune, every MSFT stage and the mixed-precision fine-tune run
    it, and each keeps its per-step losses (:class:`Finetuned`).
    """
    refresh = CodebookRefresh(quantized, every_n_steps=refresh_steps)
    steps = StepLosses()
    history = fit_embedding_model(quantized, data.dataset, data.num_classes, config, objective,
                                  teacher=teacher, head_weights=head_weights,
                                  steps_per_epoch=data.steps_per_epoch,
                                  callbacks=[refresh, steps, *callbacks], verbose=verbose)
    head = getattr(history.model, "head", None)
    return Finetuned(steps.losses, head.get_weights() if head is not None else None)


def _input_spec(dataset: tf.data.Dataset) -> tf.TensorSpec:
    """The model-input part of a dataset element: the element, or the first item of a tuple."""
    spec = dataset.element_spec
    return spec[0] if isinstance(spec, tuple) else spec


def check_inputs(model: keras.Model, shape: Sequence[int | None], source: str) -> None:
    """Raise a :class:`ConfigError` naming both when batches of ``shape`` cannot feed ``model``.

    ``shape`` is a batch's shape (first axis the batch, None = any length).
    The message says what input the model wants and how to pass one, so a
    model with its own input never meets Keras' raw shape traceback.
    """
    wanted = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if wanted is None:
        raise ConfigError(f"model {model.name!r} has {len(model.input_shape)} inputs; fine-tuning feeds one "
                          "input tensor (wrap the model so it takes one)")
    got = tuple(shape)
    fits = len(got) == len(wanted) and all(w is None or g is None or w == g for w, g in zip(wanted[1:], got[1:]))
    if not fits:
        raise ConfigError(
            f"model {model.name!r} expects input batches of shape {_shape(wanted)}, but {source} gives "
            f"{_shape(got)}.  Fine-tune it on its own inputs: tfadvq quantize --inputs X.npy (an array "
            f"[N{_shape(wanted[1:], lead=', ')}] of model inputs), or from Python "
            "tfadvq.quant.finetune.input_data(<tf.data.Dataset of model inputs>, steps_per_epoch) with "
            "objective 'distill' (audio_inputs() makes waveform crops for a model whose input is audio)")


def _shape(shape: Sequence[int | None], lead: str = "") -> str:
    dims = ", ".join("None" if d is None else str(d) for d in shape)
    return f"{lead}{dims}" if lead else f"({dims})"


def input_data(dataset: tf.data.Dataset, steps_per_epoch: int, *, batch_size: int | None = None,
               model: keras.Model | None = None) -> TrainingData:
    """Unlabeled model inputs as :class:`~tfadvq.training.TrainingData` for ``finetune(..., "distill")``.

    ``dataset`` yields batches of model inputs (or ``(inputs, anything)``;
    the rest is ignored), e.g. log-mels of the model's own front end or raw
    audio; ``batch_size`` batches an unbatched dataset first.  It is repeated
    as needed; an epoch is ``steps_per_epoch`` steps.  ``model`` checks the
    shape first (:func:`check_inputs`).  Example::

        data = input_data(tf.data.Dataset.from_tensor_slices(mels).batch(32), steps_per_epoch=50)
        finetune(tfadvq.quantize(model, 4), data, config, "distill", teacher=model)
    """
    if steps_per_epoch < 1:
        raise ConfigError(f"steps_per_epoch: {steps_per_epoch}; accepted: >= 1")
    if batch_size is not None:
        if batch_size < 1:
            raise ConfigError(f"batch_size: {batch_size}; accepted: >= 1")
        dataset = dataset.batch(batch_size, drop_remainder=True)
    if model is not None:
        check_inputs(model, _input_spec(dataset).shape, "the dataset")
    return TrainingData(dataset, speakers={}, num_classes=0, steps_per_epoch=steps_per_epoch)


def audio_inputs(paths: Sequence[str], seconds: float, batch_size: int, *, sample_rate: int = SAMPLE_RATE,
                 seed: int = 0) -> tf.data.Dataset:
    """Batches ``[batch_size, seconds * sample_rate]`` of random waveform crops of the audio files ``paths``.

    For models whose input is the waveform (their front end inside): read
    once through :func:`tfadvq.audio.load_audio` (the one reader, so every
    format and its errors are the project's), short files repeated, a new
    random crop of every file each epoch.  Labels are not needed (distill).
    """
    from tfadvq.audio import load_audio

    samples = int(round(seconds * sample_rate))
    if samples < 1 or batch_size < 1:
        raise ConfigError(f"audio_inputs: seconds={seconds}, batch_size={batch_size}; accepted: > 0")
    if len(paths) < batch_size:
        raise DataError(f"audio_inputs: {len(paths)} file(s) cannot fill one batch of {batch_size}")
    waves = [load_audio(p, sample_rate) for p in paths]
    # Each file tiled to at least one crop plus itself, so a crop can start anywhere in the file.
    length = max(samples + w.size for w in waves)
    tiled = np.stack([np.tile(w, -(-length // w.size))[:length] for w in waves])
    sizes = np.array([w.size for w in waves], np.int32)

    tiled, sizes = tf.constant(tiled), tf.constant(sizes)

    def crop(index: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
        start = tf.random.stateless_uniform([], tf.stack([key, index]), 0, tf.gather(sizes, index), dtype=tf.int32)
        return tf.ensure_shape(tf.gather(tiled, index)[start:start + samples], [samples])

    epochs = tf.data.Dataset.random(seed=seed)  # one key per pass over the files
    files = tf.data.Dataset.range(len(paths)).shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    return (epochs.flat_map(lambda key: files.map(lambda i: crop(i, key)))
            .batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def model_inputs(model: keras.Model, config: TrainConfig, *, inputs: str | None = None,
                 utterances: Sequence[Utterance] | None = None, steps_per_epoch: int | None = None) -> TrainingData:
    """Data a model of any input can be fitted, Fisher-weighted or bias-corrected on (labels only for fbank).

    * ``inputs``: an ``.npy`` array ``[N, ...]`` of model inputs, batched by
      ``config.pipeline.batch_size`` (or all N when fewer; any input the user's own front end makes);
    * else the audio of ``utterances`` (default: ``config.data``): a model
      whose input is our fbank ``[batch, frames, num_mel_bins]`` gets the
      training pipeline (with labels, so AAM works too), a model whose input
      is the waveform ``[batch, samples]`` gets :func:`audio_inputs` crops
      (``samples`` long, else ``crop_seconds``), and any other model a
      :class:`ConfigError` saying what it wants and how to pass it
      (:func:`check_inputs`), before any work.
    """
    batch = config.pipeline.batch_size
    if inputs is not None:
        array = load_inputs(inputs)
        check_inputs(model, (None, *array.shape[1:]), f"--inputs {inputs}")
        batch = min(batch, len(array))  # a few examples of one's own inputs are a batch of their own
        dataset = tf.data.Dataset.from_tensor_slices(array).shuffle(len(array), seed=config.pipeline.seed)
        return input_data(dataset, steps_per_epoch or max(1, len(array) // batch), batch_size=batch)
    wanted = model.input_shape
    if isinstance(wanted, tuple) and len(wanted) == 2:  # the waveform: the front end is inside the model
        from tfadvq.training import load_training_utterances

        utterances = list(utterances) if utterances is not None else load_training_utterances(config.data)
        rate = config.pipeline.fbank.sample_rate
        seconds = wanted[1] / rate if wanted[1] else config.pipeline.crop_seconds
        dataset = audio_inputs([u.path for u in utterances], seconds, batch, sample_rate=rate,
                               seed=config.pipeline.seed)
        return input_data(dataset, steps_per_epoch or max(1, len(utterances) // batch))
    pipeline = config.pipeline
    check_inputs(model, (None, pipeline.crop_frames, pipeline.fbank.num_mel_bins),
                 f"the corpus pipeline (log-mel fbank, {pipeline.fbank.num_mel_bins} bins, "
                 f"{pipeline.crop_seconds:g}-s crops)")
    if steps_per_epoch is not None:
        config = dataclasses.replace(config, steps_per_epoch=steps_per_epoch)
    return training_data(config, utterances)


def load_inputs(path: str) -> np.ndarray:
    """An ``.npy`` array ``[N, ...]`` of a model's own inputs (``--inputs``), float32; a bad file is a ConfigError."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--inputs {path}: not a readable .npy array of model inputs ({exc})") from None
    if array.ndim < 2 or not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
        raise ConfigError(f"--inputs {path}: need a finite numeric array [N, ...] of model inputs, "
                          f"got {array.dtype} of shape {array.shape}")
    return array.astype(np.float32, copy=False)


@dataclasses.dataclass
class FinetuneSettings:
    """How to fine-tune a quantized model (YAML-able; the rest comes from its training config).

    ``data`` replaces the training run's data sources (same forms as
    :class:`~tfadvq.train_config.DataConfig`); ``steps_per_epoch`` caps an epoch;
    ``use_trained_head`` starts the AAM head from the trained one.
    """

    epochs: int = 1
    objective: Objective = Objective.AAM
    lr_scale: float = DEFAULT_LR_SCALE
    refresh_steps: int = 100
    steps_per_epoch: int | None = None
    data: DataConfig | None = None
    use_trained_head: bool = True


@dataclasses.dataclass
class FinetuneResult:
    """What a fine-tune did (``row``), the config it followed, and the AAM head it ended with."""

    row: dict[str, Any]
    config: TrainConfig
    head_weights: list[np.ndarray] | None


def finetune_run(quantized: keras.Model, train_config: TrainConfig, settings: FinetuneSettings, *,
                 teacher: keras.Model | None = None, head_weights: Sequence[np.ndarray] | None = None,
                 utterances: Sequence[Utterance] | None = None, inputs: str | None = None) -> FinetuneResult:
    """Fine-tune ``quantized`` in place following ``train_config`` (the model's own) and ``settings``.

    ``head_weights``: the trained AAM head (used when ``settings.use_trained_head``);
    ``teacher``: the FP32 model for the distillation objective; ``utterances``
    overrides both data sources (e.g. a list already loaded); ``inputs``: an
    ``.npy`` array of model inputs instead (distill).  The data follows the
    model's input (:func:`model_inputs`), so a model with its own front end
    is distilled on waveform crops or on its inputs.
    """
    config = finetune_config(train_config, settings.epochs, settings.lr_scale, settings.steps_per_epoch)
    if settings.data is not None:
        config = dataclasses.replace(config, data=settings.data)
    data = model_inputs(teacher or quantized, config, inputs=inputs, utterances=utterances,
                        steps_per_epoch=config.steps_per_epoch)
    aam = settings.objective is Objective.AAM
    if aam and not data.speakers:
        raise ConfigError("objective aam: these inputs carry no speaker labels; use objective distill")
    if not aam and teacher is None:
        raise ConfigError("objective distill: the FP32 teacher model is needed")
    start_head = head_weights if aam and settings.use_trained_head else None
    tuned = finetune(quantized, data, config, settings.objective.value,
                     teacher=None if aam else teacher, head_weights=start_head,
                     refresh_steps=settings.refresh_steps)
    row = {"objective": settings.objective.value, "epochs": settings.epochs, "peak_lr": config.optimizer.lr,
           "lr_scale": settings.lr_scale, "refresh_steps": settings.refresh_steps,
           "head": "trained" if start_head is not None else ("new" if aam else "none"),
           "speakers": len(data.speakers), "data": to_dict(config.data), **tuned.record()}
    return FinetuneResult(row, config, tuned.head_weights if aam else None)
