"""Adaptive rounding onto a fixed codebook: each weight takes the neighbouring centroid that reconstructs the layer best.

Rounding every weight to its *nearest* centroid minimises the weight error, not
the error of what the layer computes: two weights rounded the same way along an
input direction the data excites add their errors up.  AdaRound (Nagel et al.,
"Up or Down? Adaptive Rounding for Post-Training Quantization", ICML 2020) and
BRECQ (Li et al., ICLR 2021) choose instead, per weight, between rounding down
and up so that the layer's *output* on unlabeled reconstruction inputs stays close
to the float layer's.  Here the grid is the layer's k-means codebook (per tensor
or per output channel), so "down" and "up" are the nearest centroids below and
above the weight (``c_lo <= w <= c_hi``):

    w_soft = c_lo + h(V) (c_hi - c_lo),   h(V) = clip(sigmoid(V) (ζ - γ) + γ, 0, 1)

with ζ = 1.1, γ = -0.1 (the rectified sigmoid: h reaches exactly 0 and 1), ``V``
initialised so that ``w_soft = w``.  Per layer, Adam minimises

    ||op(x_q, w_soft) - op(x_f, w)||² / ||op(x_q, w_nearest) - op(x_f, w)||²  +  λ Σ (1 - |2h - 1|^β) / n

where ``op`` is the layer's linear part (the convolution or matmul, no bias: the
bias and any BatchNorm after it act per output channel, and the objective
separates over output channels), ``x_q`` the layer's inputs in the quantized
model (earlier layers already rounded: their errors are compensated,
"asymmetric reconstruction"), ``x_f`` those of the float model.  The
regulariser is off for the first ``warmup`` of the iterations and its β anneals
from 20 to 2, pushing every h to 0 or 1; the weight then takes ``c_lo`` or
``c_hi`` (h >= 0.5).  If on all reconstruction inputs that choice reconstructs
worse than nearest rounding, the layer keeps nearest rounding (never worse on
the reconstruction data).

The result is written into the wrapped model's float weights as exact centroid
values, so the model stays a normal quantized model: the same codebooks,
nearest rounding of those weights gives the chosen indices, and strip, size
accounting and conversion are unchanged.  The input kernel of an LSTM/GRU is
rounded on its gate pre-activations ``x_t W``; its recurrent kernel (acting on
hidden states inside the layer) and value tables that move with the weights
(uniform, binary) keep nearest rounding; their rows say why.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_model_optimization as tfmot

from tfadvq.compat import keras, tf
from tfadvq.errors import ConfigError
from tfadvq.quant import kmeans1d
from tfadvq.quant import quantizers as qz
from tfadvq.quant.api import quantized_weights
from tfadvq.quant.bias_correction import input_batches

_ZETA, _GAMMA = 1.1, -0.1
_Wrapper = tfmot.quantization.keras.QuantizeWrapper


@dataclasses.dataclass(frozen=True)
class RoundingSettings:
    """How hard to optimise each layer's rounding (AdaRound's defaults scaled to a CPU budget)."""

    iterations: int = 400
    batch_size: int = 16  # reconstruction samples per Adam step
    learning_rate: float = 1e-2
    reg_weight: float = 0.01  # λ, relative to the nearest-rounding reconstruction error
    warmup: float = 0.2  # fraction of iterations without the regulariser
    beta: tuple[float, float] = (20.0, 2.0)
    num_batches: int = 4  # reconstruction batches of model inputs
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch_size < 1 or self.num_batches < 1:
            raise ConfigError(f"adaptive rounding: iterations, batch_size and num_batches must be >= 1; got "
                              f"{self.iterations}, {self.batch_size}, {self.num_batches}")
        if not 0.0 <= self.warmup < 1.0 or self.learning_rate <= 0 or self.reg_weight < 0:
            raise ConfigError(f"adaptive rounding: warmup in [0, 1), learning_rate > 0, reg_weight >= 0; got "
                              f"{self.warmup}, {self.learning_rate}, {self.reg_weight}")


def _linear_op(layer: keras.layers.Layer, weight: tf.Variable):
    """``f(x, kernel)``: the layer's output before bias and activation, or None when it has none.

    A recurrent layer's input kernel enters its gates as ``x_t W`` (linear in the layer's input
    sequence); its recurrent kernel acts on hidden states the layer keeps inside and stays nearest.
    """
    if type(layer) in (keras.layers.LSTM, keras.layers.GRU):
        if _short(weight) != "kernel":  # by name: the wrapper swaps the cell's attributes for tensors
            return None
        return lambda x, k: tf.tensordot(x, k, axes=[[-1], [0]])
    if type(layer) in (keras.layers.Conv1D, keras.layers.Conv2D):
        return layer.convolution_op
    if type(layer) is keras.layers.DepthwiseConv2D:
        return lambda x, k: keras.backend.depthwise_conv2d(
            x, k, strides=layer.strides, padding=layer.padding, dilation_rate=layer.dilation_rate,
            data_format=layer.data_format)
    if type(layer) is keras.layers.Dense:
        return lambda x, k: tf.tensordot(x, k, axes=[[-1], [0]])
    return None


def _short(weight: tf.Variable) -> str:
    return weight.name.split("/")[-1].split(":")[0]


def _input(model: keras.Model, layer: keras.layers.Layer) -> tf.Tensor:
    """``layer``'s input in ``model``'s graph (a layer may sit in several graphs, as in bias correction)."""
    for index in range(len(layer.inbound_nodes)):
        if f"{layer.name}_ib-{index}" in model._network_nodes:  # tf_keras' key for the nodes of a graph
            return layer.get_input_at(index)
    return layer.input


def _layer_inputs(model: keras.Model, layer: keras.layers.Layer, batches: Sequence[np.ndarray]) -> np.ndarray:
    probe = keras.Model(model.inputs, _input(model, layer))
    return np.concatenate([probe.predict_on_batch(x) for x in batches])


def neighbours(w: np.ndarray, table: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the centroids just below and just above every weight (equal at the table's ends).

    ``table`` is ``[k]`` or ``[C, k]`` (C = trailing channels of ``w``), sorted.
    """
    channels = table.shape[0] if per_channel else 1
    rows = w.reshape(-1, channels).T
    tables = table.reshape(channels, -1)
    nearest = kmeans1d.assign_rows(rows, tables).astype(np.int64)
    value = np.take_along_axis(tables, nearest, axis=1)
    lo = np.where(value > rows, nearest - 1, nearest).clip(0, tables.shape[1] - 1)
    hi = np.where(value < rows, nearest + 1, nearest).clip(0, tables.shape[1] - 1)
    return lo.T.reshape(w.shape), hi.T.reshape(w.shape)


