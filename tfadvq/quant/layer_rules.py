"""What is quantized and where it goes: the one layer-support table, and the tfmot ``QuantizeConfig``.

:data:`RULES` maps each supported Keras layer class to the weights quantized
(attribute paths), how many trailing dims form an output channel, and -- as
plain data, no tflite_micro here -- where each weight lands in the converted
``.tflite``: the TFLite operator, which of its inputs, the transform from the
Keras array to the TFLite tensor(s) and the tensors' output-channel axis.
The quantizer (:mod:`tfadvq.quant.api`), the size accounting
(:mod:`tfadvq.quant.size`) and the converter (``converters.lut_compression``)
all read this table, so a class that quantizes also converts.

Measured with TF 2.17 and the TFLM nightly:

* Conv2D -> CONV_2D ``[out, kh, kw, in]``; Conv1D -> CONV_2D ``[out, 1, kw, in]``
  (the converter expands the time axis); DepthwiseConv2D -> DEPTHWISE_CONV_2D
  ``[1, kh, kw, in*mult]`` (channel axis 3); Dense -> FULLY_CONNECTED ``[out, in]``.
* LSTM -> UNIDIRECTIONAL_SEQUENCE_LSTM, whose weights are split per gate
  (Keras order i, f, c, o): inputs 1-4 are ``kernel[:, g]^T`` ``[units, in]``,
  inputs 5-8 ``recurrent_kernel[:, g]^T`` ``[units, units]``.  Under int8
  activations the converter quantizes these per tensor, not per channel.
* GRU -> a WHILE loop whose body holds two FULLY_CONNECTED ops
  (``kernel^T`` ``[3u, in]``, ``recurrent_kernel^T`` ``[3u, u]``); TFLM runs it
  with float activations.  int8 activations are refused (:attr:`LayerRule.int8_refusal`):
  the TF 2.17 converter crashes the process (segfault) calibrating a GRU.
* Only the default recurrent configurations take those forms; the others are
  refused when quantizing, with the reason (:attr:`LayerRule.refusal`):
  ``unroll=True`` becomes per-step ops sharing one weight buffer, a
  non-default activation / recurrent dropout / no bias becomes a generic loop
  with another weight layout, GRU ``reset_after=False`` splits the recurrent
  kernel, and TFLM hangs in the loop of a GRU with ``return_sequences=True``
  (no output within 60 s, uncompressed float; 0.1 s without return_sequences).
  ``stateful=True`` was not tried and is refused rather than guessed.

Value tables (:meth:`LayerRule.table_axis`): the converter folds a
BatchNormalization that directly follows a conv/dense layer into its weights
(:func:`feeds_batchnorm`), scaling each channel, so tables are per channel
there; a per-tensor codebook without it keeps one table for the tensor
(float activations).  BatchNorm never folds into LSTM/GRU weights.

Classes match exactly (a subclass may not read ``self.kernel`` in ``call``),
so an unknown layer is never half-quantized: it stays float and
:func:`tfadvq.quant.api.summary` names it.  DepthwiseConv2D is really quantized
here (tfmot's clustering wraps it and clusters nothing).  Activations stay
float unless ``activation_bits=8`` (tfmot ``MovingAverageQuantizer`` on the
layer output).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow_model_optimization as tfmot

from tfadvq.compat import keras
from tfadvq.quant import catalog, cost
from tfadvq.quant import quantizers as qz

_QuantizeConfig = tfmot.quantization.keras.QuantizeConfig


@dataclasses.dataclass(frozen=True)
class TfliteLayout:
    """Where one quantized Keras weight lands in the .tflite: operator, inputs, layout.

    ``to_tflite`` turns the Keras array into the TFLite tensors, one per entry
    of ``inputs`` (the operator input index each is read from) and ``parts``
    (their names, e.g. LSTM gates).  ``axis`` is the output-channel axis of
    every such tensor, where the converter puts per-channel value tables.
    """

    op: str
    inputs: tuple[int, ...]
    to_tflite: Callable[[np.ndarray], list[np.ndarray]]
    axis: int
    parts: tuple[str, ...] = ("",)
    int8_per_tensor: bool = False  # the TFLite converter quantizes it per tensor under int8 activations
    shares_op: bool = False  # every such layout of the layer feeds one operator (LSTM: kernel and recurrent)

    def shapes(self, keras_shape: Sequence[int]) -> list[tuple[int, ...]]:
        """Shapes of the TFLite tensors for a Keras weight of ``keras_shape`` (no data needed)."""
        probe = np.broadcast_to(np.zeros((), np.bool_), tuple(keras_shape))
        return [tuple(t.shape) for t in self.to_tflite(probe)]


@dataclasses.dataclass(frozen=True)
class LayerRule:
    """One supported layer class: weights to quantize, channel dims, TFLite layout per weight."""

    weights: tuple[str, ...]
    tflite: tuple[TfliteLayout, ...]  # one per entry of ``weights``
    channel_dims: int = 1
    int8_refusal: str | None = None  # why int8 activations cannot be converted, if they cannot
    refusal: Callable[[Any], str | None] | None = None  # why this layer's configuration cannot convert
    folds_batchnorm: bool = True  # the TFLite converter folds a BatchNormalization right after it into its weights

    def decode_group(self, layout: TfliteLayout) -> int:
        """How many quantized TFLite tensors the operator reading ``layout``'s tensors takes (one DECODE for all)."""
        if not layout.shares_op:
            return 1
        return sum(len(other.parts) for other in self.tflite if other.shares_op)

    def refuses(self, layer: keras.layers.Layer) -> str | None:
        """Why ``layer`` cannot be converted (so must not be quantized), or None."""
        return self.refusal(layer) if self.refusal is not None else None

    def table_axis(self, layout: TfliteLayout, bits: int, *, per_channel: bool, batchnorm_after: bool,
                   activations: str = "float32") -> int | None:
        """Axis of the value tables the converter writes for a weight at ``layout``, None for one table.

        One table per tensor where the whole TFLite tensor holds at most 2^b
        values: float weights of a per-tensor codebook that no BatchNorm folds
        into, and the int8 weights the converter quantizes per tensor.  Per
        channel otherwise: per-channel codebooks, folded BatchNorm (it scales
        each channel), per-channel int8 weights (one table for them decodes
        wrong values in TFLM), and 8 bits (int8 with per-channel scales).
        """
        if activations == "int8":
            return None if layout.int8_per_tensor else layout.axis
        if bits > cost.MAX_LUT_BITS or per_channel or (batchnorm_after and self.folds_batchnorm):
            return layout.axis
        return None


