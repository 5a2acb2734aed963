"""Honest size accounting: quantized weights as the converter stores them + every other parameter at 32 bits.

A quantized weight costs what :func:`tfadvq.quant.cost.tensor_cost` says its
TFLite tensors cost (the support table, :mod:`tfadvq.quant.layer_rules`, gives
their shapes, channel axis and table layout): packed b-bit LUT indices plus
value tables for 1-7 bits -- *one table per tensor* for a per-tensor codebook
under float activations when no BatchNorm folds into the layer, *one per
output channel* for per-channel codebooks, folded BatchNorm (it scales each
channel) and per-channel int8 weights
(:meth:`~tfadvq.quant.layer_rules.LayerRule.table_axis`, the rule the
converter follows) -- and int8 for 8 bits (and, under int8 activations,
wherever a LUT would not be smaller than the int8 tensor).  Tables hold
float32 values under float activations and int8 under int8 activations.

"Other" parameters (biases, all BatchNorm parameters) count at 32 bits: at
export BN folds into the per-channel tables, and counting its parameters
keeps that cost inside the budget instead of hiding it.
``compression`` = FP32 size / size.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfadvq.compat import keras
from tfadvq.errors import QuantizationError
from tfadvq.quant import cost, layer_rules, spec
from tfadvq.quant.api import quantized_weights
from tfadvq.quant.records import QuantizedWeights

ACTIVATIONS = ("float32", "int8")


@dataclasses.dataclass
class SizeReport:
    """Bytes per model part; ``rows`` has one entry per weight (layer, weight, params, bits, bytes)."""

    rows: list[dict[str, Any]]

    @property
    def size_bytes(self) -> int:
        return int(sum(r["bytes"] for r in self.rows))

    @property
    def bits(self) -> int:
        return 8 * self.size_bytes

    @property
    def fp32_bytes(self) -> int:
        return int(sum(r["params"] for r in self.rows) * 4)

    @property
    def compression(self) -> float:
        return self.fp32_bytes / self.size_bytes


def weight_bytes(layer: keras.layers.Layer, attr: str, shape: Sequence[int], bits: int,
                 activations: str = "float32", *, per_channel: bool = False,
                 batchnorm_after: bool | None = None) -> int:
    """Bytes the converter stores for weight ``attr`` of ``layer`` (Keras ``shape``) at ``bits``.

    ``per_channel``: the weight has per-channel codebooks; ``batchnorm_after``:
    a BatchNormalization follows the layer (default: read from ``layer``'s
    graph, :func:`~tfadvq.quant.layer_rules.feeds_batchnorm`).  Together they
    decide one table per tensor or per channel (:meth:`~tfadvq.quant.layer_rules.LayerRule.table_axis`).
    """
    rule = layer_rules.rule_for(layer)
    layout = rule.tflite[rule.weights.index(attr)]
    folded = layer_rules.feeds_batchnorm(layer) if batchnorm_after is None else batchnorm_after
    axis = rule.table_axis(layout, bits, per_channel=per_channel, batchnorm_after=folded, activations=activations)
    group = rule.decode_group(layout)
    return sum(c.total for c in cost.weight_costs(layout.shapes(shape), bits, axis=axis, dtype=activations,
                                                   decode_group=group))


def _row(layer: str, weight: str, params: int, bits: int, nbytes: int) -> dict[str, Any]:
    return {"layer": layer, "weight": weight, "params": int(params), "bits": int(bits), "bytes": int(nbytes)}


def _float_rows(layer: keras.layers.Layer, skip: set[int]) -> list[dict[str, Any]]:
    return [_row(layer.name, v.name, np.prod(v.shape), 32, 4 * np.prod(v.shape))
            for v in layer.weights if id(v) not in skip]


def model_size(model: keras.Model | tuple[keras.Model, QuantizedWeights],
               bits: spec.BitsLike | None = None, *, activations: str | None = None) -> SizeReport:
    """Size of a wrapped model, a ``strip`` result ``(plain, QuantizedWeights)``, or a plain model.

    For a plain model, ``bits`` (as in :func:`tfadvq.quantize`) gives the size
    it *would* have once converted, without fitting anything; without ``bits``
    every parameter counts at 32 bits.  ``activations`` (``"float32"`` or
    ``"int8"``) is the conversion's activation type, which sets the table value
    type; default: int8 for a model wrapped with ``activation_bits=8``, else float32.
    A plain model is planned with per-tensor codebooks (:func:`tfadvq.quantize`'s default).
    """
    if isinstance(model, tuple):
        return _stripped_size(*model, _activations(activations, None))
    pairs = quantized_weights(model)
    if pairs:
        return _wrapped_size(model, pairs, activations)
    return _planned_size(model, bits, _activations(activations, None))


def _activations(activations: str | None, activation_bits: int | None) -> str:
    if activations is None:
        return "int8" if activation_bits == 8 else "float32"
    if activations not in ACTIVATIONS:
        raise QuantizationError(f"model_size: activations {activations!r}; accepted: {list(ACTIVATIONS)}")
    return activations


def _wrapped_size(model, pairs, activations: str | None) -> SizeReport:
    rows = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        mine = [q for wrapper, q in pairs if wrapper is layer]
        if mine:
            config = layer.quantize_config
            dtype = _activations(activations, config.activation_bits)
            folded = layer_rules.feeds_batchnorm(layer)
            rows += [_row(inner.name, q.source.name, np.prod(q.source.shape), q.bits,
                          weight_bytes(inner, attr, q.source.shape, q.bits, dtype, per_channel=q.per_channel,
                                       batchnorm_after=folded))
                     for attr, q in zip(config.weight_attrs, mine)]
        rows += _float_rows(inner, {id(q.source) for q in mine})
    return SizeReport(rows)


def _stripped_size(model: keras.Model, records: QuantizedWeights, activations: str) -> SizeReport:
    rows = []
    for layer in model.layers:
        mine = [t for t in records.tensors if t.layer == layer.name]
        if mine:
            attrs = {a.split(".")[-1]: a for a in layer_rules.rule_for(layer).weights}
            rows += [_row(t.layer, t.weight, np.prod(t.shape), t.bits,
                          weight_bytes(layer, attrs[t.weight], t.shape, t.bits, activations,
                                       per_channel=t.per_channel)) for t in mine]
        names = {t.weight for t in mine}
        rows += [r for r in _float_rows(layer, set()) if r["weight"].split(":")[0].split("/")[-1] not in names]
    return SizeReport(rows)


def _planned_size(model: keras.Model, bits, activations: str) -> SizeReport:
    plan = spec.resolve_weights(model, bits) if bits is not None else {}
    rows = []
    for layer in model.layers:
        quantized = {}
        rule = layer_rules.rule_for(layer)
        for attr in rule.weights if rule is not None else ():
            b = plan.get(spec.weight_key(layer, attr))
            if b is not None:
                v = layer_rules.get_attr(layer, attr)
                quantized[id(v)] = _row(layer.name, v.name, np.prod(v.shape), b,
                                        weight_bytes(layer, attr, v.shape, b, activations))
        rows += list(quantized.values()) + _float_rows(layer, set(quantized))
    return SizeReport(rows)
