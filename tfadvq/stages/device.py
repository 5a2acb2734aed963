"""Device stages: convert to a LUT ``.tflite``, calibrate its threshold on what TFLM computes, verify on it.

The threshold shipped to the firmware is calibrated on the scores the
converted model gives under the TFLite-Micro interpreter, through the one
scoring schedule (:mod:`tfadvq.windows`), on the trials of ``calibrate``; the
Keras model's scores of the same trials are computed too, so the record shows
how far the device is from Keras (``device_scoring_max_abs_diff``) and the EER
of each.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from tfadvq.config import bounded
from tfadvq import rundir
from tfadvq.errors import ConfigError
from tfadvq.evaluation import claim_outcome, describe_claim
from tfadvq.recipe import StageBase, StageContext, StageResult, register_stage
from tfadvq.stages.lineage import Lineage, lineage
from tfadvq.stages.modelling import TrialSource, corpus_of, evaluate_to, load_keras_model


def _device_model(ctx: StageContext, made: Lineage) -> tuple[bytes, Any]:
    """``(flatbuffer, metadata)`` of an earlier convert/calibrate stage."""
    from converters.metadata import read_json

    path, metadata = made.device_model(ctx.name)
    return path.read_bytes(), read_json(metadata)


@register_stage("convert")
@dataclasses.dataclass
class ConvertStage(StageBase):
    """LUT-compressed ``.tflite`` for the recipe's scoring window, checked against Keras under TFLM.

    ``corpus`` (a corpus stage) provides ``corpus_crops`` real fbank crops: the
    representative data int8 activation ranges are measured on, and the parity
    checks' inputs (the same rule as ``tfadvq convert --corpus``).  ``int8`` null
    (the default) means int8 activations, the device's choice (float
    activations cost ~5x the instructions on a Cortex-M4), whenever ``corpus``
    is given, and float activations without it; ``int8: false`` keeps float
    activations.  "Calibrate" is the decision thresholds (the ``calibrate``
    stage), never the int8 ranges.
    """

    produces: ClassVar[tuple[str, ...]] = ("tflite", "metadata", "plain")
    needs: ClassVar[dict[str, str]] = {"model": "wrapped", "corpus": "corpus"}
    renamed: ClassVar[dict[str, str]] = {"calibration": "corpus", "calibration_crops": "corpus_crops"}

    model: str = "finetune"
    int8: bool | None = None
    corpus: str | None = None
    corpus_crops: int = bounded(64, 1)
    model_version: int = bounded(1, 0, 2**31 - 1)

    def __post_init__(self) -> None:
        if self.int8 and self.corpus is None:
            raise ConfigError("convert: int8 needs corpus (a corpus stage): its crops give the activation ranges")

    @property
    def activations_int8(self) -> bool:
        return self.corpus is not None if self.int8 is None else self.int8

    def uses(self) -> dict[str, str]:
        return {k: v for k, v in (("model", self.model), ("corpus", self.corpus)) if v}

    def run(self, ctx: StageContext) -> StageResult:
        from converters.device_files import conversion_data, convert_saved_model, write_device_files

        made = lineage(ctx, self.model)
        wrapped = made.quantized(ctx.name)
        front_end = made.front_end()
        corpus = ctx.output(self.corpus, "corpus") if self.corpus is not None else None
        data = conversion_data(ctx.scoring.window_frames, front_end, corpus=corpus, count=self.corpus_crops)
        result, metadata = convert_saved_model(str(wrapped), ctx.scoring, int8=self.activations_int8,
                                               representative=data.representative, front_end=front_end,
                                               model_version=self.model_version, check_inputs=data.check)
        out = rundir.DeviceDir(ctx.out)
        write_device_files(result, metadata, out)
        parity = result.keras_parity
        produced = {"tflite": str(out.tflite), "metadata": str(out.metadata), "plain": str(made.plain)}
        return StageResult(
            outputs=produced,
            metrics={"tflite_bytes": len(result.model), "ideal_bytes": result.ideal_bytes,
                     "float_bytes": len(result.float_model), "arena_bytes": result.arena_bytes,
                     "activations": result.activations, "keras_min_cosine": parity.min_cosine,
                     "keras_median_cosine": parity.median_cosine,
                     "keras_decision_agreement": parity.decision_agreement, "parity_inputs": parity.inputs},
            summary=f"{out.tflite}: {len(result.model)} bytes (ideal {result.ideal_bytes}, float "
                    f"{len(result.float_model)}), arena {result.arena_bytes} bytes, {result.activations} "
                    f"activations; TFLM vs Keras: {parity.describe()}")


@register_stage("calibrate")
@dataclasses.dataclass
class CalibrateStage(StageBase):
    """Thresholds from the converted model's own TFLM scores; metadata and firmware C sources with them."""

    produces: ClassVar[tuple[str, ...]] = ("tflite", "metadata", "c_array", "plain", "scores")
    needs: ClassVar[dict[str, str]] = {"model": "tflite", "corpus": "corpus"}

    model: str = "convert"
    corpus: str | None = None
    trials: str | None = None
    wav_root: str | None = None
    target_far: float = bounded(0.01, 0.0, 1.0, above=True)

    def __post_init__(self) -> None:
        TrialSource(self.corpus, self.trials, self.wav_root).check("calibrate")

    def uses(self) -> dict[str, str]:
        return {k: v for k, v in (("model", self.model), ("corpus", self.corpus)) if v}

    def fingerprint(self, ctx: StageContext) -> dict[str, Any]:
        return TrialSource(self.corpus, self.trials, self.wav_root).digest()

    def run(self, ctx: StageContext) -> StageResult:
        from converters.c_array import write_c_arrays
        from converters.device_files import with_thresholds
        from converters.metadata import write_json
        from tfadvq import metrics
        from tfadvq.evaluation import evaluate
        from converters.tflm import tflm_embedder
        from tfadvq.scoring import keras_embedder

        made = lineage(ctx, self.model)
        model, metadata = _device_model(ctx, made)
        front_end = made.device_front_end()
        source = TrialSource(self.corpus, self.trials, self.wav_root)
        device = evaluate_to(ctx, tflm_embedder(model, front_end), source, f"{self.model} (TFLM), trials",
                             threshold_for=None, embedder="tflm").result  # thresholds: into model.json below
        keras_path = made.keras_model(ctx.name)
        trials = source.load(ctx)
        reference = evaluate(keras_embedder(load_keras_model(ctx, keras_path), front_end), trials.trials,
                             trials.utterances, ctx.scoring)
        thresholds = metrics.calibrate(device.scores, device.labels, self.target_far)
        keras_thresholds = metrics.calibrate(reference.scores, reference.labels, self.target_far)
        diff = float(np.max(np.abs(device.scores - reference.scores)))
        calibration = {"embedder": "tflm", "trials": str(trials.path), "num_trials": int(device.labels.size),
                       "device_eer_percent": device.eer, "keras_eer_percent": reference.eer,
                       "device_scoring_max_abs_diff": diff}
        metadata = with_thresholds(metadata, thresholds, calibration)
        out = rundir.DeviceDir(ctx.out)
        rundir.atomic_write(out.tflite, model)
        write_json(metadata, out.metadata)
        write_c_arrays(model, metadata, out.c_array)
        decisions_differ = int(np.sum(metrics.accept(device.scores, thresholds.eer_threshold)
                                      != metrics.accept(reference.scores, keras_thresholds.eer_threshold)))
        device_far = metrics.false_accept_rate(device.scores, device.labels, thresholds.eer_threshold)
        keras_far = metrics.false_accept_rate(reference.scores, reference.labels, keras_thresholds.eer_threshold)
        return StageResult(
            outputs={"tflite": str(out.tflite), "metadata": str(out.metadata), "c_array": str(out.c_array),
                     "plain": str(keras_path), "scores": str(rundir.EvalDir(ctx.out).trial_scores)},
            metrics={**calibration, "eer_threshold": thresholds.eer_threshold,
                     "low_far_threshold": thresholds.low_far_threshold, "far_at_low_far": thresholds.far_at_low_far,
                     "keras_far_at_low_far": keras_thresholds.far_at_low_far,
                     "device_far_at_eer_threshold": device_far, "keras_far_at_eer_threshold": keras_far,
                     "device_far_at_keras_threshold": metrics.false_accept_rate(device.scores, device.labels,
                                                                                keras_thresholds.eer_threshold),
                     "decisions_differ_at_eer": decisions_differ,
                     "decision_agreement_at_eer": 1.0 - decisions_differ / device.labels.size},
            summary=f"TFLM EER {device.eer:.2f} % (Keras {reference.eer:.2f} %) on {device.labels.size} trials; "
                    f"threshold {thresholds.eer_threshold:.3f} at EER: FAR {100 * device_far:.2f} % (Keras "
                    f"{100 * keras_far:.2f} % at its own), {decisions_differ} decisions differ; "
                    f"max |TFLM - Keras score| {diff:.2e}; C sources in {out.c_array}")


