"""Post-training quantization of a model we did not train: bits per weight tensor, importance-weighted
codebooks (kept for refits), per-channel tables chosen where they pay, bias correction."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

import tfadvq
from tfadvq import model_io
from tfadvq.compat import keras
from tfadvq.config import dump_yaml
from tfadvq.errors import QuantizationError
from tfadvq.quant import BitsSpec, CodebookRefresh, api, bias_correction, kmeans1d, load_spec, sensitivity, spec

X = np.random.default_rng(0).normal(size=(16, 20, 12)).astype(np.float32)


def lstm_model() -> keras.Model:
    """An LSTM encoder (two quantizable weights in one layer) and a Dense projection."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((20, 12))
    x = keras.layers.LSTM(16, name="lstm")(inputs)
    return keras.Model(inputs, keras.layers.Dense(8, name="fc")(x), name="lstm_encoder")


def conv_bn_model() -> keras.Model:
    """Conv (no bias) + BN + ReLU, then a Dense with bias: both bias-correction paths."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((20, 12))
    x = keras.layers.Conv1D(16, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn")(x))
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(8, name="fc")(x), name="conv_bn")
    bn = model.get_layer("bn")
    rng = np.random.default_rng(2)
    bn.set_weights([rng.uniform(0.5, 1.5, 16), rng.normal(0, 0.2, 16), rng.normal(0, 0.3, 16),
                    rng.uniform(0.5, 2.0, 16)])
    return model


def distinct(plain: keras.Model, layer: str, attr: str) -> int:
    return np.unique(spec.layer_rules.get_attr(plain.get_layer(layer), attr).numpy()).size


def test_lstm_kernels_take_their_own_bits_and_one_can_stay_float(tmp_path):
    model = lstm_model()
    path = tmp_path / "bits.yaml"
    dump_yaml(BitsSpec(default=3, weights={"lstm/kernel": 4, "lstm/recurrent_kernel": 2}), path)
    plain, records = tfadvq.strip(tfadvq.quantize(model, load_spec(path), progress=False))
    assert {(t.layer, t.weight): t.bits for t in records.tensors} == {
        ("lstm", "kernel"): 4, ("lstm", "recurrent_kernel"): 2, ("fc", "kernel"): 3}
    assert distinct(plain, "lstm", "cell.kernel") <= 16 < distinct(model, "lstm", "cell.kernel")
    assert distinct(plain, "lstm", "cell.recurrent_kernel") <= 4

    wrapped = tfadvq.quantize(model, {"lstm/recurrent_kernel": 3, "fc": 4}, progress=False)
    plain, records = tfadvq.strip(wrapped)
    assert [(t.layer, t.weight) for t in records.tensors] == [("lstm", "recurrent_kernel"), ("fc", "kernel")]
    np.testing.assert_array_equal(plain.get_layer("lstm").cell.kernel.numpy(), model.get_layer("lstm").cell.kernel)
    rows = [r for r in api.summary(wrapped) if r["layer"] == "lstm"]
    assert [(r["weight"], r["bits"]) for r in rows] == [("recurrent_kernel", 3),
                                                        ("kernel", "float (not in bits spec)")]
    sizes = tfadvq.model_size(lstm_model(), {"lstm/recurrent_kernel": 3, "fc": 4}).rows
    assert [r["bits"] for r in sizes if r["layer"] == "lstm"] == [3, 32, 32]  # kernel float, bias float


@pytest.mark.parametrize("bits, message", [
    ({"lstm/kernal": 4}, r"unknown weight key 'lstm/kernal'.*'lstm/kernel', 'lstm/recurrent_kernel'"),
    ({"lstm/kernel": 9}, r"bits weights\['lstm/kernel'\]: 9"),
])
def test_bad_weight_keys_raise(bits, message):
    with pytest.raises(QuantizationError, match=message):
        tfadvq.quantize(lstm_model(), bits, progress=False)


def test_mapping_without_default_warns_naming_what_stays_float(caplog):
    with caplog.at_level(logging.WARNING, logger="tfadvq.quant.api"):
        tfadvq.quantize(lstm_model(), {"fc": 4}, progress=False)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "lstm/kernel, lstm/recurrent_kernel" in warned[0] and "default" in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tfadvq.quant.api"):  # named float on purpose: no warning
        tfadvq.quantize(lstm_model(), {"fc": 4, "lstm": None}, progress=False)
        tfadvq.quantize(lstm_model(), 4, progress=False)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("per_channel", [False, True])
def test_importances_weigh_the_fit_and_every_refit(per_channel):
    model = lstm_model()
    rng = np.random.default_rng(3)
    w = model.get_layer("lstm").cell.kernel.numpy()
    f = rng.exponential(size=w.shape) * (rng.random(w.shape) < 0.7)
    wrapped = tfadvq.quantize(model, 3, per_channel=per_channel, importances={"lstm/kernel": f}, progress=False)
    q = api.quantized_weights(wrapped)[0][1]
    rows, f_rows = (w.T, f.T) if per_channel else (w.reshape(1, -1), f.reshape(1, -1))
    table = q.value_table(w).reshape(rows.shape[0], -1)
    plain_table = kmeans1d.fit_rows(rows, 8)

    def weighted_error(t):
        return sum(kmeans1d.squared_error(r, c, fr) for r, c, fr in zip(rows, t, f_rows))

    assert weighted_error(table) < weighted_error(plain_table)
    np.testing.assert_allclose(table, kmeans1d.fit_rows(rows, 8, weights=f_rows), rtol=1e-6)
    # A refresh after the weights moved stays weighted: a weighted Lloyd fixed point, not an unweighted one.
    q.source.assign(w + rng.normal(0, 0.01, w.shape).astype(np.float32))
    CodebookRefresh(wrapped).refresh()
    moved = q.source.numpy().T if per_channel else q.source.numpy().reshape(1, -1)
    refit = q.value_table(None).reshape(rows.shape[0], -1)
    np.testing.assert_allclose(kmeans1d.fit_rows(moved, 8, init=refit, search=False, weights=f_rows), refit,
                               rtol=1e-6, atol=1e-8)
    assert not np.allclose(kmeans1d.fit_rows(moved, 8, init=refit, search=False), refit)


def test_importances_survive_a_reload_only_when_set_again(tmp_path):
    model = lstm_model()
    f = np.random.default_rng(4).exponential(size=model.get_layer("fc").kernel.shape)
    wrapped = tfadvq.quantize(model, 3, importances={"fc/kernel": f}, progress=False)
    wrapped.save(tmp_path / "q.h5")
    loaded = model_io.load_model(tmp_path / "q.h5")
    fc = {f"{w.layer.name}/{q.source.name.split('/')[-1][:-2]}": q for w, q in api.quantized_weights(loaded)}
    assert fc["fc/kernel"].importances is None
    api.set_importances(loaded, {"fc/kernel": f})
    np.testing.assert_array_equal(fc["fc/kernel"].importances, f)
    with pytest.raises(QuantizationError, match="'fc/bias'.*accepted"):
        api.set_importances(loaded, {"fc/bias": f})


@pytest.mark.parametrize("importances, message", [
    ({"fc/bias": np.ones(8)}, "'fc/bias' is not a quantizable weight key"),
    ({"fc/kernel": np.ones((3, 8))}, r"importances\['fc/kernel'\]: shape \(3, 8\).*\(16, 8\)"),
    ({"fc/kernel": -np.ones((16, 8))}, "negative"),
])
def test_bad_importances_raise(importances, message):
    with pytest.raises(QuantizationError, match=message):
        tfadvq.quantize(lstm_model(), 3, importances=importances, progress=False)


def test_fisher_weighted_ptq_end_to_end_lowers_the_weighted_error():
    model = lstm_model()
    fisher = sensitivity.fisher_diagonal(model, sensitivity.objective_batches(
        tfadvq.compat.tf.data.Dataset.from_tensor_slices(X).batch(8), 2), objective="distill")
    assert set(fisher) == {"lstm/kernel", "lstm/recurrent_kernel", "fc/kernel"}
    weighted, plain = ({f"{t.layer}/{t.weight}": t.values() for t in
                        tfadvq.strip(tfadvq.ptq(model, 2, importances=f, progress=False))[1].tensors}
                       for f in (fisher, None))
    floats = {"lstm/kernel": model.get_layer("lstm").cell.kernel, "fc/kernel": model.get_layer("fc").kernel,
              "lstm/recurrent_kernel": model.get_layer("lstm").cell.recurrent_kernel}
    for key, f in fisher.items():
        w = floats[key].numpy()
        err = {"w": float(np.sum(f * (w - weighted[key]) ** 2)), "p": float(np.sum(f * (w - plain[key]) ** 2))}
        assert err["w"] <= err["p"] * (1 + 1e-9), key


def test_per_channel_auto_weighs_table_bytes_against_error_removed(caplog):
    """auto: per channel where the error it removes is worth its extra tables; a warning where tables outgrow."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((4, 1024))
    spread = keras.Model(inputs, keras.layers.Dense(16, name="fc")(inputs))  # channels 100x apart in scale
    kernel, bias = spread.get_layer("fc").get_weights()
    spread.get_layer("fc").set_weights([kernel * np.logspace(-2, 0, 16, dtype=np.float32), bias])
    (row,) = spec.table_report(spread, {"fc/kernel": 4})
    assert row["extra_bytes"] > 0 and row["sq_error_per_channel"] < 0.5 * row["sq_error_per_tensor"] and row["pays"]
    assert row["bytes"] == row["bytes_per_channel"] > row["bytes_per_tensor"]
    # The same layer with like channels: per channel removes little, not worth 16 tables.
    spread.get_layer("fc").set_weights([kernel, bias])
    (row,) = spec.table_report(spread, {"fc/kernel": 4})
    assert not row["pays"] and row["bytes"] == row["bytes_per_tensor"]

    model = lstm_model()  # no BatchNorm: per-tensor codebooks keep one table per gate tensor
    report = {r["weight"]: r for r in spec.table_report(model, {"lstm/kernel": 4, "fc/kernel": 4})}
    kernel_row = report["lstm/kernel"]  # 64 gate columns of 12 weights: lossless per channel, but 16 tables a gate
    assert kernel_row["sq_error_per_channel"] == 0 and kernel_row["extra_bytes"] > kernel_row["data_bytes"]
    assert not kernel_row["pays"] and not kernel_row["tables_outgrow_weights"]
    with caplog.at_level(logging.WARNING, logger="tfadvq.quant.spec"):
        tfadvq.quantize(conv_bn_model(), 4, per_channel="auto", progress=False)
    # BatchNorm folds into the conv: 16 tables of 16 floats for 36 weights a channel, whatever the codebook.
    assert any("conv/kernel" in r.getMessage() and "outgrow" in r.getMessage() for r in caplog.records)
    # Under int8 activations the converter stores LSTM weights per tensor: auto never picks per channel there.
    int8 = tfadvq.quantize(model, 4, per_channel="auto", activation_bits=8, progress=False)
    chosen = {w.layer.name + "/" + q.source.name.split("/")[-1][:-2]: q.per_channel
              for w, q in api.quantized_weights(int8)}
    assert chosen["lstm/kernel"] is False and chosen["lstm/recurrent_kernel"] is False
    with pytest.raises(QuantizationError, match="per_channel: 'sometimes'"):
        tfadvq.quantize(model, 4, per_channel="sometimes", progress=False)


