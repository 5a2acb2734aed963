"""Mixed precision end to end: sensitivities -> bits under a size budget -> quantized (and fine-tuned) model.

:func:`mixed_run` is the one implementation behind ``tfadvq mixed``, the
recipe stage type ``mixed`` (:mod:`tfadvq.stages.mixed`, which reads the
request), the benchmarks and notebook 02: it measures Hessian traces on a few
batches of the objective (:mod:`tfadvq.quant.sensitivity`), allocates bits
exactly under the budget (:mod:`tfadvq.quant.allocate`), quantizes, and --
since the budget is the bytes of the converted ``.tflite`` -- has the
post-training model converted once to measure the file; if the cost model
under-counted and the file exceeds the target, the budget is cut by the
excess and the allocation repeated (at most :data:`SIZE_ROUNDS` times), so
the result never exceeds the request.  Then it fine-tunes: one-shot QAT
(``finetune_steps`` steps of :func:`tfadvq.quant.finetune.finetune`) or MSFT
(:func:`tfadvq.quant.msft.msft`, ordered by the sensitivities just measured),
and writes a :class:`~tfadvq.rundir.MixedDir`.  Fine-tuning moves centroids,
never bits or table shapes, so the converted size does not change.

The converter sits a layer above the library, so the file sizes come in as a
:class:`ConvertedSizes` (``converters.ConvertedSizes`` is the real one) rather
than by importing it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tfadvq import rundir
from tfadvq.config import to_dict
from tfadvq.errors import ConfigError

SIZE_ROUNDS = 3


class ConvertedSizes(Protocol):
    """Bytes of the files a model converts to (at one input window)."""

    def float_bytes(self, model) -> int:
        """The plain float ``.tflite`` of an FP32 model."""

    def lut_bytes(self, wrapped) -> int:
        """The LUT ``.tflite`` of a quantized (wrapped) model."""


@dataclasses.dataclass
class MixedOutcome:
    """What :func:`mixed_run` made: the plan, the final wrapped model and its sizes, what tuning did."""

    plan: Any  # tfadvq.quant.allocate.MixedPlan
    wrapped: Any
    saved: Any  # tfadvq.quant.outputs.QuantizationOutputs of the final model (rows, cost-model size)
    ptq_tflite_bytes: int | None  # the converted post-training model (None: not convertible here)
    rounds: int
    tuning: dict[str, Any] | None
    head_weights: list[np.ndarray] | None

    @property
    def codebooks(self) -> str:
        """``"weighted"`` (Fisher-weighted k-means, priced so) or ``"plain"``."""
        return "weighted" if self.plan.importances is not None else "plain"

    def size_row(self, target_bytes: int | None) -> dict[str, Any]:
        a = self.plan.allocation
        return {"target_bytes": target_bytes, "planned_bytes": a.planned_bytes,
                "tflite_bytes": self.ptq_tflite_bytes, "avg_bits_with_tables": round(a.avg_bits, 3),
                "index_bits": round(a.index_bits, 3),
                "size_rounds": self.rounds, "hessian_seconds": round(self.plan.trace_seconds, 2)}


def _head(head_weights, num_classes: int, train_config):
    from tfadvq.heads import AAMSoftmax

    if head_weights is None:
        raise ConfigError("mixed objective aam: the trained AAM head is needed (head.npz of the model's train "
                          "directory); without it use objective distill")
    head = AAMSoftmax(num_classes, margin=train_config.head.margin, scale=train_config.head.scale)
    head.build((None, int(np.shape(head_weights[0])[0])))
    head.set_weights(list(head_weights))
    return head


def _quantize(model, plan, settings):
    """``plan``'s allocation quantized with the codebooks its costs were measured with (plan.importances).

    The granularity is the spec's: it names every weight's per-channel choice whenever the plan had any
    (``settings.per_channel`` true or ``"auto"``), and none (per tensor) otherwise."""
    from tfadvq.quant import api

    allocation = plan.allocation
    binary = settings.binary if 1 in allocation.bits.values() else None
    return api.quantize(model, allocation.spec(), quantizer=settings.quantizer, binary=binary,
                        importances=plan.importances, progress=False)


def quantize_within(model, plan, settings, target_bytes: int | None, sizes: ConvertedSizes | None):
    """``(plan, wrapped, tflite bytes or None, rounds)``: ``plan`` quantized, its converted file kept
    within ``target_bytes`` (module doc); without ``sizes`` nothing is converted."""
    wrapped, tflite, rounds = _quantize(model, plan, settings), None, 1
    if sizes is None:
        return plan, wrapped, tflite, rounds
    tflite = sizes.lut_bytes(wrapped)
    while target_bytes is not None and tflite > target_bytes and rounds < SIZE_ROUNDS:
        excess = tflite - plan.allocation.planned_bytes  # what the cost model missed
        plan = plan.replan(target_bytes=target_bytes - max(excess, tflite - target_bytes))
        wrapped, rounds = _quantize(model, plan, settings), rounds + 1
        tflite = sizes.lut_bytes(wrapped)
    return plan, wrapped, tflite, rounds


def mixed_run(model, data, settings, out: str | Path, *, target_bytes: int | None = None,
              avg_bits: float | None = None, sizes: ConvertedSizes | None = None, train_config=None,
              head_weights: Sequence[np.ndarray] | None = None, finetune_steps: int = 0, lr_scale: float = 0.1,
              msft_settings=None, extra: dict[str, Any] | None = None, front_end=None) -> MixedOutcome:
    """Plan, quantize within the budget, fine-tune, write ``out`` (module doc).

    ``data``: :class:`tfadvq.training.TrainingData` (a corpus' or a user's
    model inputs, :func:`tfadvq.quant.finetune.input_data`); ``settings``:
    :class:`~tfadvq.quant.allocate.MixedSettings`; ``sizes``: the bytes of
    the converted files (``converters.ConvertedSizes`` at the model's input
    window; None: nothing is converted and the size is the cost model's plan);
    ``train_config``: the fine-tune follows it;
    ``msft_settings`` (:class:`~tfadvq.quant.msft.MSFTSettings`) replaces the
    one-shot fine-tune by MSFT; ``front_end`` (:class:`tfadvq.frontend.FrontEnd`,
    the model's) is recorded with the result.
    """
    from tfadvq.config import dump_yaml
    from tfadvq.objectives import Objective, parse_objective
    from tfadvq.quant import allocate, outputs, sensitivity
    from tfadvq.train_config import TrainConfig

    train_config = train_config or TrainConfig()
    objective = parse_objective(settings.objective)
    aam = objective is Objective.AAM
    head = _head(head_weights, data.num_classes, train_config) if aam else None
    batches = sensitivity.objective_batches(data, settings.batches)
    float_bytes = None if sizes is None else sizes.float_bytes(model)
    plan = allocate.plan(model, batches, settings, target_bytes=target_bytes, avg_bits=avg_bits, head=head,
                         float_tflite_bytes=float_bytes)
    plan, wrapped, tflite, rounds = quantize_within(model, plan, settings, target_bytes, sizes)
    run = rundir.MixedDir(out)
    # A replaced (--force) result stops counting as finished before any of its files changes: a kill from
    # here on must not leave the new bits.yaml beside the old model under the old summary.
    run.summary.unlink(missing_ok=True)
    rundir.atomic_save_with(run.bits_spec, lambda tmp: dump_yaml(plan.allocation.spec(), tmp))
    rundir.write_json(run.sensitivities, plan.chosen())
    tuning, head_out = None, list(head_weights) if head_weights is not None else None
    teacher = None if aam else model
    if msft_settings is not None:
        from tfadvq.quant.msft import msft

        result = msft(model, plan.allocation.spec(), data, train_config, msft_settings, out=run.path,
                      teacher=teacher, head_weights=head_weights, sensitivities=plan.chosen(), front_end=front_end)
        wrapped, head_out, tuning = result.model, result.head_weights, {"msft": result.rows}
    elif finetune_steps:
        from tfadvq.quant.finetune import finetune, finetune_config

        config = finetune_config(train_config, 1, lr_scale, finetune_steps)
        tuned = finetune(wrapped, dataclasses.replace(data, steps_per_epoch=finetune_steps), config,
                         objective.value, teacher=teacher, head_weights=head_weights, verbose=0)
        tuning = {"objective": objective.value, "peak_lr": config.optimizer.lr, **tuned.record()}
        head_out = tuned.head_weights if aam else None
    outcome = MixedOutcome(plan, wrapped, None, tflite, rounds, tuning, head_out)
    rundir.write_json(run.plan, {**plan.to_dict(), "sizes": outcome.size_row(target_bytes),
                                 "settings": to_dict(settings), "tuning": tuning})
    if head_out is not None and aam:
        rundir.TrainDir(run.path).save_head(head_out)
    # Last, since outputs.save writes the summary last: its presence means every file above is this run's.
    outcome.saved = outputs.save(wrapped, run, front_end=front_end, mixed=plan.allocation.to_dict(), tuning=tuning,
                                 **(extra or {}))
    return outcome


def plot_outcome(outcome: MixedOutcome, directory: Path) -> list[Path]:
    """The per-tensor sensitivity/bits bars and the Hutchinson convergence of ``outcome`` into ``directory``."""
    from tfadvq.plots import plot_convergence, plot_sensitivity

    plan, files = outcome.plan, rundir.MixedDir(directory)
    return [plot_sensitivity(plan.allocation.rows(plan.choices), files.sensitivity_plot),
            plot_convergence(plan.traces, files.convergence_plot)]