def _centroids(table: np.ndarray, index: np.ndarray, per_channel: bool) -> np.ndarray:
    if not per_channel:
        return table[index]
    channels = table.shape[0]
    rows = index.reshape(-1, channels).T
    return np.take_along_axis(table, rows, axis=1).T.reshape(index.shape)


def _h(v: tf.Tensor) -> tf.Tensor:
    return tf.clip_by_value(tf.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA, 0.0, 1.0)


def _mse(op, x: np.ndarray, kernel: np.ndarray, target: np.ndarray, batch: int) -> float:
    total = 0.0
    for start in range(0, len(x), batch):
        total += float(tf.reduce_sum(tf.square(op(x[start:start + batch], kernel) - target[start:start + batch])))
    return total / target.size


def _optimise(op, x: np.ndarray, target: np.ndarray, w: np.ndarray, lo: np.ndarray, hi: np.ndarray,
              scale: float, settings: RoundingSettings) -> np.ndarray:
    """AdaRound's soft rounding for one kernel; returns the hard choice (True: round up)."""
    gap = np.maximum(hi - lo, 1e-12).astype(np.float32)
    frac = np.clip((w - lo) / gap, 0.01, 0.99)  # h(V0) = the weight's position between its neighbours
    v = tf.Variable(-np.log((_ZETA - _GAMMA) / (frac - _GAMMA) - 1.0).astype(np.float32))
    lo_t, gap_t = tf.constant(lo, tf.float32), tf.constant(np.where(hi > lo, gap, 0.0), tf.float32)
    optimizer = keras.optimizers.Adam(settings.learning_rate)
    rng = np.random.default_rng(settings.seed)
    batch = min(settings.batch_size, len(x))

    @tf.function
    def step(xb, yb, reg_weight, beta):
        with tf.GradientTape() as tape:
            h = _h(v)
            rec = tf.reduce_mean(tf.square(op(xb, lo_t + h * gap_t) - yb)) / scale
            reg = tf.reduce_mean(1.0 - tf.pow(tf.abs(2.0 * h - 1.0), beta))
            loss = rec + reg_weight * reg
        optimizer.apply_gradients([(tape.gradient(loss, v), v)])

    start_reg = int(settings.warmup * settings.iterations)
    for i in range(settings.iterations):
        pick = rng.choice(len(x), batch, replace=False)
        progress = max(0.0, (i - start_reg) / max(settings.iterations - start_reg, 1))
        beta = settings.beta[1] + 0.5 * (settings.beta[0] - settings.beta[1]) * (1 + np.cos(np.pi * progress))
        step(tf.constant(x[pick]), tf.constant(target[pick]),
             tf.constant(settings.reg_weight if i >= start_reg else 0.0), tf.constant(beta, tf.float32))
    return _h(v).numpy() >= 0.5


