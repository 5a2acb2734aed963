"""Adaptive rounding onto fixed k-means codebooks (tfadvq.quant.adaptive_rounding) on real speech features."""
from __future__ import annotations

import numpy as np
import pytest

import tfadvq
from tfadvq import model_io
from tfadvq.audio import load_audio
from tfadvq.compat import keras, tf
from tfadvq.errors import ConfigError
from tfadvq.features import fbank
from tfadvq.quant import api
from tfadvq.quant.adaptive_rounding import RoundingSettings, adaptive_round, neighbours
from tfadvq.quant.post_training import PTQSettings, post_training
from tfadvq.voxceleb import load_corpus

FRAMES = 60


@pytest.fixture(scope="module")
def features(tiny_corpus) -> tuple[np.ndarray, np.ndarray]:
    """Fbank crops of the tiny corpus: those rounding is fitted on (training speakers) and held-out ones
    (test speakers)."""
    corpus = load_corpus(tiny_corpus)

    def crops(utterances) -> np.ndarray:
        out = []
        for u in utterances:
            feats = fbank(load_audio(u.path)).numpy()
            out += [feats[s:s + FRAMES] for s in range(0, len(feats) - FRAMES + 1, FRAMES)]
        out = np.stack(out).astype(np.float32)
        return (out - out.mean(axis=(0, 1))) / out.std(axis=(0, 1))

    return crops(corpus.train), crops(corpus.test)


