"""How much the objective cares about each quantizable weight: diagonal Fisher and Hessian traces.

Two estimators over the same few batches of the objective (:func:`objective_batches`
takes them once, so every estimator sees the same data), for every weight the
quantizer supports (:mod:`tfadvq.quant.layer_rules`: Conv1D/2D, DepthwiseConv2D,
Dense, LSTM, GRU), on any Keras model and any input shape, plain or
tfmot-wrapped (:func:`tfadvq.quantize`; its float weights are found through
:func:`tfadvq.quant.api.quantized_weights`, gradients reach them through the
straight-through estimator).  Keys are ``"<layer>/<weight>"``.

Objectives (as in :mod:`tfadvq.objectives`):

``"distill"``
    ``1 - cos(student(x), teacher(x))`` on unlabelled inputs.  At the FP32
    point (student == teacher, the default when ``teacher`` is None) the loss
    *and its gradient* are exactly 0, so squared loss gradients would say
    nothing; its Hessian there is the Gauss-Newton term ``J^T P J / |e|^2``
    (``J = de/dw``, ``P = I - ê ê^T``: the Hessian of ``1 - cos`` at its minimum).
``"aam"``
    Cross-entropy of an :class:`tfadvq.heads.AAMSoftmax` head (``head=``) on
    speaker labels.

:func:`fisher_diagonal` -- per-weight importance, each the weight's shape
(what sensitivity-weighted k-means weighs errors by).  For ``distill`` the
output (Gauss-Newton) Fisher ``diag(J^T P J) / |e|^2``, which equals
``E_v[(d(v·ê)/dw)^2]`` for Rademacher ``v`` and the unit-normalised embedding
``ê`` (``dê/de = P/|e|`` and ``P^2 = P``): unbiased, one backward pass per
probe, the same at any student.  For ``aam`` the empirical Fisher
``mean_i (dL_i/dw)^2``, estimated as ``E_v[(d(Σ_i v_i L_i)/dw)^2]`` so one
backward pass covers the whole batch (the cross terms between samples
vanish in expectation).

:func:`hessian_traces` -- Hutchinson's estimator ``tr(H_ll) = E_z[z_l^T H z]``
with one Rademacher ``z`` over *all* weights per probe and ``H z`` from
nested ``tf.GradientTape`` (one Hessian-vector product per probe serves
every tensor; the cross-tensor terms vanish in expectation).
:func:`sensitivities` turns traces into the HAWQ-V2 cost of giving tensor
``l`` ``b`` bits, ``(tr(H_l) / n_l) · ||Q_b(W_l) - W_l||^2``, with ``Q_b``
the quantizer the model will get (with Fisher-weighted codebooks, the
Fisher-weighted error: :func:`quantization_errors`).

References: Dong et al., "HAWQ-V2: Hessian Aware trace-Weighted
Quantization of Neural Networks" (NeurIPS 2020); Hutchinson, "A stochastic
estimator of the trace of the influence matrix" (1989); Kim et al.,
"SqueezeLLM" (2023) for the Fisher-weighted codebooks.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_model_optimization as tfmot

from tfadvq.compat import keras, tf
from tfadvq.errors import ConfigError, DataError, QuantizationError
from tfadvq.objectives import Objective, parse_objective
from tfadvq.quant import catalog
from tfadvq.quant import quantizers as qz
from tfadvq.quant import layer_rules
from tfadvq.quant.binary import quantizer_spec

Batch = tuple[Any, Any]  # (model inputs, labels or None)
_Wrapper = tfmot.quantization.keras.QuantizeWrapper
DEFAULT_BITS = (1, 2, 3, 4, 5, 6, 8)


def objective_batches(source: Any, num_batches: int) -> list[Batch]:
    """``num_batches`` batches ``(x, labels or None)`` from ``source``, taken once.

    ``source``: a batched ``tf.data.Dataset`` whose elements are model inputs
    ``x`` or ``(x, labels)`` (further elements, e.g. sample weights, are
    ignored), or a :class:`tfadvq.training.TrainingData` (its ``dataset``
    yields ``(features, labels)``).  Materialised here so every estimator sees
    exactly the same data.
    """
    if num_batches < 1:
        raise ConfigError(f"num_batches: {num_batches}; accepted: >= 1")
    dataset = getattr(source, "dataset", source)
    if not isinstance(dataset, tf.data.Dataset):
        raise DataError(f"objective data: {type(source).__name__} is neither a tf.data.Dataset nor "
                        "a TrainingData; pass a dataset of model inputs x or (x, labels)")
    batches = []
    for element in dataset.take(num_batches):
        if isinstance(element, (tuple, list)):
            batches.append((element[0], element[1] if len(element) > 1 else None))
        else:
            batches.append((element, None))
    if not batches:
        raise DataError("objective data: the dataset yields no batch")
    return batches


@dataclasses.dataclass(frozen=True)
class QuantizableWeight:
    """One weight the quantizer supports: its key, layer (unwrapped), float variable and channel dims."""

    key: str
    layer: keras.layers.Layer
    attr: str
    variable: tf.Variable
    channel_dims: int

    @property
    def size(self) -> int:
        return int(np.prod(self.variable.shape))


def quantizable_weights(model: keras.Model, weights: Sequence[str] | None = None) -> list[QuantizableWeight]:
    """Every weight of ``model`` the support table (layer_rules) covers, in layer order (``weights``: only these keys).

    Layers of a tfmot-wrapped model give their float weights (the quantizers'
    sources); unknown keys in ``weights`` raise, listing the known ones.
    """
    found = []
    for layer in model.layers:
        inner = layer.layer if isinstance(layer, _Wrapper) else layer
        rule = layer_rules.rule_for(inner)
        if rule is None or not inner.weights:
            continue
        config = getattr(layer, "quantize_config", None)
        if isinstance(config, layer_rules.WeightQuantizeConfig):
            variables = [q.source for q in config.quantizers]
        elif isinstance(layer, _Wrapper):
            continue  # wrapped by someone else's config: its weights are not ours to look up
        else:
            variables = [layer_rules.get_attr(inner, attr) for attr in rule.weights]
        found += [QuantizableWeight(f"{inner.name}/{_short(v.name)}", inner, attr, v, rule.channel_dims)
                  for attr, v in zip(rule.weights, variables)]
    if weights is None:
        if not found:
            raise QuantizationError(f"model {model.name!r} has no quantizable weight; supported classes: "
                                    f"{layer_rules.supported_class_names()}")
        return found
    known = {w.key: w for w in found}
    unknown = [k for k in weights if k not in known]
    if unknown:
        raise QuantizationError(f"weights: unknown key(s) {unknown}; quantizable weights: {sorted(known)}")
    return [known[k] for k in weights]


def _short(name: str) -> str:
    return name.split(":")[0].split("/")[-1]


class _Objective:
    """The objective as two TF functions of a batch: per-sample outputs to probe, and the mean loss."""

    def __init__(self, model: keras.Model, objective: str | Objective, teacher: keras.Model | None,
                 head: keras.layers.Layer | None):
        self.model = model
        self.objective = parse_objective(objective)
        self.teacher = teacher
        self.head = head
        if self.objective is Objective.AAM and head is None:
            raise ConfigError("objective aam: pass head=<the trained AAMSoftmax> (tfadvq.heads); "
                              "without speaker labels use objective distill")

    def check(self, batch: Batch) -> None:
        if self.objective is Objective.AAM and batch[1] is None:
            raise DataError("objective aam: the batches carry no speaker labels; pass (x, labels) "
                            "batches or use objective distill")

    def _cross_entropy(self, x, labels) -> tf.Tensor:
        logits = self.head(self.model(x, training=False), labels, training=False)
        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)

    def probed(self, x, labels) -> tf.Tensor:
        """``[B, ...]`` whose Rademacher-weighted sum's squared gradient estimates the Fisher (times B)."""
        if self.objective is Objective.AAM:
            return self._cross_entropy(x, labels)
        return tf.math.l2_normalize(self.model(x, training=False), axis=-1)

    def target(self, x) -> tf.Tensor | None:
        """The distillation target of a batch (the teacher's embedding; the model's own by default)."""
        if self.objective is Objective.AAM:
            return None
        return (self.model if self.teacher is None else self.teacher)(x, training=False)

    def loss(self, x, labels, target) -> tf.Tensor:
        if self.objective is Objective.AAM:
            return tf.reduce_mean(self._cross_entropy(x, labels))
        student = tf.math.l2_normalize(self.model(x, training=False), axis=-1)
        return tf.reduce_mean(1.0 - tf.reduce_sum(student * tf.math.l2_normalize(target, axis=-1), axis=-1))


