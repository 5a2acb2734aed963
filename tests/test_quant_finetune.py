"""Quantization-aware fine-tuning on the tiny generated corpus: API (AAM and distillation) and CLI.

After fine-tuning, the codebooks must have followed the trained weights and
the stripped model must hold at most 2^b distinct values per quantized layer.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import tfadvq
from tfadvq.cli import main
from tfadvq.compat import keras
from tfadvq.config import dump_yaml
from tfadvq.errors import ConfigError
from tfadvq.quant import api, kmeans1d
from tfadvq.quant.finetune import audio_inputs, finetune, finetune_config, input_data
from tfadvq.training import training_data
from tfadvq.voxceleb import load_corpus
from test_training import tiny_config  # tests/ is on sys.path under pytest

BITS = 3


def small_embedding_model() -> keras.Model:
    """Conv/BN/Dense embedding net over ``[frames, 80]`` fbanks: every supported class the models use."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, 80))
    x = keras.layers.Reshape((-1, 80, 1))(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv1")(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn1")(x))
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(16, name="embed")(x), name="small")


def distinct_values_per_layer(model: keras.Model, layers: list[str]) -> dict[str, int]:
    return {name: np.unique(model.get_layer(name).kernel.numpy()).size for name in layers}


@pytest.mark.parametrize("objective", ["distill", "aam"])
def test_finetune_trains_refreshes_codebooks_and_strips_onto_them(tiny_corpus, objective):
    config = finetune_config(tiny_config(tiny_corpus, steps_per_epoch=3), epochs=2)
    data = training_data(config, load_corpus(tiny_corpus).train)
    teacher = small_embedding_model()
    quantized = tfadvq.quantize(small_embedding_model(), BITS, progress=False)
    pairs = api.quantized_weights(quantized)
    before_w = [q.source.numpy().copy() for _, q in pairs]
    before_c = [q.value_table(w) for (_, q), w in zip(pairs, before_w)]

    epoch_means = []
    keep = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epoch_means.append(logs["loss"]))
    tuned = finetune(quantized, data, config, objective, teacher=teacher, refresh_steps=2, callbacks=[keep],
                     verbose=0)

    # every step's loss is kept, and each epoch's steps average to what Keras reported for the epoch
    assert len(tuned.losses) == 6 and np.all(np.isfinite(tuned.losses))
    np.testing.assert_allclose([np.mean(tuned.losses[:3]), np.mean(tuned.losses[3:])], epoch_means, rtol=1e-4)
    record = tuned.record()
    assert record["steps"] == 6 and [p[0] for p in record["loss_curve"]] == [1, 2, 3, 4, 5, 6]
    assert record["first_loss"] == pytest.approx(tuned.losses[0], rel=1e-3)
    assert (tuned.head_weights is not None) == (objective == "aam")
    for (wrapper, q), w0, c0 in zip(pairs, before_w, before_c):
        w, c = q.source.numpy(), q.value_table(q.source.numpy())
        assert not np.allclose(w, w0), f"{wrapper.layer.name}: weights did not train"
        assert not np.allclose(c, c0), f"{wrapper.layer.name}: codebook was not refreshed"
        # The last refresh ran on the final weights: the codebook is a Lloyd fixed point of them,
        # and it fits them better than the stale pre-training codebook does.
        np.testing.assert_allclose(q.fit(w, init=c, search=False), c, rtol=1e-6, atol=1e-8)
        assert kmeans1d.squared_error(w, c) < kmeans1d.squared_error(w, c0)
    plain, records = tfadvq.strip(quantized)
    layers = [t.layer for t in records.tensors]
    assert layers == ["conv1", "conv2", "embed"]
    for name, count in distinct_values_per_layer(plain, layers).items():
        assert count <= 2 ** BITS, f"{name}: {count} distinct values after strip"
    x = next(iter(data.dataset))[0][:2]
    np.testing.assert_allclose(plain(x, training=False), quantized(x, training=False), rtol=1e-4, atol=1e-5)


