"""Store quantized layers' weights as b-bit LUT indices plus value tables (TFLM DECODE), or int8.

A k-means-quantized layer has at most 2^b distinct weights per output channel
even after the TFLite converter folds BatchNorm into it (folding scales each
output channel by one factor) and after int8 quantization (rounding can merge
values, never split them).  TFLM's LUT compression (DECODE operator) stores
such a tensor as packed indices and one value table per channel, or a single
table when the whole tensor holds at most 2^b values.  Which Keras
layers convert, to which operator, and how their weights are laid out there
comes from the one support table, :data:`tfadvq.quant.layer_rules.RULES`; what
each stored tensor costs comes from :mod:`tfadvq.quant.cost`.

What is where:

* :func:`find_weight_tensors` maps each quantized Keras weight to its TFLite
  tensor(s) (an LSTM kernel becomes four gate tensors; a GRU's weights sit in
  a WHILE body subgraph).  The converter renames constants, so the match is by
  operator, input slot and shape and is then *proved* by the weights
  themselves: the TFLite tensor must be constant on every group of weights
  that share a centroid in the Keras kernel, channel by channel.
* :func:`compression_spec`: ``PerTensor`` (one value table) where the whole
  TFLite tensor holds at most 2^b values and may be decoded through one table:
  float weights of a per-tensor codebook that no BatchNorm folded into, and
  int8 weights the converter quantized per tensor (LSTM under int8
  activations).  ``PerChannel(axis=<channel axis>)`` otherwise: per-channel
  codebooks, folded BatchNorm, and every per-channel int8 tensor -- even one
  with few distinct values overall: ``PerTensor`` on per-channel int8 weights,
  or ``PerChannel`` on per-tensor ones, decodes to wrong values in TFLM
  without any error (measured).  ``PerTensor`` on float weights decodes
  exactly (measured under the TFLM interpreter for Conv1D, Conv2D,
  DepthwiseConv2D, Dense, LSTM and GRU), and saves ``C - 1`` tables plus the
  channel tags below: the 4-bit LUT of a 0.94 M-weight LSTM encoder went from
  721,808 to 473,472 bytes, 1.01x its indices + one table per tensor
  (``benchmarks/lut_size.py``).  Identical tables (the gate tensors of one
  LSTM weight) are stored once by the compressor; :attr:`WeightTensor.shares_table`
  says which.
* :func:`compress` runs the compressor.  TFLM's per-channel DECODE takes the
  channel count from the tensor's quantization parameters; float weights have
  none and then every channel silently decodes through the first table
  (measured with this nightly).  Float weights with per-channel tables are
  therefore tagged with unit scales on the LUT axis first (one zero point
  suffices); the float kernels ignore them.  The compressor's output is then
  tidied: it leaves the original quantization parameters on the packed-index
  tensor (model_editor keeps them when set to None), which TFLM never reads.
  Last, :mod:`converters.tflite_writer` writes every stored model without
  what TFLM never reads (names, repeated zero points, bias scales and
  quantization the kernels ignore, metadata, RESHAPE's shape input) and with
  each distinct vector and table stored once.  On the demo's int8 device model
  the first of these took it from 101,376 to 73,200 bytes, the writer to
  69,136 (n·b + tables 50,920; biases 4.7 KB and per-channel scales 4.6 KB of
  the rest); outputs are bit-identical.
* :func:`store_int8` gives 8-bit layers (TFLM LUT indices are 1-7 bits) under
  float activations a real 8-bit form: symmetric per-channel int8 values,
  expanded at run time by DEQUANTIZE (per tensor, unit scale: TFLM's
  DEQUANTIZE ignores per-channel scales, measured) and a broadcast MUL by the
  float per-channel scales.  This rounds the 256 k-means centroids of a
  channel onto a 255-level grid: 8-bit layers are not exact (each centroid
  moves by at most half a grid step, ``max|c| / 254`` of its channel; the one
  statement of what b bits means on both sides is :mod:`tfadvq.quant.cost`),
  and the parity check against Keras covers them.  Under int8 activations the int8 model's
  own weights already are 8-bit, and a 1-7 bit int8 tensor whose LUT would
  not be smaller (:func:`tfadvq.quant.cost.tensor_cost`: small layers, 7-bit
  tables on channels of under 1024 weights) stays that exact int8 tensor.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import warnings
from collections.abc import Iterator, Mapping

import numpy as np
from tflite_micro.tensorflow.lite.micro.compression import model_editor, spec
from tflite_micro.tensorflow.lite.micro.compression.compress import compress as tflm_compress
from tflite_micro.tensorflow.lite.micro.compression.compressor import CompressionError
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from converters import tflite_writer
from tfadvq.compat import keras
from tfadvq.errors import ConversionError
from tfadvq.quant import cost, layer_rules
from tfadvq.quant.bits import check_bits

@dataclasses.dataclass(frozen=True)
class WeightTensor:
    """One TFLite tensor holding (part of) a quantized Keras weight."""

    layer: str
    weight: str  # Keras weight attribute, with the part (e.g. LSTM gate) when split: "cell.kernel[input_gate]"
    bits: int
    op: str
    subgraph: int
    tensor: int  # index in ``subgraph``
    axis: int | None  # channel axis of the value tables; None: one table for the tensor
    shape: tuple[int, ...]
    dtype: str  # "float32" or "int8", as the converter wrote it
    max_distinct: int  # most distinct values in any table's slice of the TFLite tensor
    op_index: int  # the operator reading it, in ``subgraph``
    lut: bool  # stored as LUT indices (1-7 bits, and for int8 tensors only when that is smaller)
    decode_group: int = 1  # LUT tensors that operator reads (they share one DECODE)
    shares_table: bool = False  # an earlier LUT tensor has the identical table (the file stores it once)

    @property
    def channels(self) -> int:
        return 1 if self.axis is None else self.shape[self.axis]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def plain_bytes(self) -> int:
        """Bytes of this tensor as the TFLite converter wrote it."""
        return cost.plain_bytes(self.shape, self.dtype)

    def cost(self) -> cost.TensorCost:
        """What the stored form costs (the compressor pads tables to the longest one: ``max_distinct``)."""
        bits = self.bits if self.lut else max(self.bits, cost.MAX_LUT_BITS + 1)
        stored = cost.tensor_cost(self.shape, bits, axis=self.axis, dtype=self.dtype, table_len=self.max_distinct,
                                  decode_group=self.decode_group)
        return dataclasses.replace(stored, tables=0) if self.shares_table else stored

    def storage(self) -> str:
        if self.lut:
            return "LUT per tensor" if self.axis is None else f"LUT axis {self.axis}"
        if self.dtype == "int8":
            return "int8 (model's own)" if self.bits > cost.MAX_LUT_BITS else "int8 (model's own; LUT not smaller)"
        return "int8 + DEQUANTIZE/MUL"


def _rule(layer: keras.layers.Layer) -> layer_rules.LayerRule:
    rule = layer_rules.rule_for(layer)
    if rule is None:
        raise ConversionError(
            f"layer {layer.name!r} ({type(layer).__name__}) is marked quantized but cannot be "
            f"converted; supported classes: {', '.join(layer_rules.supported_class_names())}"
        )
    refusal = rule.refuses(layer)
    if refusal:
        raise ConversionError(f"layer {layer.name!r} cannot be converted: {refusal}")
    return rule


def _all_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """Every layer by name, including those nested in sub-models and blocks."""
    layers = {m.name: m for m in model.submodules if isinstance(m, keras.layers.Layer)}
    layers.update({layer.name: layer for layer in model.layers})
    return layers


def quantized_layers(
    model: keras.Model, bits_per_layer: Mapping[str, int]
) -> list[tuple[keras.layers.Layer, int]]:
    """Validate ``bits_per_layer`` against ``model``: names exist, bits in 1-8, layers supported."""
    if not bits_per_layer:
        raise ConversionError(
            f"model {model.name!r} is not quantized: bits_per_layer is empty; pass "
            f"{{layer_name: bits}} for its quantized layers ({', '.join(layer_rules.supported_class_names())})"
        )
    layers = _all_layers(model)
    chosen = []
    for name, bits in bits_per_layer.items():
        if name not in layers:
            raise ConversionError(f"bits_per_layer names layer {name!r}, which model {model.name!r} lacks")
        bits = check_bits(bits, f"bits_per_layer[{name!r}]")
        _rule(layers[name])
        chosen.append((layers[name], bits))
    return chosen


def _rows(array: np.ndarray, axis: int | None) -> np.ndarray:
    """``array`` as ``[channels, n]`` along ``axis`` (one row for None)."""
    if axis is None:
        return array.reshape(1, -1)
    return np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)


def _channel_groups(array: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the sort order of the values and where a new distinct value starts.

    Returns ``order`` ``[C, n]`` (argsort of each channel) and ``starts``
    ``[C, n-1]`` (True where the sorted value differs from its predecessor), so
    groups of equal values are contiguous runs along ``order``.
    """
    rows = _rows(array, axis)
    order = np.argsort(rows, axis=1, kind="stable")
    ordered = np.take_along_axis(rows, order, axis=1)
    return order, ordered[:, 1:] != ordered[:, :-1]


