"""Statistics pooling: a variable number of frames -> one fixed-size utterance vector.

Speaker identity is a property of the whole utterance, so the frame-level
feature maps are summarised by their mean and standard deviation over time
(Snyder et al., x-vectors; WeSpeaker's ``TSTP``).  The std carries how much
each feature varies, which the mean alone cannot express.
"""
from __future__ import annotations

from typing import Any

from tfadvq.compat import keras, tf


@keras.utils.register_keras_serializable(package="tfadvq")
class StatsPooling(keras.layers.Layer):
    """``[batch, frames, dim] -> [batch, 2 * dim]`` = ``concat(mean_t x, sqrt(var_t x + epsilon))``.

    ``var`` is the biased (1/T) variance; ``epsilon`` keeps the square root's
    gradient finite for constant features (silence, padding).  Works for any
    number of frames >= 1, so one model embeds crops and whole utterances.

    >>> StatsPooling()(tf.ones([2, 7, 3])).shape
    TensorShape([2, 6])
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        mean = tf.reduce_mean(inputs, axis=1)
        variance = tf.reduce_mean(tf.square(inputs - mean[:, tf.newaxis]), axis=1)
        return tf.concat([mean, tf.sqrt(variance + self.epsilon)], axis=-1)

    def compute_output_shape(self, input_shape) -> tf.TensorShape:
        input_shape = tf.TensorShape(input_shape)
        dim = input_shape[-1]
        return tf.TensorShape([input_shape[0], None if dim is None else 2 * dim])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}
