"""Classifier heads used only while training an embedding model.

``AAMSoftmax`` (additive angular margin, ArcFace: Deng et al., CVPR 2019;
the standard SV training loss in WeSpeaker and 3D-Speaker) turns embeddings
into speaker logits.  Both embeddings and class centres are L2-normalised, so
a logit is ``s * cos(theta)``; the target class gets ``s * cos(theta + m)``
instead, which forces each speaker's embeddings into a tighter cone than a
plain softmax would accept -- the property cosine scoring needs.
"""
from __future__ import annotations

import math
from typing import Any

from tfadvq.compat import keras, tf
from tfadvq.errors import ConfigError


@keras.utils.register_keras_serializable(package="tfadvq")
class AAMSoftmax(keras.layers.Layer):
    """``(embeddings [B, D], labels [B]) -> logits [B, num_classes]`` with an additive angular margin.

    Forward, with ``cos_j = <e/|e|, w_j/|w_j|>`` and the true class ``y``::

        logit_j = s * cos_j                       (j != y)
        logit_y = s * cos(theta_y + m)            if theta_y + m <= pi
                = s * (cos_y - m sin(m))          otherwise (keeps the logit decreasing in theta;
                                                   ``easy_margin`` instead applies the margin only
                                                   where cos_y > 0)

    Without labels (inference) every logit is ``s * cos_j``.  The margin
    lives in the non-trainable variable ``self.margin`` (shape ``[]``) so a
    callback can ramp it up from 0 during training (margin warm-up);
    ``get_config`` stores the configured (final) margin.

    >>> head = AAMSoftmax(10, margin=0.2, scale=32.0)
    >>> head(tf.ones([4, 16]), tf.constant([0, 1, 2, 3])).shape
    TensorShape([4, 10])
    """

    def __init__(self, num_classes: int, margin: float = 0.2, scale: float = 32.0,
                 easy_margin: bool = False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"AAMSoftmax: num_classes must be an integer >= 2, got {num_classes!r}")
        if not 0.0 <= margin < math.pi / 2:
            raise ConfigError(f"AAMSoftmax: margin must be in [0, pi/2) radians, got {margin}")
        if scale <= 0:
            raise ConfigError(f"AAMSoftmax: scale must be > 0, got {scale}")
        self.num_classes = int(num_classes)
        self.final_margin = float(margin)
        self.scale = float(scale)
        self.easy_margin = bool(easy_margin)
        self.margin = self.add_weight(name="margin", shape=(), trainable=False,
                                      initializer=keras.initializers.Constant(self.final_margin))

    def build(self, input_shape) -> None:
        dim = int(tf.TensorShape(input_shape)[-1])
        self.kernel = self.add_weight(name="kernel", shape=(dim, self.num_classes),
                                      initializer="glorot_uniform", trainable=True)
        super().build(input_shape)

    def call(self, embeddings: tf.Tensor, labels: tf.Tensor | None = None,
             training: bool | None = None) -> tf.Tensor:
        cosine = tf.matmul(tf.math.l2_normalize(embeddings, axis=-1),
                           tf.math.l2_normalize(tf.cast(self.kernel, embeddings.dtype), axis=0))
        if labels is None:
            return self.scale * cosine
        margin = tf.cast(self.margin, cosine.dtype)
        sine = tf.sqrt(tf.clip_by_value(1.0 - tf.square(cosine), 0.0, 1.0))
        with_margin = cosine * tf.cos(margin) - sine * tf.sin(margin)
        if self.easy_margin:
            with_margin = tf.where(cosine > 0.0, with_margin, cosine)
        else:  # theta + m beyond pi would make the logit increase again: continue linearly
            with_margin = tf.where(cosine > tf.cos(math.pi - margin), with_margin,
                                   cosine - tf.sin(math.pi - margin) * margin)
        target = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), self.num_classes) > 0.5
        return self.scale * tf.where(target, with_margin, cosine)

    def compute_output_shape(self, input_shape) -> tf.TensorShape:
        return tf.TensorShape(input_shape)[:-1].concatenate([self.num_classes])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes, "margin": self.final_margin,
                "scale": self.scale, "easy_margin": self.easy_margin}