def _single(transform: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], list[np.ndarray]]:
    return lambda k: [transform(k)]


def _gates(count: int) -> Callable[[np.ndarray], list[np.ndarray]]:
    """Split ``[in, count*units]`` into ``count`` gate tensors ``[units, in]`` (TFLite LSTM layout)."""
    return lambda k: [g.T for g in np.split(k, count, axis=1)]


def _recurrent_refusal(layer: Any) -> str | None:
    """The configurations of LSTM/GRU the TFLite converter does not turn into the layouts above."""
    config = layer.get_config()
    problems = []
    if config.get("unroll"):
        problems.append("unroll=True (TFLite makes per-step ops sharing one weight buffer)")
    if config.get("stateful"):
        problems.append("stateful=True (not verified to convert: refused rather than guessed)")
    if (config.get("activation"), config.get("recurrent_activation"), config.get("recurrent_dropout"),
            config.get("use_bias")) != ("tanh", "sigmoid", 0.0, True):
        problems.append("a non-default activation, recurrent_activation, recurrent_dropout or use_bias "
                        "(TFLite lowers it to a generic loop with another weight layout)")
    gru = isinstance(layer, keras.layers.GRU)
    if gru and not config.get("reset_after"):
        problems.append("reset_after=False (TFLite splits the recurrent kernel per gate)")
    if gru and config.get("return_sequences"):
        problems.append("return_sequences=True (TFLM hangs in the WHILE loop TFLite makes of it)")
    if not problems:
        return None
    default = "tanh/sigmoid, bias, no recurrent dropout, unroll=False"
    default += ", reset_after=True, return_sequences=False" if gru else ""
    return f"{type(layer).__name__}: {'; '.join(problems)}; only the default configuration converts ({default})"


_CONV = TfliteLayout("CONV_2D", (1,), _single(lambda k: np.transpose(k, (3, 0, 1, 2))), axis=0)
_DENSE = TfliteLayout("FULLY_CONNECTED", (1,), _single(np.transpose), axis=0)
_LSTM_GATES = ("input_gate", "forget_gate", "cell_gate", "output_gate")
_GRU_INT8 = ("GRU: the TF 2.17 TFLite converter crashes (segfault) quantizing a GRU to int8 "
             "activations; keep float activations (no --int8 / activation_bits=None)")

