"""Post-training quantization as one flow: bits -> (Fisher) -> codebooks -> bias correction.

``tfadvq quantize`` and the recipe's ``quantize`` stage both run :func:`post_training`
with the same typed :class:`PTQSettings`, so the two cannot drift apart (they did: the
command line corrected biases after fine-tuning and knew no ``end_bits``).  Bias
correction belongs to the post-training model: a fine-tune that follows starts from the
corrected model and trains the biases on.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfadvq.errors import ConfigError

if TYPE_CHECKING:  # the settings load without TensorFlow (a recipe is checked before anything runs)
    from tfadvq.compat import keras
    from tfadvq.quant.spec import BitsLike
    from tfadvq.training import TrainingData


@dataclasses.dataclass
class PTQSettings:
    """How to quantize a trained model without training it (YAML-able; the recipe's ``quantize`` fields).

    ``bits`` for every supported layer, or ``bits_per_layer`` (a YAML bits spec
    file: default / classes / layers).  ``binary`` (``static`` / ``adaptive``,
    :mod:`tfadvq.quant.binary`) quantizes every 1-bit layer with that binary
    quantizer (gradient cancelled and latent weights clipped at
    ``binary_clip``); ``end_bits`` keeps the first and last quantizable layers
    (first conv, embedding) at that width (with ``bits``, not ``bits_per_layer``).
    ``weighted`` fits the codebooks to the diagonal Fisher of the distillation
    objective on ``fisher_batches`` batches, ``bias_correction`` removes each
    quantized layer's output-mean shift, ``per_channel: auto`` keeps
    per-channel tables where they pay.
    """

    bits: int = 4
    bits_per_layer: str | None = None
    per_channel: bool | str = False
    activation_bits: int | None = None
    weighted: bool = False
    fisher_batches: int = 8
    bias_correction: bool = False
    binary: str | None = None
    binary_clip: float | None = 1.0
    end_bits: int | None = None

    def __post_init__(self) -> None:
        if self.end_bits is not None and self.bits_per_layer:
            raise ConfigError("quantize: end_bits applies to bits, not to bits_per_layer (name the layers there)")
        if self.binary not in (None, "static", "adaptive"):
            raise ConfigError(f"quantize: binary {self.binary!r}; accepted: static, adaptive (or leave it out)")
        if isinstance(self.per_channel, str) and self.per_channel != "auto":
            raise ConfigError(f"quantize: per_channel {self.per_channel!r}; accepted: true, false or auto")
        if self.weighted and self.fisher_batches < 1:
            raise ConfigError(f"quantize: fisher_batches {self.fisher_batches}; accepted: >= 1 (the batches the "
                              "Fisher of weighted is estimated on)")

    @property
    def needs_data(self) -> bool:
        """Whether the flow reads model inputs (the Fisher, or the bias correction)."""
        return self.weighted or self.bias_correction

    def bits_spec(self, model: keras.Model) -> BitsLike:
        """The bits asked for, resolved against ``model`` (``end_bits`` needs its layers)."""
        from tfadvq.quant import spec

        if self.bits_per_layer:
            return spec.load_spec(Path(self.bits_per_layer))
        if self.end_bits is not None:
            return spec.higher_precision_ends(model, self.bits, self.end_bits)
        return self.bits


@dataclasses.dataclass
class PTQResult:
    """The wrapped model, and the bias-correction rows (None when it did not run)."""

    wrapped: keras.Model
    corrections: list[dict[str, Any]] | None


def post_training(model: keras.Model, settings: PTQSettings, data: TrainingData | None = None, *,
                  progress: bool = True) -> PTQResult:
    """Quantize the FP32 ``model`` as ``settings`` say; ``data`` (model inputs) when ``settings.needs_data``.

    ``data`` comes from :func:`tfadvq.quant.finetune.model_inputs`, so a model
    with its own front end is fed what it eats.
    """
    if settings.needs_data and data is None:
        raise ConfigError("quantize: weighted/bias_correction need data: give a corpus or inputs")
    from tfadvq.quant import api

    importances = None
    if settings.weighted:
        from tfadvq.quant.sensitivity import fisher_diagonal, objective_batches

        importances = fisher_diagonal(model, objective_batches(data, settings.fisher_batches), objective="distill")
    binary = {"name": settings.binary, "clip_value": settings.binary_clip} if settings.binary else None
    wrapped = api.ptq(model, settings.bits_spec(model), per_channel=settings.per_channel, binary=binary,
                      activation_bits=settings.activation_bits, importances=importances, progress=progress)
    corrections = None
    if settings.bias_correction:
        from tfadvq.quant.bias_correction import correct_bias

        corrections = correct_bias(model, wrapped, data)
    return PTQResult(wrapped, corrections)
