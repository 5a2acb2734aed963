"""Sensitivity estimators against exact references on tiny models (tfadvq.quant.sensitivity)."""
from __future__ import annotations

import dataclasses

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


def _branches_model() -> keras.Model:
    """Three equal branches summed into the embedding; one sees its input x1000, so it dominates ê."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12,))
    hidden = keras.layers.Dense(16, activation="relu", name="shared")(inputs)
    branches = [keras.layers.Dense(8, name="plain_a")(hidden), keras.layers.Dense(8, name="plain_b")(hidden),
                keras.layers.Dense(8, name="loud")(keras.layers.Rescaling(1e3)(hidden))]
    return keras.Model(inputs, keras.layers.Add()(branches))


def test_sensitivity_falls_with_bits_and_the_scaled_layer_gets_the_most_bits():
    model = _branches_model()
    batches = sensitivity.objective_batches(_data((12,)), 2)
    traces = sensitivity.hessian_traces(model, batches, probes=8)
    errors = sensitivity.quantization_errors(model, bits=(1, 2, 4, 8))
    sens = sensitivity.sensitivities(traces, errors)
    for per_bits in sens.values():
        values = [per_bits[b] for b in (1, 2, 4, 8)]
        assert values == sorted(values, reverse=True)
    assert traces["loud/kernel"].mean_trace > 1e3 * traces["plain_a/kernel"].mean_trace
    # The bytes of every tensor at 2 bits and of one branch at 4: exactly one branch can be lifted, and it is
    # the loud one.  Not 1 bit: with one value table per tensor a 1-bit tensor is cheap enough that the optimum
    # drops a quiet branch to 1 bit to lift `shared` (which feeds the loud branch: as sensitive, and larger).
    choices = allocate.decisions(model, sens, allowed=(2, 4))
    branch = next(d for d in choices if d.name == "plain_a")
    target = sum(d.cost[0] for d in choices) + branch.cost[1] - branch.cost[0]
    bits = allocate.allocate(choices, target_bytes=target).bits
    assert bits["loud"] > max(bits["plain_a"], bits["plain_b"])


def test_probes_are_added_until_each_trace_is_determined_and_a_noisy_one_is_reported():
    """The loud branch's trace is large and settles; the quiet branches' traces (about 0, next to the loud
    one's) stay noise at any affordable number of probes."""
    model = _branches_model()
    batches = sensitivity.objective_batches(_data((12,)), 2)
    fixed = sensitivity.hessian_traces(model, batches, probes=2)
    assert {len(t.running) for t in fixed.values()} == {2} and all(t.determined for t in fixed.values())
    traces = sensitivity.hessian_traces(model, batches, probes=2, tolerance=0.1, max_probes=48)
    for t in traces.values():
        assert t.determined == (t.stderr <= 0.1 * abs(t.trace))
    assert traces["loud/kernel"].determined and traces["shared/kernel"].determined
    assert not traces["plain_b/kernel"].determined and len(traces["plain_b/kernel"].running) == 48  # the cap
    assert traces["plain_b/kernel"].to_dict()["determined"] is False
    with pytest.raises(ConfigError, match="tolerance: 0"):
        sensitivity.hessian_traces(model, batches, probes=2, tolerance=0)


def test_an_undetermined_trace_keeps_its_tensor_at_the_default_width_whatever_the_budget():
    model = _branches_model()
    batches = sensitivity.objective_batches(_data((12,)), 2)
    settings = allocate.MixedSettings(allowed=[1, 2, 4], probes=2, max_probes=24, trace_tolerance=0.1)
    plan = allocate.plan(model, batches, settings, target_bytes=10**6)
    noisy = [k for k, t in plan.traces.items() if not t.determined]
    assert "plain_b/kernel" in noisy and "loud/kernel" not in noisy
    smallest = plan.replan(target_bytes=plan.fixed + sum(min(d.cost) for d in plan.choices)).allocation
    for d, row in zip(plan.choices, smallest.rows(plan.choices)):
        if d.undetermined:  # its sensitivity says nothing: not below 4 bits, and said so
            assert d.bits == (4,) and smallest.bits[d.name] == 4 and row["trace"].startswith("undetermined")
        else:
            assert smallest.bits[d.name] == 1 and row["trace"] == "ok"
    with pytest.raises(QuantizationError, match=r"undetermined Hessian trace \(.*plain_b.*\) keep >= 4 bits"):
        plan.replan(target_bytes=smallest.planned_bytes - 1)
    with pytest.raises(ConfigError, match="max_probes 1"):
        allocate.MixedSettings(probes=2, max_probes=1)


def _masked_model() -> keras.Model:
    """A Dense layer whose inputs 0-3 carry all the data, with small weights there (wide ones elsewhere)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16,))
    hidden = keras.layers.Dense(16, activation="tanh", name="masked")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(8, name="out")(hidden))
    kernel = np.random.default_rng(3).normal(size=(16, 16)).astype(np.float32)
    kernel[:4] *= 0.1  # what matters is small: a plain codebook spends its entries on the wide rows
    model.get_layer("masked").set_weights([kernel, np.zeros(16, np.float32)])
    return model


def test_mixed_prices_every_width_with_the_weighted_codebooks_the_model_gets():
    """Issue 22 3(c): the HAWQ cost is the Fisher-weighted error of the Fisher-weighted codebooks.

    The plain k-means error of `masked` is dominated by rows the data never reads, so the old cost bought
    it 4 bits and left `out` at 1; priced with the codebooks it gets, 2 bits are enough for it, and the
    bytes go to `out`: a smaller distillation loss at the same budget.
    """
    model = _masked_model()
    x = np.zeros((32, 16), np.float32)
    x[:, :4] = np.random.default_rng(1).normal(size=(32, 4)) * 5
    batches = sensitivity.objective_batches(tf.data.Dataset.from_tensor_slices(x).batch(16), 2)
    settings = allocate.MixedSettings(allowed=[1, 2, 4], probes=8)
    assert settings.weighted  # the default, as post-training quantization with data
    weighted = allocate.plan(model, batches, settings, avg_bits=8)
    fisher = sensitivity.fisher_diagonal(model, batches)
    assert weighted.importances.keys() == fisher.keys()
    assert all(np.allclose(weighted.importances[k], fisher[k]) for k in fisher)
    plain = allocate.costed(model, weighted.traces, settings, None, fixed=weighted.fixed, avg_bits=8)
    costs = {d.name: dict(zip(d.bits, d.cost)) for d in weighted.choices}
    budget = weighted.fixed + costs["masked"][4] + costs["out"][1]  # what the plain cost spends
    new, old = weighted.replan(target_bytes=budget), plain.replan(target_bytes=budget)
    assert old.allocation.bits == {"masked": 4, "out": 1}
    assert new.allocation.bits["masked"] < 4 and new.allocation.bits["out"] > 1

    from tfadvq.quant import api
    from tfadvq.quant import quantizers as qz
    from tfadvq.quant.mixed_run import quantize_within

    def distortion(plan) -> float:
        wrapped = quantize_within(model, plan, settings, None, None)[1]
        a, b = wrapped(x).numpy(), model(x).numpy()
        return float(np.mean(1 - np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))

    weighted_books = dataclasses.replace(old, importances=new.importances)  # the old cost, the new codebooks
    assert distortion(new) < 0.9 * distortion(weighted_books) and distortion(new) < 0.9 * distortion(old)
    # the cost of each chosen width is the model's own: its codebook, its weighted error, times tr(H)/n
    wrapped = quantize_within(model, new, settings, None, None)[1]
    for wrapper, q in api.quantized_weights(wrapped):
        key = f"{wrapper.layer.name}/kernel"
        w, f = q.source.numpy().astype(np.float64), fisher[key].astype(np.float64)
        delta = qz.nearest_in_table(q.source, q.value_table(w)).numpy() - w
        own = max(new.traces[key].mean_trace, 0.0) * w.size * np.sum(f * delta ** 2) / np.sum(f)
        assert new.sensitivity[key][new.allocation.bits[key.split("/")[0]]] == pytest.approx(own, rel=1e-4)
    # equal importances price exactly as plain k-means
    flat = {k: np.ones_like(v) for k, v in fisher.items()}
    equal, unweighted = (sensitivity.quantization_errors(model, (1, 2), importances=i) for i in (flat, None))
    for key, per_bits in unweighted.items():
        assert equal[key] == pytest.approx(per_bits, rel=1e-6)
