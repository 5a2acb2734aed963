"""Bit widths per weight tensor: resolution order weight > layer name > layer class > default.

A spec is typed data round-tripped to YAML (``--bits-per-layer``)::

    default: 4          # every supported layer not named below (omit: keep float)
    classes: {Dense: 8}
    layers: {conv1: 8, fc: 6, block4_conv2: null}   # null keeps that layer float
    weights: {lstm/kernel: 6, lstm/recurrent_kernel: 3}   # one weight of a layer
    per_channel: {conv1/kernel: true, fc/kernel: false}     # value tables per output channel

``weights`` keys are the project's weight keys ``"<layer>/<weight short
name>"`` (``QuantizedTensor.layer`` / ``.weight``), so the two kernels of an
LSTM (or any layer with several quantized weights) take their own bits, and
one can stay float (``null``) while the other is quantized.

``per_channel`` (weight keys) says, per quantized weight, whether it gets one
codebook per output channel (``true``) or one for the tensor (``false``):
what a mixed-precision allocation that chose the granularity per tensor
writes (:mod:`tfadvq.quant.allocate`).  It is more specific than the
``per_channel=`` argument of :func:`tfadvq.quantize`, which decides the
weights not named here.  Files without it (every file written before it
existed) load as before: every weight follows that argument.  A key that is
not a weight key of a quantizable layer, or names a weight the spec keeps
float, raises.

The API also takes ``bits=4`` (same as ``default: 4``) or ``bits={name: b}``
(``name`` a layer, or a ``"layer/weight"`` key; only the named ones are
quantized, the rest stay float -- this is how progressive, group-by-group
quantization is expressed; :func:`tfadvq.quant.api.quantize` logs a warning
naming what a spec without ``default`` leaves float).  Unknown layer, weight
or class names, unsupported named layers and bits outside 1..8 raise: a typo
must not silently leave a layer float.  A layer whose configuration the
support table says cannot convert (:meth:`~tfadvq.quant.layer_rules.LayerRule.refuses`)
raises when it would be quantized: nobody should fine-tune what cannot ship.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tfadvq.compat import keras
from tfadvq.config import load_yaml
from tfadvq.errors import QuantizationError
from tfadvq.quant import kmeans1d, layer_rules
from tfadvq.quant.bits import check_bits

log = logging.getLogger(__name__)

@dataclasses.dataclass
class BitsSpec:
    """Bits per weight: ``weights`` (``"layer/weight"``) over ``layers`` over ``classes`` over ``default``.

    None = float.  ``per_channel`` (weight keys): per-channel (true) or per-tensor (false) value tables of
    that weight (module doc).
    """

    default: int | None = None
    classes: dict[str, int | None] = dataclasses.field(default_factory=dict)
    layers: dict[str, int | None] = dataclasses.field(default_factory=dict)
    weights: dict[str, int | None] = dataclasses.field(default_factory=dict)
    per_channel: dict[str, bool] = dataclasses.field(default_factory=dict)


BitsLike = int | Mapping[str, "int | None"] | BitsSpec


def load_spec(path: str | Path) -> BitsSpec:
    """Read a bits YAML file (``--bits-per-layer``, ``tfadvq convert --bits``; unknown keys raise, naming the file).

    The one bits-file format.  A JSON ``{"layer": bits}`` file (what ``tfadvq
    convert --bits`` once read) is refused with the YAML that says the same.
    """
    _refuse_layer_json(Path(path))
    return load_yaml(BitsSpec, path)


def _refuse_layer_json(path: Path) -> None:
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return  # not JSON: load_yaml reads it (or says why not)
    fields = {f.name for f in dataclasses.fields(BitsSpec)}
    if isinstance(data, dict) and not set(data) <= fields:
        layers = ", ".join(f"{k}: {'null' if v is None else v}" for k, v in data.items())
        raise QuantizationError(f"{path}: a JSON {{layer: bits}} file is no longer read; bits files are "
                                f"BitsSpec YAML (keys {sorted(fields)}), here: `layers: {{{layers}}}`")


def as_spec(bits: BitsLike) -> BitsSpec:
    """``int`` -> default; mapping -> per-layer (``"layer/weight"`` keys: per weight); spec -> itself."""
    if isinstance(bits, BitsSpec):
        return bits
    if isinstance(bits, Mapping):
        return BitsSpec(layers={k: b for k, b in bits.items() if "/" not in k},
                        weights={k: b for k, b in bits.items() if "/" in k})
    return BitsSpec(default=check_bits(bits, "bits"))


def higher_precision_ends(model: keras.Model, bits: int = 1, end_bits: int = 8) -> BitsSpec:
    """A :class:`BitsSpec`: ``bits`` everywhere but the first and last quantizable layers.

    In a speaker encoder those are the first convolution (a few hundred
    weights seeing the raw filterbank) and the embedding layer; binary
    networks commonly keep both at higher precision.  Combine with
    ``binary=``: the ``bits``-wide layers get the binary quantizer, the ends
    the regular one (k-means; 8 bits are stored as int8).
    """
    names = [layer.name for layer in model.layers if layer_rules.rule_for(layer) is not None]
    if len(names) < 3:
        raise QuantizationError(f"higher_precision_ends: model {model.name!r} has {len(names)} quantizable "
                                f"layer(s) {names}; it needs a first, a last and something between")
    return BitsSpec(default=bits, layers={names[0]: end_bits, names[-1]: end_bits})


def weight_key(layer: keras.layers.Layer, attr: str) -> str:
    """The project's weight key ``"<layer>/<short name>"`` of the rule attribute ``attr``."""
    return f"{layer.name}/{attr.split('.')[-1]}"


