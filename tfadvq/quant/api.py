"""Public quantization API: ``quantize`` (QAT), ``ptq``, ``strip``, ``summary``, the quantizers' ``custom_objects``.

BatchNorm is kept float during QAT (the quantized weight is the conv kernel
*before* BN).  At export the converter folds BN's per-channel scale into the
conv, so a per-tensor codebook of 2^b values becomes a per-output-channel
table of 2^b values each: every channel still holds <= 2^b distinct values
and b-bit indices stay valid.  Without BatchNorm after it, a per-tensor
codebook stays one table for the whole tensor (float activations);
:func:`tfadvq.quant.size.model_size` counts the tables the converter writes.

The wrapped model is a normal tfmot QAT model (``QuantizeWrapperV2`` with
:class:`~tfadvq.quant.layer_rules.WeightQuantizeConfig`), built with a scheme
that applies no layout transforms, so nothing but the named layers changes.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow_model_optimization as tfmot

from tfadvq.compat import keras
from tfadvq.errors import QuantizationError
from tfadvq.quant import catalog, kmeans1d, layer_rules, spec
from tfadvq.quant import quantizers as qz
from tfadvq.quant.binary import quantizer_spec as binary_spec
from tfadvq.quant.records import QuantizedTensor, QuantizedWeights

log = logging.getLogger(__name__)
_tfq = tfmot.quantization.keras


class _KeepLayout(_tfq.QuantizeLayoutTransform):
    """No graph rewrites: BN stays a separate float layer, nothing else is touched."""

    def apply(self, model, layer_quantize_map):
        return model, layer_quantize_map


class _NothingByDefault(_tfq.QuantizeRegistry):
    """Only explicitly annotated layers are quantized (no implicit output quantizers)."""

    def get_quantize_config(self, layer):
        return None

    def supports(self, layer):
        return False


class _Scheme(_tfq.QuantizeScheme):
    def get_layout_transformer(self):
        return _KeepLayout()

    def get_quantize_registry(self):
        return _NothingByDefault()


def custom_objects() -> dict[str, Any]:
    """Objects to load a saved quantized model: ``with quantize_scope(custom_objects()): load``."""
    return {**catalog.custom_objects(),
            "WeightQuantizeConfig": layer_rules.WeightQuantizeConfig}


def quantize(model: keras.Model, bits: spec.BitsLike = 4, *, per_channel: PerChannel = False,
             quantizer: str | dict = "kmeans", binary: str | dict | None = None,
             activation_bits: int | None = None, importances: Mapping[str, np.ndarray] | None = None, progress: bool = True) -> keras.Model:
    """Wrap ``model`` for quantization-aware training with per-weight value-table quantizers.

    ``bits``: an int for every supported layer, ``{name: b}`` for the named
    layers (or ``"layer/weight"`` keys) only, or a
    :class:`~tfadvq.quant.spec.BitsSpec`.  Codebooks are fitted on the current
    (pre-trained) weights while wrapping.  ``per_channel``: one codebook per
    output channel for every weight (True), per weight key
    (``{"lstm/kernel": True}``, others per tensor), or ``"auto"``: per channel
    where the cost model says the tables pay (:func:`tfadvq.quant.spec.choose_per_channel`);
    a spec's own ``per_channel`` entries (a mixed-precision allocation's choice) decide the weights they name.
    ``importances`` (weight key -> array of the weight's shape, >= 0, e.g. a
    diagonal Fisher from :func:`tfadvq.quant.sensitivity.fisher_diagonal`) make
    each k-means fit minimise Σ f (w - c(w))² (sensitivity-weighted k-means,
    SqueezeLLM, Kim et al. 2023); the quantizers keep them for the refits of
    :class:`~tfadvq.quant.codebook_refresh.CodebookRefresh`.  ``binary``
    (``"static"`` or ``"adaptive"``, :mod:`tfadvq.quant.binary`) is the
    quantizer of every weight at 1 bit, ``quantizer`` that of the others.  Weights that stay
    float are logged (a WARNING when a spec without ``default`` leaves some
    float unnamed) and listed by :func:`summary`.  Example::

        qat = tfadvq.quantize(model, bits={"conv1": 8, "fc": 4})
        qat.compile(...); qat.fit(..., callbacks=[CodebookRefresh(every_n_steps=100)])
    """
    if activation_bits is not None and activation_bits != 8:
        raise QuantizationError(f"activation_bits: {activation_bits!r}; accepted: None (float) or 8")
    plan = spec.resolve_weights(model, bits)
    targets = {key: b for key, b in plan.items() if b is not None}
    if not targets:
        raise QuantizationError(f"bits: no layer of model {model.name!r} would be quantized; "
                                f"supported classes: {layer_rules.supported_class_names()}")
    _check_importances(model, importances or {}, plan)
    one_bit = binary_spec(binary)
    if one_bit is not None and 1 not in targets.values():
        raise QuantizationError(f"binary={binary!r}: no weight is quantized at 1 bit; give bits=1 or a "
                                "bits spec with 1-bit layers")
    channels = _per_channel_plan(model, targets, per_channel, quantizer, activation_bits, importances,
                                 spec.resolve_per_channel(model, bits))
    if activation_bits is not None:
        _check_int8_conversion(model, targets, channels)
    unnamed = spec.implicitly_float(model, bits)
    if unnamed:
        log.warning("bits spec has no default: %d weight(s) stay float: %s (give 'default' or name them "
                    "with null to silence this)", len(unnamed), ", ".join(unnamed))
    kept = [key for key in plan if key not in targets and key not in unnamed]
    if kept:
        log.info("kept float: %s", ", ".join(kept))
    layers = {key.rsplit("/", 1)[0] for key in targets}

    def annotate(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name not in layers:
            return layer
        rule = layer_rules.rule_for(layer)
        attrs = [a for a in rule.weights if spec.weight_key(layer, a) in targets]
        made = [catalog.get(one_bit if one_bit and targets[spec.weight_key(layer, a)] == 1 else quantizer,
                       bits=targets[spec.weight_key(layer, a)],
                       per_channel=channels[spec.weight_key(layer, a)], channel_dims=rule.channel_dims)
                for a in attrs]
        return _tfq.quantize_annotate_layer(layer, layer_rules.WeightQuantizeConfig(attrs, made, activation_bits))

    with _tfq.quantize_scope(custom_objects()), qz.build_progress(len(targets), progress), \
            qz.importance_scope(importances):
        annotated = keras.models.clone_model(model, clone_function=annotate)
        return _tfq.quantize_apply(annotated, scheme=_Scheme())


PerChannel = bool | str | Mapping[str, bool]


def _per_channel_plan(model: keras.Model, targets: dict[str, int], per_channel: PerChannel,
                      quantizer: str | dict, activation_bits: int | None,
                      importances: Mapping[str, np.ndarray] | None, fixed: Mapping[str, bool]) -> dict[str, bool]:
    """Per-channel codebooks (True) or one per tensor, for every quantized weight key.

    ``fixed``: what the bits spec says per weight (:attr:`~tfadvq.quant.spec.BitsSpec.per_channel`),
    more specific than ``per_channel``, which decides the rest; a mapping that contradicts it raises.
    """
    rest = {key: b for key, b in targets.items() if key not in fixed}
    if isinstance(per_channel, bool):
        return {**dict.fromkeys(rest, per_channel), **fixed}
    if isinstance(per_channel, Mapping):
        unknown = sorted(set(per_channel) - set(targets))
        if unknown:
            raise QuantizationError(f"per_channel: {unknown} are not quantized weight keys; "
                                    f"accepted: {sorted(targets)}")
        clash = sorted(k for k, v in per_channel.items() if k in fixed and bool(v) != fixed[k])
        if clash:
            raise QuantizationError(f"per_channel: {clash} contradict the bits spec's per_channel "
                                    f"({ {k: fixed[k] for k in clash} }); name each weight in one of them")
        return {**{key: bool(per_channel.get(key, False)) for key in rest}, **fixed}
    if per_channel == "auto":
        chosen = spec.choose_per_channel(model, rest, activation_bits=activation_bits,
                                         importances=importances, quantizer=quantizer) if rest else {}
        return {**chosen, **fixed}
    raise QuantizationError(f"per_channel: {per_channel!r}; accepted: True, False, 'auto' or "
                            "{'layer/weight': bool}")


def _check_importances(model: keras.Model, importances: Mapping[str, np.ndarray],
                       plan: dict[str, int | None]) -> None:
    """Importance keys must name quantizable weights, and arrays must have the weight's shape."""
    for key, f in importances.items():
        if key not in plan:
            raise QuantizationError(f"importances: {key!r} is not a quantizable weight key; accepted: "
                                    f"{sorted(plan)}")
        layer_name, short = key.rsplit("/", 1)
        layer = model.get_layer(layer_name)
        attr = next(a for a in layer_rules.rule_for(layer).weights if a.split(".")[-1] == short)
        shape = tuple(layer_rules.get_attr(layer, attr).shape)
        if np.shape(f) != shape:
            raise QuantizationError(f"importances[{key!r}]: shape {np.shape(f)}; accepted: the weight's "
                                    f"shape {shape}")


