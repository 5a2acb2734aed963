"""Store quantized layers' weights as b-bit indices plus value tables (TFLM LUT).

A k-means-quantized layer has at most 2^b distinct weights per output channel
even after the TFLite converter folds BatchNorm into it (folding scales each
output channel by one factor) and after int8 quantization (rounding can merge
values, never split them).  TFLM's LUT compression (DECODE operator) stores
such a tensor as packed indices and one value table per channel.

What is where:

* :func:`find_weight_tensors` maps each quantized Keras layer to its TFLite
  weight tensor.  The converter renames constants (``arith.constant12``), so the
  match is by operator kind and shape and is then *proved* by the weights
  themselves: the TFLite tensor must be constant on every group of weights that
  share a centroid in the Keras kernel, channel by channel.
* :func:`compression_spec` writes the spec for tflite_micro's compressor:
  ``PerChannel(axis=<quantized dimension>)`` always.  ``PerTensor`` on int8
  weights quantized per channel decodes to wrong values in TFLM without any
  error (measured); per-channel tables are what BN folding needs anyway.
* :func:`compress` runs the compressor.  TFLM's per-channel DECODE takes the
  channel count from the tensor's quantization parameters; float weights have
  none and then every channel silently decodes through the first table
  (measured with this nightly).  Float weights are therefore tagged with unit
  per-channel quantization parameters on the LUT axis first; the float kernels
  ignore them (checked in tests: the tagged, uncompressed model gives identical
  outputs).

TFLM LUT indices are 1-7 bits wide; 8-bit layers stay plain tensors.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from tflite_micro.tensorflow.lite.micro.compression.compress import compress as tflm_compress
from tflite_micro.tensorflow.lite.micro.compression import model_editor, spec
from tflite_micro.tensorflow.lite.micro.compression.compressor import CompressionError
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from tfadvq.compat import keras
from tfadvq.errors import ConversionError

MAX_LUT_BITS = 7  # TFLM's DECODE LUT index width limit
MAX_BITS = 8  # wider than this is not a quantized layer


@dataclass(frozen=True)
class _Layout:
    """Where a Keras layer's kernel goes in TFLite and how it is laid out there."""

    op: str
    kernel: Callable[[keras.layers.Layer], np.ndarray]
    to_tflite: Callable[[np.ndarray], np.ndarray]
    axis: int  # output-channel axis of the TFLite weight tensor


# Order matters: DepthwiseConv2D subclasses Conv2D in Keras 2.
_LAYOUTS: tuple[tuple[type, _Layout], ...] = (
    (
        keras.layers.DepthwiseConv2D,
        _Layout(
            "DEPTHWISE_CONV_2D",
            lambda layer: layer.depthwise_kernel.numpy(),
            lambda k: k.reshape(1, k.shape[0], k.shape[1], -1),  # [kh,kw,in,m] -> [1,kh,kw,in*m]
            axis=3,
        ),
    ),
    (
        keras.layers.Conv2D,
        _Layout(
            "CONV_2D",
            lambda layer: layer.kernel.numpy(),
            lambda k: np.transpose(k, (3, 0, 1, 2)),  # [kh,kw,in,out] -> [out,kh,kw,in]
            axis=0,
        ),
    ),
    (
        keras.layers.Dense,
        _Layout("FULLY_CONNECTED", lambda layer: layer.kernel.numpy(), np.transpose, axis=0),
    ),
)
SUPPORTED_LAYERS = tuple(cls.__name__ for cls, _ in _LAYOUTS)


