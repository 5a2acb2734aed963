"""Serialize an edited .tflite as the smallest flatbuffer TFLM runs identically.

The flashed model's bytes beyond its weights are flatbuffer structure, and on
a small int8 network that structure is a third of the file (the demo's 80 k
device model: 17.6 KB on 55.6 KB of constants).  :func:`write` removes what
TFLM never reads and stores what it does read once:

* :func:`slim` (model level, every rule checked against TFLM's source and
  measured bit-identical under its interpreter and the firmware):

  - tensor names;
  - all but one of a tensor's zero points when they are all zero (TFLM reads
    one for all channels, micro_allocator's "space-saving optimization");
  - all but the first scale of int32 biases (the per-tensor kernels read a
    bias's ``params.scale``, the first, never its per-channel array), and the
    whole quantization of int32 biases that only CONV_2D / DEPTHWISE_CONV_2D
    read under int8 activations (their Prepare never reads a bias's
    quantization; FULLY_CONNECTED's per-tensor path does, so its bias keeps one scale);
  - the model's metadata entries (TFLM reads only "OfflineMemoryAllocation",
    which these models do not have; the converter's CONVERSION_METADATA and
    min_runtime_version are for TFLite), with the buffers that held them (the
    model editor also leaves a stale copy of them on every rewrite), the
    description, signature defs, the subgraph's name, ``has_rank`` and shape signatures;
  - buffers no tensor references.

  Tensors keep their indices (:class:`converters.lut_compression.WeightTensor` indices
  stay valid in the stored file), so constants TFLM could do without stay:
  RESHAPE's shape input (TFLM's RESHAPE takes the output tensor's static
  shape) would save about 70 bytes a RESHAPE.

* :class:`_SharingBuilder` writes each distinct vector once and points every
  table that holds it there (flatbuffers allows any number of references to
  one object; TFLM only follows offsets).  Tensor shapes, one-value zero-point
  vectors and operator index lists repeat heavily: on the demo's model that
  is about 2 KB.  Quantization tables and operator options with equal contents are shared the same way.

* Buffer data is aligned to 16 bytes only where TFLM relies on it: the
  inputs of TFLM_DECODE (its LUT decoder reads the packed indices as
  ``uint64_t`` words from a 16-byte-aligned start, as the schema's
  ``force_align: 16`` promises).  Every other buffer keeps the flatbuffer's
  natural 4-byte alignment, which is what the TFLite converter wrote before
  that attribute existed and all the kernels here read through (int8 weights
  and int32 biases by element or ``memcpy``).  tflite_micro's own aligner
  pads every buffer to 16, about 0.5 KB on the demo model.

:func:`serialize` is the same writer without :func:`slim`, for intermediate
models (the uncompressed twin) whose quantization parameters the compressor
still needs in full.
"""
from __future__ import annotations

import collections

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.compression import model_editor
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

DECODE = "TFLM_DECODE"
_FILE_IDENTIFIER = b"TFL3"
_DECODE_ALIGN = 16
# Kernels that never read their bias's quantization under int8 activations
# (tflite::PopulateConvolutionQuantizationParams, reference and CMSIS-NN).
_BIAS_QUANT_UNREAD = ("CONV_2D", "DEPTHWISE_CONV_2D")
_BIAS_SLOT = 2


def _readers(subgraph: model_editor.Subgraph) -> dict[int, list[tuple[model_editor.Operator, int]]]:
    """For every tensor (by ``id``), the operators reading it and the input slot."""
    readers: dict[int, list] = collections.defaultdict(list)
    for op in subgraph.operators:
        for slot, tensor in enumerate(op.inputs):
            if tensor is not None:
                readers[id(tensor)].append((op, slot))
    return readers


def _repeated_quantization(tensor: model_editor.Tensor) -> tuple[int, int]:
    """(zero points, scales) of ``tensor``'s quantization parameters TFLM never reads (see module doc)."""
    quant = tensor._fb.quantization
    if quant is None:
        return 0, 0
    zeros = np.asarray(quant.zeroPoint if quant.zeroPoint is not None else [])
    scales = 0 if quant.scale is None or tensor.dtype != schema.TensorType.INT32 else len(quant.scale) - 1
    return (zeros.size - 1 if zeros.size > 1 and not zeros.any() else 0), max(0, scales)


def _drop_quantization(tensor: model_editor.Tensor, zeros: int = 0, scales: int = 0, whole: bool = False) -> None:
    """Edit ``tensor``'s quantization in place (model_editor would restore its own copy otherwise)."""
    quant = tensor._fb.quantization
    tensor.quantization = None
    if whole:
        tensor._fb.quantization = None
        return
    quant.zeroPoint = list(quant.zeroPoint[:len(quant.zeroPoint) - zeros])
    quant.scale = list(quant.scale[:len(quant.scale) - scales])


def _bias_quant_unread(tensor: model_editor.Tensor, readers: list[tuple[model_editor.Operator, int]]) -> bool:
    return (tensor.dtype == schema.TensorType.INT32 and bool(readers) and all(
        op.opcode_name in _BIAS_QUANT_UNREAD and slot == _BIAS_SLOT
        and op.inputs[0] is not None and op.inputs[0].dtype == schema.TensorType.INT8
        for op, slot in readers))