def set_importances(model: keras.Model, importances: Mapping[str, np.ndarray] | None) -> None:
    """Give the k-means quantizers of a wrapped ``model`` their importances (e.g. after :func:`load_model`,
    which does not save them), so later refits stay weighted; ``None`` makes them unweighted."""
    pairs = {f"{w.layer.name}/{_short(q.source.name)}": q for w, q in quantized_weights(model)}
    unknown = sorted(set(importances or {}) - set(pairs))
    if unknown:
        raise QuantizationError(f"importances: {unknown} are not quantized weights of {model.name!r}; "
                                f"accepted: {sorted(pairs)}")
    for key, q in pairs.items():
        if isinstance(q, qz.KMeansQuantizer):
            q.set_importances(None if importances is None else importances.get(key), key)


def _check_int8_conversion(model: keras.Model, targets: dict[str, int], per_channel: dict[str, bool]) -> None:
    """Refuse, before any fitting or training, layers the support table cannot convert to int8 activations."""
    for name in dict.fromkeys(key.rsplit("/", 1)[0] for key in targets):
        layer = model.get_layer(name)
        rule = layer_rules.rule_for(layer)
        if rule.int8_refusal:
            raise QuantizationError(f"layer {name!r}: activation_bits=8 cannot be converted: {rule.int8_refusal}")
        if any(per_channel.get(spec.weight_key(layer, a)) and layout.int8_per_tensor
               for a, layout in zip(rule.weights, rule.tflite)):
            raise QuantizationError(
                f"layer {name!r} ({type(layer).__name__}): with activation_bits=8 the TFLite converter "
                "quantizes its weights per tensor, so per-channel codebooks cannot be stored as value "
                "tables; quantize it with per_channel=False (or keep float activations)")