def distinct_per_channel(array: np.ndarray, axis: int | None) -> np.ndarray:
    """Number of distinct values in each slice of ``array`` along ``axis`` (None: the whole tensor)."""
    ordered = np.sort(_rows(array, axis), axis=1)
    return 1 + (ordered[:, 1:] != ordered[:, :-1]).sum(axis=1)


def _constant_on_groups(candidate: np.ndarray, groups: tuple[np.ndarray, np.ndarray], axis: int) -> bool:
    """True if ``candidate`` takes one value on each group of equal kernel weights, per channel.

    ``groups`` is :func:`_channel_groups` of the Keras kernel (in TFLite layout).
    """
    order, starts = groups
    ordered = np.take_along_axis(_rows(candidate, axis), order, axis=1)
    return bool(np.all((ordered[:, 1:] == ordered[:, :-1]) | starts))


def _weight_candidates(
    model: model_editor.Model, op_name: str, slot: int, shape: tuple[int, ...]
) -> Iterator[tuple[int, model_editor.Operator, model_editor.Tensor]]:
    """(subgraph, operator, constant tensor) for every ``op_name`` reading a ``shape`` constant at ``slot``."""
    for index, subgraph in enumerate(model.subgraphs):
        for operator in subgraph.operators:
            if operator.opcode_name != op_name or len(operator.inputs) <= slot:
                continue
            weights = operator.inputs[slot]
            if weights is not None and weights.buffer is not None and weights.buffer.data and weights.shape == shape:
                yield index, operator, weights


