"""The training recipe as typed data: what a run trains, on what, and how (no TensorFlow).

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

Kept apart from the training engine (:mod:`tfadvq.training`) so that recipes,
the CLI and saved run directories can read and check a configuration without
importing TensorFlow; values are type-checked by :func:`tfadvq.config.from_dict`.
"""
from __future__ import annotations

import dataclasses
import enum
import os
from pathlib import Path
from typing import Any

from tfadvq.audio_limits import SAMPLE_RATE
from tfadvq.config import load_yaml
from tfadvq.errors import ConfigError
from tfadvq.fbank_config import FbankConfig, num_frames

SPEED_FACTORS = (1.0, 0.9, 1.1)


@dataclasses.dataclass
class PipelineConfig:
    """Training-pipeline settings (YAML-able; probabilities in [0, 1])."""

    batch_size: int = 64
    crop_seconds: float = 2.0
    seed: int = 0
    speed_perturb: bool = False
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (0.0, 20.0)
    babble_prob: float = 0.3  # share of noisy examples that get babble instead of coloured noise
    reverb_prob: float = 0.3
    rt60_seconds: tuple[float, float] = (0.2, 0.8)
    rir_seconds: float = 0.3
    spec_augment: bool = True
    freq_masks: int = 1
    freq_mask_max: int = 8
    time_masks: int = 1
    time_mask_max: int = 10
    fbank: FbankConfig = dataclasses.field(default_factory=FbankConfig)

    def __post_init__(self) -> None:
        for name in ("noise_prob", "babble_prob", "reverb_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"PipelineConfig.{name}={getattr(self, name)}: must be in [0, 1]")
        for name in ("snr_db", "rt60_seconds"):
            low, high = getattr(self, name)
            if low > high:
                raise ConfigError(f"PipelineConfig.{name}={getattr(self, name)}: need low <= high")
        if self.batch_size < 1 or self.crop_seconds <= 0 or self.rir_seconds <= 0:
            raise ConfigError("PipelineConfig: batch_size, crop_seconds and rir_seconds must be > 0")
        if self.fbank.sample_rate != SAMPLE_RATE:
            raise ConfigError(f"PipelineConfig.fbank.sample_rate must be {SAMPLE_RATE} "
                              "(tfadvq audio is 16 kHz)")

    @property
    def crop_samples(self) -> int:
        return int(round(self.crop_seconds * self.fbank.sample_rate))

    @property
    def crop_frames(self) -> int:
        """Feature frames per training example (198 for 2 s)."""
        return num_frames(self.crop_samples, self.fbank)



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
    ``<spk>/<session>/<utt>.wav`` tree.  ``extra_corpora`` adds the dev parts
    of further corpora to ``corpus``'s (their speakers disjoint from it and from
    each other; it needs ``corpus``, which ``--corpus`` may give): e.g. real
    speakers (``tfadvq data real --train-speakers``) beside the synthetic ones.  ``trials`` (with
    ``trials_wav_root``, or over ``corpus``'s test part) optionally names an evaluation run after training, as
    ``tfadvq eval`` runs it (:func:`tfadvq.evaluation.evaluate_model`: the model's ``eval_<trials name>/`` with
    its threshold).
    """

    corpus: str | None = None
    extra_corpora: tuple[str, ...] = ()
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

    def evaluation(self) -> tuple[str | None, str, str | None] | None:
        """``(corpus, trials, wav_root)`` of the evaluation after training
        (:func:`tfadvq.evaluation.load_trials`), None without ``trials``; checked before training starts."""
        if self.trials is None:
            return None
        if self.trials_wav_root is None and self.corpus is None:
            raise ConfigError("data.trials: also set data.trials_wav_root (the wav tree the trial keys are "
                              "relative to), or train on a corpus whose test part they name")
        return (None, self.trials, self.trials_wav_root) if self.trials_wav_root else \
            (self.corpus, self.trials, None)


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


def resolve_config(name_or_path: str | os.PathLike) -> TrainConfig:
    """A training YAML file, or the name of a packaged one (``demo``, ``resnet34_vox2``, ...)."""
    path = Path(name_or_path)
    return load_config(path if path.is_file() else packaged_config(str(name_or_path)))


def overridden(config: TrainConfig, *, corpus: str | os.PathLike | None = None, epochs: int | None = None,
               steps_per_epoch: int | None = None, batch_size: int | None = None,
               strategy: StrategyName | str | None = None) -> TrainConfig:
    """``config`` with what ``tfadvq train``'s flags and the recipe's ``train`` stage replace: the one rule.

    ``None`` keeps the config's value.  ``corpus`` replaces where the training
    speakers come from (the config's Kaldi lists or wav tree are dropped) and
    keeps the corpora the config adds to it (``extra_corpora``) and the evaluation
    it names (``trials``/``trials_wav_root``).
    """
    if corpus is not None:
        data = config.data
        config = dataclasses.replace(config, data=DataConfig(corpus=str(corpus), extra_corpora=data.extra_corpora,
                                                             trials=data.trials,
                                                             trials_wav_root=data.trials_wav_root))
    changes = {k: v for k, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)) if v is not None}
    if strategy is not None:
        changes["strategy"] = StrategyName(strategy)
    config = dataclasses.replace(config, **changes)
    if batch_size is not None:
        config = dataclasses.replace(config, pipeline=dataclasses.replace(config.pipeline, batch_size=batch_size))
    return config


def model_config(config_file: str | os.PathLike, override: str | os.PathLike | None = None, *,
                 data_given: bool = False, what: str = "the fine-tune") -> TrainConfig:
    """The training config a model's quantization follows: the one rule for every command and stage.

    The config stored with the model (``train.yaml`` of its train directory)
    wins; else ``override`` (a YAML file or packaged name, for a model trained
    elsewhere); else, when the caller has data of its own (a corpus or model
    inputs), the defaults; else a ConfigError naming the missing file.
    """
    path = Path(config_file)
    if path.is_file():
        return load_config(path)
    if override is not None:
        return resolve_config(override)
    if data_given:
        return TrainConfig()
    raise ConfigError(f"{what}: {path} is missing (the model was not trained by tfadvq train); give it data "
                      "(a corpus or model inputs) and, to follow your own recipe, a training config")
