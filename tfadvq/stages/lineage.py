"""What a stage hands on to the next, typed: the one reader of an earlier stage's outputs.

A stage's record keeps its outputs as ``{name: path}`` strings (what the
engine digests and reuses, :mod:`tfadvq.recipe`); a stage that builds on
another reads them only through :func:`lineage`, so each rule is written
once: which Keras model a stage produced (a quantized one's plain twin
first), where its training run lies, and which training config and AAM head
a later fine-tune follows (an earlier fine-tune's own, else the training
run's).  The same rule serves a run folder a user names on the command line
(:meth:`Lineage.of_model`): a fine-tune's folder holds its ``train.yaml`` and
``head.npz`` under the names a train folder does.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from tfadvq import rundir
from tfadvq.errors import ConfigError

if TYPE_CHECKING:
    from tfadvq.frontend import FrontEnd
    from tfadvq.recipe import StageContext


def _path(outputs: Mapping[str, Any], key: str) -> Path | None:
    value = outputs.get(key)
    return Path(value) if value else None


@dataclasses.dataclass(frozen=True)
class Lineage:
    """What the stage ``stage`` (in ``directory``) produced and descends from; None: not produced.

    ``train_config`` and ``head`` are what a fine-tune of its model follows:
    the ones an earlier fine-tune wrote (its outputs name them), else the
    training run's (``train_dir``) when they exist there.
    """

    stage: str
    directory: Path
    produced: tuple[str, ...]  # the output names, for messages
    model: Path | None = None  # an FP32 Keras model (train, model)
    wrapped: Path | None = None  # the tfmot-wrapped quantized model
    plain: Path | None = None  # its stripped, centroid-valued twin
    source_model: Path | None = None  # the FP32 model a quantized one came from (the distillation teacher)
    train_dir: Path | None = None
    train_config: Path | None = None
    head: Path | None = None
    tflite: Path | None = None
    metadata: Path | None = None  # the converted model's model.json
    c_array: Path | None = None
    bits_spec: Path | None = None
    sensitivities: Path | None = None

    @classmethod
    def of_outputs(cls, stage: str, directory: Path, outputs: Mapping[str, Any]) -> Lineage:
        """The lineage of a stage whose record names ``outputs``: the one rule every stage reads by."""
        keras = _path(outputs, "plain") or _path(outputs, "model")
        train_dir = _path(outputs, "train_dir") or (keras.parent if keras is not None else None)
        if "train_config" in outputs:  # an earlier fine-tune: continue from its config and head
            config, head = _path(outputs, "train_config"), _path(outputs, "head")
        else:
            train = rundir.TrainDir(train_dir) if train_dir is not None else None
            config = train.config if train is not None and train.config.is_file() else None
            head = train.head if train is not None and train.head.is_file() else None
        return cls(stage, directory, tuple(sorted(outputs)), model=_path(outputs, "model"),
                   wrapped=_path(outputs, "wrapped"), plain=_path(outputs, "plain"),
                   source_model=_path(outputs, "source_model"), train_dir=train_dir, train_config=config,
                   head=head, tflite=_path(outputs, "tflite"), metadata=_path(outputs, "metadata"),
                   c_array=_path(outputs, "c_array"), bits_spec=_path(outputs, "bits_spec"),
                   sensitivities=_path(outputs, "sensitivities"))

    @classmethod
    def of_model(cls, model: str | os.PathLike) -> Lineage:
        """The lineage of a model a user names (a file or any run folder, :meth:`tfadvq.rundir.TrainDir.of_model`):
        its training config and head are the ones beside it, by the rule of :meth:`of_outputs`."""
        run = rundir.TrainDir.of_model(model)
        return cls.of_outputs(str(model), run.path, {"model": str(run.model), "train_dir": str(run.path)})

    @property
    def expected_config(self) -> Path:
        """The training config file, or where it was looked for (for a message naming the missing file)."""
        return self.train_config or rundir.TrainDir(self.train_dir or self.directory).config

    def keras_model(self, who: str) -> Path:
        """The Keras embedding model (a quantized one's plain twin first); ``who`` is the asking stage."""
        found = self.plain or self.model
        if found is None:
            raise ConfigError(f"stage {who}: stage {self.stage!r} produced no Keras model (outputs "
                              f"{list(self.produced)})")
        return found

    def quantized(self, who: str, hint: str = "") -> Path:
        """The tfmot-wrapped model (a quantize, mixed, finetune or msft stage's); refused otherwise."""
        if self.wrapped is None:
            raise ConfigError(f"stage {who}: model {self.stage!r} is not a quantized model{hint}")
        return self.wrapped

    def followed(self, who: str, what: str) -> tuple[Path, Path | None]:
        """``(training config file, AAM head file or None)`` a fine-tune of the model follows (``what``
        names the fine-tune in the message when there is no config: the model was not trained by tfadvq)."""
        if self.train_config is None:
            raise ConfigError(f"stage {who}: {self.expected_config} is missing: the model was not trained by "
                              f"tfadvq, so give {what} its data and use the distill objective")
        return self.train_config, self.head

    def device_model(self, who: str) -> tuple[Path, Path]:
        """``(.tflite, model.json)`` of a convert/calibrate stage."""
        if self.tflite is None or self.metadata is None:
            raise ConfigError(f"stage {who}: {self.stage!r} produced no .tflite (use a convert stage)")
        return self.tflite, self.metadata

    def front_end(self, model: Path | None = None) -> FrontEnd:
        """The front end of the model: the record in the stage's own directory (train, quantize, ..., and a
        model stage's declaration), else the one with its model (``model``, default: its Keras model)."""
        from tfadvq import frontend

        return frontend.recorded(self.directory) or frontend.resolve(model or self.keras_model(self.stage))

    def device_front_end(self) -> FrontEnd:
        """The front end a converted model's ``model.json`` states (its ``feature``)."""
        from converters.metadata import read_json
        from tfadvq.frontend import FrontEnd

        _, metadata = self.device_model(self.stage)
        return FrontEnd(read_json(metadata).feature, str(metadata))


def lineage(ctx: StageContext, stage: str) -> Lineage:
    """The :class:`Lineage` of the earlier stage ``stage`` (from its record)."""
    record = ctx.records.get(stage)
    if record is None:
        raise ConfigError(f"stage {ctx.name}: stage {stage!r} has not run")
    return Lineage.of_outputs(stage, ctx.workdir / stage, record.get("outputs", {}))
