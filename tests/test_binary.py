"""Binary (1-bit) quantizers: formulas, gradients vs larq, training updates, API, reload, export under TFLM."""
import larq
import numpy as np
import pytest

import tfadvq
from converters import convert_model, run_tflm
from converters.tflm import parity
from tfadvq.compat import keras, tf
from tfadvq.errors import QuantizationError, TfadvqError
from tfadvq.quant import api, binary, catalog, cost, kmeans1d, spec
from tfadvq.quant import quantizers as qz

FRAMES, MELS = 16, 20


def _toy(seed: int = 0) -> keras.Model:
    """Conv + BN, depthwise, conv, embedding Dense: the layer families of a speaker encoder."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((FRAMES, MELS))
    x = keras.layers.Reshape((FRAMES, MELS, 1))(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.Conv2D(12, 3, strides=2, padding="same", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="embedding")(x), name="toy")


def _inputs(n: int = 4, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, FRAMES, MELS)).astype(np.float32)


def _skewed(shape, seed: int = 2) -> np.ndarray:
    """Weights whose channels are asymmetric (a lognormal bulk on one side), as after ReLU-fed training."""
    rng = np.random.default_rng(seed)
    return (rng.lognormal(-3, 0.6, shape) * np.where(rng.random(shape) < 0.3, -1, 1)).astype(np.float32)


def _quantize_dense(quantizer: qz.TableQuantizer, w: np.ndarray):
    layer = keras.layers.Dense(w.shape[1], use_bias=False)
    layer.build((None, w.shape[0]))
    layer.kernel.assign(w)
    quantizer.build(w.shape, "kernel", layer)
    return layer


def test_static_forward_is_mean_abs_times_sign_per_channel():
    w = np.random.default_rng(0).normal(size=(9, 4)).astype(np.float32)
    w[0, 0] = 0.0  # zero goes to the lower value, as in every table quantizer (larq: +1)
    q = binary.StaticBinaryQuantizer(per_channel=True)
    out = q(tf.constant(w), False, {}).numpy()
    alpha = np.abs(w).mean(axis=0)
    np.testing.assert_allclose(out, np.where(w > 0, alpha, -alpha), rtol=1e-6)
    assert out[0, 0] < 0
    np.testing.assert_allclose(q.value_table(w), np.stack([-alpha, alpha], axis=1), rtol=1e-6)
    per_tensor = binary.StaticBinaryQuantizer(per_channel=False)
    assert per_tensor.value_table(w).shape == (2,)
    np.testing.assert_allclose(np.unique(per_tensor(tf.constant(w), False, {}).numpy()),
                               [-np.abs(w).mean(), np.abs(w).mean()], rtol=1e-6)


@pytest.mark.parametrize("cls", [binary.StaticBinaryQuantizer, binary.AdaptiveBinaryQuantizer])
def test_gradient_is_larq_ste_sign_cancellation(cls):
    """dq/dw = 1[|w| <= clip]: the same mask as larq's ste_sign gradient, whatever the scale."""
    w = np.linspace(-0.9, 0.9, 24, dtype=np.float32).reshape(6, 4)
    quantizer = cls(clip_value=0.5)
    layer = _quantize_dense(quantizer, w)
    weights = {"codebook": quantizer._codebook} if isinstance(quantizer, qz.KMeansQuantizer) else {}
    upstream = np.random.default_rng(3).normal(size=w.shape).astype(np.float32)
    with tf.GradientTape() as tape:
        ours = tf.reduce_sum(quantizer(layer.kernel, False, weights) * upstream)
    x = tf.Variable(w)
    with tf.GradientTape() as tape_larq:
        theirs = tf.reduce_sum(larq.quantizers.ste_sign(x, clip_value=0.5) * upstream)
    gradient = tape.gradient(ours, layer.kernel).numpy()
    np.testing.assert_array_equal(gradient, tape_larq.gradient(theirs, x).numpy())
    assert 0 < np.count_nonzero(gradient) < w.size


def test_adaptive_table_is_the_exact_two_means_and_asymmetric():
    w = _skewed((64, 3))
    quantizer = binary.AdaptiveBinaryQuantizer(per_channel=True)
    _quantize_dense(quantizer, w)
    table = quantizer.value_table(w)
    for c in range(3):  # brute force over every split of the sorted channel
        v = np.sort(w[:, c])
        errors = [((v[:i] - v[:i].mean()) ** 2).sum() + ((v[i:] - v[i:].mean()) ** 2).sum()
                  for i in range(1, v.size)]
        best = int(np.argmin(errors)) + 1
        np.testing.assert_allclose(table[c], [v[:best].mean(), v[best:].mean()], rtol=1e-5)
        assert abs(table[c, 0] + table[c, 1]) > 0.05 * (table[c, 1] - table[c, 0])  # not forced symmetric
    static = binary.StaticBinaryQuantizer(per_channel=True)
    assert kmeans1d.squared_error(w[:, 0], table[0]) < kmeans1d.squared_error(w[:, 0], static.value_table(w)[0])