@register_stage("device_verify")
@dataclasses.dataclass
class DeviceVerifyStage(StageBase):
    """The verification example under the TFLM interpreter, at the calibrated (device) threshold."""

    produces: ClassVar[tuple[str, ...]] = ("verification",)
    needs: ClassVar[dict[str, str]] = {"model": "tflite", "corpus": "corpus"}

    model: str = "calibrate"
    corpus: str = "corpus"

    def uses(self) -> dict[str, str]:
        return {"model": self.model, "corpus": self.corpus}

    def run(self, ctx: StageContext) -> StageResult:
        from converters.tflm import tflm_embedder

        made = lineage(ctx, self.model)
        model, metadata = _device_model(ctx, made)
        if metadata.thresholds is None:
            raise ConfigError(f"stage {ctx.name}: {self.model!r} has no calibrated thresholds "
                              "(use a calibrate stage)")
        outcome = claim_outcome(tflm_embedder(model, made.device_front_end()),
                                corpus_of(ctx, self.corpus),
                                metadata.thresholds.eer_threshold, ctx.scoring)
        path = rundir.write_json(rundir.DeviceDir(ctx.out).verification, outcome)
        return StageResult(outputs={"verification": str(path)}, metrics=outcome,
                           summary="TFLM, " + describe_claim(outcome))
