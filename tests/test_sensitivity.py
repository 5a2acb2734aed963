"""Sensitivity estimators against exact references on tiny models (tfadvq.quant.sensitivity)."""
from __future__ import annotations

import numpy as np
import pytest

import tfadvq
from tfadvq.compat import keras, tf
from tfadvq.errors import ConfigError, DataError, QuantizationError
from tfadvq.heads import AAMSoftmax
from tfadvq.quant import allocate, sensitivity

SAMPLES = 16


def _conv_model(seed: int = 0) -> keras.Model:
    """Conv1D -> pooling -> Dense embedding: 36 + 20 quantized weights, small enough for exact Hessians."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 3))
    x = keras.layers.Conv1D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="fc")(x))


def _data(shape, seed: int = 1, labels: int | None = None) -> tf.data.Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(SAMPLES, *shape)).astype(np.float32)
    if labels is None:
        return tf.data.Dataset.from_tensor_slices(x).batch(8)
    return tf.data.Dataset.from_tensor_slices((x, rng.integers(0, labels, SAMPLES))).batch(8)


def _exact_traces(model: keras.Model, loss_fn) -> dict[str, float]:
    """tr(H_ll) from the full Hessian of each tensor (jacobian of the gradient)."""
    traces = {}
    for w in sensitivity.quantizable_weights(model):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = loss_fn()
            grad = inner.gradient(loss, w.variable)
        hessian = outer.jacobian(grad, w.variable).numpy().reshape(w.size, w.size)
        traces[w.key] = float(np.trace(hessian))
    return traces


@pytest.fixture(scope="module")
def conv_model():
    return _conv_model()


def _distill_loss(model, x):
    target = tf.math.l2_normalize(tf.constant(model(x).numpy()), -1)
    return lambda: tf.reduce_mean(1.0 - tf.reduce_sum(tf.math.l2_normalize(model(x), -1) * target, -1))


def test_hutchinson_matches_the_exact_hessian_trace_and_converges(conv_model):
    batches = sensitivity.objective_batches(_data((6, 3)), 2)
    x = tf.concat([b[0] for b in batches], 0)
    exact = _exact_traces(conv_model, _distill_loss(conv_model, x))
    estimates = sensitivity.hessian_traces(conv_model, batches, probes=48)
    assert set(estimates) == {"conv/kernel", "fc/kernel"}
    for key, est in estimates.items():
        assert exact[key] > 0  # the Gauss-Newton term at the FP point is not 0
        assert est.trace == pytest.approx(exact[key], rel=0.15)
        assert abs(est.trace - exact[key]) < 4 * est.stderr
        assert len(est.running) == 48 and est.running[-1] == pytest.approx(est.trace)
        # convergence: the running estimate ends closer than where it started, on average over windows
        early = np.abs(est.running[:4] - exact[key]).mean()
        late = np.abs(est.running[-8:] - exact[key]).mean()
        assert late < early


def test_aam_trace_matches_the_exact_hessian(conv_model):
    head = AAMSoftmax(3, margin=0.2, scale=8.0)
    head.build((None, 5))
    batches = sensitivity.objective_batches(_data((6, 3), labels=3), 2)
    x = tf.concat([b[0] for b in batches], 0)
    y = tf.concat([b[1] for b in batches], 0)

    def loss():
        logits = head(conv_model(x), y)
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))

    exact = _exact_traces(conv_model, loss)
    estimates = sensitivity.hessian_traces(conv_model, batches, objective="aam", head=head, probes=48)
    for key, est in estimates.items():
        assert abs(est.trace - exact[key]) < 4 * est.stderr + 0.05 * abs(exact[key])


def test_distill_fisher_is_the_gauss_newton_diagonal(conv_model):
    """E_v[(d(v·ê)/dw)^2] = diag(J^T P J)/|e|^2, whose sum is the Hessian trace at the FP point."""
    batches = sensitivity.objective_batches(_data((6, 3)), 2)
    x = tf.concat([b[0] for b in batches], 0)
    fisher = sensitivity.fisher_diagonal(conv_model, batches, probes=24)
    for w in sensitivity.quantizable_weights(conv_model):
        with tf.GradientTape() as tape:
            e = tf.math.l2_normalize(conv_model(x), -1)
        jac = tape.jacobian(e, w.variable).numpy()  # [B, D, *shape]
        exact = (jac ** 2).sum(axis=(0, 1)) / SAMPLES
        assert fisher[w.key].shape == tuple(w.variable.shape)
        assert fisher[w.key].sum() == pytest.approx(exact.sum(), rel=0.15)
        assert np.corrcoef(fisher[w.key].ravel(), exact.ravel())[0, 1] > 0.8
    exact_traces = _exact_traces(conv_model, _distill_loss(conv_model, x))
    assert fisher["fc/kernel"].sum() == pytest.approx(exact_traces["fc/kernel"], rel=0.15)


def test_recurrent_wrapped_and_labelled_inputs():
    """LSTM weights by key, a tfmot-wrapped model (float kernels through the STE), AAM batches."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((7, 3))
    x = keras.layers.LSTM(4, name="lstm")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(5, name="fc")(x))
    batches = sensitivity.objective_batches(_data((7, 3), labels=3), 1)
    fisher = sensitivity.fisher_diagonal(model, batches, weights=["lstm/recurrent_kernel"])
    assert list(fisher) == ["lstm/recurrent_kernel"] and fisher["lstm/recurrent_kernel"].shape == (4, 16)
    wrapped = tfadvq.quantize(model, 3, progress=False)
    traces = sensitivity.hessian_traces(wrapped, batches, probes=2, teacher=model)
    assert set(traces) == {"lstm/kernel", "lstm/recurrent_kernel", "fc/kernel"}
    assert all(np.isfinite(t.trace) for t in traces.values())
    assert all(v.sum() > 0 for v in sensitivity.fisher_diagonal(wrapped, batches).values())


