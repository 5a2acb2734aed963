"""McuDFResNet: a DF-ResNet sized for a 256 KB / 1 MB Cortex-M4 (issue 15).

The DF-ResNet block design (:mod:`tfadvq.models.dfresnet`: inverted
bottlenecks, downsampling between stages) with the changes a microcontroller
needs, because TFLM's arena holds the live activations of the *first* layers
(a 16-channel 80-mel map of 200 frames is 256 KB in int8 alone):

* the stem conv strides 2 in time and frequency (80 mel -> 40 at once);
* stage 1 is depthwise-separable (expansion 1: 3x3 depthwise -> 1x1), the
  later stages expand ``expansion`` x (MobileNetV2: cheap blocks where the map
  is large, expansion where it is small);
* the strided downsampling is a 3x3 depthwise stride-2 conv + a 1x1 conv
  (MobileNet's separable downsample), not a full 3x3 conv;
* the frame vector before pooling passes a 1x1 conv + BN + ReLU
  (``pool_proj``), so the statistics pooling sees one well-scaled tensor of
  ``pool_channels`` per frequency bin -- with int8 activations the converter
  quantizes the pooled statistics per tensor, and unnormalised features of
  very different ranges lose the small ones;
* the pooling's spread is the mean absolute deviation, not the std
  (``spread="mad"``, :mod:`tfadvq.models.pooling`), for the same reason.

    stem 3x3 s2 (w0) -> [downsample_i (dw 3x3 s2 + 1x1 w_i, i > 1) -> depth_i blocks] x 4
    -> 1x1 pool_proj -> stats pooling over time -> Dense embedding

``widths`` are the stem's and the four stages' channels.  Costs (MACs,
activation bytes) of a configuration are measured by ``benchmarks/mcu_model.py``
and tests/test_mcu_model.py; the chosen one is ``tfadvq/configs/mcu.yaml``.
"""
from __future__ import annotations

from collections.abc import Sequence

from tfadvq.compat import keras, tf
from tfadvq.errors import ConfigError
from tfadvq.models.common import (
    check_positive,
    check_stages,
    conv_bn,
    embedding_output,
    spectrogram_input,
)


def mcu_block(x: tf.Tensor, expansion: int, name: str) -> tf.Tensor:
    """Residual block: [1x1 expand] -> 3x3 depthwise -> 1x1 project, plus the input, ReLU.

    ``expansion`` 1 drops the expansion conv (a depthwise-separable block:
    the depthwise conv reads the block input directly).
    """
    width = int(x.shape[-1])
    y = conv_bn(x, expansion * width, 1, 1, f"{name}_expand") if expansion > 1 else x
    y = conv_bn(y, expansion * width, 3, 1, f"{name}_depthwise", depthwise=True)
    y = conv_bn(y, width, 1, 1, f"{name}_project", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def McuDFResNet(feat_dim: int = 80, embed_dim: int = 128, widths: Sequence[int] = (8, 8, 16, 32, 64),
                depths: Sequence[int] = (1, 2, 2, 1), expansion: int = 2, pool_channels: int = 32,
                spread: str = "mad", name: str = "McuDFResNet") -> keras.Model:
    """The MCU-class embedding model (module doc); ``feat_dim`` must be divisible by 16."""
    check_positive(name, feat_dim=feat_dim, embed_dim=embed_dim, expansion=expansion,
                   pool_channels=pool_channels)
    depths = check_stages(name, "depths", depths)
    widths = tuple(widths)
    if len(widths) != 5 or not all(isinstance(w, int) and w >= 1 for w in widths):
        raise ConfigError(f"{name}: model_args.widths must be 5 positive integers (stem, 4 stages), "
                          f"got {list(widths)}")
    if feat_dim % 16:
        raise ConfigError(f"{name}: model_args.feat_dim {feat_dim} must be divisible by 16 "
                          "(four stride-2 steps in frequency)")
    inputs, x = spectrogram_input(feat_dim)
    x = conv_bn(x, widths[0], 3, 2, "stem_conv")
    for stage, depth in enumerate(depths, start=1):
        if stage > 1:
            x = conv_bn(x, 0, 3, 2, f"downsample{stage}_depthwise", relu=False, depthwise=True)
        if stage > 1 or widths[1] != widths[0]:
            x = conv_bn(x, widths[stage], 1, 1, f"downsample{stage}", relu=False)
        for block in range(1, depth + 1):
            x = mcu_block(x, expansion if stage > 1 else 1, f"stage{stage}_block{block}")
    x = conv_bn(x, pool_channels, 1, 1, "pool_proj")
    return keras.Model(inputs, embedding_output(x, embed_dim, spread), name=name)
