"""The one cost model (tfadvq.quant.cost) against what the converter really writes, b = 1..8.

One model holds a layer at every bit width, so a single conversion per
activation type checks all of them: per tensor, the indices and tables the
converter plans must equal the buffers in the stored .tflite, the plan from
shapes alone must match them within 2 % (it cannot know that int8 rounding
merges close centroids: measured 110 of 128 levels left in a 7-bit channel of 128 weights), and the planned
file size must match the file within 2 %.  TF-free import of the cost model
is checked by tests/test_layering.py.
"""
from __future__ import annotations

import collections

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.compression import model_editor

import tfadvq
from converters import array_representative, compress, run_tflm, to_float_tflite, to_int8_tflite
from converters.lut_compression import find_weight_tensors, planned_bytes, store_int8
from tfadvq.compat import keras
from tfadvq.quant import cost

FRAMES, MELS = 16, 16
BITS = {"c1": 1, "c2": 2, "dw": 3, "c4": 4, "c5": 5, "d6": 6, "d7": 7, "d8": 8}


def test_lut_formula_by_hand():
    # 64x3x3x16 float kernel, 3 bits, tables on axis 0: 9216 indices of 3 bits, 64 tables of 8 floats.
    c = cost.tensor_cost((64, 3, 3, 16), 3, axis=0)
    assert (c.data, c.tables) == (3456, 16 + 64 * 8 * 4)
    lut = cost.LUT_TENSOR_BYTES + cost.DECODE_OP_BYTES
    assert c.overhead == lut + cost.FLOAT_TAG_BYTES + 4 * 64
    int8 = cost.tensor_cost((64, 3, 3, 16), 3, axis=0, dtype="int8")
    assert (int8.data, int8.tables, int8.overhead) == (3456, 16 + 64 * 8, lut)
    gates = cost.tensor_cost((64, 16), 3, axis=None, dtype="int8", decode_group=8)  # one DECODE for 8 LSTM gates
    assert gates.overhead == cost.LUT_TENSOR_BYTES + round(cost.DECODE_OP_BYTES / 8)
    one = cost.tensor_cost((10, 7), 5, axis=None)  # 350 bits -> 44 bytes, one table of 32 floats, no tags
    assert (one.data, one.tables, one.overhead) == (44, 16 + 32 * 4, lut)
    assert cost.tensor_cost((4, 3), 6, axis=0).tables == 16 + 4 * 3 * 4  # a table never outgrows its channel


def test_int8_tensors_stay_int8_where_a_lut_would_not_be_smaller():
    small = cost.tensor_cost((64, 64), 7, axis=0, dtype="int8")  # 64 tables of 64 values > 4096 int8 weights
    assert (small.lut, small.total) == (False, 64 * 64)
    # 7 bits pays off under int8 only beyond 1024 weights a channel: n/8 saved vs 128 table bytes a channel
    assert not cost.tensor_cost((64, 1024), 7, axis=0, dtype="int8").lut
    big = cost.tensor_cost((64, 4096), 7, axis=0, dtype="int8")
    assert big.lut and big.total < 64 * 4096
    assert cost.tensor_cost((64, 64), 7, axis=0).lut  # float: the alternative is lossy int8, so LUT


def test_eight_bits_is_int8_never_float32():
    float_act = cost.tensor_cost((32, 3, 3, 8), 8, axis=0)
    assert (float_act.data, float_act.tables) == (2304, 4 * 32)
    assert cost.tensor_cost((32, 3, 3, 8), 8, axis=0, dtype="int8").total == 2304
    assert float_act.total < cost.plain_bytes((32, 3, 3, 8)) / 3


@pytest.mark.parametrize("bad", [dict(dtype="float16"), dict(axis=4)])
def test_bad_arguments_are_refused(bad):
    args = {"shape": (4, 4, 4, 4), "bits": 4, **bad}
    with pytest.raises(ValueError):
        cost.tensor_cost(args.pop("shape"), args.pop("bits"), **args)