def test_adaptive_table_follows_every_training_step_by_one_lloyd_step():
    rng = np.random.default_rng(4)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(5, name="fc")(inputs))
    wrapped = tfadvq.quantize(model, bits=1, binary={"name": "adaptive", "clip_value": None}, per_channel=True,
                              progress=False)  # no latent clipping: the step sees the weights as they are
    (_, quantizer), = api.quantized_weights(wrapped)
    wrapped.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    x, y = rng.normal(size=(8, 6)).astype(np.float32), 3 * rng.normal(size=(8, 5)).astype(np.float32)
    for _ in range(3):
        before_table = quantizer.value_table(None).copy()
        before_w = quantizer.source.numpy().copy()
        wrapped.train_on_batch(x, y)
        expected = binary.lloyd_step(tf.constant(before_w), tf.constant(before_table)).numpy()
        np.testing.assert_allclose(quantizer.value_table(None), expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(quantizer.source.numpy(), before_w)
    plain, records = tfadvq.strip(wrapped)  # the stripped model holds exactly the current table
    np.testing.assert_allclose(wrapped(x, training=False).numpy(), plain(x).numpy(), atol=1e-6)
    assert all(np.unique(records.tensors[0].values()[:, c]).size <= 2 for c in range(5))


def test_latent_weights_are_clipped_while_training_only():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="fc")(inputs))
    model.get_layer("fc").kernel.assign(np.linspace(-2, 2, 12).reshape(4, 3).astype(np.float32))
    wrapped = tfadvq.quantize(model, bits=1, binary={"name": "static", "clip_value": 1.5}, progress=False)
    (_, quantizer), = api.quantized_weights(wrapped)
    wrapped(np.ones((1, 4), np.float32), training=False)
    assert np.abs(quantizer.source.numpy()).max() == pytest.approx(2.0)  # inference leaves it alone
    wrapped.compile(optimizer=keras.optimizers.SGD(1e-4), loss="mse")
    wrapped.train_on_batch(np.ones((2, 4), np.float32), np.zeros((2, 3), np.float32))
    assert np.abs(quantizer.source.numpy()).max() <= 1.5 + 1e-3


@pytest.mark.parametrize("quantizer", [binary.StaticBinaryQuantizer(per_channel=False, clip_value=None),
                                       binary.AdaptiveBinaryQuantizer(channel_dims=2, clip_value=0.3)])
def test_config_round_trip_and_lookup_by_name(quantizer):
    assert type(quantizer).from_config(quantizer.get_config()) == quantizer
    assert keras.utils.deserialize_keras_object(keras.utils.serialize_keras_object(quantizer)) == quantizer
    name = "binary_static" if isinstance(quantizer, binary.StaticBinaryQuantizer) else "binary_adaptive"
    assert catalog.get({"name": name, **quantizer.get_config()}) == quantizer


def test_bad_requests_raise_naming_what_is_wrong():
    with pytest.raises(QuantizationError, match="bits=1"):
        binary.StaticBinaryQuantizer(bits=2)
    with pytest.raises(QuantizationError, match="clip_value"):
        binary.AdaptiveBinaryQuantizer(clip_value=-1.0)
    model = _toy()
    with pytest.raises(QuantizationError, match="unknown scheme 'ternary'.*'adaptive', 'static'"):
        tfadvq.quantize(model, bits=1, binary="ternary", progress=False)
    with pytest.raises(QuantizationError, match="no weight is quantized at 1 bit"):
        tfadvq.quantize(model, bits=4, binary="static", progress=False)


def _tflite_ops(model: keras.Model) -> list[str]:
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    return sorted(d["op_name"] for d in tf.lite.Interpreter(model_content=flatbuffer)._get_ops_details())


@pytest.fixture(scope="module")
def float_ops() -> list[str]:
    ops = _tflite_ops(_toy())
    assert ops.count("CONV_2D") == 2 and "DEPTHWISE_CONV_2D" in ops and "FULLY_CONNECTED" in ops
    return ops


@pytest.mark.parametrize("scheme", ["static", "adaptive"])
def test_export_is_a_two_entry_lut_counted_by_the_cost_model_and_run_by_tflm(scheme, float_ops, tmp_path):
    model = _toy()
    wrapped = tfadvq.quantize(model, bits=1, binary=scheme, per_channel=True, progress=False)
    cls = binary.StaticBinaryQuantizer if scheme == "static" else binary.AdaptiveBinaryQuantizer
    assert all(type(q) is cls for _, q in api.quantized_weights(wrapped))
    x = _inputs()
    wrapped.save(tmp_path / "q.h5")  # reload (tfmot wrappers need .h5)
    reloaded = api.load_model(tmp_path / "q.h5")
    np.testing.assert_allclose(reloaded(x, training=False).numpy(), wrapped(x, training=False).numpy(), atol=1e-6)
    assert [type(q) for _, q in api.quantized_weights(reloaded)] == [cls] * 4

    # The converter folds the quantizer away: the same operators as the float model, nothing more.
    assert _tflite_ops(wrapped) == float_ops

    plain, records = tfadvq.strip(reloaded)
    result = convert_model(plain, records.bits_by_layer(), FRAMES)
    assert {w.layer: (w.bits, w.lut) for w in result.weights} == {n: (1, True) for n in ("stem", "dw", "conv",
                                                                                         "embedding")}
    assert max(w.max_distinct for w in result.weights) <= 2  # BN folded: still 2 values per channel
    assert parity(plain(x).numpy(), run_tflm(result.model, x)).min_cosine > 0.999
    planned = tfadvq.model_size(wrapped)
    one_bit = [r for r in planned.rows if r["bits"] == 1]
    emb = [r for r in one_bit if r["layer"] == "embedding"][0]  # [in, out] kernel -> [out, in] tensor
    assert emb["bytes"] == cost.tensor_cost((10, 12), 1, axis=0).total
    assert result.planned_bytes == pytest.approx(len(result.model), rel=0.02)