def test_bad_inputs_raise_named_errors(conv_model):
    with pytest.raises(DataError, match="neither a tf.data.Dataset"):
        sensitivity.objective_batches([1, 2], 1)
    with pytest.raises(DataError, match="no batch"):
        sensitivity.objective_batches(_data((6, 3)).take(0), 1)
    batches = sensitivity.objective_batches(_data((6, 3)), 1)
    with pytest.raises(ConfigError, match="head"):
        sensitivity.fisher_diagonal(conv_model, batches, objective="aam")
    head = AAMSoftmax(3)
    with pytest.raises(DataError, match="labels"):
        sensitivity.hessian_traces(conv_model, batches, objective="aam", head=head)
    with pytest.raises(QuantizationError, match="unknown key"):
        sensitivity.fisher_diagonal(conv_model, batches, weights=["conv/bias"])
    with pytest.raises(ConfigError, match="objective"):
        sensitivity.fisher_diagonal(conv_model, batches, objective="mse")


def test_sensitivity_falls_with_bits_and_the_scaled_layer_gets_the_most_bits():
    """Three equal branches summed into the embedding; one sees its input x1000, so it dominates ê."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12,))
    hidden = keras.layers.Dense(16, activation="relu", name="shared")(inputs)
    branches = [keras.layers.Dense(8, name="plain_a")(hidden), keras.layers.Dense(8, name="plain_b")(hidden),
                keras.layers.Dense(8, name="loud")(keras.layers.Rescaling(1e3)(hidden))]
    model = keras.Model(inputs, keras.layers.Add()(branches))
    batches = sensitivity.objective_batches(_data((12,)), 2)
    traces = sensitivity.hessian_traces(model, batches, probes=8)
    errors = sensitivity.quantization_errors(model, bits=(1, 2, 4, 8))
    sens = sensitivity.sensitivities(traces, errors)
    for per_bits in sens.values():
        values = [per_bits[b] for b in (1, 2, 4, 8)]
        assert values == sorted(values, reverse=True)
    assert traces["loud/kernel"].mean_trace > 1e3 * traces["plain_a/kernel"].mean_trace
    choices = allocate.decisions(model, sens, allowed=(1, 2, 4, 8))
    bits = allocate.allocate(choices, avg_bits=3.0).bits
    assert bits["loud"] == max(bits.values()) and bits["loud"] > max(bits["plain_a"], bits["plain_b"])
