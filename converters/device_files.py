"""From a saved quantized model to the device's files, with typed arguments (the CLI and recipes call this).

:func:`convert_saved_model` loads a model (a tfadvq QAT/PTQ ``.h5`` is stripped,
its bits taken from it), converts and checks it under TFLM
(:func:`converters.conversion.convert_model`) and describes it
(:class:`~converters.metadata.ModelMetadata`); :func:`write_device_files`
writes the LUT model, its twins, the metadata and the firmware C sources into a
:class:`~tfadvq.rundir.DeviceDir`, each atomically.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from converters.c_array import write_c_arrays
from converters.keras_to_tflite import (
    RepresentativeData,
    array_representative,
    feature_dim,
    input_windows,
    labelled_corpus_crops,
)
from converters.metadata import ModelMetadata, write_json
from converters.conversion import ConversionResult, convert_model
from converters.parity import CheckInputs
from tfadvq import frontend, rundir
from tfadvq.errors import ConversionError
from tfadvq.fbank_config import FbankConfig
from tfadvq.model_io import LoadedModel, open_model
from tfadvq.quant.spec import BitsSpec
from tfadvq.windows import ScoringConfig


def load_for_conversion(source: str | os.PathLike | LoadedModel,
                        bits: BitsSpec | Mapping[str, int] | int | None = None):
    """``(plain Keras model, {layer: bits})`` of a saved model (a file or run folder, or one already
    opened by :func:`tfadvq.model_io.open_model`); wrappers are stripped.

    ``bits`` (a number for every quantizable layer, a :class:`~tfadvq.quant.spec.BitsSpec`
    resolved per layer, or ``{layer: bits}``) overrides the bits read from a
    tfadvq-quantized model; without it a plain model converts as FP32 (no LUT).
    """
    from converters.lut_compression import uniform_bits
    from tfadvq.quant.api import strip

    loaded = source if isinstance(source, LoadedModel) else open_model(source, quantized=True)
    model = loaded.model
    found: dict[str, int] = {}
    if any(type(layer).__name__.startswith("QuantizeWrapper") for layer in model.layers):
        model, quantized = strip(model)
        found = quantized.bits_by_layer()
    elif loaded.file.name == rundir.QuantDir.plain.name:  # a quantize folder's plain model: bits beside it
        found = _recorded_bits(rundir.QuantDir(loaded.file.parent))
    if isinstance(bits, int):
        found = uniform_bits(model, bits)
    elif isinstance(bits, BitsSpec):
        found = _layer_bits(model, bits, loaded.file)
    elif bits is not None:
        found = {str(k): int(v) for k, v in bits.items()}
    return model, found


def _recorded_bits(run: rundir.QuantDir) -> dict[str, int]:
    """``{layer: bits}`` of the centroid-valued plain model of a quantize folder, from its tables
    (without them it would be converted as FP32, wasting its codebooks)."""
    from tfadvq.quant.records import QuantizedWeights

    if not run.weights.is_file():
        raise ConversionError(f"{run.path / run.plain.name}: a quantized model whose {run.weights.name} is missing; "
                              f"give {run.wrapped.name} of the same folder, or --bits")
    return QuantizedWeights.load(run.weights).bits_by_layer()


def _layer_bits(model, spec: BitsSpec, path: Path) -> dict[str, int]:
    """``{layer: bits}`` of the layers ``spec`` quantizes (the converter stores bits per layer)."""
    from tfadvq.quant.spec import resolve

    if spec.weights:
        raise ConversionError(f"--bits: per-weight entries ({sorted(spec.weights)}) need a tfadvq-quantized model, "
                              f"whose bits are read from it; {path} is a plain model: give bits per layer")
    return {name: b for name, b in resolve(model, spec).items() if b is not None}


@dataclasses.dataclass
class ConversionData:
    """What a conversion measures int8 activation ranges on (``representative``) and checks parity on
    (:func:`conversion_data`)."""

    representative: RepresentativeData | None
    check: CheckInputs | None  # None: the converter's last resort (seeded noise, said so)


def conversion_data(frames: int, front_end: frontend.FrontEnd, *, corpus: str | os.PathLike | None = None,
                    inputs: str | os.PathLike | None = None, speakers: str | os.PathLike | None = None,
                    count: int = 64, representative_inputs: bool = False) -> ConversionData:
    """The model's own inputs for a conversion: ``count`` crops of ``corpus`` dev audio through its front
    end (representative data for the int8 activation ranges, and the parity check's pairs with their
    speakers) and/or ``inputs``, an ``.npy`` array ``[N, T, features]`` of its inputs (``speakers``: an
    ``.npy`` of one label per row), cut to ``frames``.  The check uses ``inputs`` when given; the int8
    ranges use ``corpus``, else ``inputs`` when ``representative_inputs`` (int8 activations asked for)."""
    import numpy as np

    from tfadvq.quant.finetune import load_inputs

    representative, check = None, None
    if corpus is not None:
        crops, who = labelled_corpus_crops(corpus, frames, count, fbank_config=front_end.fbank)
        representative = array_representative(crops)
        check = CheckInputs(crops, f"crops of {corpus} dev audio through the model's front end", who)
    if speakers is not None and inputs is None:
        raise ConversionError("--input-speakers labels the rows of --inputs: give --inputs X.npy too")
    if inputs is not None:
        windows = input_windows(load_inputs(str(inputs)), frames, f"--inputs {inputs}")
        labels = None
        if speakers is not None:
            try:
                labels = np.load(speakers, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ConversionError(f"--input-speakers {speakers}: not a readable .npy array ({exc})") from None
            if labels.shape != (len(windows),):
                raise ConversionError(f"--input-speakers {speakers}: need one label per row of --inputs "
                                      f"({len(windows)}), got shape {labels.shape}")
        check = CheckInputs(windows, f"rows of --inputs {inputs}", labels)
        if representative is None and representative_inputs:
            representative = array_representative(windows)
    return ConversionData(representative, check)


def describe(result: ConversionResult, feature: FbankConfig, scoring: ScoringConfig,
             model_version: int = 1) -> ModelMetadata:
    """The metadata of a conversion (no thresholds yet: :mod:`tfadvq.stages.device` calibrates them).

    ``feature`` is the model's front end (:mod:`tfadvq.frontend`): ``model.json``
    and ``model_config.h`` state it, and the firmware checks it.
    """
    if feature.num_mel_bins != result.mels:
        raise ConversionError(f"the front end has num_mel_bins {feature.num_mel_bins} but the converted model takes "
                              f"{result.mels} features per frame")
    if scoring.window_frames != result.frames:
        raise ConversionError(f"scoring window {scoring.window_frames} frames differs from the converted "
                              f"input {result.frames} frames")
    return ModelMetadata(
        model_version=model_version, model_sha256=result.sha256, model_bytes=len(result.model),
        input_frames=result.frames, num_mel_bins=result.mels, embed_dim=result.embed_dim,
        activations=result.activations, arena_bytes=result.arena_bytes,
        bits_per_layer=result.bits_per_layer(), feature=feature, scoring=scoring, parity=result.keras_parity)


def convert_saved_model(path: str | os.PathLike | LoadedModel, scoring: ScoringConfig, *, int8: bool = False,
                        representative: RepresentativeData | None = None,
                        bits: BitsSpec | Mapping[str, int] | int | None = None,
                        front_end: frontend.FrontEnd | None = None,
                        model_version: int = 1, check_inputs: CheckInputs | None = None,
                        check: bool = True) -> tuple[ConversionResult, ModelMetadata]:
    """Load, convert for ``scoring.window_frames`` input frames, check under TFLM, describe.

    ``front_end`` is the model's (default: :func:`tfadvq.frontend.resolve` of
    ``path``); it is checked against the model's input before converting, and
    ``representative`` crops and ``check_inputs`` must have been computed with
    it (:func:`converters.conversion.convert_model`: the checks).
    """
    file = path.file if isinstance(path, LoadedModel) else Path(path)
    front_end = front_end or frontend.resolve(file)
    model, found = load_for_conversion(path, bits)
    frontend.check_input(front_end, feature_dim(model), str(file))
    result = convert_model(model, found, scoring.window_frames, int8=int8, representative=representative,
                           check_inputs=check_inputs, check=check)
    return result, describe(result, front_end.fbank, scoring, model_version)


def write_device_files(result: ConversionResult, metadata: ModelMetadata, out: rundir.DeviceDir,
                       c_array: str | os.PathLike | None = None) -> list[Path]:
    """Write the flashed model, its float (and int8) twin, C sources into ``c_array`` if given, and
    the metadata last: its presence means the conversion is complete."""
    written = [rundir.atomic_write(out.tflite, result.model),
               rundir.atomic_write(out.float_tflite, result.float_model)]
    if result.int8_model is not None:
        written.append(rundir.atomic_write(out.int8_tflite, result.int8_model))
    if c_array is not None:
        written += write_c_arrays(result.model, metadata, c_array)
    write_json(metadata, out.metadata)
    written.append(out.metadata)
    return written


def with_thresholds(metadata: ModelMetadata, thresholds, calibration: dict[str, object]) -> ModelMetadata:
    return dataclasses.replace(metadata, thresholds=thresholds, calibration=calibration)
