"""``tfadvq convert --model Q --out model.tflite``: a quantized model -> TFLite-Micro files.

Writes the LUT-compressed model to flash (``--out``), its plain float twin
(``*.float.tflite``), the plain int8 twin when calibration data is given
(``*.int8.tflite``) and the metadata (``*.json``); ``--c-array DIR`` adds
``model_data.h/.cc`` and ``model_config.h`` for the firmware.  Every converted
model is run under the TFLM interpreter and checked against Keras before
anything is written.

Bits per layer come from the quantized model itself (``tfadvq.strip``) when
it is a tfadvq QAT/PTQ model, else from ``--bits``: one number for every
Conv2D/DepthwiseConv2D/Dense layer or a JSON file ``{"layer": bits}``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a quantized model to a LUT-compressed .tflite for TFLite Micro",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="saved Keras model (.keras, .h5 or SavedModel dir)")
    parser.add_argument("--out", required=True, type=Path, help="LUT-compressed .tflite to write")
    parser.add_argument("--int8", action="store_true", help="full-integer int8 activations (needs --corpus)")
    parser.add_argument("--frames", type=int, default=200, help="fixed input frames (default 200 = 2 s)")
    parser.add_argument("--bits", help="weight bits for all Conv/Dense layers, or a JSON file {layer: bits}")
    parser.add_argument("--corpus", type=Path, help="corpus dir: fbank crops of its dev utterances calibrate int8")
    parser.add_argument("--calibration-crops", type=int, default=64, help="number of calibration crops")
    parser.add_argument("--trial-scores", type=Path,
                        help="text file of '<label 0|1> <cosine score>' lines from development trials; "
                             "calibrates the decision thresholds")
    parser.add_argument("--target-far", type=float, default=0.01, help="false-accept rate of the low-FAR threshold")
    parser.add_argument("--feature-config", type=Path,
                        help="YAML FbankConfig the model was trained with (default: tfadvq's FbankConfig)")
    parser.add_argument("--model-version", type=int, default=1, help="version the firmware checks")
    parser.add_argument("--c-array", type=Path, metavar="DIR", help="also write firmware C sources into DIR")
    parser.set_defaults(func=run)


def _load(path: Path):
    from tfadvq.errors import ConversionError
    from tfadvq.quant import load_model

    if not path.exists():
        raise ConversionError(f"{path}: no such model file or directory")
    try:
        return load_model(path)
    except Exception as exc:  # Keras raises many kinds for unreadable models
        raise ConversionError(f"{path}: cannot load a Keras model ({exc})") from exc


def _plain_model_and_bits(model, bits_arg: str | None):
    """Strip tfadvq quantization wrappers if present; choose bits per layer (``--bits`` wins)."""
    import tfadvq
    from converters.lut_compression import uniform_bits
    from tfadvq.errors import ConversionError

    bits: dict[str, int] = {}
    if any(type(layer).__name__.startswith("QuantizeWrapper") for layer in model.layers):
        model, quantized = tfadvq.strip(model)
        bits = quantized.bits_by_layer()
    if bits_arg is not None:
        path = Path(bits_arg)
        if path.is_file():
            bits = {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
        elif bits_arg.isdigit():
            bits = uniform_bits(model, int(bits_arg))
        else:
            raise ConversionError(f"--bits {bits_arg!r}: expected a number 1-8 or a JSON file of {{layer: bits}}")
    return model, bits


def _thresholds(path: Path | None, target_far: float):
    import numpy as np

    from converters.metadata import calibrate_thresholds
    from tfadvq.errors import ConversionError

    if path is None:
        return None
    try:
        table = np.loadtxt(path, ndmin=2)
    except (OSError, ValueError) as exc:
        raise ConversionError(f"{path}: cannot read '<label> <score>' lines ({exc})") from exc
    if table.shape[1] != 2:
        raise ConversionError(f"{path}: expected 2 columns '<label 0|1> <score>', got {table.shape[1]}")
    return calibrate_thresholds(table[:, 1], table[:, 0].astype(int), target_far)


def run(args: argparse.Namespace) -> int:
    convert_files(args)
    return 0


def convert_files(args: argparse.Namespace):
    """Convert, check under TFLM, write every file and print the summary; returns
    ``(ConversionResult, ModelMetadata)`` so callers such as ``tfadvq demo`` reuse the figures."""
    from converters import ModelMetadata, array_representative, convert_model, corpus_crops, write_c_arrays, write_json
    from tfadvq.config import load_yaml
    from tfadvq.errors import ConversionError
    from tfadvq.features import FbankConfig
    from tfadvq.report import print_table

    if args.int8 and args.corpus is None:
        raise ConversionError("--int8 needs --corpus DIR to draw calibration fbank crops from")
    thresholds = _thresholds(args.trial_scores, args.target_far)
    feature = load_yaml(FbankConfig, args.feature_config) if args.feature_config else FbankConfig()
    model, bits = _plain_model_and_bits(_load(args.model), args.bits)
    representative = None
    if args.corpus is not None:
        representative = array_representative(corpus_crops(args.corpus, args.frames, args.calibration_crops))
    result = convert_model(model, bits, args.frames, int8=args.int8, representative=representative)
    if feature.num_mel_bins != result.mels:
        raise ConversionError(f"feature config has {feature.num_mel_bins} mel bins but the model takes {result.mels}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(result.model)
    written = [args.out, args.out.with_suffix(".float.tflite")]
    written[1].write_bytes(result.float_model)
    if result.int8_model is not None:
        written.append(args.out.with_suffix(".int8.tflite"))
        written[-1].write_bytes(result.int8_model)
    metadata = ModelMetadata(
        model_version=args.model_version,
        model_sha256=result.sha256,
        model_bytes=len(result.model),
        input_frames=result.frames,
        num_mel_bins=result.mels,
        embed_dim=result.embed_dim,
        activations=result.activations,
        arena_bytes=result.arena_bytes,
        bits_per_layer=result.bits_per_layer(),
        feature=feature,
        thresholds=thresholds,
    )
    written.append(args.out.with_suffix(".json"))
    write_json(metadata, written[-1])
    if args.c_array is not None:
        written += write_c_arrays(result.model, metadata, args.c_array)

    print_table(result.layer_rows(), f"Quantized layers of {args.model}")
    print_table(result.op_rows(), "Operators in the flashed model (register these in the op resolver)")
    print_table(result.size_rows(), f"Sizes (arena measured by the TFLM interpreter, {result.activations} activations)")
    checks = [
        {"check": "LUT vs Keras", "min_cosine": result.keras_parity.min_cosine},
        {"check": "LUT vs uncompressed twin", "min_cosine": result.twin_parity.min_cosine},
    ]
    print_table(checks, "TFLM interpreter checks")
    print_table([{"file": str(p), "bytes": p.stat().st_size} for p in written], "Written")
    return result, metadata
