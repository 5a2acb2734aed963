"""converters.tflite_writer: the flashed file holds only what TFLM reads, once, and runs bit-identically."""
from __future__ import annotations

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.compression import model_editor
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from converters import array_representative, convert_model, run_tflm
from converters.tflite_writer import DECODE, write
from tfadvq.compat import keras

FRAMES, MELS = 24, 40
BITS = {"conv": 4, "dw": 4, "point": 3, "emb": 4}


def _snapped(seed: int = 0) -> keras.Model:
    """Reshape -> Conv2D -> DepthwiseConv2D -> Conv2D -> Dense, all with biases, kernels on 2^b values."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((FRAMES, MELS))
    x = keras.layers.Reshape((FRAMES, MELS, 1))(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.Conv2D(128, 1, strides=2, name="point")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(64, name="emb")(x))  # large enough for a LUT
    rng = np.random.default_rng(seed)
    for name, bits in BITS.items():
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        centroids = np.sort(rng.normal(0, kernel.std(), 2**bits))
        snapped = centroids[np.abs(kernel[..., None] - centroids).argmin(-1)]
        layer.set_weights([snapped.astype(np.float32), rng.normal(0, 0.1, bias.shape).astype(np.float32)])
    return model


@pytest.fixture(scope="module")
def converted():
    crops = np.random.default_rng(1).normal(size=(8, FRAMES, MELS)).astype(np.float32)
    return convert_model(_snapped(), BITS, FRAMES, int8=True, representative=array_representative(crops))


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    return np.random.default_rng(2).normal(size=(3, FRAMES, MELS)).astype(np.float32)


def test_writing_the_converters_own_file_changes_no_output(converted, features):
    plain = converted.int8_model  # the TFLite converter's file: names, metadata, signature defs, bias quantization
    written = write(model_editor.read(plain))
    assert len(written) < len(plain)
    tensors = [len(model_editor.read(m).subgraphs[0].tensors) for m in (plain, written)]
    assert tensors[0] == tensors[1]  # same indices: the converter's WeightTensor.tensor stays valid
    np.testing.assert_array_equal(run_tflm(written, features), run_tflm(plain, features))


def test_lut_model_decodes_exactly_its_twin(converted, features):
    np.testing.assert_array_equal(run_tflm(converted.model, features), run_tflm(converted.twin, features))


def _op_name(code: schema.OperatorCodeT) -> str:
    if code.customCode is not None:
        return code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
    return next(k for k, v in vars(schema.BuiltinOperator).items() if v == code.builtinCode)


def _vector_at(table, slot: int) -> int | None:
    """Byte position of the vector in field ``slot`` of a raw flatbuffer table (None: absent)."""
    offset = table._tab.Offset(4 + 2 * slot)
    return table._tab.Vector(offset) if offset else None


def test_only_what_tflm_reads_is_stored_once(converted):
    root = schema.ModelT.InitFromPackedBuf(converted.model, 0)
    assert not root.metadata and not root.signatureDefs and root.description is None
    subgraph = root.subgraphs[0]
    codes = [_op_name(code) for code in root.operatorCodes]
    ops = [(codes[op.opcodeIndex], op) for op in subgraph.operators]
    assert all(t.name is None for t in subgraph.tensors)
    for name, op in ops:
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            assert subgraph.tensors[op.inputs[2]].quantization is None  # never read by these kernels
        if name == "FULLY_CONNECTED":
            assert len(subgraph.tensors[op.inputs[2]].quantization.scale) == 1  # its per-tensor path reads it

    raw = schema.Model.GetRootAs(converted.model, 0).Subgraphs(0)
    by_shape: dict[tuple, set] = {}
    for i in range(raw.TensorsLength()):
        tensor = raw.Tensors(i)
        by_shape.setdefault(tuple(tensor.ShapeAsNumpy()), set()).add(_vector_at(tensor, 0))
    assert max(len(places) for places in by_shape.values()) == 1  # every distinct shape is stored once
    assert len(by_shape) < raw.TensorsLength()

    decoded = {subgraph.tensors[i].buffer for name, op in ops if name == DECODE for i in op.inputs}
    assert decoded
    buffers = schema.Model.GetRootAs(converted.model, 0)
    assert all(_vector_at(buffers.Buffers(b), 0) % 16 == 0 for b in decoded)