def test_cli_quantize_with_finetuning_end_to_end(tiny_corpus, tmp_path, capsys):
    model_path, config_path, out = tmp_path / "fp.keras", tmp_path / "ft.yaml", tmp_path / "q"
    small_embedding_model().save(model_path)
    dump_yaml(tiny_config(tiny_corpus, steps_per_epoch=2), config_path)
    assert main(["quantize", "--model", str(model_path), "--bits", str(BITS), "--finetune-epochs", "1",
                 "--corpus", str(tiny_corpus), "--objective", "distill", "--train-config", str(config_path),
                 "--refresh-steps", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fine-tuning" in printed and "distill" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finetune"]["steps"] == 2 and np.isfinite(summary["finetune"]["last_loss"])
    plain = keras.models.load_model(out / "plain.keras")
    for name, count in distinct_values_per_layer(plain, ["conv1", "conv2", "embed"]).items():
        assert count <= 2 ** BITS, f"{name}: {count} distinct values in plain.keras"


def test_finetune_of_a_model_without_its_training_config_is_refused(tmp_path, capsys):
    small_embedding_model().save(tmp_path / "m.keras")
    assert main(["quantize", "--model", str(tmp_path / "m.keras"), "--finetune-epochs", "1",
                 "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfadvq: error:") and "train.yaml is missing" in err and "--train-config" in err
    assert not (tmp_path / "q").exists()
    with pytest.raises(ConfigError, match="--finetune-epochs: 0"):
        finetune_config(tiny_config(tmp_path), epochs=0)


@pytest.mark.parametrize("bits, channels", [(1, 1), (3, 1), (8, 1), (4, 6)])
def test_training_path_is_bit_identical_to_the_foldable_form(bits, channels):
    """The binary-search forward used while training picks exactly the inference form's entries."""
    from tfadvq.compat import tf
    from tfadvq.quant.quantizers import nearest_in_table, nearest_in_table_indexed

    rng = np.random.default_rng(bits)
    w = rng.standard_t(3, size=(3, 3, 5, channels)).astype(np.float32)
    table = np.sort(rng.choice(w.ravel(), size=(channels, 2 ** bits)), axis=1).astype(np.float32)
    w[0, 0, 0] = (table[:, 0] + table[:, 1]) / 2  # exact midpoints: ties go to the lower entry
    table = table[0] if channels == 1 else table
    inference = nearest_in_table(tf.constant(w), tf.constant(table)).numpy()
    training = nearest_in_table_indexed(tf.constant(w), tf.constant(table)).numpy()
    np.testing.assert_array_equal(training, inference)


def mel40_audio_model(seconds: float = 1.0) -> keras.Model:
    """A model with its own front end: raw 16 kHz audio -> 40-band log-mel (tf.signal) -> conv -> embedding."""
    from tfadvq.compat import tf

    keras.utils.set_random_seed(2)
    mel = tf.signal.linear_to_mel_weight_matrix(40, 257, 16000, 20.0, 7600.0)

    def log_mel(wave):
        power = tf.abs(tf.signal.stft(wave, 400, 160, 512)) ** 2
        return tf.math.log(tf.tensordot(power, mel, 1) + 1e-6)

    inputs = keras.Input((int(16000 * seconds),))
    x = keras.layers.Lambda(log_mel, name="log_mel")(inputs)
    x = keras.layers.ReLU()(keras.layers.Conv1D(16, 3, name="conv")(x))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(8, name="embed")(x), name="mel40")


def test_distill_a_model_with_its_own_front_end_on_unlabeled_audio(tiny_corpus):
    paths = [u.path for u in load_corpus(tiny_corpus).train]
    teacher, student = mel40_audio_model(), mel40_audio_model()
    config = finetune_config(tiny_config(tiny_corpus), epochs=1)
    data = input_data(audio_inputs(paths, 1.0, 8), steps_per_epoch=3, model=teacher)
    x = next(iter(data.dataset))
    assert x.shape == (8, 16000) and np.abs(x.numpy()).max() > 0
    quantized = tfadvq.quantize(student, BITS, progress=False)
    q = api.quantized_weights(quantized)[0][1]
    before = q.value_table(q.source.numpy()).copy()
    tuned = finetune(quantized, data, config, "distill", teacher=teacher, refresh_steps=1, verbose=0)
    assert len(tuned.losses) > 0 and np.isfinite(tuned.losses).all()
    assert not np.allclose(q.value_table(None), before), "codebooks were not refreshed"
    with pytest.raises(ConfigError, match="objective aam: needs num_classes"):
        finetune(quantized, data, config, "aam")
    # Batches of another shape are refused naming both shapes and the ways to pass inputs.
    with pytest.raises(ConfigError, match=r"expects input batches of shape \(None, 16000\).*\(8, 8000\).*--inputs"):
        input_data(audio_inputs(paths, 0.5, 8), steps_per_epoch=1, model=teacher)


def test_cli_refuses_a_model_of_another_input_before_work_and_takes_its_inputs(tiny_corpus, tmp_path, capsys):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((160, 40))
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(8, 3, name="conv")(inputs))
    keras.Model(inputs, keras.layers.Dense(8, name="embed")(x)).save(tmp_path / "mel40.keras")
    dump_yaml(tiny_config(tiny_corpus, steps_per_epoch=2), tmp_path / "ft.yaml")
    common = ["quantize", "--model", str(tmp_path / "mel40.keras"), "--bits", "3", "--finetune-epochs", "1",
              "--objective", "distill", "--train-config", str(tmp_path / "ft.yaml"), "--refresh-steps", "1"]
    assert main([*common, "--corpus", str(tiny_corpus), "--out", str(tmp_path / "q1")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfadvq: error:") and "Traceback" not in err
    assert "expects input batches of shape (None, 160, 40)" in err and "(None, 98, 80)" in err
    assert "--inputs X.npy (an array [N, 160, 40]" in err and not (tmp_path / "q1").exists()
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(16, 160, 40)).astype(np.float32))
    assert main([*common, "--inputs", str(tmp_path / "x.npy"), "--weighted", "--fisher-batches", "1",
                 "--bias-correction", "--out", str(tmp_path / "q2")]) == 0
    printed = capsys.readouterr().out
    assert "bias correction" in printed and "fine-tuning" in printed
    summary = json.loads((tmp_path / "q2" / "summary.json").read_text())
    assert summary["finetune"]["steps"] == 2 and summary["settings"]["weighted"] is True
