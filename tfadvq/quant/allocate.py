"""Bits per tensor under a size budget: the exact minimum-sensitivity allocation and its Pareto front.

Given each tensor's HAWQ-V2 sensitivity per bit width
(:func:`tfadvq.quant.sensitivity.sensitivities`), choose one width per
decision (a layer, all its weights sharing the width -- what the converter's
``{layer: bits}`` takes -- or, with ``per_weight=True``, every weight key on
its own) minimising the total sensitivity subject to the budget.  That is a
multiple-choice knapsack (with ``per_channel="auto"`` the options are
(width, per-tensor or per-channel value tables), so the granularity is
chosen by the same optimum); it is solved exactly as a 0/1 integer programme with
``scipy.optimize.milp`` (HiGHS, zero optimality gap): one binary per
(decision, width), one-hot per decision, one budget row.  Among equally
sensitive allocations the one using most of the budget is taken (a second
solve), so widths whose error is already 0 do not leave bytes unused.

Budgets are in the bytes the converter really writes: every option costs
:func:`tfadvq.quant.size.weight_bytes` (the shared cost model,
:mod:`tfadvq.quant.cost`: packed indices, per-channel tables, DECODE
structure, int8 at 8 bits) and everything that does not depend on the choice
-- float parameters that stay float, the graph itself, the rewrite overhead --
is :func:`fixed_bytes`, measured by converting the float model once.  So
``fixed + Σ cost`` is the planned ``.tflite`` size of
:func:`converters.lut_compression.planned_bytes`, an upper bound within the
cost model's few tens of bytes per tensor of the file written.  An average
bit width budget (``avg_bits``) is the same budget in another unit: bits per
quantized weight *including its value tables*, ``8 Σ cost_l / Σ n_l`` -- what
:func:`tfadvq.quant.size.model_size` counts for the quantized tensors of the
result -- so a plan at 4.0 average bits is a model whose size report says
4.0, not 4 bits of indices plus tables nobody counted.  (``index_bits``,
``Σ n_l b_l / Σ n_l``, is reported beside it.)

Reference: Dong et al., HAWQ-V2 (NeurIPS 2020), and NNCF's HAWQ precision
initializer, which likewise returns the assignment as data for the rest of
the pipeline to apply.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import optimize, sparse

from tfadvq.compat import keras
from tfadvq.errors import ConfigError, QuantizationError
from tfadvq.quant import cost, size
from tfadvq.quant.bits import check_allowed
from tfadvq.quant.sensitivity import DEFAULT_BITS, quantizable_weights
from tfadvq.quant.spec import BitsSpec


@dataclasses.dataclass(frozen=True)
class Decision:
    """Weights that take one width together, and per allowed width their bytes and sensitivity.

    ``undetermined``: the weights whose Hessian trace stayed noise
    (:attr:`tfadvq.quant.sensitivity.TraceEstimate.determined`); their
    decision offers no width below the floor :func:`decisions` was given.
    """

    name: str  # layer name, or weight key with per_weight
    weights: tuple[str, ...]
    params: int
    bits: tuple[int, ...]
    cost: tuple[int, ...]
    sensitivity: tuple[float, ...]
    undetermined: tuple[str, ...] = ()
    per_channel: tuple[bool, ...] = ()  # per option: per-channel value tables; () = every option per tensor

    def channels(self, option: int) -> bool:
        """Whether option ``option`` has per-channel value tables."""
        return bool(self.per_channel) and self.per_channel[option]

    def option(self, bits: int, per_channel: bool) -> int:
        """The index of the option with ``bits`` and that granularity."""
        return next(i for i, b in enumerate(self.bits) if b == bits and self.channels(i) == per_channel)


def decisions(model: keras.Model, sensitivity: Mapping[str, Mapping[int, float]], *,
              allowed: Iterable[int] = DEFAULT_BITS, per_weight: bool = False,
              activations: str = "float32", undetermined: Iterable[str] = (), floor: int = 4,
              per_channel: bool = False,
              channel_sensitivity: Mapping[str, Mapping[int, float]] | None = None) -> list[Decision]:
    """One :class:`Decision` per quantizable layer (or weight key with ``per_weight``) of ``model``.

    ``sensitivity[key][b]`` must cover every quantizable weight key and
    every ``allowed`` width; the cost of each option comes from the cost model.
    ``per_channel``: those options are per-channel codebooks (priced with
    per-channel tables).  ``channel_sensitivity`` (the sensitivities with
    per-channel codebooks, :class:`MixedSettings` ``per_channel="auto"``) adds
    a per-channel option at every width it covers for every weight of the
    decision: the allocation then chooses the granularity too, each option
    at the bytes the converter writes for it (per-channel tables cost a table
    per channel, nothing extra where BatchNorm folding makes them per channel
    anyway).  A decision holding a weight of ``undetermined`` (keys whose sensitivity
    is noise) keeps only the allowed widths ``>= floor`` (the widest allowed
    one if none is): an unknown sensitivity is no reason to give it fewer bits
    than the default.
    """
    allowed = check_allowed(allowed)
    unknown = set(undetermined)
    groups: dict[str, list] = {}
    for w in quantizable_weights(model):
        missing = [b for b in allowed if b not in sensitivity.get(w.key, {})]
        if missing:
            raise QuantizationError(f"sensitivity of {w.key!r}: no value for bits {missing}")
        groups.setdefault(w.key if per_weight else w.layer.name, []).append(w)
    found = []
    for name, ws in groups.items():
        noise = tuple(w.key for w in ws if w.key in unknown)
        widths = [b for b in allowed if not noise or b >= floor] or [max(allowed)]
        options = [(b, per_channel, sensitivity) for b in widths]
        if channel_sensitivity is not None:
            options += [(b, True, channel_sensitivity) for b in widths
                        if all(b in channel_sensitivity.get(w.key, {}) for w in ws)]
        found.append(Decision(
            name, tuple(w.key for w in ws), sum(w.size for w in ws), tuple(b for b, _, _ in options),
            tuple(sum(size.weight_bytes(w.layer, w.attr, w.variable.shape, b, activations, per_channel=pc)
                      for w in ws) for b, pc, _ in options),
            tuple(float(sum(table[w.key][b] for w in ws)) for b, _, table in options), noise,
            tuple(pc for _, pc, _ in options) if per_channel or channel_sensitivity is not None else ()))
    return found


def fixed_bytes(model: keras.Model, float_tflite_bytes: int | None = None) -> int:
    """Bytes of the converted ``.tflite`` (float activations) that no bit choice changes.

    With ``float_tflite_bytes`` (the length of the model converted once to a
    float ``.tflite``, :func:`converters.keras_to_tflite.to_float_tflite`: the
    caller converts, this cost model only does the arithmetic): that length,
    minus the float32 bytes of every quantizable tensor (each is stored once,
    BatchNorm folded in, at its Keras size), plus the rewrite overhead
    (:data:`tfadvq.quant.cost.MODEL_OVERHEAD_BYTES`).  Without: an estimate
    from the Keras parameters (every non-quantized parameter at 32 bits,
    BatchNorm counted before folding), which misses the graph structure, so
    budgets meant to the byte should pass the converted length.
    """
    if float_tflite_bytes is None:
        rows = size.model_size(model).rows
        quantized = {w.variable.name for w in quantizable_weights(model)}
        return int(sum(r["bytes"] for r in rows if r["weight"] not in quantized)) + cost.MODEL_OVERHEAD_BYTES
    float_weights = sum(cost.plain_bytes(w.variable.shape) for w in quantizable_weights(model))
    return int(float_tflite_bytes) - float_weights + cost.MODEL_OVERHEAD_BYTES


@dataclasses.dataclass
class Allocation:
    """Chosen bits per decision, with its planned bytes, total sensitivity and average bits.

    ``avg_bits``: bits per quantized weight including the value tables (the
    unit of an ``avg_bits`` budget, module doc); ``index_bits``: the index
    widths alone, ``Σ n b / Σ n``.
    """

    bits: dict[str, int]
    planned_bytes: int
    sensitivity: float
    avg_bits: float
    index_bits: float
    per_weight: bool = False
    # weight key -> per-channel tables, for the weights whose decisions had per-channel options ({}: none had)
    per_channel: dict[str, bool] = dataclasses.field(default_factory=dict)

    def spec(self) -> BitsSpec:
        """As a :class:`~tfadvq.quant.spec.BitsSpec` (``--bits-per-layer``); no default: all named,
        with the granularity of every weight when it was planned (``per_channel``)."""
        if self.per_weight:
            return BitsSpec(weights=dict(self.bits), per_channel=dict(self.per_channel))
        return BitsSpec(layers=dict(self.bits), per_channel=dict(self.per_channel))

    def picked(self, d: Decision) -> int:
        """The option of ``d`` this allocation took."""
        return d.option(self.bits[d.name], self.per_channel.get(d.weights[0], False))

    def rows(self, choices: Sequence[Decision]) -> list[dict[str, Any]]:
        """One row per decision: bits, tables, params, planned bytes, sensitivity and its share of the total."""
        rows = []
        for d in choices:
            i = self.picked(d)
            share = d.sensitivity[i] / self.sensitivity if self.sensitivity > 0 else 0.0
            rows.append({"tensor": d.name, "params": d.params, "bits": d.bits[i],
                         "tables": "per channel" if d.channels(i) else "per tensor", "bytes": d.cost[i],
                         "sensitivity": d.sensitivity[i], "share": share,
                         "trace": f"undetermined (>= {min(d.bits)} bits)" if d.undetermined else "ok"})
        return rows

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _budget_row(choices: Sequence[Decision]) -> np.ndarray:
    """Bytes of every option: both budgets are in bytes (``avg_bits`` counts tables too, module doc)."""
    return np.array([c for d in choices for c in d.cost], np.float64)


def _solve(choices: Sequence[Decision], row: np.ndarray, budget: float) -> np.ndarray:
    """Option index per decision minimising total sensitivity with ``row · x <= budget`` (exact)."""
    sens = np.array([s for d in choices for s in d.sensitivity], np.float64)
    scale = max(float(sens.max()), 1e-300)
    offsets = np.cumsum([0] + [len(d.bits) for d in choices])
    one_hot = sparse.csr_matrix((np.ones(offsets[-1]), np.arange(offsets[-1]),
                                 offsets), shape=(len(choices), offsets[-1]))
    exact = {"mip_rel_gap": 0.0}
    base = [optimize.LinearConstraint(one_hot, 1, 1), optimize.LinearConstraint(row[None], -np.inf, budget)]
    integral, bounds = np.ones_like(sens), optimize.Bounds(0, 1)
    first = optimize.milp(sens / scale, constraints=base, integrality=integral, bounds=bounds,
                          options={**exact, "presolve": False})
    if first.x is None:
        raise QuantizationError(f"bit allocation: the solver found no solution ({first.message})")
    # Among allocations as good as the optimum, use the most budget.
    best = float(sens @ np.round(first.x)) / scale
    tied = optimize.LinearConstraint((sens / scale)[None], -np.inf, best + 1e-9 * max(best, 1.0))
    second = optimize.milp(-row / max(float(row.max()), 1.0), constraints=[*base, tied], integrality=integral,
                           bounds=bounds, options=exact)
    x = np.round(second.x if second.x is not None else first.x)
    return np.array([int(np.argmax(x[a:b])) for a, b in zip(offsets[:-1], offsets[1:])])


def _allocation(choices: Sequence[Decision], picked: Sequence[int], fixed: int, per_weight: bool) -> Allocation:
    params = sum(d.params for d in choices)
    weight_bytes = sum(d.cost[i] for d, i in zip(choices, picked))
    return Allocation(
        bits={d.name: d.bits[i] for d, i in zip(choices, picked)},
        planned_bytes=int(fixed + weight_bytes),
        sensitivity=float(sum(d.sensitivity[i] for d, i in zip(choices, picked))),
        avg_bits=8.0 * weight_bytes / params,
        index_bits=float(sum(d.params * d.bits[i] for d, i in zip(choices, picked)) / params),
        per_weight=per_weight,
        per_channel={key: d.channels(i) for d, i in zip(choices, picked) if d.per_channel for key in d.weights})


def _per_weight(choices: Sequence[Decision]) -> bool:
    return all(d.weights == (d.name,) for d in choices)


def allocate(choices: Sequence[Decision], *, target_bytes: int | None = None, avg_bits: float | None = None,
             fixed: int = 0) -> Allocation:
    """Minimum-sensitivity bits under ``target_bytes`` (planned ``.tflite`` bytes) or ``avg_bits``.

    ``avg_bits``: bits per quantized weight including the value tables
    (module doc).  ``fixed``: :func:`fixed_bytes` of the model.  An
    unreachable budget raises (:func:`budget_bytes`).
    """
    if not choices:
        raise QuantizationError("bit allocation: no quantizable tensor")
    budget = budget_bytes(choices, target_bytes=target_bytes, avg_bits=avg_bits, fixed=fixed)
    return _allocation(choices, _solve(choices, _budget_row(choices), budget), fixed, _per_weight(choices))


def budget_bytes(choices: Sequence[Decision], *, target_bytes: int | None = None, avg_bits: float | None = None,
                 fixed: int = 0) -> float:
    """The bytes the quantized weights may take under either budget; an unreachable one raises.

    Needs only the costs of ``choices`` (their sensitivities may be
    placeholders), so a request is checked before any Hessian trace: the
    message names the smallest reachable size (every decision at its
    narrowest allowed width, in bytes or bits per weight with tables).
    """
    if (target_bytes is None) == (avg_bits is None):
        raise ConfigError("bit allocation: give exactly one of a target size in bytes or average bits")
    params = sum(d.params for d in choices)
    budget = float(target_bytes) - fixed if target_bytes is not None else float(avg_bits) * params / 8
    smallest = sum(min(d.cost) for d in choices)
    if smallest <= budget:
        return budget
    noisy = [d.name for d in choices if d.undetermined]
    why = (f"; {len(noisy)} tensor(s) with an undetermined Hessian trace ({', '.join(noisy[:3])}"
           f"{', ...' if len(noisy) > 3 else ''}) keep >= {min(min(d.bits) for d in choices if d.undetermined)} "
           "bits: more probes (max_probes) or a larger trace_tolerance may settle them") if noisy else ""
    if target_bytes is not None:
        reach = int(fixed + smallest)
        raise QuantizationError(f"target size {target_bytes} bytes is unreachable: the smallest reachable "
                                f"size is {reach} bytes ({reach / 1e6:.3f} MB, every tensor at its "
                                f"narrowest allowed width){why}")
    raise QuantizationError(f"average bits {avg_bits} is unreachable: the smallest reachable is "
                            f"{8 * smallest / params:.3f} bits per weight including the value tables "
                            f"(every tensor at its narrowest allowed width, allowed bits "
                            f"{sorted({b for d in choices for b in d.bits})}){why}")


def pareto_front(choices: Sequence[Decision], *, fixed: int = 0, resolution: float = 0.005) -> list[Allocation]:
    """Minimum-sensitivity allocations from the largest to the smallest reachable size (bytes vs sensitivity).

    The epsilon-constraint method: each point is the exact optimum under a
    budget just below the previous point's bytes, stepping at least
    ``resolution`` of the size range, so the list holds at most about
    ``1 / resolution`` points, each Pareto-optimal, in decreasing size.
    """
    if not 0 < resolution < 1:
        raise ConfigError(f"resolution: {resolution}; accepted: between 0 and 1")
    row = _budget_row(choices)
    offsets = np.cumsum([0] + [len(d.bits) for d in choices])
    low = sum(float(row[a:b].min()) for a, b in zip(offsets[:-1], offsets[1:]))
    high = sum(float(row[a:b].max()) for a, b in zip(offsets[:-1], offsets[1:]))
    step = max(1.0, resolution * (high - low))
    per_weight = _per_weight(choices)
    front: list[Allocation] = []
    budget = high
    while True:
        point = _allocation(choices, _solve(choices, row, budget), fixed, per_weight)
        if front and point.sensitivity <= front[-1].sensitivity:
            front[-1] = point  # as good with fewer bytes: the larger one is dominated
        else:
            front.append(point)
        if point.planned_bytes - fixed <= low:
            return front
        budget = max(low, min(budget, point.planned_bytes - fixed) - step)  # the smallest size is always a point


# --------------------------------------------------------------------------- sensitivity + allocation

TRACE_TOLERANCE = 0.25  # a trace is determined when its standard error is within 25 % of its magnitude
# (known within about +-50 % at 95 %: enough to rank tensors; on the demo device model 4 batches x 16 probes
# leave relative errors of 0.02 to 0.38, and one trace of 1.9 +- 8.0 decided a 1-bit layer in issue 22)


@dataclasses.dataclass
class MixedSettings:
    """How the sensitivities are measured and the widths chosen (YAML-able).

    ``batches`` batches of the ``objective`` and ``probes`` Hutchinson probes
    per batch, then ``probes`` more per batch while any trace's standard error
    exceeds ``trace_tolerance`` of its magnitude, up to ``max_probes`` per
    batch (default ``4 * probes``: 256 Hessian-vector products at the
    defaults); a tensor whose trace is still noise then is *undetermined*: it is
    reported so and gets no width below ``undetermined_bits`` (the default
    width of ``tfadvq quantize``).  ``allowed`` widths;
    ``per_channel``/``quantizer``/``binary`` as for :func:`tfadvq.quantize`
    (the quantization errors are those of the quantizer the model will get),
    but ``per_channel="auto"`` makes the granularity a choice of the
    allocation: every width up to 7 bits (LUT widths; 8 bits is stored per
    channel as int8 whatever the codebook) is also offered with per-channel
    codebooks, priced by the bytes of their tables and by the sensitivity
    with per-channel codebooks fitted as the model would get them, and the
    exact solver picks (bits, granularity) per decision;
    ``weighted``: the k-means codebooks are fitted to the diagonal Fisher of
    the distillation objective on the same batches (the default post-training
    path whenever data is given, :mod:`tfadvq.quant.post_training`; mixed
    precision always has data), and each tensor's cost at each width is the
    Fisher-weighted error of those codebooks
    (:func:`tfadvq.quant.sensitivity.quantization_errors`);
    ``per_weight``: one width per weight key instead of per layer.
    """

    allowed: list[int] = dataclasses.field(default_factory=lambda: list(DEFAULT_BITS))
    objective: str = "distill"
    batches: int = 4
    probes: int = 16
    per_channel: bool | str = False
    quantizer: str = "kmeans"
    binary: str | None = "adaptive"
    per_weight: bool = False
    seed: int = 0
    trace_tolerance: float = TRACE_TOLERANCE
    max_probes: int | None = None
    undetermined_bits: int = 4
    weighted: bool = True

    def __post_init__(self) -> None:
        from tfadvq.objectives import parse_objective

        parse_objective(self.objective)
        if self.batches < 1 or self.probes < 1:
            raise ConfigError(f"mixed: batches {self.batches}, probes {self.probes}; accepted: >= 1 each")
        if not self.trace_tolerance > 0 or self.max_probes is not None and self.max_probes < self.probes:
            raise ConfigError(f"mixed: trace_tolerance {self.trace_tolerance}, max_probes {self.max_probes}; "
                              f"accepted: a tolerance > 0 and max_probes >= probes ({self.probes})")
        check_allowed(self.allowed, "mixed allowed bits")
        if not isinstance(self.per_channel, bool) and self.per_channel != "auto":
            raise ConfigError(f"mixed: per_channel {self.per_channel!r}; accepted: true, false or auto (the "
                              "allocation chooses per tensor)")

    @property
    def channel_widths(self) -> list[int]:
        """The widths offered with per-channel codebooks besides per-tensor ones (``per_channel="auto"``)."""
        return [b for b in self.allowed if b <= cost.MAX_LUT_BITS] if self.per_channel == "auto" else []


@dataclasses.dataclass
class MixedPlan:
    """Everything the allocation was made from, and the allocation (and front) it gave.

    ``importances``: the Fisher the codebooks are fitted to (None: plain
    k-means), the same that priced every width, so the model is quantized
    with the quantizer its costs were measured with.  ``channel_sensitivity``:
    the sensitivities with per-channel codebooks (``per_channel="auto"``).
    """

    allocation: Allocation
    choices: list[Decision]
    traces: dict[str, Any]  # key -> sensitivity.TraceEstimate
    sensitivity: dict[str, dict[int, float]]
    front: list[Allocation]
    fixed: int
    trace_seconds: float
    importances: dict[str, np.ndarray] | None = None
    channel_sensitivity: dict[str, dict[int, float]] | None = None

    def chosen(self) -> dict[str, float]:
        """Sensitivity of every weight key at its chosen option (the MSFT ``sensitivities`` input)."""
        a = self.allocation
        channels = self.channel_sensitivity or {}
        return {key: (channels if a.per_channel.get(key) and key in channels else self.sensitivity)[key][a.bits[d.name]]
                for d in self.choices for key in d.weights}

    def replan(self, *, target_bytes: int | None = None, avg_bits: float | None = None) -> MixedPlan:
        """The same measurements allocated under another budget (no new Hessian traces)."""
        found = allocate(self.choices, target_bytes=target_bytes, avg_bits=avg_bits, fixed=self.fixed)
        return dataclasses.replace(self, allocation=found)

    def to_dict(self) -> dict[str, Any]:
        return {"allocation": self.allocation.to_dict(), "rows": self.allocation.rows(self.choices),
                "fixed_bytes": self.fixed, "trace_seconds": self.trace_seconds,
                "codebooks": "weighted" if self.importances is not None else "plain",
                "traces": {k: t.to_dict() for k, t in self.traces.items()},
                "sensitivity": {k: {str(b): s for b, s in v.items()} for k, v in self.sensitivity.items()},
                "sensitivity_per_channel": None if self.channel_sensitivity is None else
                {k: {str(b): s for b, s in v.items()} for k, v in self.channel_sensitivity.items()},
                "front": [{"planned_bytes": p.planned_bytes, "sensitivity": p.sensitivity,
                           "avg_bits": p.avg_bits, "index_bits": p.index_bits, "bits": p.bits,
                           "per_channel": sorted(k for k, v in p.per_channel.items() if v)} for p in self.front]}


def plan(model: keras.Model, batches: Sequence[Any], settings: MixedSettings, *,
         target_bytes: int | None = None, avg_bits: float | None = None, teacher: keras.Model | None = None,
         head: keras.layers.Layer | None = None, float_tflite_bytes: int | None = None,
         progress: Any = None) -> MixedPlan:
    """Hessian traces, the Fisher (``weighted``), HAWQ-V2 sensitivities, the exact allocation and its front.

    ``batches``: :func:`tfadvq.quant.sensitivity.objective_batches`;
    ``float_tflite_bytes``: the float ``.tflite``'s length, so :func:`fixed_bytes` is measured.
    """
    import time

    from tfadvq.quant import sensitivity as sens

    fixed = fixed_bytes(model, float_tflite_bytes)
    placeholder = {w.key: dict.fromkeys(settings.allowed, 0.0) for w in quantizable_weights(model)}
    budget_bytes(decisions(model, placeholder, allowed=settings.allowed, per_weight=settings.per_weight,
                           per_channel=settings.per_channel is True),
                 target_bytes=target_bytes, avg_bits=avg_bits, fixed=fixed)  # refused before minutes of traces
    start = time.perf_counter()
    traces = sens.hessian_traces(model, batches, objective=settings.objective, teacher=teacher, head=head,
                                 probes=settings.probes, seed=settings.seed, tolerance=settings.trace_tolerance,
                                 max_probes=settings.max_probes, progress=progress)
    seconds = time.perf_counter() - start
    # The Fisher of the default post-training path (post_training: distill, whatever the traces' objective)
    importances = sens.fisher_diagonal(model, batches, objective="distill") if settings.weighted else None
    return costed(model, traces, settings, importances, fixed=fixed, trace_seconds=seconds,
                  target_bytes=target_bytes, avg_bits=avg_bits)


def costed(model: keras.Model, traces: Mapping[str, Any], settings: MixedSettings,
           importances: Mapping[str, np.ndarray] | None, *, fixed: int, trace_seconds: float = 0.0,
           target_bytes: int | None = None, avg_bits: float | None = None) -> MixedPlan:
    """The plan from measured Hessian ``traces``, each width priced with the quantizer the model will get.

    ``importances`` (None: plain k-means) are the codebooks' Fisher: the
    errors are theirs (:func:`tfadvq.quant.sensitivity.quantization_errors`)
    and the plan hands them on to the quantization.  The same traces can be
    priced for another quantizer without a new Hessian-vector product.
    """
    from tfadvq.quant import sensitivity as sens

    def priced(per_channel: bool, widths: Sequence[int]) -> dict[str, dict[int, float]]:
        errors = sens.quantization_errors(model, widths, per_channel=per_channel, quantizer=settings.quantizer,
                                          binary=settings.binary, importances=importances)
        return sens.sensitivities(traces, errors)

    table = priced(settings.per_channel is True, settings.allowed)
    channels = priced(True, settings.channel_widths) if settings.channel_widths else None
    choices = decisions(model, table, allowed=settings.allowed, per_weight=settings.per_weight,
                        undetermined=[k for k, t in traces.items() if not t.determined],
                        floor=settings.undetermined_bits, per_channel=settings.per_channel is True,
                        channel_sensitivity=channels)
    found = allocate(choices, target_bytes=target_bytes, avg_bits=avg_bits, fixed=fixed)
    return MixedPlan(found, choices, dict(traces), table, pareto_front(choices, fixed=fixed), fixed, trace_seconds,
                     None if importances is None else dict(importances), channels)
