"""Writes ``.keras`` files with **Keras 3** (run as a script, without TF_USE_LEGACY_KERAS, so that
``import keras`` is Keras 3), with inputs and Keras 3's own outputs on them.

``python keras3_models.py OUT`` writes into OUT, for the models of tests/test_model_io.py:

* ``encoder.keras``: Conv2D + BatchNorm (non-trivial statistics) + DepthwiseConv2D + LSTM + Dense over
  ``[40 frames, 80 mels]`` -- the issue's encoder; ``families.keras``: every other layer family taken
  (Conv1D, SeparableConv1D/2D, GRU, LayerNorm, pooling, activations incl. LeakyReLU/PReLU, merges,
  reshapes, a nested Sequential, tfadvq's StatsPooling); ``sequential.keras``: a Sequential model.
  For each ``<name>.keras``: ``<name>.x.npy`` inputs and ``<name>.y.npy`` Keras 3's outputs.
* refused ones: ``custom.keras`` (a custom layer only Keras 3 knows), ``attention.keras``
  (MultiHeadAttention: no mapping), ``ops.keras`` (a ``keras.ops`` call in the graph), ``lora.keras``
  (a Dense with LoRA enabled), and ``legacy.h5`` (Keras 3's legacy HDF5 format).
"""
from __future__ import annotations

import os
import sys

import numpy as np

assert os.environ.get("TF_USE_LEGACY_KERAS") in (None, "", "0"), "run without TF_USE_LEGACY_KERAS"
import keras  # noqa: E402  (Keras 3)
from keras import layers  # noqa: E402

assert keras.__version__.startswith("3."), keras.__version__


@keras.saving.register_keras_serializable(package="tfadvq", name="StatsPooling")
class StatsPooling(layers.Layer):
    """tfadvq's StatsPooling written for Keras 3 (same registered name and config)."""

    def __init__(self, epsilon=1e-5, spread="std", **kwargs):
        super().__init__(**kwargs)
        self.epsilon, self.spread = epsilon, spread

    def call(self, x):
        mean = keras.ops.mean(x, axis=1)
        var = keras.ops.mean(keras.ops.square(x - mean[:, None]), axis=1)
        return keras.ops.concatenate([mean, keras.ops.sqrt(var + self.epsilon)], axis=-1)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "spread": self.spread}


@keras.saving.register_keras_serializable(package="mypkg")
class Scale(layers.Layer):
    def call(self, x):
        return 2.0 * x


def randomise(model, rng):
    """Non-trivial BatchNorm statistics (trained-like), so their order in the file matters."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomise(layer, rng)
        elif isinstance(layer, layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(size=n), rng.normal(size=n), rng.uniform(0.5, 2, n)])


def encoder():
    inputs = keras.Input((40, 80), name="fbank")
    x = layers.Reshape((40, 80, 1))(inputs)
    x = layers.Conv2D(4, 3, strides=(1, 4), padding="same", name="conv")(x)
    x = layers.ReLU()(layers.BatchNormalization(name="bn")(x))
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.Reshape((40, 80))(x)
    x = layers.LSTM(16, name="lstm")(x)
    return keras.Model(inputs, layers.Dense(8, name="embed")(x), name="k3_encoder")


def families():
    inputs = keras.Input((24, 12))
    a = layers.Conv1D(8, 3, padding="same", activation="relu", name="conv1d")(inputs)
    a = layers.SeparableConv1D(8, 3, padding="same", name="sep1d")(a)
    a = layers.LayerNormalization(name="ln")(a)
    b = layers.GRU(8, return_sequences=True, name="gru")(inputs)
    x = layers.Concatenate()([a, b])
    x = layers.Add()([layers.Dense(16, name="d1")(x), layers.LeakyReLU(negative_slope=0.2)(x)])
    y = layers.Reshape((24, 16, 1))(x)
    y = layers.SeparableConv2D(4, 3, padding="same", name="sep2d")(y)
    y = layers.BatchNormalization(name="bn2")(y)
    y = layers.PReLU(name="prelu")(y)
    y = layers.MaxPooling2D(2)(layers.ZeroPadding2D(1)(y))
    y = layers.GlobalAveragePooling2D()(layers.AveragePooling2D(1)(y))
    z = layers.Dropout(0.5, seed=3)(StatsPooling(name="stats")(x))
    tail = keras.Sequential([layers.Dense(12, activation="tanh"), layers.Dense(6)], name="tail")
    out = tail(layers.Concatenate()([layers.Flatten()(y), z]))
    return keras.Model(inputs, layers.Softmax()(layers.Activation("elu")(out)), name="families")


def sequential():
    return keras.Sequential([keras.Input((16, 10)), layers.Conv1D(6, 3), layers.BatchNormalization(),
                             layers.GlobalMaxPooling1D(), layers.Dense(4)], name="seq")


def refused(kind):
    inputs = keras.Input((16, 10))
    if kind == "custom":
        x = Scale(name="scale")(inputs)
    elif kind == "attention":
        x = layers.MultiHeadAttention(2, 4, name="mha")(inputs, inputs)
    elif kind == "ops":
        x = keras.ops.mean(layers.Dense(4, name="d")(inputs), axis=1)
    else:
        dense = layers.Dense(4, name="adapted")
        x = dense(inputs)
        dense.enable_lora(2)
    return keras.Model(inputs, layers.Flatten()(x), name=kind)


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    for name, build in (("encoder", encoder), ("families", families), ("sequential", sequential)):
        model = build()
        randomise(model, rng)
        x = rng.normal(size=(6, *model.input_shape[1:])).astype(np.float32)
        model.save(f"{out}/{name}.keras")
        np.save(f"{out}/{name}.x.npy", x)
        np.save(f"{out}/{name}.y.npy", np.asarray(model(x, training=False)))
    for kind in ("custom", "attention", "ops", "lora"):
        refused(kind).save(f"{out}/{kind}.keras")
    sequential().save(f"{out}/legacy.h5")


if __name__ == "__main__":
    main(sys.argv[1])