@pytest.mark.parametrize("bits", [0, 9, 2.5])
def test_bad_bits_are_refused_by_the_one_bits_check(bits):
    from tfadvq.errors import QuantizationError

    with pytest.raises(QuantizationError, match=f"bits: {bits!r} is not a supported bit width; accepted: integers 1..8"):
        cost.tensor_cost((4, 4, 4, 4), bits)


def _model() -> keras.Model:
    """A layer at every bit width; no BatchNorm, so one table per tensor is valid too."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((FRAMES, MELS))
    x = keras.layers.Reshape((FRAMES, MELS, 1))(inputs)
    x = keras.layers.Conv2D(16, 3, name="c1")(x)
    x = keras.layers.Conv2D(32, 3, name="c2")(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    x = keras.layers.Conv2D(32, 1, name="c4")(x)
    x = keras.layers.Conv2D(32, 3, name="c5")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, name="d7")(x)  # 2048 weights a channel: int8 rounding merges a few of 128 levels
    x = keras.layers.Dense(64, name="d6")(x)
    return keras.Model(inputs, keras.layers.Dense(16, name="d8")(x))


@pytest.fixture(scope="module")
def stripped():
    """Per-channel codebooks: every channel's table is full (2^b, or one entry per weight if fewer)."""
    return tfadvq.strip(tfadvq.ptq(_model(), BITS, per_channel=True, progress=False))


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(8, FRAMES, MELS)).astype(np.float32)


def _stored_buffers(stored: bytes, weight) -> int:
    """Bytes the stored model holds for ``weight``: its own buffer plus the tables/scales read with it."""
    subgraph = model_editor.read(stored).subgraphs[weight.subgraph]
    tensor = subgraph.tensors[weight.tensor]
    (consumer,) = {id(op): op for op in subgraph.consumers_of(tensor)}.values()
    extra = 0
    if consumer.opcode_name == "TFLM_DECODE":  # indices, then the ancillary tensor (header + tables)
        extra = len(consumer.inputs[consumer.inputs.index(tensor) + 1].buffer.data)
    elif consumer.opcode_name == "DEQUANTIZE":  # int8 values -> MUL by the float scales
        (mul,) = subgraph.consumers_of(consumer.outputs[0])
        extra = len(mul.inputs[1].buffer.data)
    return len(tensor.buffer.data) + extra


def _check(stored: bytes, plain: bytes, weights, dtype: str) -> None:
    assert sorted(w.bits for w in weights) == list(range(1, 9))
    for w in weights:
        assert w.dtype == dtype
        actual = _stored_buffers(stored, w)
        written = w.cost()  # with the table length the compressor really used
        assert written.data + written.tables == actual, w
        planned = cost.tensor_cost(w.shape, w.bits, axis=w.axis, dtype=dtype)  # from the shape alone
        assert planned.data + planned.tables == pytest.approx(actual, rel=0.02), w
    assert planned_bytes(plain, weights) == pytest.approx(len(stored), rel=0.02)


def _store(plain: bytes, weights) -> bytes:
    return compress(store_int8(plain, weights), weights)


def test_planned_bytes_match_the_float_model(stripped):
    model, records = stripped
    plain = to_float_tflite(model, FRAMES)
    weights = find_weight_tensors(plain, model, records.bits_by_layer())
    _check(_store(plain, weights), plain, weights, "float32")


