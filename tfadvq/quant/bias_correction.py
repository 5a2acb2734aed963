"""Bias correction after quantizing: give each quantized layer back the output mean of its float twin.

Rounding weights onto a codebook shifts the *mean* of a layer's output as
well as adding noise: ``E[(W_q - W) x] = (W_q - W) E[x]`` is not zero when
the inputs have a mean (after a ReLU they always do), and the shift adds up
through the network.  Empirical bias correction (Nagel et al., "Data-Free
Quantization Through Weight Equalization and Bias Correction", ICCV 2019,
the empirical variant of their section 4.2; Finkelstein et al. 2019) measures
it on a few batches and removes it, layer by layer, in model order, so each
layer is corrected on inputs the already-corrected layers before it produce:

* a layer with a bias: ``bias -= E[y_q] - E[y_float]`` (per output channel,
  averaged over every other axis);
* a layer without a bias feeding only a BatchNormalization: the BN's moving
  mean moves by the shift, which at inference is the same correction (and the
  converter folds it into the conv's bias, so it costs nothing on device);
* otherwise (no bias, recurrent layers whose output is not affine in the
  weights) the layer is left alone and its row says why.

Only float parameters change (biases, BN moving means); the quantized weights,
their codebooks and indices are untouched, so the size is the same.  Works on
the plain model :func:`tfadvq.quant.api.strip` returns (what is converted)
and on a wrapped model (its inner layers' biases).  No labels are needed: the
batches are model inputs (the distillation data of :mod:`tfadvq.quant.finetune`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import tensorflow_model_optimization as tfmot

from tfadvq.compat import keras, tf
from tfadvq.errors import ConfigError, DataError
from tfadvq.quant import layer_rules

_Wrapper = tfmot.quantization.keras.QuantizeWrapper
_AFFINE = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def input_batches(source: Any, num_batches: int) -> list[np.ndarray]:
    """``num_batches`` batches of model inputs from a ``tf.data.Dataset`` (elements ``x`` or ``(x, ...)``)
    or a sequence of arrays, taken once so every layer is corrected on the same data."""
    if num_batches < 1:
        raise ConfigError(f"bias correction: num_batches={num_batches}; accepted: >= 1")
    dataset = getattr(source, "dataset", source)
    items = dataset.take(num_batches) if isinstance(dataset, tf.data.Dataset) else list(dataset)[:num_batches]
    batches = [np.asarray(e[0] if isinstance(e, (tuple, list)) else e) for e in items]
    if not batches:
        raise DataError("bias correction: the data yields no batch of model inputs")
    return batches


def _inner(layer: keras.layers.Layer) -> keras.layers.Layer:
    return layer.layer if isinstance(layer, _Wrapper) else layer


def _by_inner_name(model: keras.Model) -> dict[str, keras.layers.Layer]:
    return {_inner(layer).name: layer for layer in model.layers}


def _output(model: keras.Model, layer: keras.layers.Layer) -> tf.Tensor:
    """``layer``'s output in ``model``'s graph: tfmot reuses unwrapped layers (BN) in the graph of the
    wrapped model, so ``layer.output`` (its first graph) may belong to another model."""
    for index in range(len(layer.inbound_nodes)):
        if f"{layer.name}_ib-{index}" in model._network_nodes:  # tf_keras' key for the nodes of a graph
            return layer.get_output_at(index)
    return layer.output


def _only_bn_consumer(model: keras.Model, layer: keras.layers.Layer) -> keras.layers.BatchNormalization | None:
    """The BatchNormalization that alone consumes ``layer``'s output (on the channel axis), if any."""
    consumers = [node.outbound_layer for node in layer.outbound_nodes if node.outbound_layer in model.layers]
    if len(consumers) != 1:
        return None
    bn = _inner(consumers[0])
    if not isinstance(bn, keras.layers.BatchNormalization) or list(np.atleast_1d(bn.axis)) not in ([-1], [
            len(layer.output.shape) - 1]):
        return None
    return bn