def adaptive_round(float_model: keras.Model, quantized: keras.Model, batches: Any,
                   settings: RoundingSettings | None = None) -> list[dict[str, Any]]:
    """Round every k-means-quantized affine kernel of the wrapped ``quantized`` model adaptively, in place.

    ``float_model`` is the FP32 model ``quantized`` came from (same layer
    names); ``batches``: unlabeled model inputs (a ``tf.data.Dataset`` or
    :class:`~tfadvq.training.TrainingData` of ``x`` or ``(x, ...)``, or a
    sequence of arrays; :func:`tfadvq.quant.bias_correction.input_batches`).
    Layers are rounded in model order, each on the inputs the already-rounded
    layers before it produce.  Returns one row per quantized weight: the
    rounding used, the output mean squared error relative to the float
    layer's with nearest and with the chosen rounding, and the fraction of
    weights that moved to the other neighbour.
    """
    settings = settings or RoundingSettings()
    data = input_batches(batches, settings.num_batches)
    float_layers = {layer.name: layer for layer in float_model.layers}
    rows = []
    for wrapper, quantizer in quantized_weights(quantized):
        layer = wrapper.layer
        op = _linear_op(layer, quantizer.source)
        name = f"{layer.name}/{_short(quantizer.source)}"
        why = ("output not linear in this weight alone" if op is None else
               "value table follows the weights" if not isinstance(quantizer, qz.KMeansQuantizer) else
               "not in the float model" if layer.name not in float_layers else None)
        if why:
            rows.append({"weight": name, "rounding": f"nearest ({type(layer).__name__}: {why})",
                         "error_nearest": None, "error": None, "changed": 0.0})
            continue
        w = quantizer.source.numpy()
        table = quantizer.value_table(w)
        lo_i, hi_i = neighbours(w, table, quantizer.per_channel)
        lo, hi = _centroids(table, lo_i, quantizer.per_channel), _centroids(table, hi_i, quantizer.per_channel)
        nearest = np.where(np.abs(w - lo) <= np.abs(hi - w), lo, hi)
        x_q = _layer_inputs(quantized, wrapper, data)
        x_f = _layer_inputs(float_model, float_layers[layer.name], data)
        target = np.concatenate([op(x_f[s:s + settings.batch_size], w).numpy()
                                 for s in range(0, len(x_f), settings.batch_size)])
        del x_f
        error_nearest = _mse(op, x_q, nearest, target, settings.batch_size)
        up = _optimise(op, x_q, target, w, lo, hi, max(error_nearest, 1e-30), settings)
        chosen = np.where(up, hi, lo).astype(np.float32)
        error = _mse(op, x_q, chosen, target, settings.batch_size)
        rounding = "adaptive" if error < error_nearest else "nearest (adaptive reconstructed worse)"
        final = chosen if error < error_nearest else nearest
        quantizer.source.assign(final.astype(np.float32))
        scale = float(np.mean(np.square(target))) or 1.0
        rows.append({"weight": name, "rounding": rounding, "error_nearest": error_nearest / scale,
                     "error": min(error, error_nearest) / scale, "changed": float(np.mean(final != nearest))})
    return rows
