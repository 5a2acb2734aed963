"""Bits per tensor under a size budget: the exact minimum-sensitivity allocation and its Pareto front.

Given each tensor's HAWQ-V2 sensitivity per bit width
(:func:`tfadvq.quant.sensitivity.sensitivities`), choose one width per
decision (a layer, all its weights sharing the width -- what the converter's
``{layer: bits}`` takes -- or, with ``per_weight=True``, every weight key on
its own) minimising the total sensitivity subject to the budget.  That is a
multiple-choice knapsack; it is solved exactly as a 0/1 integer programme with
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
bit width budget (``avg_bits``) constrains ``Σ n_l b_l / Σ n_l`` instead.

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
    """Weights that take one width together, and per allowed width their bytes and sensitivity."""

    name: str  # layer name, or weight key with per_weight
    weights: tuple[str, ...]
    params: int
    bits: tuple[int, ...]
    cost: tuple[int, ...]
    sensitivity: tuple[float, ...]


def decisions(model: keras.Model, sensitivity: Mapping[str, Mapping[int, float]], *,
              allowed: Iterable[int] = DEFAULT_BITS, per_weight: bool = False,
              activations: str = "float32") -> list[Decision]:
    """One :class:`Decision` per quantizable layer (or weight key with ``per_weight``) of ``model``.

    ``sensitivity[key][b]`` must cover every quantizable weight key and
    every ``allowed`` width; the cost of each option comes from the cost model.
    """
    allowed = check_allowed(allowed)
    groups: dict[str, list] = {}
    for w in quantizable_weights(model):
        missing = [b for b in allowed if b not in sensitivity.get(w.key, {})]
        if missing:
            raise QuantizationError(f"sensitivity of {w.key!r}: no value for bits {missing}")
        groups.setdefault(w.key if per_weight else w.layer.name, []).append(w)
    return [Decision(name, tuple(w.key for w in ws), sum(w.size for w in ws), tuple(allowed),
                     tuple(sum(size.weight_bytes(w.layer, w.attr, w.variable.shape, b, activations) for w in ws)
                           for b in allowed),
                     tuple(float(sum(sensitivity[w.key][b] for w in ws)) for b in allowed))
            for name, ws in groups.items()]


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
    """Chosen bits per decision, with its planned bytes, total sensitivity and average bits."""

    bits: dict[str, int]
    planned_bytes: int
    sensitivity: float
    avg_bits: float
    per_weight: bool = False

    def spec(self) -> BitsSpec:
        """As a :class:`~tfadvq.quant.spec.BitsSpec` (``--bits-per-layer``); no default: all named."""
        if self.per_weight:
            return BitsSpec(weights=dict(self.bits))
        return BitsSpec(layers=dict(self.bits))

    def rows(self, choices: Sequence[Decision]) -> list[dict[str, Any]]:
        """One row per decision: bits, params, planned bytes, sensitivity and its share of the total."""
        rows = []
        for d in choices:
            i = d.bits.index(self.bits[d.name])
            share = d.sensitivity[i] / self.sensitivity if self.sensitivity > 0 else 0.0
            rows.append({"tensor": d.name, "params": d.params, "bits": d.bits[i], "bytes": d.cost[i],
                         "sensitivity": d.sensitivity[i], "share": share})
        return rows

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _budget_row(choices: Sequence[Decision], by: str) -> np.ndarray:
    if by == "bytes":
        return np.array([c for d in choices for c in d.cost], np.float64)
    return np.array([d.params * b for d in choices for b in d.bits], np.float64)


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
    return Allocation(
        bits={d.name: d.bits[i] for d, i in zip(choices, picked)},
        planned_bytes=int(fixed + sum(d.cost[i] for d, i in zip(choices, picked))),
        sensitivity=float(sum(d.sensitivity[i] for d, i in zip(choices, picked))),
        avg_bits=float(sum(d.params * d.bits[i] for d, i in zip(choices, picked)) / params),
        per_weight=per_weight)


def _per_weight(choices: Sequence[Decision]) -> bool:
    return all(d.weights == (d.name,) for d in choices)


def allocate(choices: Sequence[Decision], *, target_bytes: int | None = None, avg_bits: float | None = None,
             fixed: int = 0) -> Allocation:
    """Minimum-sensitivity bits under ``target_bytes`` (planned ``.tflite`` bytes) or ``avg_bits``.

    ``fixed``: :func:`fixed_bytes` of the model.  An unreachable budget
    raises, naming the smallest reachable size (every decision at its
    narrowest allowed width).
    """
    if (target_bytes is None) == (avg_bits is None):
        raise ConfigError("bit allocation: give exactly one of a target size in bytes or average bits")
    if not choices:
        raise QuantizationError("bit allocation: no quantizable tensor")
    by, budget = ("bytes", float(target_bytes) - fixed) if target_bytes is not None else ("bits", None)
    row = _budget_row(choices, by)
    if by == "bits":
        budget = float(avg_bits) * sum(d.params for d in choices)
    offsets = np.cumsum([0] + [len(d.bits) for d in choices])
    smallest = sum(float(row[a:b].min()) for a, b in zip(offsets[:-1], offsets[1:]))
    if smallest > budget:
        if by == "bytes":
            reach = int(fixed + smallest)
            raise QuantizationError(f"target size {target_bytes} bytes is unreachable: the smallest reachable "
                                    f"size is {reach} bytes ({reach / 1e6:.3f} MB, every tensor at "
                                    f"{min(choices[0].bits)} bits)")
        params = sum(d.params for d in choices)
        raise QuantizationError(f"average bits {avg_bits} is unreachable: the smallest reachable is "
                                f"{smallest / params:.3f} (allowed bits {list(choices[0].bits)})")
    return _allocation(choices, _solve(choices, row, budget), fixed, _per_weight(choices))


def pareto_front(choices: Sequence[Decision], *, fixed: int = 0, resolution: float = 0.005) -> list[Allocation]:
    """Minimum-sensitivity allocations from the largest to the smallest reachable size (bytes vs sensitivity).

    The epsilon-constraint method: each point is the exact optimum under a
    budget just below the previous point's bytes, stepping at least
    ``resolution`` of the size range, so the list holds at most about
    ``1 / resolution`` points, each Pareto-optimal, in decreasing size.
    """
    if not 0 < resolution < 1:
        raise ConfigError(f"resolution: {resolution}; accepted: between 0 and 1")
    row = _budget_row(choices, "bytes")
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


@dataclasses.dataclass
class MixedSettings:
    """How the sensitivities are measured and the widths chosen (YAML-able).

    ``batches`` batches of the ``objective`` and ``probes`` Hutchinson probes
    per batch; ``allowed`` widths; ``per_channel``/``quantizer``/``binary``
    as for :func:`tfadvq.quantize` (the quantization errors are those of the
    quantizer the model will get); ``per_weight``: one width per weight key
    instead of per layer.
    """

    allowed: list[int] = dataclasses.field(default_factory=lambda: list(DEFAULT_BITS))
    objective: str = "distill"
    batches: int = 4
    probes: int = 16
    per_channel: bool = False
    quantizer: str = "kmeans"
    binary: str | None = "adaptive"
    per_weight: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        from tfadvq.objectives import parse_objective

        parse_objective(self.objective)
        if self.batches < 1 or self.probes < 1:
            raise ConfigError(f"mixed: batches {self.batches}, probes {self.probes}; accepted: >= 1 each")
        check_allowed(self.allowed, "mixed allowed bits")


@dataclasses.dataclass
class MixedPlan:
    """Everything the allocation was made from, and the allocation (and front) it gave."""

    allocation: Allocation
    choices: list[Decision]
    traces: dict[str, Any]  # key -> sensitivity.TraceEstimate
    sensitivity: dict[str, dict[int, float]]
    front: list[Allocation]
    fixed: int
    trace_seconds: float

    def chosen(self) -> dict[str, float]:
        """Sensitivity of every weight key at its chosen width (the MSFT ``sensitivities`` input)."""
        bits = self.allocation.bits
        return {key: self.sensitivity[key][bits[d.name]] for d in self.choices for key in d.weights}

    def replan(self, *, target_bytes: int | None = None, avg_bits: float | None = None) -> MixedPlan:
        """The same measurements allocated under another budget (no new Hessian traces)."""
        found = allocate(self.choices, target_bytes=target_bytes, avg_bits=avg_bits, fixed=self.fixed)
        return dataclasses.replace(self, allocation=found)

    def to_dict(self) -> dict[str, Any]:
        return {"allocation": self.allocation.to_dict(), "rows": self.allocation.rows(self.choices),
                "fixed_bytes": self.fixed, "trace_seconds": self.trace_seconds,
                "traces": {k: t.to_dict() for k, t in self.traces.items()},
                "sensitivity": {k: {str(b): s for b, s in v.items()} for k, v in self.sensitivity.items()},
                "front": [{"planned_bytes": p.planned_bytes, "sensitivity": p.sensitivity,
                           "avg_bits": p.avg_bits, "bits": p.bits} for p in self.front]}


def plan(model: keras.Model, batches: Sequence[Any], settings: MixedSettings, *,
         target_bytes: int | None = None, avg_bits: float | None = None, teacher: keras.Model | None = None,
         head: keras.layers.Layer | None = None, float_tflite_bytes: int | None = None,
         progress: Any = None) -> MixedPlan:
    """Hessian traces, HAWQ-V2 sensitivities, then the exact allocation and the Pareto front.

    ``batches``: :func:`tfadvq.quant.sensitivity.objective_batches`;
    ``float_tflite_bytes``: the float ``.tflite``'s length, so :func:`fixed_bytes` is measured.
    """
    import time

    from tfadvq.quant import sensitivity as sens

    start = time.perf_counter()
    traces = sens.hessian_traces(model, batches, objective=settings.objective, teacher=teacher, head=head,
                                 probes=settings.probes, seed=settings.seed, progress=progress)
    seconds = time.perf_counter() - start
    errors = sens.quantization_errors(model, settings.allowed, per_channel=settings.per_channel,
                                      quantizer=settings.quantizer, binary=settings.binary)
    table = sens.sensitivities(traces, errors)
    choices = decisions(model, table, allowed=settings.allowed, per_weight=settings.per_weight)
    fixed = fixed_bytes(model, float_tflite_bytes)
    found = allocate(choices, target_bytes=target_bytes, avg_bits=avg_bits, fixed=fixed)
    return MixedPlan(found, choices, traces, table, pareto_front(choices, fixed=fixed), fixed, seconds)
