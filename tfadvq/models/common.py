"""Pieces every SV network here shares: argument checks, the fbank -> image front,
conv + batch-norm units and the pooling + embedding back end.

Layers stay plain Keras ``Conv2D``/``DepthwiseConv2D``/``Dense`` with a
separate ``BatchNormalization`` and a unique, readable name
(``stage2_block1_conv1``), because quantization and conversion address
layers by class and by name.
"""
from __future__ import annotations

from collections.abc import Sequence

from tfadvq.compat import keras, tf
from tfadvq.errors import ConfigError
from tfadvq.models.pooling import StatsPooling

BN_MOMENTUM = 0.9  # PyTorch's 0.1 running-average update, as the SV toolkits train with
BN_EPSILON = 1e-5


def check_positive(model: str, **values: int) -> None:
    """Raise ConfigError naming the model argument that is not a positive integer."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{model}: model_args.{name} must be a positive integer, got {value!r}")


def check_stages(model: str, name: str, counts: Sequence[int]) -> tuple[int, ...]:
    """Four positive per-stage counts (blocks or depths) as a tuple, else ConfigError."""
    counts = tuple(counts)
    if len(counts) != 4 or not all(isinstance(c, int) and c >= 1 for c in counts):
        raise ConfigError(f"{model}: model_args.{name} must be 4 positive integers "
                          f"(one per stage), got {list(counts)}")
    return counts


def spectrogram_input(feat_dim: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``Input [batch, frames, feat_dim]`` and its single-channel image ``[batch, frames, feat_dim, 1]``."""
    inputs = keras.Input((None, feat_dim), name="features")
    return inputs, keras.layers.Reshape((-1, feat_dim, 1), name="to_image")(inputs)


def conv_bn(x: tf.Tensor, filters: int, kernel: int, strides: int, name: str,
            relu: bool = True, depthwise: bool = False) -> tf.Tensor:
    """Bias-free conv (or depthwise conv) -> ``{name}_bn`` -> optional ``{name}_relu``."""
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel, strides, padding="same", use_bias=False, name=name)(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, strides, padding="same", use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def embedding_output(x: tf.Tensor, embed_dim: int, spread: str = "std") -> tf.Tensor:
    """``[batch, frames', freq', channels]`` -> stats pooling over time -> ``Dense`` embedding.

    Frequency and channels are flattened into one frame vector first, so the
    pooled statistics keep where in frequency a feature fired; ``spread`` is
    :class:`StatsPooling`'s.
    """
    frame_dim = int(x.shape[2]) * int(x.shape[3])
    x = keras.layers.Reshape((-1, frame_dim), name="frame_features")(x)
    x = StatsPooling(spread=spread, name="stats_pooling")(x)
    return keras.layers.Dense(embed_dim, name="embedding")(x)


def multiply_accumulates(model: keras.Model, frames: int) -> dict[str, int]:
    """Multiply-accumulates of each conv / depthwise conv / dense layer for one ``[1, frames, mels]`` input.

    What an MCU spends per invoke is dominated by these (TFLM's int8 kernels:
    CMSIS-NN), so they are the device cost to compare architectures by before
    any firmware is built.  Output shapes are measured on a zero input.
    """
    counted = [layer for layer in model.layers
               if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense))]
    probe = keras.Model(model.inputs, [layer.output for layer in counted])
    outputs = probe(tf.zeros([1, frames, int(model.input_shape[-1])]), training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    macs = {}
    for layer, out in zip(counted, outputs):
        kernel = layer.weights[0].shape  # Conv2D [kh, kw, in, out]; depthwise [kh, kw, in, mult]; Dense [in, out]
        positions = int(tf.reduce_prod(out.shape[1:-1]))
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            macs[layer.name] = positions * int(out.shape[-1]) * int(kernel[0]) * int(kernel[1])
        else:
            macs[layer.name] = positions * int(tf.reduce_prod(kernel))
    return macs
