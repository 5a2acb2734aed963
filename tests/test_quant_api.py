"""quantize/ptq/strip/model_size/summary/save-load/plots/CLI on a small real model."""
import json

import numpy as np
import pytest

import tfadvq
from tfadvq import model_io
from tfadvq.compat import keras
from tfadvq.config import dump_yaml
from tfadvq.errors import ConfigError, QuantizationError
from tfadvq.quant import BitsSpec, QuantizedWeights, api, cost, load_spec, spec
from tfadvq.plots import plot_tensor

X = np.random.default_rng(0).normal(size=(3, 12, 10)).astype(np.float32)


def small_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 10))
    x = keras.layers.Reshape((12, 10, 1))(inputs)
    x = keras.layers.Conv2D(8, 3, name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.PReLU(name="prelu")(x)  # has weights, not supported -> stays float, named
    x = keras.layers.Conv2D(8, 3, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(6, name="embed")(x)
    model = keras.Model(inputs, outputs)
    model(X)  # random but realistic weights; make BN statistics non-trivial
    bn = model.get_layer("bn1")
    bn.set_weights([w + np.random.default_rng(1).uniform(0.1, 0.5, w.shape) for w in bn.get_weights()])
    return model


@pytest.fixture(scope="module")
def model():
    return small_model()


def test_bits_resolution_layer_over_class_over_default(model, tmp_path):
    path = tmp_path / "bits.yaml"
    dump_yaml(BitsSpec(default=4, classes={"Conv2D": 3}, layers={"conv2": 8, "embed": None}), path)
    plan = spec.resolve(model, load_spec(path))
    assert plan == {"conv1": 3, "bn1": None, "prelu": None, "conv2": 8, "embed": None}
    assert spec.resolve(model, {"embed": 2}) == {"conv1": None, "bn1": None, "prelu": None,
                                                 "conv2": None, "embed": 2}


def test_bits_spec_carries_the_granularity_per_weight_and_old_files_load(model, tmp_path):
    path = tmp_path / "bits.yaml"
    written = BitsSpec(default=3, layers={"embed": None}, per_channel={"conv1/kernel": True, "conv2/kernel": False})
    dump_yaml(written, path)
    assert load_spec(path) == written
    wrapped = tfadvq.quantize(model, load_spec(path), per_channel=True, progress=False)  # the spec's keys win
    assert {w.layer.name: q.per_channel for w, q in api.quantized_weights(wrapped)} == \
        {"conv1": True, "conv2": False}
    with pytest.raises(QuantizationError, match="contradict the bits spec's per_channel"):
        tfadvq.quantize(model, written, per_channel={"conv2/kernel": True}, progress=False)
    old = tmp_path / "old.yaml"  # a file written before per_channel existed: every weight follows the argument
    old.write_text("default: 3\nlayers: {embed: null}\nweights: {conv2/kernel: 2}\n")
    assert load_spec(old) == BitsSpec(default=3, layers={"embed": None}, weights={"conv2/kernel": 2})
    assert all(q.per_channel for _, q in api.quantized_weights(
        tfadvq.quantize(model, load_spec(old), per_channel=True, progress=False)))
    old.write_text("default: 3\nper_chanel: {conv1/kernel: true}\n")
    with pytest.raises(ConfigError, match="per_chanel"):
        load_spec(old)


@pytest.mark.parametrize("bits, message", [
    (BitsSpec(default=3, per_channel={"conv9/kernel": True}), "per_channel: unknown weight key 'conv9/kernel'"),
    (BitsSpec(default=3, layers={"embed": None}, per_channel={"embed/kernel": True}),
     "per_channel: \\['embed/kernel'\\] name weights this spec keeps float"),
    (BitsSpec(default=3, per_channel={"conv1/kernel": "yes"}), "per_channel\\['conv1/kernel'\\]: 'yes'"),
    ({"conv9": 4}, "unknown layer name 'conv9'"),
    ({"prelu": 4}, "'prelu' \\(PReLU\\) cannot be quantized"),
    ({"conv1": 0}, "bits\\['conv1'\\]: 0"),
    (9, "bits: 9"),
    (BitsSpec(classes={"PReLU": 4}), "class 'PReLU' cannot be quantized"),
    ({"conv1": None}, "no layer of model"),
])
def test_bad_bits_raise_clearly(model, bits, message):
    with pytest.raises(QuantizationError, match=message):
        tfadvq.quantize(model, bits, progress=False)


def test_constant_or_nan_weights_raise_naming_the_layer():
    broken = small_model()
    broken.get_layer("conv2").set_weights([np.full((3, 3, 8, 8), 0.1, np.float32), np.zeros(8, np.float32)])
    with pytest.raises(QuantizationError, match="conv2/kernel: all 576 values equal"):
        tfadvq.quantize(broken, 4, progress=False)
    kernel = broken.get_layer("conv2").get_weights()[0]
    kernel[0, 0, 0, 0] = np.nan
    broken.get_layer("conv2").set_weights([kernel, np.zeros(8, np.float32)])
    with pytest.raises(QuantizationError, match="conv2/kernel: 1 NaN/inf"):
        tfadvq.quantize(broken, 4, progress=False)


def test_summary_names_every_float_layer(model):
    rows = {r["layer"]: r for r in api.summary(tfadvq.ptq(model, {"conv1": 4, "conv2": 2}, progress=False))}
    assert rows["conv1"]["bits"] == 4 and rows["conv1"]["codebook"] == 16 and rows["conv1"]["params"] == 72
    assert rows["conv2"]["bits"] == 2 and rows["conv2"]["mse"] > rows["conv1"]["mse"] / 10
    assert rows["bn1"]["bits"] == "float, folds into conv at export"
    assert rows["prelu"]["bits"] == "float (not supported)"
    assert rows["embed"]["bits"] == "float (not in bits spec)"


@pytest.mark.parametrize("per_channel", [False, True])
def test_strip_gives_plain_model_with_table_values(model, per_channel):
    quantized = tfadvq.ptq(model, 3, per_channel=per_channel, progress=False)
    plain, records = tfadvq.strip(quantized)
    assert not any("Quantize" in type(layer).__name__ for layer in plain.layers)
    assert [layer.name for layer in plain.layers] == [layer.name for layer in model.layers]
    np.testing.assert_allclose(plain(X).numpy(), quantized(X).numpy(), atol=1e-5)
    for t in records.tensors:
        weights = dict(zip((w.name.split("/")[-1].split(":")[0] for w in plain.get_layer(t.layer).weights),
                           plain.get_layer(t.layer).get_weights()))
        np.testing.assert_array_equal(weights[t.weight], t.values())
        channels = t.values().reshape(-1, t.shape[-1])
        per = [np.unique(channels[:, c]).size for c in range(t.shape[-1])]
        assert max(per) <= 8 and (per_channel or np.unique(channels).size <= 8)
        assert t.indices.dtype == np.uint8 and t.indices.max() < 8
    np.testing.assert_array_equal(plain.get_layer("bn1").get_weights()[3], model.get_layer("bn1").get_weights()[3])
    assert QuantizedWeights.from_dict(json.loads(json.dumps(records.to_dict()))) .to_dict() == records.to_dict()


def test_quantized_weights_npz_round_trip(model, tmp_path):
    _, records = tfadvq.strip(tfadvq.ptq(model, 2, per_channel=True, progress=False))
    records.save(tmp_path / "q.npz")
    again = QuantizedWeights.load(tmp_path / "q.npz")
    for a, b in zip(records.tensors, again.tensors):
        assert (a.layer, a.weight, a.bits, a.per_channel) == (b.layer, b.weight, b.bits, b.per_channel)
        np.testing.assert_array_equal(a.values(), b.values())


@pytest.mark.parametrize("suffix", [".h5"])  # tfmot wrappers do not load from .keras (variable count)
def test_saved_quantized_model_reloads_with_its_quantizers(model, tmp_path, suffix):
    quantized = tfadvq.quantize(model, {"conv1": 2, "conv2": 5, "embed": 3}, per_channel=True,
                                activation_bits=8, progress=False)
    quantized(X, training=True)  # move the activation ranges away from their initial values
    quantized.save(tmp_path / f"q{suffix}")
    loaded = model_io.load_model(tmp_path / f"q{suffix}")
    np.testing.assert_allclose(loaded(X).numpy(), quantized(X).numpy(), atol=1e-6)
    bits = {w.layer.name: q.bits for w, q in api.quantized_weights(loaded)}
    assert bits == {"conv1": 2, "conv2": 5, "embed": 3}
    _, original = tfadvq.strip(quantized)
    _, reloaded = tfadvq.strip(loaded)
    for a, b in zip(original.tensors, reloaded.tensors):
        np.testing.assert_array_equal(a.codebook, b.codebook)


def _lut_bytes(n: int, bits: int, channels: int | None, itemsize: int) -> int:
    """Packed indices + DECODE header and tables + structure, written out by hand.

    ``channels``: per-channel tables (float ones tagged with a scale a channel), None: one table.
    A table holds at most one value per weight of its channel (conv1: 9 weights, 16 levels).
    """
    tags = cost.FLOAT_TAG_BYTES + 4 * channels if itemsize == 4 and channels else 0
    tables = channels or 1
    entries = min(2**bits, n // tables)
    return -(-n * bits // 8) + cost.DCM_BYTES + tables * entries * itemsize + cost.LUT_TENSOR_BYTES + cost.DECODE_OP_BYTES + tags


def test_model_size_counts_what_the_converter_stores(model):
    """Tables as written: per channel where BatchNorm folds in (conv1), one for a per-tensor codebook
    without it (conv2), per channel for per-channel codebooks and int8 weights; values in the activations' dtype."""
    quantized = tfadvq.quantize(model, {"conv1": 4, "conv2": 2}, progress=False)
    report = tfadvq.model_size(quantized)
    float_params = sum(int(np.prod(w.shape)) for w in model.weights) - 72 - 576
    expected = _lut_bytes(72, 4, 8, 4) + _lut_bytes(576, 2, None, 4) + 4 * float_params
    assert report.size_bytes == expected and report.bits == 8 * expected
    assert report.fp32_bytes == 4 * sum(int(np.prod(w.shape)) for w in model.weights)
    assert report.compression == pytest.approx(report.fp32_bytes / expected)
    assert tfadvq.model_size(tfadvq.strip(quantized)).size_bytes == expected
    assert tfadvq.model_size(model, {"conv1": 4, "conv2": 2}).size_bytes == expected
    per_channel = tfadvq.quantize(model, {"conv1": 4, "conv2": 2}, per_channel=True, progress=False)
    channel_tables = _lut_bytes(72, 4, 8, 4) + _lut_bytes(576, 2, 8, 4) + 4 * float_params
    assert tfadvq.model_size(per_channel).size_bytes == channel_tables > expected
    assert tfadvq.model_size(tfadvq.strip(per_channel)).size_bytes == channel_tables
    # int8: conv1's LUT (224 bytes) would outweigh its 72 int8 weights, which stay as they are
    assert _lut_bytes(72, 4, 8, 1) > 72
    int8 = 72 + _lut_bytes(576, 2, 8, 1) + 4 * float_params
    assert tfadvq.model_size(model, {"conv1": 4, "conv2": 2}, activations="int8").size_bytes == int8
    assert tfadvq.model_size(model).compression == 1.0


def test_eight_bit_layers_count_as_int8_never_float32(model):
    report = tfadvq.model_size(model, {"conv2": 8})
    row = next(r for r in report.rows if r["layer"] == "conv2" and r["bits"] == 8)
    assert row["bytes"] == 576 + 4 * 8 + cost.INT8_OVERHEAD_BYTES  # int8 values + a float scale per channel
    int8 = tfadvq.model_size(model, {"conv2": 8}, activations="int8")
    assert int8.size_bytes == report.size_bytes - 4 * 8 - cost.INT8_OVERHEAD_BYTES  # the int8 model's own tensor


def test_uniform_quantizer_has_one_size(model):
    wrapped = tfadvq.quantize(model, {"conv1": 3, "embed": 2}, quantizer="uniform", progress=False)
    assert tfadvq.model_size(wrapped).size_bytes == tfadvq.model_size(tfadvq.strip(wrapped)).size_bytes
    kmeans = tfadvq.quantize(model, {"conv1": 3, "embed": 2}, progress=False)
    assert tfadvq.model_size(wrapped).size_bytes == tfadvq.model_size(kmeans).size_bytes


def _recurrent(layer: keras.layers.Layer) -> keras.Model:
    inputs = keras.Input((12, 10))
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(layer(inputs)))


@pytest.mark.parametrize("layer, kwargs, message", [
    (lambda: keras.layers.GRU(4, return_sequences=True, name="r"), {}, "return_sequences=True \\(TFLM hangs"),
    (lambda: keras.layers.GRU(4, reset_after=False, name="r"), {}, "reset_after=False"),
    (lambda: keras.layers.LSTM(4, unroll=True, name="r"), {}, "unroll=True"),
    (lambda: keras.layers.LSTM(4, activation="relu", name="r"), {}, "non-default activation"),
    (lambda: keras.layers.GRU(4, name="r"), {"activation_bits": 8}, "GRU: the TF 2.17 TFLite converter crashes"),
    (lambda: keras.layers.LSTM(4, name="r"), {"activation_bits": 8, "per_channel": True}, "per_channel=False"),
])
def test_layers_that_cannot_convert_are_refused_when_quantizing(layer, kwargs, message):
    model = _recurrent(layer())
    with pytest.raises(QuantizationError, match=f"'r'.*{message}"):
        tfadvq.quantize(model, 4, progress=False, **kwargs)
    if not kwargs:  # kept float, the rest of the model still quantizes
        assert api.quantized_weights(tfadvq.quantize(model, {"r": None, "out": 4}, progress=False))


def test_plot_writes_png(model, tmp_path):
    quantized = tfadvq.ptq(model, 2, progress=False)
    (wrapper, quantizer), *_ = api.quantized_weights(quantized)
    _, records = tfadvq.strip(quantized)
    path = plot_tensor(quantizer.source.numpy(), records.tensors[0], tmp_path / "h" / "conv1.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_cli_quantize_writes_outputs_and_summary(model, tmp_path, capsys):
    from tfadvq.cli import main

    model.save(tmp_path / "fp.keras")
    assert main(["quantize", "--model", str(tmp_path / "fp.keras"), "--bits", "3", "--plots",
                 "--out", str(tmp_path / "q")]) == 0
    out = capsys.readouterr().out
    assert "prelu" in out and "float (not supported)" in out and "compression" in out
    summary = json.loads((tmp_path / "q" / "summary.json").read_text())
    assert 1.0 < summary["compression"] < 32 / 3
    assert len(list((tmp_path / "q" / "plots").glob("*.png"))) == 3
    plain = keras.models.load_model(tmp_path / "q" / "plain.keras")
    np.testing.assert_allclose(plain(X).numpy(), model_io.load_model(tmp_path / "q" / "model.h5")(X).numpy(),
                               atol=1e-5)
