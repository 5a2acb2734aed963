"""Bytes a quantized weight tensor costs in the flashed .tflite: the one cost model (stdlib only).

Used by :func:`tfadvq.quant.size.model_size`, by the converter's planned and
ideal bytes (``converters.lut_compression``) and by anything that budgets
size from shapes alone (no Keras model needed).  It counts what the converter
really writes, measured on tflite_micro's compressor (nightly) and the TFLM
interpreter:

**1-7 bits: LUT (TFLM DECODE).**

* ``data``: the indices, ``b``-bit fields packed back to back over the whole
  tensor (MSB first), the last byte zero-padded: ``ceil(n·b / 8)``.
* ``tables``: the ancillary tensor, a 16-byte DECODE header followed by one
  value table per channel (or one for the tensor), each padded to the longest
  table (``table_len``), values in the tensor's dtype: 4 bytes float32, 1 byte
  int8.  The compressor stores the distinct values, so a table is
  ``min(2^b, weights per table)`` long when every centroid is used (k-means
  uses them all); int8 rounding that merges centroids only shortens it.
* ``overhead``: flatbuffer structure the DECODE adds, measured: the decoded
  and ancillary tensors and a buffer per tensor (:data:`LUT_TENSOR_BYTES`) and
  one DECODE operator per consuming operator (:data:`DECODE_OP_BYTES`), shared
  by the ``decode_group`` tensors that operator reads (the eight gate tensors
  of an LSTM share one); float tensors with per-channel tables also carry
  quantization parameters with one 4-byte unit scale per channel
  (:data:`FLOAT_TAG_BYTES` + 4·C: TFLM takes the channel count of a
  per-channel DECODE from them).

Under int8 activations a LUT that would not be smaller than the int8 tensor
the converter wrote (small layers, or 7-bit tables on channels of under 1024
weights: the demo model at 7 bits measured 1.01x its int8 file, 0.96x with
this rule) is not used: the int8 tensor already holds exactly the same
values, so it stays (``lut=False``).

**8 bits: int8, not LUT** (TFLM's LUT indices are 1-7 bits wide).  Under int8
activations the weight is the int8 model's own per-channel int8 tensor (``n``
bytes; its scales belong to any int8 model).  Under float activations it is
stored as symmetric per-channel int8 (``n`` bytes) with a float scale per
channel (``tables``: 4 bytes each), expanded at run time by DEQUANTIZE and a
broadcast MUL (``overhead``: :data:`INT8_OVERHEAD_BYTES`).

**What "b bits" means, in Keras and on the device** (bit widths: :mod:`tfadvq.quant.bits`):

* *1-7 bits* -- the same on both sides.  Keras: every weight of a table (tensor
  or channel) is one of at most ``2^b`` values (k-means centroids, or the
  uniform / binary quantizers' levels).  Device: ``b``-bit indices into a value
  table holding exactly those values (after BatchNorm folding scales a
  channel; under int8 activations the int8 rounding of the model's own scale,
  which can merge values, never split them).
* *8 bits* -- not the same.  Keras: a 256-entry k-means table (``2^8``
  arbitrary centroids per table), like any width.  Device: no 8-bit LUT
  exists, so the weight is int8 on the symmetric per-channel grid
  ``s·k``, ``k in -127..127``, ``s = max|c| / 127`` of its channel (255 levels;
  per tensor for the LSTM kernels the converter quantizes per tensor).  Each
  8-bit centroid ``c`` moves by at most ``s / 2`` (0.39 % of the channel's
  largest magnitude); the converter's parity checks (TFLM vs Keras cosine
  >= 0.999 float, 0.99 int8) bound the effect on the embedding.  Making the
  Keras side the int8 grid (``quantizer="uniform"`` at 8 bits is exactly this
  grid per channel) would change every published 8-bit result, so it is not
  done implicitly: choose ``uniform`` for 8-bit layers to train on what the
  device computes.

Rewriting the converter's file costs :data:`MODEL_OVERHEAD_BYTES` once per
model (plans from shapes alone; the converter's own plan rewrites and slims
its plain file and measures it, since both depend on the model).  The converter never stores a quantized weight as float32;
:func:`plain_bytes` is the size of the tensor it replaces.

Which tables are written (:meth:`tfadvq.quant.layer_rules.LayerRule.table_axis`,
proved by the converter on the weights themselves): one per tensor where the
whole tensor holds at most ``2^b`` values -- a per-tensor codebook under float
activations with no BatchNorm folded in (TFLM's per-tensor DECODE of float
weights verified for Conv1D/Conv2D, DepthwiseConv2D, Dense, LSTM and GRU);
per channel for per-channel codebooks, after BatchNorm folding (it scales
every channel) and for per-channel int8 weights.  A channel that happens not
to use every centroid still gets a full-length table unless *no* channel
does, so a plan from shapes alone is exact for full tables and an upper
bound, within a few percent of the tables, otherwise.

Besides the tensors, the stored model is written without what TFLM never
reads and with every repeated vector stored once (``converters.tflite_writer``:
names, repeated zero points, bias scales, metadata; the demo device model went
from 101 KB to 69.1 KB); the converter's plan measures that rewrite on its plain file.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from tfadvq.quant.bits import check_bits

MAX_LUT_BITS = 7  # widest TFLM DECODE LUT index
DCM_BYTES = 16  # DECODE common metadata header at the start of every ancillary tensor
ITEMSIZE = {"float32": 4, "int8": 1}
# Flatbuffer structure, measured on whole converted models (the demo TinyResNet, the
# mixed-width test model, small Conv1D/LSTM/GRU models) as file growth beyond data and
# tables; per tensor it scatters by about +-60 bytes around these (16-byte buffer
# alignment, tensor shapes), under 2 % of any tensor worth compressing.
LUT_TENSOR_BYTES = 16  # decoded + ancillary tensors and one buffer (tidied: unnamed)
# One DECODE operator in front of a consumer (converters.tflite_writer shares its lists and options).
DECODE_OP_BYTES = 68
FLOAT_TAG_BYTES = 64  # quantization table of a float per-channel LUT tensor, besides 4 bytes a channel
INT8_OVERHEAD_BYTES = 128  # 8-bit float form: DEQUANTIZE + MUL, two float tensors, the scale tensor
# Once per stored model: rewriting and re-aligning the converter's flatbuffer (measured 70-250 bytes).
MODEL_OVERHEAD_BYTES = 160


@dataclasses.dataclass(frozen=True)
class TensorCost:
    """Bytes of one stored weight tensor: ``data`` + ``tables`` + ``overhead``."""

    data: int  # packed indices (LUT) or int8 values
    tables: int  # DECODE header + value tables (LUT), or float scales (8-bit, float activations)
    overhead: int  # flatbuffer structure and quantization parameters the storage adds
    lut: bool  # stored as LUT indices (else as int8)

    @property
    def total(self) -> int:
        return self.data + self.tables + self.overhead


def _check(shape: Sequence[int], bits: int, axis: int | None, dtype: str) -> None:
    if dtype not in ITEMSIZE:
        raise ValueError(f"dtype {dtype!r}: accepted {sorted(ITEMSIZE)}")
    check_bits(bits)
    if axis is not None and not -len(shape) <= axis < len(shape):
        raise ValueError(f"axis {axis} is out of range for shape {tuple(shape)}")


def tensor_cost(shape: Sequence[int], bits: int, *, axis: int | None = 0, dtype: str = "float32",
                table_len: int | None = None, decode_group: int = 1) -> TensorCost:
    """What a ``bits``-bit weight of TFLite ``shape`` costs (see module doc).

    ``axis``: the output-channel axis of per-channel value tables, or None for
    one table per tensor.  ``dtype``: the tensor's value type in the model,
    ``"float32"`` (float activations) or ``"int8"``.  ``table_len``: entries per
    table as written (the longest table); default ``min(2^b, weights per table)``.
    ``decode_group``: LUT tensors read by the same operator (one DECODE serves them all).
    """
    _check(shape, bits, axis, dtype)
    shape = tuple(int(d) for d in shape)
    n = math.prod(shape)
    channels = 1 if axis is None else shape[axis]
    plain_int8 = TensorCost(n, 0, 0, lut=False)
    if bits > MAX_LUT_BITS:
        return plain_int8 if dtype == "int8" else TensorCost(n, 4 * channels, INT8_OVERHEAD_BYTES, lut=False)
    entries = min(2**bits, n // channels) if table_len is None else int(table_len)
    tags = FLOAT_TAG_BYTES + 4 * channels if dtype == "float32" and axis is not None else 0
    structure = LUT_TENSOR_BYTES + round(DECODE_OP_BYTES / max(1, decode_group))
    lut = TensorCost(math.ceil(n * bits / 8), DCM_BYTES + channels * entries * ITEMSIZE[dtype], structure + tags,
                     lut=True)
    # An int8 tensor already holds exactly these values: keep it when the LUT would not be smaller.
    return plain_int8 if dtype == "int8" and lut.total >= n else lut


def weight_costs(shapes: Sequence[Sequence[int]], bits: int, *, axis: int | None = 0, dtype: str = "float32",
                 decode_group: int = 1) -> list[TensorCost]:
    """:func:`tensor_cost` of each TFLite tensor one Keras weight becomes (LSTM: a tensor per gate).

    With one table per tensor, the parts of one weight hold the same codebook,
    so their tables are identical and the compressor writes them once: every
    part after the first costs no table (the exact test is the converter's, on
    the values: a part that misses a centroid has another table).
    """
    costs = [tensor_cost(s, bits, axis=axis, dtype=dtype, decode_group=decode_group) for s in shapes]
    if axis is None:
        costs[1:] = [dataclasses.replace(c, tables=0) if c.lut else c for c in costs[1:]]
    return costs


def plain_bytes(shape: Sequence[int], dtype: str = "float32") -> int:
    """Bytes of the uncompressed tensor (``n`` values of ``dtype``)."""
    return math.prod(int(d) for d in shape) * ITEMSIZE[dtype]