def _setup(model, objective, teacher, head, probes: int, weights, seed: int):
    """``(objective, targets, their variables, a seeded generator)``: what both estimators start from."""
    if probes < 1:
        raise ConfigError(f"probes: {probes}; accepted: >= 1")
    targets = quantizable_weights(model, weights)
    return (_Objective(model, objective, teacher, head), targets, [t.variable for t in targets],
            tf.random.Generator.from_seed(seed))


def _rademacher(generator: tf.random.Generator, shape) -> tf.Tensor:
    return tf.where(generator.uniform(shape) < 0.5, -1.0, 1.0)


def fisher_diagonal(model: keras.Model, batches: Sequence[Batch], *, objective: str = "distill",
                    teacher: keras.Model | None = None, head: keras.layers.Layer | None = None,
                    probes: int = 1, weights: Sequence[str] | None = None,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Diagonal Fisher of ``objective`` per quantizable weight, keyed ``"layer/weight"``, each its shape.

    ``distill``: the Gauss-Newton (output) Fisher ``diag(J^T P J) / |e|^2``
    of the unit-normalised embedding, estimated without bias as
    ``E_v[(d(v·ê)/dw)^2]`` with Rademacher ``v`` -- the Hessian of the
    distillation loss at the FP32 point, where its gradient is exactly 0;
    it does not depend on the teacher, which is only used by
    :func:`hessian_traces`.  ``aam``: the empirical Fisher of the loss, mean
    squared per-sample gradient (needs ``head`` and labelled batches).
    Averaged over all samples of ``batches`` (:func:`objective_batches`) and
    ``probes`` Rademacher draws per batch (one forward pass per batch, one
    backward pass per probe, all weights at once).
    """
    fn, targets, variables, generator = _setup(model, objective, teacher, head, probes, weights, seed)

    @tf.function(reduce_retracing=True)
    def squared(x, labels):
        with tf.GradientTape(persistent=probes > 1, watch_accessed_variables=False) as tape:
            tape.watch(variables)
            outputs = fn.probed(x, labels)
        total = [tf.zeros_like(v) for v in variables]
        for _ in range(probes):
            grads = tape.gradient(outputs, variables, output_gradients=_rademacher(generator, tf.shape(outputs)),
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
            total = [s + tf.square(g) for s, g in zip(total, grads)]
        return total

    sums = [np.zeros(v.shape, np.float64) for v in variables]
    samples = 0
    for batch in batches:
        fn.check(batch)
        sums = [s + g.numpy() for s, g in zip(sums, squared(*_inputs(batch)))]
        samples += _batch_size(batch[0])
    return {t.key: (s / (samples * probes)).astype(np.float32) for t, s in zip(targets, sums)}


def _inputs(batch: Batch) -> tuple[Any, Any]:
    x, labels = batch
    return x, (tf.zeros([_batch_size(x)], tf.int32) if labels is None else labels)


def _batch_size(x: Any) -> int:
    first = tf.nest.flatten(x)[0]
    return int(tf.shape(first)[0])


@dataclasses.dataclass
class TraceEstimate:
    """Hutchinson estimate of one tensor's Hessian trace.

    ``trace``: mean over all probes and batches; ``stderr``: its standard
    error (over those samples); ``running[k-1]``: the estimate with the first
    ``k`` probes of every batch (how it converges); ``params``: the tensor's
    size; ``tolerance``: the relative standard error asked for (None: none).
    """

    trace: float
    stderr: float
    running: np.ndarray
    params: int
    tolerance: float | None = None

    @property
    def mean_trace(self) -> float:
        """``trace / params``: the average curvature per weight (the HAWQ-V2 factor)."""
        return self.trace / self.params

    @property
    def determined(self) -> bool:
        """Whether the standard error is within ``tolerance`` of ``|trace|`` (always, without a tolerance).

        An exactly flat tensor (every sample 0) is determined; one sample alone never is."""
        if self.tolerance is None:
            return True
        return bool(np.isfinite(self.stderr) and self.stderr <= self.tolerance * abs(self.trace))

    def to_dict(self) -> dict[str, Any]:
        return {"trace": self.trace, "stderr": self.stderr, "params": self.params, "tolerance": self.tolerance,
                "determined": self.determined, "probes": len(self.running),
                "running": [float(r) for r in self.running]}


def hessian_traces(model: keras.Model, batches: Sequence[Batch], *, objective: str = "distill",
                   teacher: keras.Model | None = None, head: keras.layers.Layer | None = None,
                   probes: int = 16, weights: Sequence[str] | None = None, seed: int = 0,
                   tolerance: float | None = None, max_probes: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, TraceEstimate]:
    """Hessian trace of the mean ``objective`` loss per quantizable weight (Hutchinson, see module doc).

    Per batch and probe one Rademacher ``z`` over every weight, ``H z`` by
    differentiating ``g·z`` (``g`` the loss gradient of an inner tape) with an
    outer tape; ``z_l·(Hz)_l`` is an unbiased sample of ``tr(H_ll)``.  For
    ``distill`` the target is ``teacher(x)`` (default: the model's own output,
    the FP32 point, where the Hessian is the Gauss-Newton term and nonzero).

    ``probes`` per batch first; with ``tolerance``, rounds of ``probes`` more
    per batch follow while any tensor's standard error exceeds ``tolerance``
    times its ``|trace|``, up to ``max_probes`` per batch (default
    ``4 * probes``); a tensor still above it is :attr:`TraceEstimate.determined`
    False -- its trace is noise, and the caller must not act on it.
    ``progress(done, total)`` is called after every Hessian-vector product.
    """
    fn, targets, variables, generator = _setup(model, objective, teacher, head, probes, weights, seed)
    if tolerance is not None and not tolerance > 0:
        raise ConfigError(f"tolerance: {tolerance}; accepted: > 0 (the relative standard error of each trace)")
    cap = probes if tolerance is None else max(probes, max_probes if max_probes is not None else 4 * probes)

    @tf.function(reduce_retracing=True)
    def sample(x, labels, target):
        zs = [_rademacher(generator, v.shape) for v in variables]
        with tf.GradientTape(watch_accessed_variables=False) as outer:
            outer.watch(variables)
            with tf.GradientTape(watch_accessed_variables=False) as inner:
                inner.watch(variables)
                loss = fn.loss(x, labels, target)
            grads = inner.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            projected = tf.add_n([tf.reduce_sum(g * z) for g, z in zip(grads, zs)])
        hz = outer.gradient(projected, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return tf.stack([tf.reduce_sum(z * h) for z, h in zip(zs, hz)])

    for batch in batches:
        fn.check(batch)
    inputs = [_inputs(batch) for batch in batches]
    goals = [fn.target(x) for x, _ in inputs]
    goals = [tf.zeros([1]) if g is None else g for g in goals]
    draws = np.zeros((len(batches), 0, len(targets)))
    while True:
        more = min(probes, cap - draws.shape[1])
        fresh = np.zeros((len(batches), more, len(targets)))
        for b, ((x, labels), target) in enumerate(zip(inputs, goals)):
            for p in range(more):
                fresh[b, p] = sample(x, labels, target).numpy()
                if progress is not None:
                    progress(draws.shape[1] * len(batches) + b * more + p + 1, (draws.shape[1] + more) * len(batches))
        draws = np.concatenate([draws, fresh], axis=1)
        estimates = _estimates(draws, targets, tolerance)
        if draws.shape[1] >= cap or all(e.determined for e in estimates.values()):
            return estimates


def _estimates(draws: np.ndarray, targets: Sequence[QuantizableWeight], tolerance: float | None
               ) -> dict[str, TraceEstimate]:
    """Trace estimates from the samples ``draws[batch, probe, tensor]``."""
    probes = draws.shape[1]
    running = np.cumsum(draws.mean(axis=0), axis=0) / np.arange(1, probes + 1)[:, None]
    flat = draws.reshape(-1, len(targets))
    stderr = flat.std(axis=0, ddof=1) / np.sqrt(len(flat)) if len(flat) > 1 else np.full(len(targets), np.nan)
    return {t.key: TraceEstimate(float(flat[:, i].mean()), float(stderr[i]), running[:, i], t.size, tolerance)
            for i, t in enumerate(targets)}


def quantization_errors(model: keras.Model, bits: Iterable[int] = DEFAULT_BITS, *, per_channel: bool = False,
                        quantizer: str | dict = "kmeans", binary: str | dict | None = "adaptive",
                        weights: Sequence[str] | None = None,
                        importances: Mapping[str, np.ndarray] | None = None) -> dict[str, dict[int, float]]:
    """``||Q_b(W) - W||^2`` per quantizable weight and bit width, with the quantizer the model will get.

    ``Q_b`` fits ``quantizer`` (:func:`tfadvq.quant.catalog.get`; k-means by
    default) per tensor or per channel at ``b`` bits on the weight's current
    float values and maps every value to its nearest table entry; at 1 bit
    the ``binary`` scheme (:mod:`tfadvq.quant.binary`, as ``binary=`` of
    :func:`tfadvq.quantize`; None: ``quantizer`` at 1 bit too).  Pass the
    settings the model will be quantized with, so the errors are its own.

    ``importances`` (weight key -> diagonal Fisher of the weight's shape, as
    :func:`tfadvq.quantize` takes them): the k-means tables are then fitted
    to them (the sensitivity-weighted codebooks the model gets on the default
    post-training path), and the error is weighed by them too, normalised so
    that equal importances give the plain squared error:
    ``n · Σ f (Q(w) - w)² / Σ f``.  With the HAWQ-V2 factor ``tr(H_l) / n``
    of :func:`sensitivities` that is ``tr(H_l) · Σ f δ² / Σ f``: the trace
    spread over the tensor's weights as the Fisher says (the Fisher of the
    distillation objective is its Hessian's diagonal at the FP32 point).  A
    weighted codebook trades error on unimportant weights for error on
    important ones, so its *plain* squared error is larger than plain
    k-means' while its effect on the output is smaller; the unweighted cost
    would price it wrongly and move bits to the wrong tensors.
    """
    one_bit = quantizer_spec(binary) or quantizer
    bits = [int(b) for b in bits]
    errors: dict[str, dict[int, float]] = {}
    for target in quantizable_weights(model, weights):
        w = target.variable.numpy()
        f = None if importances is None or importances.get(target.key) is None else \
            np.asarray(importances[target.key], np.float64)
        errors[target.key] = {}
        for b in bits:
            q = catalog.get(one_bit if b == 1 else quantizer, bits=b, per_channel=per_channel,
                            channel_dims=target.channel_dims)
            if f is not None and isinstance(q, qz.KMeansQuantizer):
                q.set_importances(f, target.key)
            table = q.value_table(w)
            values = qz.nearest_in_table_indexed(tf.constant(w), tf.constant(table)).numpy()
            errors[target.key][b] = _weighted_sq_error(values.astype(np.float64) - w, f)
    return errors


def _weighted_sq_error(delta: np.ndarray, f: np.ndarray | None) -> float:
    """``Σ δ²``, or with importances ``n · Σ f δ² / Σ f`` (plain when every importance is 0)."""
    if f is None or not np.sum(f) > 0:
        return float(np.sum(delta ** 2))
    return float(delta.size * np.sum(f * delta ** 2) / np.sum(f))


def sensitivities(traces: Mapping[str, TraceEstimate], errors: Mapping[str, Mapping[int, float]]
                  ) -> dict[str, dict[int, float]]:
    """HAWQ-V2 cost of giving each tensor ``b`` bits: ``(tr(H_l) / n_l) · ||Q_b(W_l) - W_l||^2``.

    Hutchinson samples can make a flat tensor's trace slightly negative; a
    curvature below 0 is no reason to prefer *more* error, so it counts as 0.
    """
    missing = sorted(set(errors) - set(traces))
    if missing:
        raise QuantizationError(f"sensitivities: no Hessian trace for {missing}")
    return {key: {b: max(traces[key].mean_trace, 0.0) * e for b, e in per_bits.items()}
            for key, per_bits in errors.items()}
