"""``tfadvq convert --model Q --out model.tflite``: a Keras model -> TFLite-Micro files.

``--model`` is a quantized model (a quantize/mixed/msft/finetune folder or its
``model.h5``), an FP32 one (a train folder, ``.keras``, ``.h5``, SavedModel:
converted without LUT, as the summary says) or any run folder tfadvq writes.
Writes the LUT-compressed model to flash (``--out``), its plain float twin
(``*.float.tflite``), the plain int8 twin when int8 activations are asked for
(``*.int8.tflite``) and the metadata (``*.json``, with the parity figures).
Activations are int8 (the device's choice) whenever ``--corpus`` gives
representative crops (``--corpus-crops`` of them) to measure their ranges on,
float without it; ``--activations`` says which explicitly (``--inputs`` serve
as representative data too); ``--c-array DIR`` adds ``model_data.h/.cc``
and ``model_config.h`` for the firmware (refused for a model whose front end
the firmware does not compute).

Every converted model is run under the TFLM interpreter and compared with
Keras on the model's own inputs before anything is written: ``--inputs
X.npy`` (``--input-speakers``: a label per row), else the ``--corpus`` crops
through the model's front end, else seeded noise (said so).  The figures --
embedding cosine quantiles, accept/reject agreement on pairs at the Keras EER
threshold -- are printed and stored; only a clear failure refuses (NaN, median
cosine below 0.9, or agreement below 90 % with moved embeddings:
``converters.parity``).  ``--no-check`` skips the check, loudly.

Bits per layer come from the quantized model itself (``tfadvq.strip``) when
it is a tfadvq QAT/PTQ model, else from ``--bits``: one number for every
quantizable layer or a bits YAML file (the ``--bits-per-layer`` BitsSpec:
``default``, ``classes``, ``layers``; a JSON ``{"layer": bits}`` file is refused
with the YAML that replaces it); neither: FP32.  ``--trial-scores``
calibrates the decision thresholds from given scores; the recipe's ``calibrate``
stage instead calibrates them on the converted model's own TFLM scores
("calibrate" always means the thresholds; int8 ranges come from representative
crops).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from tfadvq.cli import renamed_flag
from tfadvq.config import number


@dataclasses.dataclass
class ConvertArgs:
    """What ``tfadvq convert`` was asked (typed; see ``--help``)."""

    model: Path
    out: Path
    int8: bool | None = None  # None: int8 with --corpus, float without
    frames: int = 200
    bits: str | None = None
    corpus: Path | None = None
    corpus_crops: int = 64
    trial_scores: Path | None = None
    target_far: float = 0.01
    feature_config: Path | None = None
    model_version: int = 1
    c_array: Path | None = None
    force: bool = False
    symbol_prefix: str = ""
    inputs: Path | None = None
    input_speakers: Path | None = None
    check: bool = True


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a quantized (or FP32) model to a LUT-compressed .tflite for TFLite Micro",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path,
                        help="quantized or FP32 model: any run folder (train, quantize, mixed, msft, ...), .h5, "
                             ".keras (tf-keras or Keras 3) or SavedModel")
    parser.add_argument("--out", required=True, type=Path, help="LUT-compressed .tflite to write")
    parser.add_argument("--activations", choices=["int8", "float32"], dest="activations",
                        help="int8 (needs --corpus or --inputs; the default with --corpus) or float32 "
                             "(the default without)")
    parser.add_argument("--int8", action="store_const", const="int8", dest="activations",
                        help="the same as --activations int8")
    parser.add_argument("--frames", type=number(int, 1), default=200,
                        help="fixed input frames = scoring window (default 200)")
    parser.add_argument("--bits", help="weight bits for all quantizable layers (1..8), or a bits YAML file "
                                       "(BitsSpec, as --bits-per-layer: default/classes/layers)")
    parser.add_argument("--corpus", type=Path, help="corpus dir: crops of its dev utterances through the model's "
                                                    "front end give the int8 activation ranges and the parity "
                                                    "check's inputs")
    parser.add_argument("--corpus-crops", type=number(int, 1), default=64,
                        help="number of --corpus crops (int8 ranges and parity check; default 64)")
    renamed_flag(parser, "--calibration-crops", "--corpus-crops")
    parser.add_argument("--inputs", type=Path, help=".npy array [N, frames, features] of the model's own inputs: "
                                                    "the parity check's inputs (and the int8 ranges' without "
                                                    "--corpus)")
    parser.add_argument("--input-speakers", type=Path,
                        help=".npy array [N] of the speaker of each --inputs row (pairs labelled for the EER threshold)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="do not compare the converted model with Keras under TFLM (loudly warned)")
    parser.add_argument("--trial-scores", type=Path,
                        help="text file of '<label 0|1> <cosine score>' lines from development trials; "
                             "calibrates the decision thresholds")
    parser.add_argument("--target-far", type=number(float, 0.0, 1.0, above=True), default=0.01,
                        help="false-accept rate of the low-FAR threshold")
    parser.add_argument("--feature-config", type=Path,
                        help="YAML FbankConfig the model was trained with, for a model that has none recorded "
                             "(frontend.yaml / train.yaml beside it); must agree with a recorded one. Kaldi fbank "
                             "by default; window: hann_periodic, spectrum: power|magnitude, log: natural|log10|db, "
                             "log_offset state other log-mel front ends, features: host one tfadvq cannot compute")
    parser.add_argument("--model-version", type=number(int, 0, 2**31 - 1), default=1,
                        help="version the firmware checks")
    parser.add_argument("--c-array", type=Path, metavar="DIR",
                        help="also write the firmware's MODEL_DIR into DIR: model_data.{h,cc}, model_config.h, "
                             "model_ops.h")
    parser.add_argument("--symbol-prefix", default="", metavar="P",
                        help="with --c-array: names for a second model on the same device (files model_*_P.*, "
                             "symbols g_model_P, macros TFADVQ_<P>_*; its command lines start with P)")
    parser.add_argument("--force", action="store_true",
                        help="replace existing output files (--out, its .float/.int8 twins and .json, the "
                             "--c-array sources); never a device node or fifo")
    parser.set_defaults(func=lambda a: run(ConvertArgs(
        a.model, a.out, None if a.activations is None else a.activations == "int8", a.frames, a.bits, a.corpus,
        a.corpus_crops, a.trial_scores, a.target_far,
        a.feature_config, a.model_version, a.c_array, a.force, a.symbol_prefix, a.inputs, a.input_speakers,
        a.check)))


def _bits(value: str | None):
    from tfadvq.errors import ConversionError
    from tfadvq.quant.bits import check_bits
    from tfadvq.quant.spec import load_spec

    if value is None:
        return None
    if Path(value).is_file():
        return load_spec(value)
    if value.isdigit():
        return check_bits(int(value), "--bits")
    raise ConversionError(f"--bits {value!r}: expected a number 1..8 or a bits YAML file (BitsSpec: default, "
                          "classes, layers)")


def _thresholds(path: Path | None, target_far: float):
    import numpy as np

    from tfadvq import metrics
    from tfadvq.errors import ConversionError

    if path is None:
        return None
    try:
        table = np.loadtxt(path, ndmin=2)
    except (OSError, ValueError) as exc:
        raise ConversionError(f"{path}: cannot read '<label> <score>' lines ({exc})") from None
    if table.shape[1] != 2:
        raise ConversionError(f"{path}: expected 2 columns '<label 0|1> <score>', got {table.shape[1]}")
    return metrics.calibrate(table[:, 1], table[:, 0].astype(int), target_far)


def run(args: ConvertArgs) -> int:
    """Convert, check under TFLM, write every file and print the summary.

    Every file it will write is claimed first (:func:`tfadvq.rundir.claim`):
    an existing one is refused without ``--force``, a device node or fifo
    always, and a failed conversion leaves none of them behind.
    """
    from converters.c_array import c_array_files, check_symbol_prefix
    from tfadvq import rundir
    from tfadvq.errors import ConversionError
    from tfadvq.model_io import open_model

    if args.int8 and args.corpus is None and args.inputs is None:
        raise ConversionError("--int8 needs representative inputs for the activation ranges: --corpus DIR (crops "
                              "of its audio through the model's front end) or --inputs X.npy")
    if args.symbol_prefix:  # refused before the conversion, not after it
        if args.c_array is None:
            raise ConversionError("--symbol-prefix names the --c-array sources: give --c-array DIR too")
        check_symbol_prefix(args.symbol_prefix)
    if args.c_array is not None and args.c_array.exists() and not args.c_array.is_dir():
        raise ConversionError(f"--c-array {args.c_array}: is a file; give a directory (created if missing)")
    out = rundir.DeviceDir.for_file(args.out)
    loaded = open_model(args.model, quantized=True)  # a model that does not load is refused before any work
    sources = c_array_files(args.c_array, args.symbol_prefix) if args.c_array is not None else []
    with rundir.claim(args.out, force=args.force,
                      companions=[out.float_tflite, out.int8_tflite, out.metadata, *sources]):
        return _run(args, out, loaded)


NO_CHECK_WARNING = ("tfadvq: WARNING: --no-check: the converted model was NOT compared with Keras under TFLM; "
                    "nothing says it computes the embeddings the Keras model does")


def _run(args: ConvertArgs, out, loaded) -> int:
    import sys

    from converters.device_files import conversion_data, convert_saved_model, with_thresholds, write_device_files
    from converters.metadata import check_firmware_frontend, firmware_mismatches
    from tfadvq import frontend
    from tfadvq.config import load_yaml
    from tfadvq.fbank_config import FbankConfig
    from tfadvq.report import print_table
    from tfadvq.windows import ScoringConfig

    thresholds = _thresholds(args.trial_scores, args.target_far)
    declared = load_yaml(FbankConfig, args.feature_config) if args.feature_config else None
    front_end = frontend.resolve(loaded.file, declared, f"--feature-config {args.feature_config}")
    if args.c_array is not None:  # refused before the conversion, not after it
        check_firmware_frontend(front_end.fbank, str(loaded.file))
    scoring = ScoringConfig(window_frames=args.frames)
    bits = _bits(args.bits)
    data = conversion_data(args.frames, front_end, corpus=args.corpus, inputs=args.inputs,
                           speakers=args.input_speakers, count=args.corpus_crops,
                           representative_inputs=bool(args.int8))
    int8 = args.corpus is not None if args.int8 is None else args.int8
    result, metadata = convert_saved_model(loaded, scoring, int8=int8, representative=data.representative,
                                           bits=bits, front_end=front_end, model_version=args.model_version,
                                           check_inputs=data.check, check=args.check)
    if thresholds is not None:
        metadata = with_thresholds(metadata, thresholds, {"embedder": "given", "trials": str(args.trial_scores),
                                                          "num_trials": None})
    written = []
    if args.c_array is not None:  # before write_device_files, whose metadata marks the conversion complete
        from converters.c_array import write_c_arrays
        written = write_c_arrays(result.model, metadata, args.c_array, symbol_prefix=args.symbol_prefix)
    written += write_device_files(result, metadata, out)

    layers = result.layer_rows() or [{"layer": "(none)", "storage": "FP32 model: no quantized layer, no LUT; "
                                                                    f"{result.activations} activations"}]
    print_table(layers, f"Quantized layers of {loaded.describe()}")
    print_table(result.op_rows(), "Operators in the flashed model (register these in the op resolver)")
    print_table(result.size_rows(), f"Sizes (arena measured by the TFLM interpreter, {result.activations} activations)")
    print_table([{"front end": front_end.source, "features": front_end.fbank.describe(),
                  "firmware computes it": "no: compute them on the host" if firmware_mismatches(front_end.fbank) else "yes"}],
                "Front end the model eats (model.json feature, model_config.h TFADVQ_FBANK_*)")
    if result.keras_parity is None:
        print_table([{"check": "NOT RUN (--no-check)"}], "TFLM vs Keras")
        print(NO_CHECK_WARNING, file=sys.stderr, flush=True)
    else:
        rows = result.keras_parity.rows()
        if result.twin_parity is not None:
            rows.append({"measure": "LUT vs uncompressed twin, min cosine",
                         "value": round(result.twin_parity.min_cosine, 7)})
        print_table(rows, "TFLM vs Keras on the model's own inputs (model.json parity)")
    print_table([{"file": str(p), "bytes": p.stat().st_size} for p in written], "Written")
    return 0