RULES: dict[type, LayerRule] = {
    keras.layers.Conv1D: LayerRule(("kernel",), (TfliteLayout(
        "CONV_2D", (1,), _single(lambda k: np.transpose(k, (2, 0, 1))[:, None]), axis=0),)),
    keras.layers.Conv2D: LayerRule(("kernel",), (_CONV,)),
    keras.layers.DepthwiseConv2D: LayerRule(("depthwise_kernel",), (TfliteLayout(
        "DEPTHWISE_CONV_2D", (1,), _single(lambda k: k.reshape(1, k.shape[0], k.shape[1], -1)), axis=3),),
        channel_dims=2),
    keras.layers.Dense: LayerRule(("kernel",), (_DENSE,)),
    keras.layers.LSTM: LayerRule(("cell.kernel", "cell.recurrent_kernel"), (
        TfliteLayout("UNIDIRECTIONAL_SEQUENCE_LSTM", (1, 2, 3, 4), _gates(4), 0, _LSTM_GATES, True, True),
        TfliteLayout("UNIDIRECTIONAL_SEQUENCE_LSTM", (5, 6, 7, 8), _gates(4), 0, _LSTM_GATES, True, True)),
        refusal=_recurrent_refusal, folds_batchnorm=False),
    keras.layers.GRU: LayerRule(("cell.kernel", "cell.recurrent_kernel"), (_DENSE, _DENSE),
                                int8_refusal=_GRU_INT8, refusal=_recurrent_refusal, folds_batchnorm=False),
}


def rule_for(layer: keras.layers.Layer) -> LayerRule | None:
    """The rule for ``layer``'s exact class, or None when it is not supported."""
    return RULES.get(type(layer))


def supported_class_names() -> list[str]:
    return sorted(cls.__name__ for cls in RULES)


def feeds_batchnorm(layer: keras.layers.Layer) -> bool:
    """True if ``layer``'s output goes straight into a BatchNormalization (in any model it was called in).

    For a wrapped layer ask the wrapper: it is the layer in the wrapped model's graph.
    """
    return any(isinstance(node.outbound_layer, keras.layers.BatchNormalization)
               for node in getattr(layer, "_outbound_nodes", []))


def get_attr(layer: Any, path: str) -> Any:
    for part in path.split("."):
        layer = getattr(layer, part)
    return layer


def _set_attr(layer: Any, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        layer = getattr(layer, part)
    setattr(layer, last, value)


@keras.utils.register_keras_serializable(package="tfadvq")
class WeightQuantizeConfig(_QuantizeConfig):
    """Quantize the weights at ``weight_attrs`` with ``quantizers`` (one each); 8-bit outputs optional."""

    def __init__(self, weight_attrs: list[str], quantizers: list[qz.TableQuantizer],
                 activation_bits: int | None = None):
        self.weight_attrs = list(weight_attrs)
        self.quantizers = [q if isinstance(q, qz.TableQuantizer) else keras.utils.deserialize_keras_object(q)
                           for q in quantizers]
        self.activation_bits = activation_bits

    @classmethod
    def for_layer(cls, layer: keras.layers.Layer, bits: int, quantizer: str | dict = "kmeans",
                  per_channel: bool = False, activation_bits: int | None = None) -> WeightQuantizeConfig:
        """Config for a supported ``layer`` (see :data:`RULES`) at ``bits``."""
        rule = RULES[type(layer)]
        made = [catalog.get(quantizer, bits=bits, per_channel=per_channel, channel_dims=rule.channel_dims)
                for _ in rule.weights]
        return cls(list(rule.weights), made, activation_bits)

    def get_weights_and_quantizers(self, layer):
        return [(get_attr(layer, a), q) for a, q in zip(self.weight_attrs, self.quantizers)]

    def set_quantize_weights(self, layer, quantize_weights):
        for attr, value in zip(self.weight_attrs, quantize_weights):
            _set_attr(layer, attr, value)

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        if self.activation_bits is None:
            return []
        return [tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
            num_bits=self.activation_bits, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self) -> dict[str, Any]:
        return {"weight_attrs": self.weight_attrs,
                "quantizers": [keras.utils.serialize_keras_object(q) for q in self.quantizers],
                "activation_bits": self.activation_bits}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WeightQuantizeConfig:
        return cls(**config)
