"""Per-layer bit widths: resolution order layer name > layer class > default.

A spec is typed data round-tripped to YAML (``--bits-per-layer``)::

    default: 4          # every supported layer not named below (omit: keep float)
    classes: {Dense: 8}
    layers: {conv1: 8, fc: 6, block4_conv2: null}   # null keeps that layer float

The API also takes ``bits=4`` (same as ``default: 4``) or ``bits={layer: b}``
(only the named layers are quantized; the rest stay float -- this is how
progressive, group-by-group quantization is expressed).  Unknown layer or
class names, unsupported named layers and bits outside 1..8 raise: a typo
must not silently leave a layer float.  A layer whose configuration the
support table says cannot convert (:meth:`~tfadvq.quant.registry.LayerRule.refuses`)
raises when it would be quantized: nobody should fine-tune what cannot ship.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from tfadvq.compat import keras
from tfadvq.config import load_yaml
from tfadvq.errors import QuantizationError
from tfadvq.quant import kmeans1d, registry


@dataclasses.dataclass
class BitsSpec:
    """Bits per layer: ``layers`` (by name) over ``classes`` over ``default``; None = float."""

    default: int | None = None
    classes: dict[str, int | None] = dataclasses.field(default_factory=dict)
    layers: dict[str, int | None] = dataclasses.field(default_factory=dict)


BitsLike = int | Mapping[str, "int | None"] | BitsSpec


def load_spec(path: str | Path) -> BitsSpec:
    """Read a ``--bits-per-layer`` YAML file (unknown keys raise, naming the file)."""
    return load_yaml(BitsSpec, path)


def as_spec(bits: BitsLike) -> BitsSpec:
    """``int`` -> default; mapping -> per-layer; spec -> itself."""
    if isinstance(bits, BitsSpec):
        return bits
    if isinstance(bits, Mapping):
        return BitsSpec(layers=dict(bits))
    return BitsSpec(default=kmeans1d.check_bits(bits, "bits"))


def resolve(model: keras.Model, bits: BitsLike) -> dict[str, int | None]:
    """Bits (or None = float) for every layer of ``model`` that holds weights, by layer name."""
    spec = as_spec(bits)
    _check(model, spec)
    resolved: dict[str, int | None] = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        if registry.rule_for(layer) is None:
            resolved[layer.name] = None
            continue
        cls = type(layer).__name__
        if layer.name in spec.layers:
            resolved[layer.name] = spec.layers[layer.name]
        elif cls in spec.classes:
            resolved[layer.name] = spec.classes[cls]
        else:
            resolved[layer.name] = spec.default
        refusal = registry.rule_for(layer).refuses(layer)
        if resolved[layer.name] is not None and refusal:
            raise QuantizationError(f"bits: layer {layer.name!r} cannot be converted once quantized: {refusal}; "
                                    f"keep it float ({{{layer.name!r}: None}}) or change its configuration")
    return resolved


def _check(model: keras.Model, spec: BitsSpec) -> None:
    by_name = {layer.name: layer for layer in model.layers}
    supported = registry.supported_class_names()
    if spec.default is not None:
        kmeans1d.check_bits(spec.default, "bits default")
    for name, b in spec.layers.items():
        if name not in by_name:
            raise QuantizationError(f"bits: unknown layer name {name!r}; layers with weights: "
                                    f"{sorted(n for n, l in by_name.items() if l.weights)}")
        layer = by_name[name]
        if b is not None and registry.rule_for(layer) is None:
            raise QuantizationError(f"bits: layer {name!r} ({type(layer).__name__}) cannot be quantized; "
                                    f"supported classes: {supported}")
        if b is not None:
            kmeans1d.check_bits(b, f"bits[{name!r}]")
    for cls, b in spec.classes.items():
        if cls not in supported:
            raise QuantizationError(f"bits: class {cls!r} cannot be quantized; supported classes: {supported}")
        if b is not None:
            kmeans1d.check_bits(b, f"bits classes[{cls!r}]")