def _lut_axis(tensor: model_editor.Tensor, what: str, layout: layer_rules.TfliteLayout, bits: int) -> int | None:
    """The value-table axis, None for one table (see module doc).

    Float weights: None when the whole tensor holds at most 2^b values (a
    per-tensor codebook no BatchNorm folded into), else the layout's channel
    axis.  int8 weights: the quantized dimension, None only when the converter
    quantized them per tensor.
    """
    if tensor.dtype == schema.TensorType.FLOAT32:
        one_table = bits <= cost.MAX_LUT_BITS and distinct_per_channel(tensor.array, None)[0] <= 2**bits
        return None if one_table else layout.axis
    quant = tensor.quantization
    if quant is not None and np.size(quant.scales) > 1:
        return int(quant.axis or 0)
    if layout.int8_per_tensor:
        return None
    raise ConversionError(
        f"{what}: its int8 weights are quantized per tensor; LUT compression of this layer "
        "needs per-channel quantized weights (the TFLite converter's default for conv/dense)"
    )


def _match_part(
    model: model_editor.Model, layer: keras.layers.Layer, label: str, kernel: np.ndarray, slot: int,
    layout: layer_rules.TfliteLayout, bits: int, taken: set[tuple[int, int]],
) -> WeightTensor:
    what = f"layer {layer.name!r} {label}"
    groups = _channel_groups(kernel, layout.axis)
    counts = 1 + groups[1].sum(axis=1)
    if counts.max() > 2**bits:
        raise ConversionError(
            f"layer {layer.name!r}: {int(counts.max())} distinct weights in output channel "
            f"{int(counts.argmax())} of {label}, more than 2^{bits}={2**bits}; is it really {bits}-bit "
            "quantized (strip the quantization wrappers first)?"
        )
    matches = [
        (sg, op, t)
        for sg, op, t in _weight_candidates(model, layout.op, slot, kernel.shape)
        if (sg, t.index) not in taken and _constant_on_groups(t.array, groups, layout.axis)
    ]
    if not matches:
        raise ConversionError(
            f"{what}: no {layout.op} input {slot} of shape {kernel.shape} in the converted model "
            "shares its weight groups (unsupported conversion of this layer?)"
        )
    # Ties only arise for degenerate kernels; prefer the op whose output names the layer.
    named = [m for m in matches if any(f"/{layer.name}/" in (o.name or "") for o in m[1].outputs)]
    subgraph, operator, tensor = (named or matches)[0]
    axis = _lut_axis(tensor, what, layout, bits)
    max_distinct = int(distinct_per_channel(tensor.array, axis).max())
    if max_distinct > 2**bits:
        where = "the tensor" if axis is None else f"a channel along axis {axis}"
        raise ConversionError(
            f"{what}: its TFLite weights have {max_distinct} distinct values in {where}, more than "
            f"2^{bits}; the value tables cannot hold them"
            + (" (int8 activations quantize this layer per tensor: quantize it with per_channel=False)"
               if axis is None else "")
        )
    return WeightTensor(
        layer=layer.name, weight=label, bits=bits, op=layout.op, subgraph=subgraph, tensor=tensor.index,
        axis=axis, shape=tuple(tensor.shape), dtype=np.dtype(tensor.numpy_dtype).name,
        max_distinct=max_distinct, op_index=model.subgraphs[subgraph].operators.index(operator),
        lut=bits <= cost.MAX_LUT_BITS,
    )