def resolve_weights(model: keras.Model, bits: BitsLike) -> dict[str, int | None]:
    """Bits (or None = float) of every weight the support table would quantize, by weight key.

    Keys are in layer order, then in the rule's weight order; layers that
    cannot be quantized have no key (they are float whatever the spec says).
    """
    spec = as_spec(bits)
    layers = resolve(model, spec)
    out: dict[str, int | None] = {}
    for layer in model.layers:
        rule = layer_rules.rule_for(layer)
        if rule is None:
            continue
        for attr in rule.weights:
            key = weight_key(layer, attr)
            out[key] = spec.weights[key] if key in spec.weights else layers[layer.name]
            if out[key] is not None and rule.refuses(layer):
                raise QuantizationError(f"bits: weight {key!r} cannot be converted once quantized: "
                                        f"{rule.refuses(layer)}; keep it float ({{{key!r}: None}})")
    return out


def resolve_per_channel(model: keras.Model, bits: BitsLike) -> dict[str, bool]:
    """The granularity the spec fixes (``per_channel``), by weight key; a key the spec keeps float raises."""
    spec = as_spec(bits)
    if not spec.per_channel:
        return {}
    plan = resolve_weights(model, spec)
    floats = sorted(k for k in spec.per_channel if plan.get(k) is None)
    if floats:
        raise QuantizationError(f"bits per_channel: {floats} name weights this spec keeps float; give them bits "
                                "or remove them from per_channel")
    return dict(spec.per_channel)


def implicitly_float(model: keras.Model, bits: BitsLike) -> list[str]:
    """Weight keys a spec without ``default`` leaves float without naming them (``None``).

    What :func:`tfadvq.quant.api.quantize` warns about: a ``{layer: bits}``
    mapping quantizes only what it names, which is easy to forget.
    """
    spec = as_spec(bits)
    if spec.default is not None:
        return []
    named_float = ({k for k, b in spec.weights.items() if b is None}
                   | {n for n, b in spec.layers.items() if b is None})
    by_class = {c for c, b in spec.classes.items() if b is None}
    return [key for key, b in resolve_weights(model, spec).items()
            if b is None and key not in named_float and key.rsplit("/", 1)[0] not in named_float
            and type(model.get_layer(key.rsplit("/", 1)[0])).__name__ not in by_class]


def resolve(model: keras.Model, bits: BitsLike) -> dict[str, int | None]:
    """Bits (or None = float) for every layer of ``model`` that holds weights, by layer name."""
    spec = as_spec(bits)
    _check(model, spec)
    resolved: dict[str, int | None] = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer_rules.rule_for(layer) is None:
            resolved[layer.name] = None
            continue
        cls = type(layer).__name__
        if layer.name in spec.layers:
            resolved[layer.name] = spec.layers[layer.name]
        elif cls in spec.classes:
            resolved[layer.name] = spec.classes[cls]
        else:
            resolved[layer.name] = spec.default
        refusal = layer_rules.rule_for(layer).refuses(layer)
        overridden = [k for k in spec.weights if k.rsplit("/", 1)[0] == layer.name]
        if resolved[layer.name] is not None and refusal and not overridden:
            raise QuantizationError(f"bits: layer {layer.name!r} cannot be converted once quantized: {refusal}; "
                                    f"keep it float ({{{layer.name!r}: None}}) or change its configuration")
    return resolved


