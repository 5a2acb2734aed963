"""ResNet for speaker verification (WeSpeaker style; He et al. 2016 basic blocks).

``[batch, frames, feat_dim]`` fbank -> 3x3 stem conv (stride 1, ``m`` channels)
-> four stages of basic blocks with ``m, 2m, 4m, 8m`` channels and strides
1, 2, 2, 2 over (time, frequency) -> statistics pooling of the
``feat_dim / 8 * 8m``-wide frame vectors -> ``Dense(embed_dim)`` embedding.

==============  ============  ==============  =========================================
factory         blocks/stage  m = base_width  parameters (80 mel; all Keras weights)
==============  ============  ==============  =========================================
``ResNet18``    2, 2, 2, 2    32              4,110,240 (256-d)
``ResNet34``    3, 4, 6, 3    32              6,642,848 (256-d)
``TinyResNet``  1, 1, 1, 1    16 (demo)       636,496 (128-d; half of it the embedding)
==============  ============  ==============  =========================================

Counts include batch-norm moving statistics (PyTorch does not count those:
ResNet34 has 6,634,336 trainable parameters).  tests/test_models.py checks them.
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

STAGE_STRIDES = (1, 2, 2, 2)


def basic_block(x: tf.Tensor, width: int, stride: int, name: str) -> tf.Tensor:
    """Two 3x3 convs with a residual; a (subsampled) 1x1 conv shortcut when the shape changes."""
    y = conv_bn(x, width, 3, stride, f"{name}_conv1")
    y = conv_bn(y, width, 3, 1, f"{name}_conv2", relu=False)
    if stride != 1:
        # A 1x1 stride-s conv only reads every s-th pixel, so subsampling first and a 1x1
        # stride-1 conv is the same function with the same weights.  It is spelled this way
        # because TF 2.17's oneDNN CPU kernels corrupt the heap in the backward pass of a
        # 1x1 stride-2 Conv2D with few (4-8) channels (the tiny test models crash).
        x = keras.layers.AveragePooling2D(1, stride, name=f"{name}_shortcut_subsample")(x)
    if stride != 1 or int(x.shape[-1]) != width:
        x = conv_bn(x, width, 1, 1, f"{name}_shortcut", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def ResNet(blocks: Sequence[int], feat_dim: int = 80, embed_dim: int = 256, base_width: int = 32,
           name: str = "resnet") -> keras.Model:
    """A ResNet embedding model with ``blocks[i]`` basic blocks in stage ``i`` (four stages)."""
    check_positive(name, feat_dim=feat_dim, embed_dim=embed_dim, base_width=base_width)
    blocks = check_stages(name, "blocks", blocks)
    inputs, x = spectrogram_input(feat_dim)
    x = conv_bn(x, base_width, 3, 1, "stem_conv")
    for stage, (count, stride) in enumerate(zip(blocks, STAGE_STRIDES), start=1):
        width = base_width * 2 ** (stage - 1)
        for block in range(1, count + 1):
            x = basic_block(x, width, stride if block == 1 else 1, f"stage{stage}_block{block}")
    return keras.Model(inputs, embedding_output(x, embed_dim), name=name)


def ResNet18(feat_dim: int = 80, embed_dim: int = 256, base_width: int = 32) -> keras.Model:
    """ResNet18: ``[2, 2, 2, 2]`` basic blocks."""
    return ResNet((2, 2, 2, 2), feat_dim, embed_dim, base_width, name="ResNet18")


def ResNet34(feat_dim: int = 80, embed_dim: int = 256, base_width: int = 32) -> keras.Model:
    """ResNet34: ``[3, 4, 6, 3]`` basic blocks (~6.6 M parameters at width 32, 80 mel, 256-d)."""
    return ResNet((3, 4, 6, 3), feat_dim, embed_dim, base_width, name="ResNet34")


def TinyResNet(feat_dim: int = 80, embed_dim: int = 128, base_width: int = 16,
               blocks: Sequence[int] = (1, 1, 1, 1)) -> keras.Model:
    """A real but small ResNet (one block per stage by default) that trains in minutes on a CPU."""
    return ResNet(blocks, feat_dim, embed_dim, base_width, name="TinyResNet")
