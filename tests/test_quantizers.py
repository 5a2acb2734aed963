"""Value-table quantizers: forward/backward, serialization, layer coverage, TFLite folding, refresh."""
import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

from tfadvq.compat import keras, tf
from tfadvq.errors import QuantizationError
from tfadvq.quant import api, catalog, kmeans1d, layer_rules
from tfadvq.quant import quantizers as qz
from tfadvq.quant.codebook_refresh import CodebookRefresh


def test_forward_is_exact_nearest_centroid_and_gradient_is_straight_through():
    rng = np.random.default_rng(0)
    w = tf.Variable(rng.normal(size=(3, 3, 4, 5)).astype(np.float32))
    table = tf.constant(np.sort(rng.normal(size=16)).astype(np.float32))
    with tf.GradientTape() as tape:
        q = qz.straight_through(w, qz.nearest_in_table(w, table))
        loss = tf.reduce_sum(q * 3.0)
    nearest = table.numpy()[np.argmin(np.abs(w.numpy()[..., None] - table.numpy()), axis=-1)]
    np.testing.assert_array_equal(q.numpy(), nearest)  # exact, not merely close
    np.testing.assert_allclose(tape.gradient(loss, w).numpy(), 3.0)


def test_per_channel_forward_uses_each_channels_table():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(6, 3)).astype(np.float32)
    tables = np.sort(rng.normal(size=(3, 4)), axis=1).astype(np.float32)
    q = qz.nearest_in_table(tf.constant(w), tf.constant(tables)).numpy()
    for c in range(3):
        np.testing.assert_array_equal(q[:, c], tables[c][kmeans1d.assign(w[:, c], tables[c])])


@pytest.mark.parametrize("quantizer", [qz.KMeansQuantizer(3, per_channel=True, channel_dims=2),
                                       qz.KMeansQuantizer(2, train_codebook=True), qz.UniformQuantizer(5)])
def test_get_config_round_trip_and_registry(quantizer):
    restored = type(quantizer).from_config(quantizer.get_config())
    assert restored == quantizer
    config = keras.utils.serialize_keras_object(quantizer)
    assert keras.utils.deserialize_keras_object(config) == quantizer
    by_name = catalog.get({"name": "kmeans" if isinstance(quantizer, qz.KMeansQuantizer) else "uniform",
                      **quantizer.get_config()})
    assert by_name == quantizer


def test_registry_rejects_unknown_quantizer_and_bad_bits():
    with pytest.raises(QuantizationError, match="'ternary'; accepted: .*'binary_adaptive'.*'kmeans'.*'uniform'"):
        catalog.get("ternary", bits=2)
    with pytest.raises(QuantizationError, match="KMeansQuantizer\\(bits\\): 9"):
        qz.KMeansQuantizer(9)


def test_uniform_value_table_matches_forward():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(8, 4)).astype(np.float32)
    for bits in (1, 3):
        u = qz.UniformQuantizer(bits)
        q = u(tf.constant(w), False, {}).numpy()
        table = u.value_table(w)
        assert table.shape == (4, 2 ** bits)
        for c in range(4):
            assert set(np.unique(q[:, c])) <= set(table[c])


LAYERS = {
    "conv1d": (lambda: keras.layers.Conv1D(4, 3), (6, 2), ["kernel"]),
    "conv2d": (lambda: keras.layers.Conv2D(4, 3), (6, 6, 2), ["kernel"]),
    "depthwise": (lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2), (6, 6, 3), ["depthwise_kernel"]),
    "dense": (lambda: keras.layers.Dense(5), (7,), ["kernel"]),
    "lstm": (lambda: keras.layers.LSTM(4), (5, 3), ["kernel", "recurrent_kernel"]),
    "gru": (lambda: keras.layers.GRU(4), (5, 3), ["kernel", "recurrent_kernel"]),
}


def _single_layer_model(make, shape):
    inputs = keras.Input(shape)
    return keras.Model(inputs, make()(inputs))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_each_supported_layer_really_uses_quantized_weights(name):
    """The wrapped layer equals its plain twin whose weights are set to the codebook values."""
    make, shape, weights = LAYERS[name]
    model = _single_layer_model(make, shape)
    quantized = api.quantize(model, bits=2, progress=False)
    plain, records = api.strip(quantized)
    assert [t.weight for t in records.tensors] == weights
    for t in records.tensors:
        assert np.unique(t.values()).size <= 4
    x = np.random.default_rng(3).normal(size=(2, *shape)).astype(np.float32)
    np.testing.assert_allclose(quantized(x, training=False).numpy(), plain(x).numpy(), atol=1e-5)
    assert not np.allclose(model(x).numpy(), plain(x).numpy(), atol=1e-4)  # quantization did something