def _check(model: keras.Model, spec: BitsSpec) -> None:
    by_name = {layer.name: layer for layer in model.layers}
    supported = layer_rules.supported_class_names()
    if spec.default is not None:
        check_bits(spec.default, "bits default")
    for name, b in spec.layers.items():
        if name not in by_name:
            raise QuantizationError(f"bits: unknown layer name {name!r}; layers with weights: "
                                    f"{sorted(n for n, l in by_name.items() if l.weights)}")
        layer = by_name[name]
        if b is not None and layer_rules.rule_for(layer) is None:
            raise QuantizationError(f"bits: layer {name!r} ({type(layer).__name__}) cannot be quantized; "
                                    f"supported classes: {supported}")
        if b is not None:
            check_bits(b, f"bits[{name!r}]")
    for key, b in spec.weights.items():
        _check_weight_key(model, by_name, key, "bits")
        if b is not None:
            check_bits(b, f"bits weights[{key!r}]")
    for key, pc in spec.per_channel.items():
        _check_weight_key(model, by_name, key, "bits per_channel")
        if not isinstance(pc, bool):
            raise QuantizationError(f"bits per_channel[{key!r}]: {pc!r}; accepted: true (a value table per "
                                    "output channel) or false (one for the tensor)")
    for cls, b in spec.classes.items():
        if cls not in supported:
            raise QuantizationError(f"bits: class {cls!r} cannot be quantized; supported classes: {supported}")
        if b is not None:
            check_bits(b, f"bits classes[{cls!r}]")


def _check_weight_key(model: keras.Model, by_name: Mapping[str, keras.layers.Layer], key: str, where: str) -> None:
    layer = by_name.get(key.rsplit("/", 1)[0]) if "/" in key else None
    rule = layer_rules.rule_for(layer) if layer is not None else None
    keys = [weight_key(layer, a) for a in rule.weights] if rule is not None else []
    if key not in keys:
        known = [weight_key(l, a) for l in model.layers if (r := layer_rules.rule_for(l)) for a in r.weights]
        raise QuantizationError(f"{where}: unknown weight key {key!r}; accepted: \"<layer>/<weight>\" "
                                f"of a quantizable layer: {known}")


# Values the k-means fits of :func:`table_report` see (a seeded subsample; errors are summed over all values).
ESTIMATE_SAMPLE = 1 << 16


def _subsample(n: int) -> np.ndarray | slice:
    if n <= ESTIMATE_SAMPLE:
        return slice(None)
    return np.sort(np.random.default_rng(0).choice(n, ESTIMATE_SAMPLE, replace=False))


def _kmeans_error(values: np.ndarray, k: int, f: np.ndarray | None, key: str) -> float:
    """Squared error over all ``values`` of a k-means codebook fitted on a subsample (weights ``f``)."""
    pick = _subsample(values.size)
    book = kmeans1d.fit(values[pick], k, name=key, weights=None if f is None else f[pick])
    return kmeans1d.squared_error(values, book, f)


def _channel_error(rows: np.ndarray, k: int, f_rows: np.ndarray | None, key: str) -> float:
    """Squared error of per-channel codebooks, estimated from above (seconds at any width).

    Fitting ``k`` centroids for every channel (256 at 8 bits) took minutes on
    a 1 M-weight encoder.  Instead each channel is standardised, ``z = (w -
    mu_c) / sigma_c``, one codebook is fitted to the pooled ``z`` (weighted by
    ``f sigma_c^2``, so it minimises the error in ``w`` units), and channel c
    uses its rescaled copy ``mu_c + sigma_c * book``.  That is a per-channel
    codebook, so the error is achievable: an upper bound on per-channel
    k-means, exact in what per-channel tables mostly buy (channels of
    different scale and offset), blind to channels of different shape.
    Channels of at most ``k`` weights are lossless.
    """
    if rows.shape[1] <= k:
        return 0.0
    mu = rows.mean(axis=1, keepdims=True)
    sigma = rows.std(axis=1, keepdims=True)
    sigma[sigma == 0] = 1.0
    z = ((rows - mu) / sigma).ravel()
    scale = np.broadcast_to(sigma**2, rows.shape).ravel()
    f = scale if f_rows is None else f_rows.ravel() * scale
    return _kmeans_error(z, k, f, key)