@dataclass(frozen=True)
class WeightTensor:
    """One quantized Keras layer's weight tensor inside a .tflite model."""

    layer: str
    bits: int
    op: str
    tensor: int  # index in subgraph 0
    axis: int  # channel axis of the value tables
    shape: tuple[int, ...]
    dtype: str  # "float32" or "int8"
    max_distinct: int  # most distinct values in any channel of the TFLite tensor

    @property
    def lut(self) -> bool:
        """True when TFLM can store this tensor as LUT indices (1-7 bits)."""
        return self.bits <= MAX_LUT_BITS

    @property
    def channels(self) -> int:
        return self.shape[self.axis]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def ideal_bytes(self) -> int:
        """Packed indices plus per-channel tables of 2^b values; plain bytes if not LUT."""
        itemsize = np.dtype(self.dtype).itemsize
        if not self.lut:
            return self.size * itemsize
        return int(-(-self.size * self.bits // 8) + self.channels * (2**self.bits) * itemsize)


def _layout(layer: keras.layers.Layer) -> _Layout:
    for cls, layout in _LAYOUTS:
        if isinstance(layer, cls):
            return layout
    raise ConversionError(
        f"layer {layer.name!r} ({type(layer).__name__}) is marked quantized but cannot be "
        f"LUT-compressed; supported layers: {', '.join(SUPPORTED_LAYERS)}"
    )


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
            "{layer_name: bits} for its quantized Conv2D/DepthwiseConv2D/Dense layers"
        )
    layers = _all_layers(model)
    chosen = []
    for name, bits in bits_per_layer.items():
        if name not in layers:
            raise ConversionError(f"bits_per_layer names layer {name!r}, which model {model.name!r} lacks")
        if not (isinstance(bits, (int, np.integer)) and 1 <= bits <= MAX_BITS):
            raise ConversionError(f"layer {name!r}: bits must be an integer 1-{MAX_BITS}, got {bits!r}")
        _layout(layers[name])
        chosen.append((layers[name], int(bits)))
    return chosen


def _channel_groups(array: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the sort order of the values and where a new distinct value starts.

    Returns ``order`` ``[C, n]`` (argsort of each channel) and ``starts``
    ``[C, n-1]`` (True where the sorted value differs from its predecessor), so
    groups of equal values are contiguous runs along ``order``.
    """
    rows = np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)
    order = np.argsort(rows, axis=1, kind="stable")
    ordered = np.take_along_axis(rows, order, axis=1)
    return order, ordered[:, 1:] != ordered[:, :-1]


def distinct_per_channel(array: np.ndarray, axis: int) -> np.ndarray:
    """Number of distinct values in each slice of ``array`` along ``axis``."""
    _, starts = _channel_groups(array, axis)
    return 1 + starts.sum(axis=1)


def _constant_on_groups(candidate: np.ndarray, groups: tuple[np.ndarray, np.ndarray], axis: int) -> bool:
    """True if ``candidate`` takes one value on each group of equal kernel weights, per channel.

    ``groups`` is :func:`_channel_groups` of the Keras kernel (in TFLite layout).
    """
    order, starts = groups
    rows = np.moveaxis(candidate, axis, 0).reshape(candidate.shape[axis], -1)
    ordered = np.take_along_axis(rows, order, axis=1)
    return bool(np.all((ordered[:, 1:] == ordered[:, :-1]) | starts))


def _weight_candidates(subgraph: model_editor.Subgraph, op_name: str, shape: tuple[int, ...]):
    """(operator, constant weight tensor) pairs of ``op_name`` whose weights have ``shape``."""
    for operator in subgraph.operators:
        if operator.opcode_name != op_name or len(operator.inputs) < 2:
            continue
        weights = operator.inputs[1]
        if weights is not None and weights.buffer is not None and weights.shape == shape:
            yield operator, weights


def _lut_axis(tensor: model_editor.Tensor, layer: str, expected: int) -> int:
    """The value-table axis: the quantized dimension for int8, the output channels for float."""
    if tensor.dtype == schema.TensorType.FLOAT32:
        return expected
    quant = tensor.quantization
    if quant is None or np.size(quant.scales) < 2:
        raise ConversionError(
            f"layer {layer!r}: its int8 weights are quantized per tensor; LUT compression needs "
            "per-channel quantized weights (the TFLite converter's default for Conv2D/Dense)"
        )
    return int(quant.axis or 0)


def _match_layer(
    subgraph: model_editor.Subgraph, layer: keras.layers.Layer, bits: int, taken: set[int]
) -> WeightTensor:
    layout = _layout(layer)
    kernel = layout.to_tflite(layout.kernel(layer))
    groups = _channel_groups(kernel, layout.axis)
    counts = 1 + groups[1].sum(axis=1)
    if counts.max() > 2**bits:
        raise ConversionError(
            f"layer {layer.name!r}: {int(counts.max())} distinct weights in output channel "
            f"{int(counts.argmax())}, more than 2^{bits}={2**bits}; is it really {bits}-bit quantized "
            "(strip the quantization wrappers first)?"
        )
    matches = [
        (op, t)
        for op, t in _weight_candidates(subgraph, layout.op, kernel.shape)
        if t.index not in taken and _constant_on_groups(t.array, groups, layout.axis)
    ]
    if not matches:
        raise ConversionError(
            f"layer {layer.name!r}: no {layout.op} weight tensor of shape {kernel.shape} in the "
            "converted model shares its weight groups (unsupported conversion of this layer?)"
        )
    # Ties only arise for degenerate kernels; prefer the op whose output names the layer.
    named = [(op, t) for op, t in matches if any(f"/{layer.name}/" in (o.name or "") for o in op.outputs)]
    _, tensor = (named or matches)[0]
    axis = _lut_axis(tensor, layer.name, layout.axis)
    max_distinct = int(distinct_per_channel(tensor.array, axis).max())
    if max_distinct > 2**bits:
        raise ConversionError(
            f"layer {layer.name!r}: its TFLite weights have {max_distinct} distinct values in a channel "
            f"along axis {axis}, more than 2^{bits}; the value tables cannot hold them"
        )
    return WeightTensor(
        layer=layer.name,
        bits=bits,
        op=layout.op,
        tensor=tensor.index,
        axis=axis,
        shape=tuple(tensor.shape),
        dtype=np.dtype(tensor.numpy_dtype).name,
        max_distinct=max_distinct,
    )


def find_weight_tensors(
    tflite_model: bytes, model: keras.Model, bits_per_layer: Mapping[str, int]
) -> list[WeightTensor]:
    """Locate each quantized layer's weight tensor in ``tflite_model`` (see module doc)."""
    subgraph = model_editor.read(tflite_model).subgraphs[0]
    taken: set[int] = set()
    found = []
    for layer, bits in quantized_layers(model, bits_per_layer):
        weight = _match_layer(subgraph, layer, bits, taken)
        taken.add(weight.tensor)
        found.append(weight)
    return found


def compression_spec(weights: list[WeightTensor], per_tensor: bool = False) -> list[spec.Tensor]:
    """tflite_micro compression spec: LUT with per-channel tables for every tensor of <= 7 bits.

    ``per_tensor=True`` exists only to demonstrate (in tests) the silent TFLM
    failure it causes on per-channel int8 weights; never use it for real models.
    """
    specs = []
    for weight in weights:
        if not weight.lut:
            continue
        mode = spec.PerTensor() if per_tensor else spec.PerChannel(axis=weight.axis)
        method = spec.LookUpTableCompression(index_bitwidth=weight.bits, mode=mode)
        specs.append(spec.Tensor(subgraph=0, tensor=weight.tensor, compression=[method]))
    return specs


def tag_float_channels(tflite_model: bytes, weights: list[WeightTensor]) -> bytes:
    """Give float LUT weights unit per-channel quantization parameters on their LUT axis.

    Needed for TFLM's per-channel DECODE of float tensors (see module doc);
    int8 tensors already carry theirs.
    """
    edited = model_editor.read(tflite_model)
    tensors = edited.subgraphs[0].tensors
    for weight in weights:
        if weight.lut and weight.dtype == "float32":
            n = weight.channels
            tensors[weight.tensor].quantization = model_editor.Quantization(
                scales=[1.0] * n, zero_points=[0] * n, axis=weight.axis
            )
    return bytes(edited.build())


def compress(tflite_model: bytes, weights: list[WeightTensor], per_tensor: bool = False) -> bytes:
    """LUT-compress ``weights`` in ``tflite_model`` with tflite_micro's compressor.

    Returns the uncompressed model unchanged when no weight is narrower than 8 bits.
    """
    specs = compression_spec(weights, per_tensor=per_tensor)
    if not specs:
        return bytes(tflite_model)
    tagged = tag_float_channels(tflite_model, weights)
    # The tool prints a note when a table has fewer values than 2^b (int8
    # rounding may merge centroids) and warns when a tiny tensor grows; both are
    # expected here and the summary table reports real sizes.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            return bytes(tflm_compress(tagged, specs))
        except CompressionError as exc:
            layers = {w.tensor: w.layer for w in weights}
            raise ConversionError(f"LUT compression failed ({exc}); layers: {layers}") from exc


def ideal_bytes(tflite_model: bytes, weights: list[WeightTensor]) -> int:
    """Payload a perfect encoding needs: LUT indices + tables + every other constant as stored."""
    subgraph = model_editor.read(tflite_model).subgraphs[0]
    by_index = {w.tensor: w for w in weights}
    seen: set[int] = set()
    total = 0
    for tensor in subgraph.tensors:
        buffer = tensor.buffer
        if buffer is None or not buffer.data or id(buffer) in seen:
            continue
        seen.add(id(buffer))
        weight = by_index.get(tensor.index)
        total += int(weight.ideal_bytes()) if weight is not None else len(buffer.data)
    return total


def uniform_bits(model: keras.Model, bits: int) -> dict[str, int]:
    """``{layer: bits}`` for every Conv2D/DepthwiseConv2D/Dense layer of ``model``."""
    return {
        name: bits
        for name, layer in _all_layers(model).items()
        if any(isinstance(layer, cls) for cls, _ in _LAYOUTS)
    }