def find_weight_tensors(
    tflite_model: bytes, model: keras.Model, bits_per_layer: Mapping[str, int]
) -> list[WeightTensor]:
    """Locate every quantized weight's TFLite tensor(s) in ``tflite_model`` (see module doc)."""
    edited = model_editor.read(tflite_model)
    taken: set[tuple[int, int]] = set()
    found = []
    for layer, bits in quantized_layers(model, bits_per_layer):
        rule = _rule(layer)
        for attr, layout in zip(rule.weights, rule.tflite):
            arrays = layout.to_tflite(layer_rules.get_attr(layer, attr).numpy())
            for part, slot, kernel in zip(layout.parts, layout.inputs, arrays):
                label = f"{attr}[{part}]" if part else attr
                weight = _match_part(edited, layer, label, kernel, slot, layout, bits, taken)
                taken.add((weight.subgraph, weight.tensor))
                found.append(weight)
    return _shared_tables(edited, _decide_lut(found))


def _shared_tables(edited: model_editor.Model, found: list[WeightTensor]) -> list[WeightTensor]:
    """Mark one-table LUT tensors whose table repeats an earlier one's (same bits, dtype and values):
    the compressor writes identical value tables once (the gate tensors of an LSTM kernel quantized
    with one codebook share it)."""
    seen: set[tuple] = set()
    out = []
    for w in found:
        if w.lut and w.axis is None:
            values = edited.subgraphs[w.subgraph].tensors[w.tensor].array
            key = (w.bits, w.dtype, np.unique(values).tobytes())
            w = dataclasses.replace(w, shares_table=key in seen)
            seen.add(key)
        out.append(w)
    return out