def test_every_class_of_the_support_table_is_covered_here():
    assert {type(make()) for make, _, _ in LAYERS.values()} == set(layer_rules.RULES)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_tflite_layout_keeps_the_quantizers_channels(name):
    """Each quantizer channel (trailing ``channel_dims``) is one channel of the TFLite tensors, same values."""
    make, shape, _ = LAYERS[name]
    layer = make()
    layer.build((None, *shape))
    rule = layer_rules.rule_for(layer)
    for attr, layout in zip(rule.weights, rule.tflite):
        w = np.random.default_rng(6).normal(size=layer_rules.get_attr(layer, attr).shape).astype(np.float32)
        tensors = layout.to_tflite(w)
        assert [t.shape for t in tensors] == layout.shapes(w.shape) and len(tensors) == len(layout.inputs)
        keras_rows = w.reshape(-1, int(np.prod(w.shape[w.ndim - rule.channel_dims:]))).T
        tflite_rows = np.concatenate([np.moveaxis(t, layout.axis, 0).reshape(t.shape[layout.axis], -1)
                                      for t in tensors])
        np.testing.assert_array_equal(np.sort(keras_rows, axis=1), np.sort(tflite_rows, axis=1))


def test_tflite_conversion_folds_the_quantizer_away():
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3)(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    for per_channel in (False, True):
        quantized = api.quantize(model, bits=3, per_channel=per_channel, progress=False)
        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(quantized).convert()
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
        ops = {d["op_name"] for d in interpreter._get_ops_details()}
        assert ops == {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "RESHAPE"}, ops
        interpreter.allocate_tensors()
        x = np.random.default_rng(4).normal(size=(1, 8, 8, 2)).astype(np.float32)
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        np.testing.assert_allclose(out, quantized(x).numpy(), atol=1e-4)


def test_codebook_refresh_follows_the_float_weights_during_training():
    rng = np.random.default_rng(5)
    model = _single_layer_model(lambda: keras.layers.Dense(8), (6,))
    quantized = api.quantize(model, bits=2, progress=False)
    (_, quantizer), = api.quantized_weights(quantized)
    before = quantizer.value_table(None).copy()
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = rng.normal(size=(64, 8)).astype(np.float32) * 5
    quantized.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    refresh = CodebookRefresh(every_n_steps=2)
    quantized.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[refresh])
    assert refresh.refreshes == 3  # steps 2 and 4, plus the epoch end
    after = quantizer.value_table(None)
    assert not np.allclose(before, after)
    # A refresh is Lloyd from the last codebook: the result is its own fixed point.
    expected = kmeans1d.fit(quantizer.source.numpy(), 4, init=after, search=False)
    np.testing.assert_allclose(after, expected, rtol=1e-5)


@pytest.mark.parametrize("per_channel", [False, True])
def test_trained_codebook_gets_its_weights_gradients_and_is_what_strip_and_reload_keep(per_channel, tmp_path):
    rng = np.random.default_rng(6)
    model = _single_layer_model(lambda: keras.layers.Dense(8), (6,))
    quantized = api.quantize(model, bits=2, per_channel=per_channel, progress=False,
                             quantizer={"name": "kmeans", "train_codebook": True})
    (wrapper, quantizer), = api.quantized_weights(quantized)
    codebook = next(v for v in wrapper.trainable_weights if "codebook" in v.name)
    fitted = codebook.numpy().copy()
    # Gradients: each entry gets the sum over the weights that use it; each weight its own (STE).
    g = rng.normal(size=(6, 8)).astype(np.float32)
    with tf.GradientTape(persistent=True) as tape:
        q = quantizer(quantizer.source, True, {"codebook": codebook})
        loss = tf.reduce_sum(q * g)
    np.testing.assert_array_equal(q.numpy(), qz.nearest_in_table(quantizer.source, tf.constant(fitted)).numpy())
    np.testing.assert_allclose(tape.gradient(loss, quantizer.source).numpy(), g)
    w, table = quantizer.source.numpy(), fitted.reshape(-1, 4)
    index = np.stack([kmeans1d.assign(w[:, c], table[c if per_channel else 0]) for c in range(8)], axis=1)
    expected = np.zeros_like(table)
    np.add.at(expected, ((np.arange(8)[None, :] * np.ones_like(index)) if per_channel else np.zeros_like(index),
                         index), g)
    np.testing.assert_allclose(tape.gradient(loss, codebook).numpy().reshape(-1, 4), expected, rtol=1e-5,
                               atol=1e-6)

    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = rng.normal(size=(64, 8)).astype(np.float32) * 5
    quantized.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    quantized.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[CodebookRefresh(every_n_steps=2)])
    trained = quantizer.value_table(None)
    assert not np.allclose(trained, np.sort(fitted, axis=-1))  # the loss moved it ...
    quantizer.refit()
    np.testing.assert_array_equal(quantizer.value_table(None), trained)  # ... and k-means does not undo it
    assert np.all(np.diff(trained, axis=-1) >= 0)

    plain, _ = api.strip(quantized)
    np.testing.assert_array_equal(plain(x).numpy(), quantized(x, training=False).numpy())
    path = tmp_path / "model.h5"  # as a run directory keeps it: weights by position
    quantized.save(path)
    with tfmot.quantization.keras.quantize_scope(api.custom_objects()):
        reloaded = keras.models.load_model(path)
    (_, again), = api.quantized_weights(reloaded)
    assert again.train_codebook and again == quantizer
    np.testing.assert_array_equal(reloaded(x, training=False).numpy(), quantized(x, training=False).numpy())