def slim(edited: model_editor.Model) -> None:
    """Remove from ``edited`` everything TFLM never reads (see module doc)."""
    edited.metadata = {}
    edited._fb.description = None
    edited._fb.signatureDefs = None
    edited._fb.metadataBuffer = None
    for subgraph in edited.subgraphs:
        subgraph.name = None
        readers = _readers(subgraph)
        for tensor in subgraph.tensors:
            tensor.name = None
            tensor._fb.hasRank = False
            tensor._fb.shapeSignature = None
            if tensor._fb.quantization is None:
                continue
            if _bias_quant_unread(tensor, readers[id(tensor)]):
                _drop_quantization(tensor, whole=True)
                continue
            zeros, scales = _repeated_quantization(tensor)
            if zeros or scales:
                _drop_quantization(tensor, zeros, scales)
    model_editor.prune_buffers(edited)


def write(edited: model_editor.Model) -> bytes:
    """:func:`slim` ``edited`` (in place) and :func:`serialize` it."""
    slim(edited)
    return serialize(edited)


class _SharingBuilder(flatbuffers.Builder):
    """A flatbuffers builder that writes each distinct vector once (see module doc).

    A vector of scalars is written as usual, then compared with those already
    written (its bytes and alignment); a repeat is rolled back (the builder writes
    back to front, so dropping the newest bytes is moving ``head``) and the
    earlier copy's offset returned.  ``force_align`` raises the alignment of
    the vectors written while it is set (the data of TFLM_DECODE's buffers).
    """

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.force_align = 1
        self.tables: dict[tuple, int] = {}
        self._vectors: dict[tuple[int, bytes], int] = {}
        self._open: tuple[int, int, int] | None = None

    def StartVector(self, elemSize: int, numElems: int, alignment: int) -> int:  # noqa: N802,N803 (flatbuffers API)
        alignment = max(alignment, self.force_align)
        self._open = (self.Offset(), elemSize * numElems, alignment)
        return super().StartVector(elemSize, numElems, alignment)

    def PrependUOffsetTRelative(self, off: int) -> None:  # noqa: N802 (flatbuffers API)
        self._open = None  # a vector of offsets: its bytes are relative to where it lies, never shared
        super().PrependUOffsetTRelative(off)

    def EndVector(self, numElems: int | None = None) -> int:  # noqa: N802,N803 (flatbuffers API)
        offset = super().EndVector(numElems)
        if self._open is None:  # a string (CreateString) or a vector of offsets: written as is
            return offset
        before, nbytes, alignment = self._open
        self._open = None
        start = len(self.Bytes) - offset
        key = (alignment, bytes(self.Bytes[start:start + 4 + nbytes]))
        if key in self._vectors:
            self.head = len(self.Bytes) - before
            return self._vectors[key]
        self._vectors[key] = offset
        return offset


class _Shared:
    """An object-API table (quantization parameters, builtin options) packed once per distinct content."""

    def __init__(self, table: object) -> None:
        self.table = table

    def Pack(self, builder: _SharingBuilder) -> int:  # noqa: N802 (flatbuffers API)
        fields = sorted(vars(self.table).items())
        key = (type(self.table).__name__, *((name, _exact(value)) for name, value in fields))
        if key not in builder.tables:
            builder.tables[key] = self.table.Pack(builder)
        return builder.tables[key]


class _AlignedBuffer(schema.BufferT):
    """A buffer whose data vector starts at a multiple of ``align`` bytes."""

    align = 1

    def Pack(self, builder: _SharingBuilder) -> int:  # noqa: N802 (flatbuffers API)
        builder.force_align = self.align
        try:
            return super().Pack(builder)
        finally:
            builder.force_align = 1


def _exact(value: object) -> object:
    """A hashable, bit-exact stand-in for a field value (arrays and lists by dtype and bytes)."""
    if isinstance(value, (list, np.ndarray)):
        array = np.asarray(value)
        return array.dtype.str, array.tobytes()
    return repr(value)


def _shared(table: object | None) -> _Shared | None:
    return None if table is None else _Shared(table)


def _aligned_buffer(buffer: schema.BufferT, align: int) -> _AlignedBuffer:
    aligned = _AlignedBuffer()
    aligned.__dict__.update(vars(buffer))
    aligned.align = align
    return aligned


def _name(custom_code: bytes | str | None) -> str | None:
    return custom_code.decode() if isinstance(custom_code, bytes) else custom_code


def serialize(edited: model_editor.Model) -> bytes:
    """``edited`` as a flatbuffer with shared vectors and TFLM_DECODE's buffers 16-byte aligned (module doc)."""
    root = schema.ModelT.InitFromPackedBuf(edited.build(), 0)
    decode = {i for i, code in enumerate(root.operatorCodes or []) if _name(code.customCode) == DECODE}
    root.metadata = root.metadata or None  # the model editor writes an empty vector
    decoded_buffers = set()
    for subgraph in root.subgraphs or []:
        for tensor in subgraph.tensors or []:
            tensor.quantization = _shared(tensor.quantization)
        for op in subgraph.operators or []:
            op.builtinOptions = _shared(op.builtinOptions)
            if op.opcodeIndex in decode:
                decoded_buffers.update(subgraph.tensors[i].buffer for i in op.inputs if i >= 0)
    root.buffers = [_aligned_buffer(b, _DECODE_ALIGN if i in decoded_buffers else 1)
                    for i, b in enumerate(root.buffers or [])]
    builder = _SharingBuilder(len(edited.buffers) * 64 + sum(len(b.data or b"") for b in edited.buffers) + 4096)
    builder.Finish(root.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    return bytes(builder.Output())
