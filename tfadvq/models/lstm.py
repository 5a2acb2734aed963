"""LstmEncoder: a d-vector / GE2E-style recurrent speaker encoder (a family other than the convolutional ones).

    log-mel frames [batch, frames, feat_dim] -> LSTM x layers (return_sequences) -> mean over time
    -> Dense embedding (the projection)

The shape of the pretrained encoders people bring (GE2E, Resemblyzer: stacked
LSTMs and a linear projection on 40-band log-mel features, no BatchNorm), so
the benchmark of a model the project did not design (``benchmarks/pretrained.py``)
has one the project can train and re-create.  Two deliberate differences from GE2E:
the frame outputs are averaged (Variani's d-vector) instead of taking the last
one, because averaging gives every frame a gradient and trains in the short CPU
budget the benchmark has; and it is trained with the project's AAM-softmax
(:mod:`tfadvq.training`), not the GE2E loss.  The LSTMs keep Keras' default
configuration (tanh / sigmoid, bias, no recurrent dropout), the one that converts
to TFLite's UNIDIRECTIONAL_SEQUENCE_LSTM (:mod:`tfadvq.quant.layer_rules`).
"""
from __future__ import annotations

from tfadvq.compat import keras
from tfadvq.models.common import check_positive


def LstmEncoder(feat_dim: int = 40, embed_dim: int = 128, units: int = 192, layers: int = 2,
                name: str = "LstmEncoder") -> keras.Model:
    """``layers`` LSTMs of ``units`` cells, the time average of the last one, a ``Dense(embed_dim)`` projection."""
    check_positive(name, feat_dim=feat_dim, embed_dim=embed_dim, units=units, layers=layers)
    inputs = keras.Input((None, feat_dim), name="features")
    x = inputs
    for index in range(1, layers + 1):
        x = keras.layers.LSTM(units, return_sequences=True, name=f"lstm{index}")(x)
    x = keras.layers.GlobalAveragePooling1D(name="time_average")(x)
    return keras.Model(inputs, keras.layers.Dense(embed_dim, name="embedding")(x), name=name)
