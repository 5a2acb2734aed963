"""Statistics pooling: a variable number of frames -> one fixed-size utterance vector.

Speaker identity is a property of the whole utterance, so the frame-level
feature maps are summarised by their mean and standard deviation over time
(Snyder et al., x-vectors; WeSpeaker's ``TSTP``).  The std carries how much
each feature varies, which the mean alone cannot express.

``spread="mad"`` replaces the std by the mean absolute deviation
``mean_t |x - mean_t x|`` (0.8 std for Gaussian features): under int8
activations the converter quantizes each intermediate tensor on one scale,
and the squared deviations the std needs span the square of the features'
range, so the small deviations of quiet features round to zero and the
square root magnifies what is left (measured on the device model: TFLM vs
Keras min cosine 0.987 with the std).  The absolute deviation keeps the
features' own range.
"""
from __future__ import annotations

from typing import Any

from tfadvq.compat import keras, tf
from tfadvq.errors import ConfigError


@keras.utils.register_keras_serializable(package="tfadvq")
class StatsPooling(keras.layers.Layer):
    """``[batch, frames, dim] -> [batch, 2 * dim]`` = ``concat(mean_t x, spread_t x)``.

    ``spread`` ``"std"``: ``sqrt(var_t x + epsilon)``, ``var`` the biased (1/T)
    variance, ``epsilon`` keeping the square root's gradient finite for
    constant features (silence, padding); ``"mad"``: ``mean_t |x - mean_t x|``
    (module doc).  Works for any number of frames >= 1, so one model embeds
    crops and whole utterances.

    >>> StatsPooling()(tf.ones([2, 7, 3])).shape
    TensorShape([2, 6])
    """

    SPREADS = ("std", "mad")

    def __init__(self, epsilon: float = 1e-5, spread: str = "std", **kwargs):
        super().__init__(**kwargs)
        if spread not in self.SPREADS:
            raise ConfigError(f"StatsPooling: spread {spread!r}; accepted: {list(self.SPREADS)}")
        self.epsilon = float(epsilon)
        self.spread = spread

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        mean = tf.reduce_mean(inputs, axis=1)
        deviation = inputs - mean[:, tf.newaxis]
        if self.spread == "mad":
            return tf.concat([mean, tf.reduce_mean(tf.abs(deviation), axis=1)], axis=-1)
        variance = tf.reduce_mean(tf.square(deviation), axis=1)
        return tf.concat([mean, tf.sqrt(variance + self.epsilon)], axis=-1)

    def compute_output_shape(self, input_shape) -> tf.TensorShape:
        input_shape = tf.TensorShape(input_shape)
        dim = input_shape[-1]
        return tf.TensorShape([input_shape[0], None if dim is None else 2 * dim])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon, "spread": self.spread}
