"""TdnnEncoder: an x-vector-style time-delay network (Conv1D over frames, no BatchNorm).

    log-mel frames [batch, frames, feat_dim] -> Conv1D frame layers (kernel k_i, dilation d_i, ReLU)
    -> Conv1D 1x1 to ``pool_channels`` -> statistics pooling (mean, std) -> Dense embedding

Snyder et al.'s x-vector frame layers (context 5/3/3 at dilations 1/2/3, then
1x1 layers) at widths a 2-core CPU trains in half an hour.  No BatchNorm, on
purpose: it is the case where nothing folds into a convolution, so one value
table per tensor is all a converted layer needs (issue 22, item 2), and with
the LSTM encoder it gives the pretrained-model benchmark a family unlike the
demo's 2-D ResNets.  ``"same"`` padding keeps any number of frames (>= 1) valid.
"""
from __future__ import annotations

from collections.abc import Sequence

from tfadvq.compat import keras
from tfadvq.errors import ConfigError
from tfadvq.models.common import check_positive
from tfadvq.models.pooling import StatsPooling


def TdnnEncoder(feat_dim: int = 40, embed_dim: int = 128, channels: int = 128,
                kernels: Sequence[int] = (5, 3, 3, 1), dilations: Sequence[int] = (1, 2, 3, 1),
                pool_channels: int = 384, name: str = "TdnnEncoder") -> keras.Model:
    """Frame layers of ``channels`` (one per ``kernels``/``dilations`` pair), pooling, ``Dense(embed_dim)``."""
    check_positive(name, feat_dim=feat_dim, embed_dim=embed_dim, channels=channels, pool_channels=pool_channels)
    kernels, dilations = tuple(kernels), tuple(dilations)
    if (len(kernels) != len(dilations) or not kernels
            or not all(isinstance(v, int) and v >= 1 for v in kernels + dilations)):
        raise ConfigError(f"{name}: model_args.kernels and dilations must be positive integers, one dilation "
                          f"per kernel, got kernels {list(kernels)} and dilations {list(dilations)}")
    inputs = keras.Input((None, feat_dim), name="features")
    x = inputs
    for index, (kernel, dilation) in enumerate(zip(kernels, dilations), start=1):
        x = keras.layers.Conv1D(channels, kernel, dilation_rate=dilation, padding="same", activation="relu",
                                name=f"frame{index}")(x)
    x = keras.layers.Conv1D(pool_channels, 1, activation="relu", name="frame_pool_proj")(x)
    x = StatsPooling(name="stats_pooling")(x)
    return keras.Model(inputs, keras.layers.Dense(embed_dim, name="embedding")(x), name=name)
