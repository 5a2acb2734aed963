"""The front end a model eats, recorded with the model and resolved in one place (no TensorFlow).

A model is only right on the features it was trained on: the
:class:`~tfadvq.fbank_config.FbankConfig` (mel bins, frame length and shift,
...) is as much part of it as its weights.  So it travels with the model:

* **Record**: ``frontend.yaml`` (an ``FbankConfig`` as YAML; :attr:`tfadvq.rundir.RunDir.frontend`)
  in the directory of the model, for every model in that directory.  Training
  writes it (``TrainDir``, from ``pipeline.fbank``); every quantization,
  fine-tune, MSFT and mixed run copies its source's into its ``QuantDir``
  (:func:`tfadvq.quant.outputs.save`); a converted model states it in its
  ``model.json`` (``feature``) and ``model_config.h`` (``TFADVQ_FBANK_*``),
  which the firmware checks.  Runs trained before the record existed are
  read from their ``train.yaml``.
* **Declaration**: a model you bring states its front end by a
  ``frontend.yaml`` beside it, ``tfadvq convert --feature-config``, or the
  recipe ``model`` stage's ``fbank``.  A declaration that contradicts the
  record is an error naming both.
* **Resolution** (:func:`resolve`): the record, else the declaration, else
  the default ``FbankConfig()`` -- said so in :attr:`FrontEnd.source`, and
  checked (:func:`check_input`) against the model's input: a model whose
  input has another number of features per frame than the front end's
  ``num_mel_bins`` is refused, naming both, never fed default features.

Scoring (:mod:`tfadvq.scoring`: embedders carry their front end), int8
range crops and conversion (``converters``) and the firmware files all
take the resolved :class:`FrontEnd`.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import yaml

from tfadvq import rundir
from tfadvq.config import load_yaml, to_dict
from tfadvq.errors import ConfigError
from tfadvq.fbank_config import FbankConfig
from tfadvq.train_config import TrainConfig

DEFAULT = "default FbankConfig (no front end recorded or declared)"
DECLARE = ("declare the front end it was trained with: a frontend.yaml (FbankConfig) beside the model, "
           "`tfadvq convert --feature-config`, or the recipe model stage's `fbank`")


@dataclasses.dataclass(frozen=True)
class FrontEnd:
    """A model's fbank configuration and where it was found (a file, ``declared``, or :data:`DEFAULT`)."""

    fbank: FbankConfig
    source: str

    @property
    def is_default(self) -> bool:
        return self.source == DEFAULT


def model_directory(model: str | os.PathLike) -> Path:
    """The directory whose record describes ``model``: a model file's (or SavedModel folder's) folder, or a
    run folder itself."""
    path = Path(model)
    return path if path.is_dir() and not (path / "saved_model.pb").is_file() else path.parent


def recorded(directory: str | os.PathLike) -> FrontEnd | None:
    """The front end recorded in ``directory`` (``frontend.yaml``, else a training ``train.yaml``); None if none."""
    record = rundir.RunDir(Path(directory)).frontend
    if record.is_file():
        return FrontEnd(load_yaml(FbankConfig, record), str(record))
    config = rundir.TrainDir(Path(directory)).config
    if config.is_file():
        return FrontEnd(load_yaml(TrainConfig, config).pipeline.fbank, str(config))
    return None


def differences(a: FbankConfig, b: FbankConfig) -> list[str]:
    """``field: a -> b`` for every option that differs."""
    x, y = to_dict(a), to_dict(b)
    return [f"{k}: {x[k]!r} -> {y[k]!r}" for k in x if x[k] != y[k]]


def resolve(model: str | os.PathLike, declared: FbankConfig | None = None,
            declared_by: str = "the declared front end") -> FrontEnd:
    """The front end of the model at ``model`` (a file or a run folder; module doc: record > declared > default)."""
    found = recorded(model_directory(model))
    if found is not None and declared is not None and found.fbank != declared:
        raise ConfigError(f"{declared_by} differs from the front end recorded with {model} in {found.source} "
                          f"({'; '.join(differences(found.fbank, declared))}); drop it or give the recorded one")
    if found is not None:
        return found
    return FrontEnd(declared, declared_by) if declared is not None else FrontEnd(FbankConfig(), DEFAULT)


def check_input(frontend: FrontEnd, features: int, model: str) -> FrontEnd:
    """Refuse a front end whose ``num_mel_bins`` is not the ``features`` per frame ``model`` takes."""
    if features != frontend.fbank.num_mel_bins:
        hint = f"; {DECLARE}" if frontend.is_default else ""
        raise ConfigError(f"{model} takes {features} features per frame, but its front end ({frontend.source}) "
                          f"has num_mel_bins {frontend.fbank.num_mel_bins}{hint}")
    return frontend


def for_input(found: FrontEnd, input_shape: object, model: str) -> FrontEnd | None:
    """The front end to record with a model derived from one of ``input_shape`` (quantize, fine-tune, ...).

    ``found`` checked against the input (a recorded or declared front end that disagrees is refused);
    None -- nothing to record -- for a model that takes no fbank frames (its input is not ``[batch,
    frames, features]``: a waveform, or a front end of its own) and for one whose front end is unknown
    (the default does not fit its input): whatever later computes its features refuses it, asking
    for a declaration (:func:`check_input`).
    """
    if not (isinstance(input_shape, tuple) and len(input_shape) == 3 and input_shape[-1] is not None):
        return None
    if found.is_default and int(input_shape[-1]) != found.fbank.num_mel_bins:
        return None
    return check_input(found, int(input_shape[-1]), model)


def follow(config: TrainConfig, front_end: FrontEnd | None) -> TrainConfig:
    """``config`` (a :class:`~tfadvq.train_config.TrainConfig` a fine-tune follows) computing the features
    the model eats: a fine-tune of a model is fed its front end, whatever the config it borrows says."""
    if front_end is None or config.pipeline.fbank == front_end.fbank:
        return config
    return dataclasses.replace(config, pipeline=dataclasses.replace(config.pipeline, fbank=front_end.fbank))


def record(directory: str | os.PathLike, fbank: FbankConfig | None) -> Path:
    """Write ``fbank`` as the front end of the model(s) in ``directory`` (atomically); None removes a
    stale record (the model there takes no fbank frames)."""
    path = rundir.RunDir(Path(directory)).frontend
    if fbank is None:
        path.unlink(missing_ok=True)
        return path
    return rundir.atomic_write(path, yaml.safe_dump(to_dict(fbank), sort_keys=False))
