"""What is quantized: layer class -> weight attributes, and the tfmot ``QuantizeConfig``.

Kept apart from *how* (:mod:`tfadvq.quant.quantizers`).  Classes match
exactly (a subclass may not read ``self.kernel`` in ``call``), so an unknown
layer is never half-quantized: it stays float and :func:`tfadvq.quant.api.summary`
names it.  DepthwiseConv2D is really quantized here (tfmot's clustering wraps
it and clusters nothing).  Activations stay float unless ``activation_bits=8``
(tfmot ``MovingAverageQuantizer`` on the layer output).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow_model_optimization as tfmot

from tfadvq.compat import keras
from tfadvq.quant import quantizers as qz

_QuantizeConfig = tfmot.quantization.keras.QuantizeConfig


@dataclasses.dataclass(frozen=True)
class LayerRule:
    """Attribute paths of the weights to quantize and how many trailing dims form a channel."""

    weights: tuple[str, ...]
    channel_dims: int = 1


RULES: dict[type, LayerRule] = {
    keras.layers.Conv1D: LayerRule(("kernel",)),
    keras.layers.Conv2D: LayerRule(("kernel",)),
    keras.layers.DepthwiseConv2D: LayerRule(("depthwise_kernel",), channel_dims=2),
    keras.layers.Dense: LayerRule(("kernel",)),
    keras.layers.LSTM: LayerRule(("cell.kernel", "cell.recurrent_kernel")),
    keras.layers.GRU: LayerRule(("cell.kernel", "cell.recurrent_kernel")),
}


def rule_for(layer: keras.layers.Layer) -> LayerRule | None:
    """The rule for ``layer``'s exact class, or None when it is not supported."""
    return RULES.get(type(layer))


def supported_class_names() -> list[str]:
    return sorted(cls.__name__ for cls in RULES)


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
        made = [qz.get(quantizer, bits=bits, per_channel=per_channel, channel_dims=rule.channel_dims)
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