@pytest.mark.parametrize("wrapped", [False, True])
def test_bias_correction_removes_the_output_mean_shift(wrapped):
    model = conv_bn_model()
    inputs = np.abs(X) + 0.5  # inputs with a mean: rounding errors shift the outputs' mean
    quantized = tfadvq.ptq(model, 2, progress=False)
    target = quantized if wrapped else tfadvq.strip(quantized)[0]
    before_kernels = [q.source.numpy().copy() for _, q in api.quantized_weights(quantized)]
    shift_before = np.abs(np.mean(target.predict_on_batch(inputs) - model.predict_on_batch(inputs), axis=0))
    rows = bias_correction.correct_bias(model, target, [inputs[:8], inputs[8:]])
    assert [(r["layer"], r["correction"]) for r in rows] == [("conv", "batchnorm bn"), ("fc", "bias")]
    for r in rows:
        assert r["shift_after"] < 1e-3 * r["shift_before"] + 1e-6
    shift_after = np.abs(np.mean(target.predict_on_batch(inputs) - model.predict_on_batch(inputs), axis=0))
    assert shift_after.max() < 1e-4 < shift_before.max()
    for (_, q), k in zip(api.quantized_weights(quantized), before_kernels):  # weights and codebooks untouched
        np.testing.assert_array_equal(q.source.numpy(), k)


