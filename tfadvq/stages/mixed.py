"""The ``mixed`` stage and ``tfadvq mixed``'s request: what is asked, read and checked once.

:class:`MixedRequest` holds the fields both read (budget, search, fine-tune)
under the same checks; :func:`run_mixed` runs
:func:`tfadvq.quant.mixed_run.mixed_run` (the library's one implementation)
with the converter's file sizes at the model's window and the head the
model's :class:`~tfadvq.stages.lineage.Lineage` names (the one rule of every stage).
The stage hands on what ``msft``, ``convert`` and ``evaluate`` stages need:
``wrapped``/``plain`` models, ``source_model``, ``bits_spec``,
``sensitivities`` and the training lineage.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tfadvq import frontend, rundir
from tfadvq.config import bounded, to_dict
from tfadvq.errors import ConfigError
from tfadvq.quant.mixed_run import MixedOutcome, mixed_run
from tfadvq.recipe import StageBase, StageContext, StageResult, register_stage
from tfadvq.stages.lineage import lineage
from tfadvq.stages.modelling import frontend_output, load_keras_model, replaced_data
from tfadvq.stages.quantization import quantize_summary
from tfadvq.train_config import DataConfig

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "kib": 2**10, "mib": 2**20}


def parse_size(text: str | int) -> int:
    """``"1.5MB"`` (decimal), ``"200KiB"``, ``"150000"`` -> bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise ConfigError(f"target size {text!r}: accepted a positive number of bytes with an optional unit "
                          f"(B, KB, MB, KiB, MiB), e.g. 1.5MB")
    return int(float(match.group(1)) * _UNITS[unit])


def check_avg_bits(avg_bits: float, allowed: Sequence[int]) -> float:
    """Refuse an average no model could reach (or not finite) when the request is read.

    ``avg_bits`` counts the value tables with the indices
    (:mod:`tfadvq.quant.allocate`), so below the narrowest allowed width is
    out of reach, and above 32 is larger than the float model; what the
    tables of this model make unreachable is refused once the model is read,
    before the Hessian traces (:func:`tfadvq.quant.allocate.budget_bytes`).
    """
    if not np.isfinite(avg_bits) or not min(allowed) <= avg_bits <= 32:
        raise ConfigError(f"average bits {avg_bits}: accepted a finite number from {min(allowed)} (the narrowest "
                          f"allowed width, allowed bits {sorted(allowed)}) to 32, in bits per weight including "
                          "the value tables")
    return float(avg_bits)


@dataclasses.dataclass
class MixedRequest:
    """What a mixed-precision run is asked: the budget, the search and the fine-tune (YAML-able).

    ``tfadvq mixed`` and the recipe's ``mixed`` stage both build one and run it
    with :func:`run_mixed`, so the two read the same fields under the same
    checks and resolve the head and the data by the same rule.  One of
    ``target_size`` (the converted ``.tflite``, e.g. ``"150KB"``) or
    ``avg_bits`` (bits per quantized weight *including* its value tables, as
    :func:`tfadvq.quant.size.model_size` counts them; :mod:`tfadvq.quant.allocate`);
    ``finetune_steps`` one-shot QAT steps, or ``msft: true``
    (``steps_per_stage`` x ``stages``) instead.  ``probes`` per batch, more
    (up to ``max_probes``) until each trace's standard error is within
    ``trace_tolerance`` of it (:class:`~tfadvq.quant.allocate.MixedSettings`).
    ``weighted`` (default, as post-training quantization with data): Fisher-weighted
    codebooks, and every width priced with them; ``false``: plain k-means.
    ``per_channel``: false (one value table per tensor), true (per output
    channel) or ``auto``: the allocation chooses per tensor, each option priced
    by its converted bytes and its error (:class:`~tfadvq.quant.allocate.MixedSettings`).
    """

    target_size: str | None = None
    avg_bits: float | None = bounded(None, 1.0, 32.0)
    allowed: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 8])
    objective: str = "distill"
    batches: int = bounded(4, 1)
    probes: int = bounded(16, 1)
    trace_tolerance: float = bounded(0.25, 0.0, above=True)
    max_probes: int | None = bounded(None, 1)
    per_channel: bool | str = False
    per_weight: bool = False
    weighted: bool = True
    finetune_steps: int = bounded(0, 0)
    lr_scale: float = bounded(0.1, 0.0, above=True)
    msft: bool = False
    steps_per_stage: int = bounded(100, 1)
    stages: int = bounded(4, 1)

    def __post_init__(self) -> None:
        if (self.target_size is None) == (self.avg_bits is None):
            raise ConfigError("mixed: give exactly one of target_size or avg_bits")
        if self.target_size is not None:
            parse_size(self.target_size)
        if self.msft and self.finetune_steps:
            raise ConfigError("mixed: msft replaces finetune_steps; give one of them")
        settings = self.settings()
        if self.avg_bits is not None:
            check_avg_bits(self.avg_bits, settings.allowed)

    @property
    def target_bytes(self) -> int | None:
        return parse_size(self.target_size) if self.target_size is not None else None

    @property
    def aam(self) -> bool:
        from tfadvq.objectives import Objective, parse_objective

        return parse_objective(self.objective) is Objective.AAM

    def settings(self):
        from tfadvq.quant.allocate import MixedSettings

        return MixedSettings(list(self.allowed), self.objective, self.batches, self.probes, self.per_channel,
                             per_weight=self.per_weight, trace_tolerance=self.trace_tolerance,
                             max_probes=self.max_probes, weighted=self.weighted)

    def msft_settings(self):
        """The MSFT settings (None: one-shot, or no fine-tune)."""
        if not self.msft:
            return None
        from tfadvq.quant.msft import MSFTSettings

        return MSFTSettings(self.steps_per_stage, self.stages, objective=self.objective, lr_scale=self.lr_scale,
                            per_channel=self.per_channel is True)  # "auto": the bits spec names each weight

    @property
    def tuning_steps(self) -> int:
        """Steps of one pass of the fine-tune data (at least one: the traces read batches too)."""
        return self.steps_per_stage if self.msft else max(self.finetune_steps, 1)