def test_higher_precision_ends_compose_with_binary():
    model = _toy()
    bits = spec.higher_precision_ends(model, bits=1, end_bits=8)
    wrapped = tfadvq.quantize(model, bits=bits, binary="adaptive", per_channel=True, progress=False)
    kinds = {w.layer.name: (type(q).__name__, q.bits) for w, q in api.quantized_weights(wrapped)}
    assert kinds == {"stem": ("KMeansQuantizer", 8), "dw": ("AdaptiveBinaryQuantizer", 1),
                     "conv": ("AdaptiveBinaryQuantizer", 1), "embedding": ("KMeansQuantizer", 8)}
    all_binary = tfadvq.quantize(model, bits=1, binary="adaptive", per_channel=True, progress=False)
    sized = {r["layer"]: r["bits"] for r in tfadvq.model_size(wrapped).rows if r["bits"] < 32}
    assert sized == {"stem": 8, "dw": 1, "conv": 1, "embedding": 8}
    x = _inputs()
    reference = model(x).numpy()
    closer = [parity(reference, m(x, training=False).numpy()).min_cosine for m in (wrapped, all_binary)]
    assert closer[0] > closer[1]  # wider ends lose less
    with pytest.raises(QuantizationError, match="quantizable layer"):
        inputs = keras.Input((3,))
        spec.higher_precision_ends(keras.Model(inputs, keras.layers.Dense(2)(inputs)))


def test_weight_plot_has_a_panel_per_method(tmp_path):
    from tfadvq.plots import plot_binary_weights

    model = _toy()
    before = model.get_layer("conv").kernel.numpy()
    after = {}
    for scheme in ("static", "adaptive"):
        _, records = tfadvq.strip(tfadvq.quantize(model, bits=1, binary=scheme, per_channel=True, progress=False))
        after[scheme] = (None, records.get("conv", "kernel"))
    path = plot_binary_weights(before, after, tmp_path / "w.png")
    import matplotlib.image

    height, width = matplotlib.image.imread(path).shape[:2]
    assert width > 1.8 * height  # two panels side by side


def test_cli_flag_and_recipe_stage_quantize_with_the_binary_quantizers(tmp_path, capsys):
    from tfadvq.cli import main
    from tfadvq.recipe import parse_recipe, run_recipe
    from tfadvq.rundir import QuantDir

    model = _toy()
    model.save(tmp_path / "toy.keras")
    assert main(["quantize", "--model", str(tmp_path / "toy.keras"), "--bits", "1", "--binary", "static",
                 "--per-channel", "--out", str(tmp_path / "cli")]) == 0
    assert "compression" in capsys.readouterr().out  # the summary table
    cli = api.load_model(QuantDir(tmp_path / "cli").wrapped)
    assert {type(q) for _, q in api.quantized_weights(cli)} == {binary.StaticBinaryQuantizer}

    recipe = parse_recipe({"stages": [
        {"type": "model", "path": str(tmp_path / "toy.keras")},
        {"type": "quantize", "model": "model", "bits": 1, "binary": "adaptive", "binary_clip": 0.5,
         "end_bits": 8, "per_channel": True}]}, "binary test")
    run_recipe(recipe, tmp_path / "work")
    staged = api.load_model(QuantDir(tmp_path / "work" / "quantize").wrapped)
    kinds = {w.layer.name: (type(q).__name__, q.bits, getattr(q, "clip_value", None))
             for w, q in api.quantized_weights(staged)}
    assert kinds == {"stem": ("KMeansQuantizer", 8, None), "dw": ("AdaptiveBinaryQuantizer", 1, 0.5),
                     "conv": ("AdaptiveBinaryQuantizer", 1, 0.5), "embedding": ("KMeansQuantizer", 8, None)}
    with pytest.raises(TfadvqError, match="binary 'ternary'; accepted: static, adaptive"):
        parse_recipe({"stages": [{"type": "model", "path": "m.keras"},
                                 {"type": "quantize", "model": "model", "bits": 1, "binary": "ternary"}]}, "r")