def test_bias_correction_needs_data_and_the_float_model():
    model = conv_bn_model()
    plain = tfadvq.strip(tfadvq.ptq(model, 2, progress=False))[0]
    with pytest.raises(tfadvq.errors.DataError, match="no batch"):
        bias_correction.correct_bias(model, plain, [])
    with pytest.raises(tfadvq.errors.ConfigError, match="no quantized layer"):
        bias_correction.correct_bias(model, model, [X])


@pytest.mark.parametrize("asked, path", [({}, {"codebooks": "weighted", "bias_correction": True}),
                                         ({"weighted": False, "bias_correction": False},
                                          {"codebooks": "plain", "bias_correction": False})])
def test_recipe_quantize_stage_is_weighted_with_bias_correction_on_its_inputs_by_default(asked, path, tmp_path):
    from tfadvq.recipe import parse_recipe, run_recipe
    from tfadvq.rundir import QuantDir

    model = conv_bn_model()
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", np.abs(np.random.default_rng(5).normal(size=(64, 20, 12))).astype(np.float32))
    recipe = parse_recipe({"stages": [
        {"type": "model", "path": str(tmp_path / "m.keras")},
        {"type": "quantize", "model": "model", "bits": 2, "per_channel": "auto", **asked,
         "fisher_batches": 2, "inputs": str(tmp_path / "x.npy")}]}, "ptq test")
    run_recipe(recipe, tmp_path / "work")
    out = QuantDir(tmp_path / "work" / "quantize")
    assert json.loads(out.summary.read_text())["ptq"] == path
    staged = model_io.load_model(out.wrapped)
    plain = tfadvq.strip(tfadvq.ptq(model, 2, per_channel="auto", progress=False))[0]
    x = np.load(tmp_path / "x.npy")
    shift = {name: np.abs(np.mean(m.predict_on_batch(x) - model.predict_on_batch(x), axis=0)).max()
             for name, m in (("staged", staged), ("uncorrected", plain))}
    if path["bias_correction"]:
        assert shift["staged"] < shift["uncorrected"] / 10  # bias correction ran on the stage's inputs
    else:  # opted out: exactly the plain k-means model
        for a, b in zip(tfadvq.strip(staged)[0].get_weights(), plain.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_recipe_quantize_stage_refuses_an_unknown_per_channel():
    from tfadvq.recipe import parse_recipe

    with pytest.raises(tfadvq.errors.ConfigError, match="per_channel 'sometimes'"):
        parse_recipe({"stages": [{"type": "model", "path": "m.keras"},
                                 {"type": "quantize", "model": "model", "per_channel": "sometimes"}]}, "r")


def test_quantize_command_takes_the_best_path_when_it_has_data_and_says_what_it_gives_up_without(
        tmp_path, caplog, capsys):
    from tfadvq.cli import main
    from tfadvq.rundir import QuantDir

    conv_bn_model().save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", np.abs(np.random.default_rng(5).normal(size=(64, 20, 12))).astype(np.float32))
    common = ["quantize", "--model", str(tmp_path / "m.keras"), "--bits", "2", "--fisher-batches", "2"]
    inputs = ["--inputs", str(tmp_path / "x.npy")]

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "tfadvq.quant.post_training"]

    def run(name: str, *flags: str) -> tuple[dict, list[np.ndarray]]:
        caplog.clear()
        assert main([*common, *flags, "--out", str(tmp_path / name)]) == 0
        out = QuantDir(tmp_path / name)
        return json.loads(out.summary.read_text()), tfadvq.strip(model_io.load_model(out.wrapped))[0].get_weights()

    default, default_weights = run("default", *inputs)
    assert default["ptq"] == {"codebooks": "weighted", "bias_correction": True}
    assert "weighted" in capsys.readouterr().out  # the summary table says which path ran
    assert not warned()
    _, explicit_weights = run("explicit", *inputs, "--weighted", "--bias-correction")
    for a, b in zip(default_weights, explicit_weights):  # the default is that path, not a cousin of it
        np.testing.assert_array_equal(a, b)

    opted_out, opted_weights = run("opted-out", *inputs, "--no-weighted", "--no-bias-correction")
    assert opted_out["ptq"] == {"codebooks": "plain", "bias_correction": False}
    assert not warned()
    no_data, plain_weights = run("no-data")
    assert no_data["ptq"] == opted_out["ptq"]
    assert len(warned()) == 1 and "\n" not in warned()[0]
    assert "no sensitivity-weighted codebooks and no bias correction" in warned()[0]
    for a, b in zip(opted_weights, plain_weights):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(default_weights, plain_weights))

    capsys.readouterr()
    assert main([*common, "--weighted", "--out", str(tmp_path / "asked")]) == 2  # asked for, no data: refused
    err = capsys.readouterr().err
    assert err.startswith("tfadvq: error: --weighted/--bias-correction") and "--inputs" in err
    assert not (tmp_path / "asked" / "summary.json").exists()


def test_the_default_path_says_how_to_opt_out_when_the_models_training_data_does_not_fit(tmp_path, capsys):
    """A train.yaml beside the model makes data available; when what it names cannot feed the model, the
    error says the default asked for it and how to quantize without."""
    from test_quant_finetune import small_embedding_model
    from tfadvq.cli import main
    from tfadvq.train_config import DataConfig, TrainConfig

    small_embedding_model().save(tmp_path / "m.keras")
    dump_yaml(TrainConfig(data=DataConfig(corpus=str(tmp_path / "moved-away"))), tmp_path / "train.yaml")
    common = ["quantize", "--model", str(tmp_path / "m.keras"), "--bits", "2"]
    assert main([*common, "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfadvq: error:") and "Traceback" not in err
    assert "the default Fisher-weighted codebooks and bias correction read the model's training data" in err
    assert not (tmp_path / "q" / "summary.json").exists()
    assert main([*common, "--no-weighted", "--no-bias-correction", "--out", str(tmp_path / "q")]) == 0