def table_report(model: keras.Model, targets: Mapping[str, int], *, activations: str = "float32",
                 importances: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per quantized weight: what per-channel codebooks cost in bytes against the error they remove.

    ``targets``: weight key -> bits (as :func:`resolve_weights`, without the
    float ones).  Bytes come from the one cost model
    (:func:`tfadvq.quant.cost.tensor_cost` over the support table's TFLite
    layouts and :meth:`~tfadvq.quant.layer_rules.LayerRule.table_axis`):
    ``bytes_per_tensor`` / ``bytes_per_channel`` with either codebook.  A
    per-tensor codebook under float activations is written as one table when
    no BatchNorm folds into the layer, so per-channel codebooks there cost
    ``extra_bytes`` (a table per channel); after folded BatchNorm, or under int8
    activations, the tables are per channel either way and cost nothing extra.
    Errors are (importance-weighted) squared errors: per tensor, of a k-means
    codebook; per channel, the upper-bound estimate of :func:`_channel_error`
    (both fitted on at most :data:`ESTIMATE_SAMPLE` values, summed over all).

    ``pays`` (the choice of :func:`choose_per_channel`): per-channel removes
    the fraction ``1 - e_channel / e_tensor`` of the error for ``extra_bytes``;
    one more index bit on the tensor removes about 3/4 of it (high-resolution
    quantization: each bit quarters the error) for ``n / 8`` bytes.  Per
    channel pays when it removes more error per byte than that, i.e.
    ``(1 - e_c / e_t) > 6 * extra_bytes / n`` (any gain when it costs nothing).
    Where the converter stores the weight per tensor (LSTM under int8
    activations) per-channel codebooks cannot be stored at all.
    ``tables_outgrow_weights`` flags tensors whose chosen tables are larger
    than their packed indices (e.g. a 3x3 depthwise kernel after BatchNorm
    folding, 9 weights per channel), whatever the codebook.
    """
    from tfadvq.quant import cost

    importances = importances or {}
    rows = []
    for key, bits in targets.items():
        layer_name, short = key.rsplit("/", 1)
        layer = model.get_layer(layer_name)
        rule = layer_rules.rule_for(layer)
        attr = next(a for a in rule.weights if a.split(".")[-1] == short)
        layout = rule.tflite[rule.weights.index(attr)]
        w = np.asarray(layer_rules.get_attr(layer, attr).numpy(), dtype=np.float64)
        f = None if importances.get(key) is None else np.asarray(importances[key], dtype=np.float64)
        folded = layer_rules.feeds_batchnorm(layer)

        def parts(per_channel: bool) -> list[cost.TensorCost]:
            axis = rule.table_axis(layout, bits, per_channel=per_channel, batchnorm_after=folded,
                                   activations=activations)
            return cost.weight_costs(layout.shapes(w.shape), bits, axis=axis, dtype=activations,
                                     decode_group=rule.decode_group(layout))

        per_tensor_only = activations == "int8" and layout.int8_per_tensor
        k = 2 ** bits
        err_tensor = _kmeans_error(w.ravel(), k, None if f is None else f.ravel(), key)
        err_channel = None
        if not per_tensor_only:
            channels = int(np.prod(w.shape[w.ndim - rule.channel_dims:]))
            err_channel = _channel_error(w.reshape(-1, channels).T, k,
                                         None if f is None else f.reshape(-1, channels).T, key)
        tensor_parts, channel_parts = parts(False), parts(True)
        extra = sum(p.total for p in channel_parts) - sum(p.total for p in tensor_parts)
        removed = 0.0 if err_channel is None or err_tensor <= 0 else 1 - err_channel / err_tensor
        pays = removed > 0 and removed > 6 * max(extra, 0) / w.size
        chosen = channel_parts if pays else tensor_parts
        data, tables = sum(p.data for p in chosen), sum(p.tables for p in chosen)
        rows.append({"weight": key, "bits": bits, "params": int(w.size), "data_bytes": data,
                     "table_bytes": tables, "bytes": sum(p.total for p in chosen),
                     "bytes_per_tensor": sum(p.total for p in tensor_parts),
                     "bytes_per_channel": sum(p.total for p in channel_parts), "extra_bytes": extra,
                     "sq_error_per_tensor": err_tensor, "sq_error_per_channel": err_channel,
                     "pays": pays, "tables_outgrow_weights": tables > data})
    return rows


def choose_per_channel(model: keras.Model, targets: Mapping[str, int], *, activation_bits: int | None = None,
                       importances: Mapping[str, Any] | None = None, quantizer: Any = "kmeans") -> dict[str, bool]:
    """``per_channel="auto"``: per weight key, per-channel codebooks only where :func:`table_report` says they pay.

    Logs the choice with the bytes it adds, and a WARNING for every tensor
    whose value tables outgrow its packed indices (fewer bits shrink those
    tables; keeping the weight float or int8 may be smaller).  A quantizer
    other than k-means keeps one table per tensor (its tables are not fitted).
    """
    if quantizer != "kmeans":
        return dict.fromkeys(targets, False)
    report = table_report(model, targets, activations="int8" if activation_bits == 8 else "float32",
                          importances=importances)
    for row in report:
        if row["tables_outgrow_weights"]:
            log.warning("%s: %d-bit value tables (%d bytes) outgrow the weight's packed indices (%d bytes)",
                        row["weight"], row["bits"], row["table_bytes"], row["data_bytes"])
    chosen = [r for r in report if r["pays"]]
    log.info("per_channel=auto: per channel for %s (+%d bytes of tables)",
             ", ".join(r["weight"] for r in chosen) or "none", sum(max(r["extra_bytes"], 0) for r in chosen))
    return {row["weight"]: row["pays"] for row in report}