def encoder() -> keras.Model:
    """Conv1D (no bias) + BN + ReLU, a depthwise conv, pooling, then a Dense projection."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((FRAMES, 80))
    x = keras.layers.Conv1D(32, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn")(x))
    x = keras.layers.Reshape((FRAMES - 2, 1, 32))(x)
    x = keras.layers.DepthwiseConv2D((3, 1), name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(16, name="fc")(x), name="encoder")


def output_error(model: keras.Model, reference: keras.Model, x: np.ndarray) -> float:
    return float(np.mean((model.predict_on_batch(x) - reference.predict_on_batch(x)) ** 2))


def test_neighbours_bracket_every_weight_per_tensor_and_per_channel():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 3)).astype(np.float32)
    table = np.array([-1.0, 0.0, 0.5, 2.0], np.float32)
    lo, hi = neighbours(w, table, per_channel=False)
    inside = (w >= table[0]) & (w <= table[-1])
    assert np.all(table[lo][inside] <= w[inside]) and np.all(w[inside] <= table[hi][inside])
    assert np.all(hi - lo <= 1) and np.all(lo[w < table[0]] == 0) and np.all(hi[w > table[-1]] == 3)
    tables = np.sort(rng.normal(size=(3, 4)), axis=1).astype(np.float32)
    lo, hi = neighbours(w, tables, per_channel=True)
    for c in range(3):
        col, t = w[:, c], tables[c]
        ok = (col >= t[0]) & (col <= t[-1])
        assert np.all(t[lo[:, c]][ok] <= col[ok]) and np.all(col[ok] <= t[hi[:, c]][ok])


@pytest.mark.parametrize("bits,per_channel", [(2, False), (3, True)])
def test_adaptive_rounding_reconstructs_layers_better_on_the_same_codebooks(features, tmp_path, bits, per_channel):
    seen, held_out = features
    model = encoder()
    nearest = tfadvq.ptq(model, bits, per_channel=per_channel, progress=False)
    adaptive = tfadvq.ptq(model, bits, per_channel=per_channel, progress=False)
    books = [q.value_table(q.source.numpy()).copy() for _, q in api.quantized_weights(adaptive)]
    rows = adaptive_round(model, adaptive, [seen[i:i + 16] for i in range(0, len(seen), 16)],
                          RoundingSettings(iterations=150, batch_size=16))
    assert [r["weight"] for r in rows] == ["conv/kernel", "dw/depthwise_kernel", "fc/kernel"]
    for r in rows:
        assert r["error"] <= r["error_nearest"]
    assert any(r["rounding"] == "adaptive" and r["error"] < 0.9 * r["error_nearest"] and r["changed"] > 0
               for r in rows)
    # Same codebooks; every weight is one of its two neighbouring centroids; a normal quantized model.
    for (_, q), book, (_, q0) in zip(api.quantized_weights(adaptive), books, api.quantized_weights(nearest)):
        np.testing.assert_array_equal(q.value_table(q.source.numpy()), book)
        lo, hi = neighbours(q0.source.numpy(), book, per_channel)
        w = q.source.numpy()
        pick = lambda i: np.take_along_axis(book, i.reshape(-1, book.shape[0]).T, 1).T.reshape(w.shape) \
            if per_channel else book[i]  # noqa: E731
        assert np.all((w == pick(lo)) | (w == pick(hi)))
    plain, records = tfadvq.strip(adaptive)
    assert all(np.unique(t.indices).size <= 2 ** bits for t in records.tensors)
    # The whole model, on held-out speakers it was not fitted on, is closer to the float model.
    assert output_error(plain, model, held_out) < output_error(tfadvq.strip(nearest)[0], model, held_out)
    # Saved and reloaded, the wrapped model keeps the chosen rounding.
    path = tmp_path / "model.h5"
    adaptive.save(path)
    reloaded = model_io.load_model(path)
    np.testing.assert_allclose(reloaded.predict_on_batch(held_out), adaptive.predict_on_batch(held_out),
                               rtol=1e-5, atol=1e-6)


def test_post_training_rounding_setting_needs_data_and_names_what_it_accepts(features):
    with pytest.raises(ConfigError, match="rounding 'up'; accepted: nearest, adaptive"):
        PTQSettings(rounding="up")
    settings = PTQSettings(bits=3, rounding="adaptive")
    assert settings.needs_data
    with pytest.raises(ConfigError, match="need data"):
        post_training(encoder(), settings)
    seen, _ = features
    data = tf.data.Dataset.from_tensor_slices(seen[:32]).batch(16)
    result = post_training(encoder(), settings, data, progress=False)
    # The default path with data: weighted codebooks, then the rounding, then bias correction of what it leaves.
    assert len(result.rounding) == 3 and result.settings.weighted and result.corrections is not None


def test_recurrent_input_kernel_is_rounded_and_the_recurrent_kernel_stays_nearest(features):
    seen, _ = features
    keras.utils.set_random_seed(4)
    inputs = keras.Input((FRAMES, 80))
    x = keras.layers.LSTM(8, name="lstm")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(8, name="fc")(x))
    wrapped = tfadvq.ptq(model, 2, progress=False)
    rows = {r["weight"]: r for r in adaptive_round(model, wrapped, [seen[:32]],
                                                   RoundingSettings(iterations=100, batch_size=16))}
    assert set(rows) == {"lstm/kernel", "lstm/recurrent_kernel", "fc/kernel"}
    assert rows["lstm/kernel"]["error"] < rows["lstm/kernel"]["error_nearest"]
    assert rows["lstm/recurrent_kernel"]["rounding"].startswith("nearest (LSTM: output not linear")


def test_quantize_command_rounds_adaptively_on_the_given_inputs(features, tmp_path, capsys):
    from tfadvq.cli import main

    seen, held_out = features
    model = encoder()
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", seen[:32])
    for rounding in ("nearest", "adaptive"):
        assert main(["quantize", "--model", str(tmp_path / "m.keras"), "--bits", "2", "--rounding", rounding,
                     "--inputs", str(tmp_path / "x.npy"), "--out", str(tmp_path / rounding)]) == 0
    assert "adaptive rounding" in capsys.readouterr().out
    errors = {r: output_error(model_io.load_model(tmp_path / r), model, held_out) for r in ("nearest", "adaptive")}
    assert errors["adaptive"] < errors["nearest"]
