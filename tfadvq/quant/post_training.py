"""Post-training quantization as one flow: bits -> (Fisher) -> codebooks -> bias correction.

``tfadvq quantize`` and the recipe's ``quantize`` stage both run :func:`post_training`
with the same typed :class:`PTQSettings`, so the two cannot drift apart (they did: the
command line corrected biases after fine-tuning and knew no ``end_bits``).  Bias
correction belongs to the post-training model: a fine-tune that follows starts from the
corrected model and trains the biases on.

The best post-training path is the default: whenever model inputs are at hand,
the codebooks are fitted to the Fisher (sensitivity-weighted k-means) and the
biases corrected.  On a pretrained LSTM encoder plain 4-bit k-means gave an EER
of 29.96 % and the weighted codebooks 5.14 % at the same size, so a user who does
not know a flag must not get the worst result.  Without data the flow falls back
to plain k-means and says so once; asking for either explicitly without data is
an error.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfadvq.config import bounded
from tfadvq.errors import ConfigError
from tfadvq.quant.bits import MAX_BITS, MIN_BITS

if TYPE_CHECKING:  # the settings load without TensorFlow (a recipe is checked before anything runs)
    from tfadvq.compat import keras
    from tfadvq.quant.spec import BitsLike
    from tfadvq.training import TrainingData

log = logging.getLogger(__name__)


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
    per-channel tables where they pay.  ``weighted`` and ``bias_correction``
    are tri-state: None (the default) means "when data is available"
    (:meth:`resolved`), ``false`` opts out, ``true`` demands data.
    ``rounding: adaptive`` then re-chooses, per weight, the centroid below or
    above it that best reconstructs each layer's output on the data
    (:mod:`tfadvq.quant.adaptive_rounding`; same codebooks and size).
    """

    bits: int = bounded(4, MIN_BITS, MAX_BITS)
    bits_per_layer: str | None = None
    per_channel: bool | str = False
    activation_bits: int | None = bounded(None, 8, 8)
    weighted: bool | None = None
    fisher_batches: int = bounded(8, 1)
    bias_correction: bool | None = None
    binary: str | None = None
    binary_clip: float | None = bounded(1.0, 0.0, above=True)
    end_bits: int | None = bounded(None, MIN_BITS, MAX_BITS)
    rounding: str = "nearest"

    def __post_init__(self) -> None:
        if self.end_bits is not None and self.bits_per_layer:
            raise ConfigError("quantize: end_bits applies to bits, not to bits_per_layer (name the layers there)")
        if self.binary not in (None, "static", "adaptive"):
            raise ConfigError(f"quantize: binary {self.binary!r}; accepted: static, adaptive (or leave it out)")
        if self.rounding not in ("nearest", "adaptive"):
            raise ConfigError(f"quantize: rounding {self.rounding!r}; accepted: nearest, adaptive")
        if isinstance(self.per_channel, str) and self.per_channel != "auto":
            raise ConfigError(f"quantize: per_channel {self.per_channel!r}; accepted: true, false or auto")
        if self.weighted is not False and self.fisher_batches < 1:
            raise ConfigError(f"quantize: fisher_batches {self.fisher_batches}; accepted: >= 1 (the batches the "
                              "Fisher of weighted is estimated on)")

    @property
    def wants_data(self) -> bool:
        """Whether the flow reads model inputs if it can (the Fisher, or the bias correction)."""
        return self.weighted is not False or self.bias_correction is not False

    @property
    def needs_data(self) -> bool:
        """Whether the flow cannot run without model inputs (either asked for explicitly)."""
        return bool(self.weighted or self.bias_correction) or self.rounding == "adaptive"

    def resolved(self, has_data: bool) -> PTQSettings:
        """These settings with every "when data is available" (None) decided by ``has_data``.

        Returns a plain :class:`PTQSettings` (also for a stage subclassing it);
        explicit choices stay as they are, so one asked for without data raises.
        """
        if self.needs_data and not has_data:
            raise ConfigError("quantize: weighted/bias_correction/adaptive rounding need data: give a corpus "
                              "or inputs")
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(PTQSettings)}
        for name in ("weighted", "bias_correction"):
            values[name] = has_data if values[name] is None else values[name]
        return PTQSettings(**values)

    def path(self) -> dict[str, Any]:
        """Which post-training path these (resolved) settings run: the summary's ``ptq`` row."""
        return {"codebooks": "weighted" if self.weighted else "plain", "bias_correction": bool(self.bias_correction)}

    def describe(self) -> str:
        """The path of these (resolved) settings in a few words, e.g. ``"weighted + bias correction"``."""
        path = self.path()
        return path["codebooks"] + (" + bias correction" if path["bias_correction"] else "")

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
    """The wrapped model, the bias-correction rows (None when it did not run) and the settings that ran."""

    wrapped: keras.Model
    corrections: list[dict[str, Any]] | None
    settings: PTQSettings  # resolved: weighted and bias_correction are True or False
    rounding: list[dict[str, Any]] | None = None  # adaptive rounding's rows (None: nearest)

    @property
    def path(self) -> dict[str, Any]:
        """Which path ran (:meth:`PTQSettings.path`): what the summary table and ``summary.json`` say."""
        return self.settings.path()


def given_up(settings: PTQSettings) -> str | None:
    """The one warning of a run without data: what the defaults would have done (None: nothing given up)."""
    lost = [what for what, value in (("sensitivity-weighted codebooks", settings.weighted),
                                     ("bias correction", settings.bias_correction)) if value is None]
    if not lost:
        return None
    return (f"quantize: no model inputs (no corpus, inputs or training data of the model), so no "
            f"{' and no '.join(lost)} (plain k-means instead, often far worse at 4 bits and below): "
            "give data, or opt out explicitly to silence this")


def post_training(model: keras.Model, settings: PTQSettings, data: TrainingData | None = None, *,
                  progress: bool = True) -> PTQResult:
    """Quantize the FP32 ``model`` as ``settings`` say, on ``data`` (model inputs) when given.

    ``data`` comes from :func:`tfadvq.quant.finetune.model_inputs`, so a model
    with its own front end is fed what it eats.  With ``data`` the defaults
    are the weighted codebooks and bias correction; without, plain k-means,
    and one warning (:func:`given_up`) says what was given up.
    """
    asked, settings = settings, settings.resolved(data is not None)
    lost = given_up(asked) if data is None else None
    if lost:
        log.warning(lost)
    from tfadvq.quant import api

    importances = None
    if settings.weighted:
        from tfadvq.quant.sensitivity import fisher_diagonal, objective_batches

        importances = fisher_diagonal(model, objective_batches(data, settings.fisher_batches), objective="distill")
    binary = {"name": settings.binary, "clip_value": settings.binary_clip} if settings.binary else None
    wrapped = api.ptq(model, settings.bits_spec(model), per_channel=settings.per_channel, binary=binary,
                      activation_bits=settings.activation_bits, importances=importances, progress=progress)
    rounding = None
    if settings.rounding == "adaptive":  # before bias correction: it corrects what the rounding leaves
        from tfadvq.quant.adaptive_rounding import adaptive_round

        rounding = adaptive_round(model, wrapped, data)
    corrections = None
    if settings.bias_correction:
        from tfadvq.quant.bias_correction import correct_bias

        corrections = correct_bias(model, wrapped, data)
    return PTQResult(wrapped, corrections, settings, rounding)
