"""Training objectives: what an embedding model is fitted *to*.

An embedding model maps features ``[batch, frames, feat_dim]`` to embeddings
``[batch, embed_dim]`` and has no classifier.  An objective wraps it in a small
Keras *trainer* model that ``fit`` can drive; the embedding model's variables
are shared, so training the trainer trains the embedding model in place and
nothing has to be copied back.  Two objectives exist:

``"aam"``
    Speaker classification through an additive angular margin softmax
    (ArcFace, :class:`tfadvq.heads.AAMSoftmax`).  Needs speaker labels; the
    dataset yields ``(features, labels)``.

``"distill"``
    Embedding distillation from a frozen teacher (usually the FP32 model a
    quantized student started from): ``loss = 1 - cos(student(x), teacher(x))``
    averaged over the batch.  Needs no labels, so any unlabelled speech works;
    a dataset of ``(features, labels)`` is accepted and its labels ignored.

The embedding model may be a tfmot-wrapped (``quantize_apply``) model: the
trainers only call it, they never look inside.
"""
from __future__ import annotations

import enum

from tfadvq.compat import keras, tf
from tfadvq.errors import ConfigError


class Objective(str, enum.Enum):
    """Names accepted wherever an objective is chosen (API, YAML, CLI)."""

    AAM = "aam"
    DISTILL = "distill"


@keras.saving.register_keras_serializable(package="tfadvq")
class CosineDistance(keras.losses.Loss):
    """Per-example ``1 - cos(y_true, y_pred)``; 0 when the directions agree, 2 when opposite.

    Keras' own ``CosineSimilarity`` returns ``-cos``; the shifted form reads as a
    distance in logs and TensorBoard (its gradients are identical).
    """

    def __init__(self, name: str = "cosine_distance", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        y_true = tf.math.l2_normalize(tf.cast(y_true, y_pred.dtype), axis=-1)
        y_pred = tf.math.l2_normalize(y_pred, axis=-1)
        return 1.0 - tf.reduce_sum(y_true * y_pred, axis=-1)


class AAMTrainer(keras.Model):
    """``(features, labels) -> margin logits``: an embedding model under an AAM-softmax head.

    The head needs the labels in its forward pass (the margin is added to the
    target logit only), hence labels are an *input* as well as the target.
    """

    def __init__(self, embedding_model: keras.Model, head: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.embedding_model = embedding_model
        self.head = head

    def call(self, inputs, training=None):
        features, labels = inputs
        embeddings = self.embedding_model(features, training=training)
        return self.head(embeddings, labels, training=training)

    @staticmethod
    def prepare(dataset: tf.data.Dataset) -> tf.data.Dataset:
        """``(features, labels)`` batches -> ``((features, labels), labels)`` as ``fit`` needs."""
        return dataset.map(lambda x, y: ((x, y), y), num_parallel_calls=tf.data.AUTOTUNE)


class DistillationTrainer(keras.Model):
    """``features -> student embeddings``, with the frozen teacher's embeddings as targets.

    The teacher runs inside the train step (not in ``tf.data``) so it is
    replicated like the student under any ``tf.distribute`` strategy.
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, **kwargs):
        super().__init__(**kwargs)
        if student is teacher:
            raise ConfigError("distillation: the student and the teacher are the same model object")
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False

    def call(self, features, training=None):
        return self.student(features, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        """Swap the (absent or ignored) labels for the teacher's embeddings of the same batch."""
        target = tf.stop_gradient(self.teacher(x, training=False))
        return super().compute_loss(x, target, y_pred, sample_weight)

    @staticmethod
    def prepare(dataset: tf.data.Dataset) -> tf.data.Dataset:
        """``features`` or ``(features, labels)`` -> ``(features, placeholder)``.

        Keras refuses to fit a compiled loss without targets; the placeholder
        (zeros, one per example) is replaced by the teacher's embeddings in
        :meth:`compute_loss`, so any labels present are ignored.
        """
        def with_placeholder(x, *_):
            return x, tf.zeros(tf.shape(x)[:1])

        return dataset.map(with_placeholder, num_parallel_calls=tf.data.AUTOTUNE)


def parse_objective(objective: str | Objective) -> Objective:
    """``"aam"``/``"distill"`` (or the enum) -> :class:`Objective`; anything else raises."""
    try:
        return Objective(objective)
    except ValueError:
        raise ConfigError(
            f"objective: {objective!r} is not one of {[o.value for o in Objective]}"
        ) from None
