"""DF-ResNet: depth-first ResNet for speaker verification.

Liu, B., Chen, Z., Qian, Y.: "DF-ResNet: Boosting Speaker Verification
Performance with Depth-First Design", Interspeech 2022.  Instead of widening
a ResNet, DF-ResNet spends its parameters on depth with cheap
inverted-bottleneck blocks (1x1 expand x4 -> 3x3 depthwise -> 1x1 project,
residual; MobileNetV2/ConvNeXt style) and moves downsampling out of the
blocks into separate strided 3x3 convs between the stages:

    stem conv 3x3 (stride 1, d0) -> [downsample conv 3x3 stride 2 (d_i) -> depth_i blocks] x 4
    -> statistics pooling over time of the ``feat_dim / 16 * d4`` frame vectors -> Dense embedding

Widths ``d = (32, 32, 64, 128, 256)`` (``base_width * (1, 1, 2, 4, 8)``).  The
name counts the convolutions in the blocks (3 per block) plus the stem and the
embedding layer: DF-ResNet56 = 3 * (3+3+9+3) + 2.

=================  ============  ============================  ==========
factory            depths        all weights (80 mel, 256-d)   trainable
=================  ============  ============================  ==========
``DFResNet56``     3, 3, 9, 3    4,088,608                     4,047,840
``DFResNet110``    3, 3, 27, 3   6,613,792                     6,531,552
``DFResNet179``    3, 8, 45, 3   9,325,856                     9,196,384
``DFResNet233``    3, 8, 63, 3   11,851,040                    11,680,096
``TinyDFResNet``   1, 1, 2, 1    170,056 (width 8, 128-d)      167,064
=================  ============  ============================  ==========

Depths and widths as in WeSpeaker's (Gemini) DF-ResNet code by the paper's
authors; all four downsampling convs stride 2 in time and frequency as in the
original DF-ResNet (80 mel -> 5).  tests/test_models.py checks the counts.
"""
from __future__ import annotations

from collections.abc import Sequence

from tfadvq.compat import keras, tf
from tfadvq.models.common import (
    check_positive,
    check_stages,
    conv_bn,
    embedding_output,
    spectrogram_input,
)

EXPANSION = 4
WIDTH_MULTIPLIERS = (1, 1, 2, 4, 8)  # stem, then the four stages


def inverted_bottleneck(x: tf.Tensor, name: str) -> tf.Tensor:
    """1x1 expand (x4) -> 3x3 depthwise -> 1x1 project, plus the input; ReLU after the sum."""
    width = int(x.shape[-1])
    y = conv_bn(x, EXPANSION * width, 1, 1, f"{name}_expand")
    y = conv_bn(y, EXPANSION * width, 3, 1, f"{name}_depthwise", depthwise=True)
    y = conv_bn(y, width, 1, 1, f"{name}_project", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def DFResNet(depths: Sequence[int], feat_dim: int = 80, embed_dim: int = 256, base_width: int = 32,
             name: str = "dfresnet") -> keras.Model:
    """A DF-ResNet embedding model with ``depths[i]`` inverted bottlenecks in stage ``i``."""
    check_positive(name, feat_dim=feat_dim, embed_dim=embed_dim, base_width=base_width)
    depths = check_stages(name, "depths", depths)
    widths = [base_width * m for m in WIDTH_MULTIPLIERS]
    inputs, x = spectrogram_input(feat_dim)
    x = conv_bn(x, widths[0], 3, 1, "stem_conv")
    for stage, depth in enumerate(depths, start=1):
        x = conv_bn(x, widths[stage], 3, 2, f"downsample{stage}", relu=False)
        for block in range(1, depth + 1):
            x = inverted_bottleneck(x, f"stage{stage}_block{block}")
    return keras.Model(inputs, embedding_output(x, embed_dim), name=name)


def DFResNet56(feat_dim: int = 80, embed_dim: int = 256, base_width: int = 32) -> keras.Model:
    return DFResNet((3, 3, 9, 3), feat_dim, embed_dim, base_width, name="DFResNet56")


def DFResNet110(feat_dim: int = 80, embed_dim: int = 256, base_width: int = 32) -> keras.Model:
    return DFResNet((3, 3, 27, 3), feat_dim, embed_dim, base_width, name="DFResNet110")


def DFResNet179(feat_dim: int = 80, embed_dim: int = 256, base_width: int = 32) -> keras.Model:
    return DFResNet((3, 8, 45, 3), feat_dim, embed_dim, base_width, name="DFResNet179")


def DFResNet233(feat_dim: int = 80, embed_dim: int = 256, base_width: int = 32) -> keras.Model:
    return DFResNet((3, 8, 63, 3), feat_dim, embed_dim, base_width, name="DFResNet233")


def TinyDFResNet(feat_dim: int = 80, embed_dim: int = 128, base_width: int = 8,
                 depths: Sequence[int] = (1, 1, 2, 1)) -> keras.Model:
    """A small DF-ResNet (same block design, narrow and shallow) for tests and the demo."""
    return DFResNet(depths, feat_dim, embed_dim, base_width, name="TinyDFResNet")