def run_mixed(model, request: MixedRequest, out: str | Path, *, data, head: Path | None, train_config,
              frames: int | None, extra: dict[str, Any] | None = None, front_end=None) -> MixedOutcome:
    """:func:`mixed_run` of ``request`` on ``model`` (the one entry of the command and the stage).

    The head: the objective ``aam`` needs the model's trained head (``head``,
    its :class:`~tfadvq.stages.lineage.Lineage`'s) and data with speaker
    labels; ``distill`` uses neither.
    """
    if request.aam and not data.speakers:
        raise ConfigError("mixed objective aam: these inputs carry no speaker labels; use objective distill")
    from converters import ConvertedSizes

    weights = rundir.load_head(head) if request.aam and head is not None else None
    sizes = None if frames is None else ConvertedSizes(frames)
    return mixed_run(model, data, request.settings(), out, target_bytes=request.target_bytes,
                     avg_bits=request.avg_bits, sizes=sizes, train_config=train_config, head_weights=weights,
                     finetune_steps=request.finetune_steps, lr_scale=request.lr_scale,
                     msft_settings=request.msft_settings(), extra=extra, front_end=front_end)


@register_stage("mixed")
@dataclasses.dataclass
class MixedStage(MixedRequest, StageBase):
    """Mixed precision from Hessian sensitivity (the fields of :class:`MixedRequest`).

    ``model``: a train stage (or any stage with a Keras model); ``corpus``
    (a corpus stage) or ``data`` replace its training data, ``inputs`` (an
    ``.npy`` array of model inputs, distill) any audio; a model not trained by
    tfadvq needs one of them.  The converted size uses the recipe's scoring window.
    """

    produces: ClassVar[tuple[str, ...]] = ("wrapped", "plain", "source_model", "train_dir", "bits_spec",
                                           "sensitivities", "plan")
    needs: ClassVar[dict[str, str]] = {"corpus": "corpus"}

    model: str = "train"
    corpus: str | None = None
    data: DataConfig | None = None
    inputs: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if sum(x is not None for x in (self.corpus, self.data, self.inputs)) > 1:
            raise ConfigError("mixed: give one of corpus, data or inputs")

    def uses(self) -> dict[str, str]:
        return {k: v for k, v in (("model", self.model), ("corpus", self.corpus)) if v}

    def fingerprint(self, ctx: StageContext) -> dict[str, Any]:
        config = lineage(ctx, self.model).train_config
        return {"train_config": rundir.file_sha256(config) if config else None,
                "inputs": rundir.file_sha256(self.inputs) if self.inputs else None,
                "window_frames": ctx.scoring.window_frames}

    def run(self, ctx: StageContext) -> StageResult:
        from tfadvq.quant.finetune import model_inputs
        from tfadvq.train_config import model_config

        made = lineage(ctx, self.model)
        source = made.keras_model(ctx.name)
        data, utterances = replaced_data(ctx, self.corpus, self.data)
        train_config = model_config(made.expected_config, data_given=data is not None or self.inputs is not None,
                                    what=f"stage {ctx.name}")
        if data is not None:
            train_config = dataclasses.replace(train_config, data=data)
        model = load_keras_model(ctx, source)
        front_end = frontend.for_input(made.front_end(), model.input_shape, str(source))
        inputs = model_inputs(model, train_config, inputs=self.inputs, utterances=utterances,
                              steps_per_epoch=self.tuning_steps)
        outcome = run_mixed(model, self, ctx.out, data=inputs, head=made.head, train_config=train_config,
                            frames=ctx.scoring.window_frames, front_end=front_end,
                            extra={"source_model": str(source), "settings": to_dict(self)})
        run = rundir.MixedDir(ctx.out)
        produced = {"wrapped": str(run.wrapped), "plain": str(run.plain), "source_model": str(source),
                    "train_dir": str(made.train_dir), "bits_spec": str(run.bits_spec),
                    "sensitivities": str(run.sensitivities), "plan": str(run.plan), **frontend_output(run.path)}
        ctx.cache[f"wrapped:{run.wrapped}"] = outcome.wrapped
        last = (outcome.tuning or {}).get("last_loss")
        tuned = {"steps": self.finetune_steps, "last_loss": last} if last is not None else None
        return StageResult(outputs=produced,
                           metrics={**outcome.size_row(self.target_bytes),
                                    "size_bytes": outcome.saved.size.size_bytes,
                                    "bits": outcome.plan.allocation.bits, "tuning": outcome.tuning},
                           summary=quantize_summary(f"mixed {outcome.plan.allocation.avg_bits:.2f} bits per weight "
                                                    f"with tables, {outcome.codebooks} codebooks",
                                                    outcome.saved, tuned))