def _decide_lut(found: list[WeightTensor]) -> list[WeightTensor]:
    """Settle which tensors are LUT-stored (the cost model's rule) and how many share each DECODE."""
    def readers(weights: list[WeightTensor]) -> collections.Counter:
        return collections.Counter((w.subgraph, w.op_index) for w in weights if w.lut)

    candidates = readers(found)
    decided = [dataclasses.replace(w, lut=w.lut and cost.tensor_cost(
        w.shape, w.bits, axis=w.axis, dtype=w.dtype, table_len=w.max_distinct,
        decode_group=candidates[w.subgraph, w.op_index]).lut) for w in found]
    groups = readers(decided)
    return [dataclasses.replace(w, decode_group=groups[w.subgraph, w.op_index]) if w.lut else w for w in decided]


def _int8_channels(values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 (``[-127, 127]``) of ``values`` along ``axis``: (int8, scales)."""
    amax = np.abs(_rows(values, axis)).max(axis=1)
    scales = np.where(amax > 0, amax / 127, 1.0).astype(np.float32)
    shape = [1] * values.ndim
    shape[axis] = -1
    q = np.clip(np.round(values / scales.reshape(shape)), -127, 127).astype(np.int8)
    return q, scales.reshape(shape)


def _operator(opcode: int, inputs: list, outputs: list, options=None) -> model_editor.Operator:
    op = model_editor.Operator(opcode=opcode, inputs=inputs, outputs=outputs)
    if options is not None:
        op._fb.builtinOptionsType, op._fb.builtinOptions = options
    return op


def store_int8(tflite_model: bytes, weights: list[WeightTensor]) -> bytes:
    """Store every 8-bit float weight as per-channel int8 expanded by DEQUANTIZE + MUL (see module doc).

    Returns ``tflite_model`` unchanged when there is none (int8 activations, or no 8-bit layer).
    """
    targets = [w for w in weights if not w.lut and w.dtype == "float32"]
    if not targets:
        return bytes(tflite_model)
    edited = model_editor.read(tflite_model)
    for weight in targets:
        subgraph = edited.subgraphs[weight.subgraph]
        tensor = subgraph.tensors[weight.tensor]
        consumers = subgraph.consumers_of(tensor)
        q, scales = _int8_channels(tensor.array.astype(np.float32), weight.axis)
        tensor.buffer = model_editor.Buffer(data=q.tobytes())  # a fresh buffer: aliases keep their data
        tensor.dtype = schema.TensorType.INT8
        tensor.quantization = model_editor.Quantization(scales=1.0, zero_points=0)
        levels = subgraph.add_tensor(shape=tensor.shape, dtype=schema.TensorType.FLOAT32)
        scale = subgraph.add_tensor(shape=scales.shape, dtype=schema.TensorType.FLOAT32, data=scales)
        values = subgraph.add_tensor(shape=tensor.shape, dtype=schema.TensorType.FLOAT32)
        at = min(subgraph.operators.index(op) for op in consumers)
        subgraph.operators[at:at] = [
            _operator(schema.BuiltinOperator.DEQUANTIZE, [tensor], [levels]),
            _operator(schema.BuiltinOperator.MUL, [levels, scale], [values],
                      (schema.BuiltinOptions.MulOptions, schema.MulOptionsT())),
        ]
        for op in consumers:
            op.inputs = [values if t is tensor else t for t in op.inputs]
    model_editor.prune_buffers(edited)  # the float values, unless another tensor still reads them
    return tflite_writer.serialize(edited)


def compression_spec(weights: list[WeightTensor], per_tensor: bool = False) -> list[spec.Tensor]:
    """tflite_micro compression spec: LUT for every tensor of <= 7 bits, tables as in :attr:`WeightTensor.axis`.

    ``per_tensor=True`` exists only to demonstrate (in tests) the silent TFLM
    failure it causes on per-channel int8 weights; never use it for real models.
    """
    specs = []
    for weight in weights:
        if not weight.lut:
            continue
        mode = spec.PerTensor() if per_tensor or weight.axis is None else spec.PerChannel(axis=weight.axis)
        method = spec.LookUpTableCompression(index_bitwidth=weight.bits, mode=mode)
        specs.append(spec.Tensor(subgraph=weight.subgraph, tensor=weight.tensor, compression=[method]))
    return specs


def tag_float_channels(tflite_model: bytes, weights: list[WeightTensor]) -> bytes:
    """Give float LUT weights unit per-channel scales on their LUT axis (one zero point).

    Needed for TFLM's per-channel DECODE of float tensors (see module doc);
    int8 tensors already carry theirs.
    """
    edited = model_editor.read(tflite_model)
    for weight in weights:
        if weight.lut and weight.dtype == "float32" and weight.axis is not None:
            edited.subgraphs[weight.subgraph].tensors[weight.tensor].quantization = model_editor.Quantization(
                scales=[1.0] * weight.channels, zero_points=[0], axis=weight.axis
            )
    return bytes(edited.build())


def _tidy(compressed: bytes) -> bytes:
    """Drop what TFLM never reads from the compressor's output and write it (:func:`tflite_writer.write`)."""
    edited = model_editor.read(compressed)
    for subgraph in edited.subgraphs:
        for op in subgraph.operators:
            if op.opcode_name != tflite_writer.DECODE:
                continue
            for encoded in op.inputs[::2]:
                encoded.quantization = None
                encoded._fb.quantization = None  # model_editor keeps the read-in parameters otherwise
    return tflite_writer.write(edited)


def compress(tflite_model: bytes, weights: list[WeightTensor], per_tensor: bool = False) -> bytes:
    """LUT-compress ``weights`` in ``tflite_model`` with tflite_micro's compressor, then tidy and write it.

    A model without weights narrower than 8 bits is only rewritten (:mod:`converters.tflite_writer`).
    """
    specs = compression_spec(weights, per_tensor=per_tensor)
    if not specs:
        return _tidy(bytes(tflite_model))
    tagged = tag_float_channels(tflite_model, weights)
    # The tool prints a note when a table has fewer values than 2^b (int8
    # rounding may merge centroids) and warns when a tiny tensor grows; both are
    # expected here and the summary table reports real sizes.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            compressed = bytes(tflm_compress(tagged, specs))
        except CompressionError as exc:
            layers = {(w.subgraph, w.tensor): f"{w.layer} {w.weight}" for w in weights}
            raise ConversionError(f"LUT compression failed ({exc}); tensors: {layers}") from exc
    return _tidy(compressed)


def ideal_bytes(tflite_model: bytes, weights: list[WeightTensor]) -> int:
    """Payload a perfect container needs: indices + tables of the quantized tensors
    (:mod:`tfadvq.quant.cost`, no flatbuffer structure) + every other constant as stored in ``tflite_model``."""
    edited = model_editor.read(tflite_model)
    by_index = {(w.subgraph, w.tensor): w for w in weights}
    seen: set[int] = set()
    total = 0
    for s, subgraph in enumerate(edited.subgraphs):
        for tensor in subgraph.tensors:
            buffer = tensor.buffer
            if buffer is None or not buffer.data or id(buffer) in seen:
                continue
            seen.add(id(buffer))
            weight = by_index.get((s, tensor.index))
            if weight is None:
                total += len(buffer.data)
            else:
                stored = weight.cost()
                total += stored.data + stored.tables
    return total


def planned_bytes(tflite_model: bytes, weights: list[WeightTensor]) -> int:
    """File size the stored model will have: the converter's plain ``tflite_model`` rewritten and slimmed
    (measured: what the rewrite changes depends on the model), with each quantized tensor's plain bytes
    replaced by its :mod:`tfadvq.quant.cost` total."""
    changed = [w for w in weights if w.lut or w.dtype == "float32"]  # int8 tensors kept as int8 stay as they are
    return int(len(_tidy(tflite_model)) + sum(w.cost().total - w.plain_bytes() for w in changed))


def uniform_bits(model: keras.Model, bits: int) -> dict[str, int]:
    """``{layer: bits}`` for every layer of ``model`` the support table converts."""
    return {name: bits for name, layer in _all_layers(model).items() if layer_rules.rule_for(layer) is not None}