def _mean_probe(model: keras.Model, outputs: Sequence[tf.Tensor]) -> Callable[[Sequence[np.ndarray]], list[np.ndarray]]:
    """A function of batches giving the per-channel means of ``outputs`` of ``model`` (every axis but the last).

    Built, and traced, once: the correction re-measures the quantized model
    after every layer it corrects, and a probe model per layer cost a graph
    trace each (about 90 s of the demo model's 26 layers on a loaded machine,
    against seconds for the forward passes).  The means are taken in the graph;
    batches weigh by their size (the other axes are the same for every batch).
    """
    probe = keras.Model(model.inputs, [tf.reduce_mean(o, axis=list(range(len(o.shape) - 1))) for o in outputs])

    def means(batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        sums = [np.zeros(int(o.shape[-1]), np.float64) for o in outputs]
        count = 0
        for x in batches:
            values = probe.predict_on_batch(x)
            values = values if isinstance(values, (list, tuple)) else [values]
            sums = [s + len(x) * np.asarray(v, np.float64) for s, v in zip(sums, values)]
            count += len(x)
        return [s / count for s in sums]

    return means


def correct_bias(float_model: keras.Model, quantized: keras.Model, batches: Iterable,
                 num_batches: int = 8) -> list[dict[str, Any]]:
    """Correct, in place and in layer order, the output-mean shift of every quantized layer of ``quantized``.

    ``float_model`` is the FP32 model ``quantized`` came from (same layer
    names); ``batches``: model inputs (see :func:`input_batches`).  Returns
    one row per quantized layer: how it was corrected (``bias``,
    ``batchnorm <name>`` or why not), and the largest absolute per-channel
    mean shift where the correction acts (the layer's or its BN's output),
    before correcting it (with the earlier corrections in place) and after
    all of them.  Cost: one forward pass of the quantized model over the
    batches per corrected layer, through one graph traced once.
    """
    data = input_batches(batches, num_batches)
    float_layers, quant_layers = _by_inner_name(float_model), _by_inner_name(quantized)
    targets = [name for name, layer in quant_layers.items()
               if isinstance(layer, _Wrapper) and isinstance(layer.quantize_config, layer_rules.WeightQuantizeConfig)]
    if not targets and isinstance(quantized, keras.Model):
        # A stripped model has no wrappers: every supported layer whose weights differ from the float ones.
        targets = [name for name, layer in quant_layers.items()
                   if layer_rules.rule_for(layer) is not None and name in float_layers
                   and any(not np.array_equal(a, b) for a, b in zip(layer.get_weights(),
                                                                     float_layers[name].get_weights()))]
    missing = [name for name in targets if name not in float_layers]
    if missing:
        raise ConfigError(f"bias correction: layers {missing} of the quantized model are not in the float model; "
                          "pass the FP32 model it was quantized from")
    if not targets:
        raise ConfigError(f"bias correction: model {quantized.name!r} has no quantized layer")
    plan = []  # (layer, where the correction is measured, its BatchNormalization or None)
    rows = {}
    for name in targets:
        layer = _inner(quant_layers[name])
        bn = None if getattr(layer, "use_bias", False) else _only_bn_consumer(quantized, quant_layers[name])
        if not isinstance(layer, _AFFINE) or (bn is None and not getattr(layer, "use_bias", False)):
            why = (f"{type(layer).__name__}: output not affine in its weights" if not isinstance(layer, _AFFINE)
                   else "no bias, no BatchNormalization after it")
            rows[name] = {"layer": name, "correction": f"none ({why})", "shift_before": None, "shift_after": None}
        else:  # measured where the correction acts: the layer's output, or its BatchNormalization's
            plan.append((layer, name if bn is None else bn.name, bn))
    if not plan:
        return list(rows.values())
    at = [where for _, where, _ in plan]
    targets_mean = dict(zip(at, _mean_probe(float_model, [_output(float_model, float_layers[a]) for a in at])(data)))
    measure = _mean_probe(quantized, [_output(quantized, quant_layers[a]) for a in at])
    for i, (layer, where, bn) in enumerate(plan):  # in model order: each layer sees the corrected ones before it
        shift = measure(data)[i] - targets_mean[where]
        if bn is None:
            layer.bias.assign(layer.bias.numpy() - shift.astype(np.float32))
        else:  # gamma (x - m) / s + beta: an output shift d is removed by m += d s / gamma
            scale = np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
            gamma = bn.gamma.numpy() if bn.scale else np.ones_like(scale)
            live = np.abs(gamma) > 1e-12  # a channel BN multiplies by 0 has no shift to correct
            step = np.where(live, shift * scale / np.where(live, gamma, 1.0), 0.0)
            bn.moving_mean.assign(bn.moving_mean.numpy() + step.astype(np.float32))
        rows[layer.name] = {"layer": layer.name, "correction": "bias" if bn is None else f"batchnorm {bn.name}",
                            "shift_before": float(np.max(np.abs(shift)))}
    after = measure(data)  # all corrections in place
    for (layer, where, _), mean in zip(plan, after):
        rows[layer.name]["shift_after"] = float(np.max(np.abs(mean - targets_mean[where])))
    return [rows[name] for name in targets]
