"""Honest size accounting: b-bit indices + 32-bit value tables + every other parameter at 32 bits.

``size = Σ_quantized (n·b + table_entries·32) + Σ_other params·32`` bits, and
compression = FP32 size / size.  "Other" includes biases and all BatchNorm
parameters (gamma, beta, moving mean and variance): at export BN folds into
per-channel tables, and counting its parameters at 32 bits keeps that cost
inside the budget instead of hiding it.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tfadvq.compat import keras
from tfadvq.quant import registry, spec
from tfadvq.quant import quantizers as qz
from tfadvq.quant.api import quantized_weights
from tfadvq.quant.records import QuantizedWeights


@dataclasses.dataclass
class SizeReport:
    """Bits per model part; ``rows`` has one entry per weight (layer, weight, params, bits, table)."""

    rows: list[dict[str, Any]]

    @property
    def bits(self) -> int:
        return int(sum(r["params"] * r["bits"] + r["table_entries"] * 32 for r in self.rows))

    @property
    def size_bytes(self) -> float:
        return self.bits / 8

    @property
    def fp32_bytes(self) -> int:
        return int(sum(r["params"] for r in self.rows) * 4)

    @property
    def compression(self) -> float:
        return self.fp32_bytes / self.size_bytes


def _row(layer: str, weight: str, params: int, bits: int, table_entries: int = 0) -> dict[str, Any]:
    return {"layer": layer, "weight": weight, "params": int(params), "bits": int(bits),
            "table_entries": int(table_entries)}


def _float_rows(layer: keras.layers.Layer, skip: set[int]) -> list[dict[str, Any]]:
    return [_row(layer.name, v.name, np.prod(v.shape), 32) for v in layer.weights if id(v) not in skip]


def model_size(model: keras.Model | tuple[keras.Model, QuantizedWeights],
               bits: spec.BitsLike | None = None, *, per_channel: bool = False) -> SizeReport:
    """Size of a wrapped model, a ``strip`` result ``(plain, QuantizedWeights)``, or a plain model.

    For a plain model, ``bits`` (as in :func:`tfadvq.quantize`) gives the size
    it *would* have with k-means tables, without fitting anything; without
    ``bits`` every parameter counts at 32 bits.
    """
    if isinstance(model, tuple):
        return _stripped_size(*model)
    pairs = quantized_weights(model)
    if pairs:
        return _wrapped_size(model, pairs)
    return _planned_size(model, bits, per_channel)


def _wrapped_size(model, pairs) -> SizeReport:
    rows = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        mine = [q for wrapper, q in pairs if wrapper is layer]
        rows += [_row(inner.name, q.source.name, np.prod(q.source.shape), q.bits,
                      q.table_entries(q.source.shape)) for q in mine]
        rows += _float_rows(inner, {id(q.source) for q in mine})
    return SizeReport(rows)


def _stripped_size(model: keras.Model, records: QuantizedWeights) -> SizeReport:
    rows = []
    for layer in model.layers:
        mine = [t for t in records.tensors if t.layer == layer.name]
        names = {t.weight for t in mine}
        rows += [_row(t.layer, t.weight, np.prod(t.shape), t.bits, t.codebook.size) for t in mine]
        rows += [r for r in _float_rows(layer, set()) if r["weight"].split(":")[0].split("/")[-1] not in names]
    return SizeReport(rows)


def _planned_size(model: keras.Model, bits, per_channel: bool) -> SizeReport:
    plan = spec.resolve(model, bits) if bits is not None else {}
    rows = []
    for layer in model.layers:
        b = plan.get(layer.name)
        rule = registry.rule_for(layer)
        quantized = {}
        if b is not None:
            for attr in rule.weights:
                v = registry.get_attr(layer, attr)
                table = qz.KMeansQuantizer(b, per_channel, rule.channel_dims).table_entries(v.shape)
                quantized[id(v)] = _row(layer.name, v.name, np.prod(v.shape), b, table)
        rows += list(quantized.values()) + _float_rows(layer, set(quantized))
    return SizeReport(rows)