def ptq(model: keras.Model, bits: spec.BitsLike = 4, **kwargs) -> keras.Model:
    """Post-training quantization: the :func:`quantize` model, codebooks fitted, no training.

    Evaluate it directly, or :func:`strip` it for conversion.
    """
    return quantize(model, bits, **kwargs)


def quantized_weights(model: keras.Model) -> list[tuple[keras.layers.Layer, qz.TableQuantizer]]:
    """``(wrapper, quantizer)`` for every quantized weight of a wrapped model, in layer order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, _tfq.QuantizeWrapper) and isinstance(layer.quantize_config,
                                                                  layer_rules.WeightQuantizeConfig):
            found.extend((layer, q) for q in layer.quantize_config.quantizers)
    return found


def _quantize_tensor(wrapper, quantizer: qz.TableQuantizer) -> QuantizedTensor:
    w = quantizer.source.numpy()
    table = np.asarray(quantizer.value_table(w), dtype=np.float32)
    if quantizer.per_channel:
        channels = table.shape[0]
        indices = kmeans1d.assign_rows(w.reshape(-1, channels).T, table).T.reshape(w.shape)
    else:
        indices = kmeans1d.assign(w, table)
    return QuantizedTensor(layer=wrapper.layer.name, weight=_short(quantizer.source.name),
                           bits=quantizer.bits, per_channel=quantizer.per_channel,
                           channel_dims=quantizer.channel_dims, codebook=table, indices=indices)


def strip(model: keras.Model) -> tuple[keras.Model, QuantizedWeights]:
    """Plain Keras model with centroid-valued weights, plus the per-layer tables and indices.

    The inverse of :func:`quantize`: wrappers are replaced by fresh copies of
    their layers (original names), every quantized weight is set to exactly
    ``codebook[indices]`` and every other weight is copied unchanged.
    """
    pairs = quantized_weights(model)
    if not pairs:
        raise QuantizationError(f"strip: model {model.name!r} has no tfadvq-quantized layers")
    records = [_quantize_tensor(w, q) for w, q in pairs]

    def unwrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        inner = layer.layer if isinstance(layer, _tfq.QuantizeWrapper) else layer
        return type(inner).from_config(inner.get_config())

    with _tfq.quantize_scope(custom_objects()):
        plain = keras.models.clone_model(model, clone_function=unwrap)
    for source, target in zip(model.layers, plain.layers):
        inner = source.layer if isinstance(source, _tfq.QuantizeWrapper) else source
        # The wrapper replaced the quantized attributes by tensors, so look weights up by name.
        values = {_short(v.name): v.numpy() for v in inner.weights}
        values.update({r.weight: r.values() for r in records if r.layer == inner.name})
        target.set_weights([values[_short(v.name)] for v in target.weights])
    return plain, QuantizedWeights(records)


def summary(model: keras.Model) -> list[dict[str, Any]]:
    """One row per layer with weights: layer, class, bits, codebook size, params, mse.

    Layers kept float say why (``BatchNormalization``: folded into the conv at
    export; other classes: not supported or not asked for).
    """
    rows = []
    quantized = quantized_weights(model)
    for layer in model.layers:
        if isinstance(layer, _tfq.QuantizeWrapper):
            for q in (q for wrapper, q in quantized if wrapper is layer):
                w = q.source.numpy()
                record = _quantize_tensor(layer, q)
                rows.append({"layer": layer.layer.name, "class": type(layer.layer).__name__,
                             "weight": record.weight, "bits": q.bits,
                             "codebook": q.table_entries(w.shape), "params": int(w.size),
                             "mse": float(np.mean((w - record.values()) ** 2))})
            quantized_attrs = set(layer.quantize_config.weight_attrs)
            for attr in layer_rules.rule_for(layer.layer).weights:  # a layer's weights can stay float one by one
                if attr not in quantized_attrs:
                    v = layer_rules.get_attr(layer.layer, attr)
                    rows.append({"layer": layer.layer.name, "class": type(layer.layer).__name__,
                                 "weight": attr.split(".")[-1], "bits": "float (not in bits spec)",
                                 "codebook": "-", "params": int(np.prod(v.shape)), "mse": "-"})
        elif layer.weights:
            why = ("float, folds into conv at export" if isinstance(layer, keras.layers.BatchNormalization)
                   else "float (not supported)" if layer_rules.rule_for(layer) is None
                   else "float (not in bits spec)")
            rows.append({"layer": layer.name, "class": type(layer).__name__, "weight": "*",
                         "bits": why, "codebook": "-",
                         "params": int(sum(np.prod(v.shape) for v in layer.weights)), "mse": "-"})
    return rows


def _short(name: str) -> str:
    return name.split(":")[0].split("/")[-1]