def test_one_table_per_tensor_without_batchnorm():
    """Per-tensor codebooks, no BatchNorm: the converter writes one table per tensor, TFLM decodes it
    exactly, and both the converter's plan and model_size count just that."""
    wrapped = tfadvq.ptq(_model(), BITS, progress=False)
    model, records = tfadvq.strip(wrapped)
    plain = to_float_tflite(model, FRAMES)
    weights = find_weight_tensors(plain, model, records.bits_by_layer())
    assert [w.axis for w in weights if w.lut] == [None] * 7 and [w.axis for w in weights if not w.lut] == [0]
    stored = _store(plain, weights)
    _check(stored, plain, weights, "float32")
    features = np.random.default_rng(2).normal(size=(2, FRAMES, MELS)).astype(np.float32)
    twin = store_int8(plain, weights)  # the 8-bit layer is int8 on the device: compare with the uncompressed twin
    np.testing.assert_allclose(run_tflm(stored, features), run_tflm(twin, features), atol=1e-5, rtol=0)
    rows = {r["layer"]: r["bytes"] for r in tfadvq.model_size(wrapped).rows if r["bits"] <= 8}
    for layer in BITS:
        assert rows[layer] == pytest.approx(sum(w.cost().total for w in weights if w.layer == layer), rel=0.02)


def test_planned_bytes_match_the_int8_model(stripped, calibration):
    model, records = stripped
    plain = to_int8_tflite(model, FRAMES, array_representative(calibration))
    weights = find_weight_tensors(plain, model, records.bits_by_layer())
    _check(_store(plain, weights), plain, weights, "int8")


def test_model_size_is_the_cost_of_what_is_stored(stripped):
    """model_size (Keras level) adds up the same per-tensor costs the converter plans."""
    model, records = stripped
    plain = to_float_tflite(model, FRAMES)
    weights = find_weight_tensors(plain, model, records.bits_by_layer())
    rows = {r["layer"]: r["bytes"] for r in tfadvq.model_size(stripped).rows if r["bits"] <= 8}
    for layer, bits in BITS.items():
        stored = sum(w.cost().total for w in weights if w.layer == layer)
        assert rows[layer] == pytest.approx(stored, rel=0.02), layer


def _lstm_encoder() -> keras.Model:
    """A small recurrent speaker encoder without BatchNorm: two LSTM layers and a Dense projection."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((FRAMES, MELS))
    x = keras.layers.LSTM(64, return_sequences=True, name="lstm1")(inputs)
    x = keras.layers.LSTM(64, name="lstm2")(x)
    return keras.Model(inputs, keras.layers.Dense(64, name="proj")(x))


def _device_model() -> keras.Model:
    """The device model's architecture (McuDFResNet, BatchNorm after every convolution), narrower."""
    from tfadvq.models import build_model

    keras.utils.set_random_seed(4)
    return build_model("McuDFResNet", feat_dim=MELS, embed_dim=64, widths=[4, 4, 8, 8, 16], depths=[1, 1, 1, 1],
                       expansion=2, pool_channels=8)


@pytest.mark.parametrize("build, int8", [(_lstm_encoder, False), (_device_model, True)],
                         ids=["lstm_encoder_float", "device_model_int8"])
def test_planned_bytes_match_the_file_for_each_kind_of_encoder(build, int8, calibration):
    """The converter's plan and model_size against the written file: one table per tensor for the
    recurrent encoder, tables per channel where BatchNorm folds in (device model, int8)."""
    from converters import convert_model

    wrapped = tfadvq.ptq(build(), 4, progress=False)
    model, records = tfadvq.strip(wrapped)
    result = convert_model(model, records.bits_by_layer(), FRAMES, int8=int8,
                           representative=array_representative(calibration) if int8 else None)
    assert result.planned_bytes == pytest.approx(len(result.model), rel=0.02)
    if int8:  # int8 weights are per channel: tables per channel, or the int8 tensor where a LUT is not smaller
        assert all(w.axis is not None for w in result.weights)
    else:
        assert [w.axis for w in result.weights] == [None] * 17 and all(w.lut for w in result.weights)
    sized = collections.Counter()
    for row in tfadvq.model_size(wrapped, activations=result.activations).rows:
        sized[row["layer"]] += row["bytes"] if row["bits"] <= 8 else 0
    for layer in records.bits_by_layer():
        assert sized[layer] == pytest.approx(sum(w.cost().total for w in result.weights if w.layer == layer),
                                             rel=0.02), layer
