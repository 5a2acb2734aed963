"""Quantized tfadvq Keras models -> TFLite-Micro flatbuffers with LUT-compressed weights.

Modules, in the order a conversion uses them: ``keras_to_tflite`` (fixed-shape
float / int8 .tflite), ``lut_compression`` (map quantized layers to tensors,
TFLM compression spec, compress), ``tflm`` (TFLM interpreter runs, embedder, arena, parity),
``parity`` (Keras vs TFLM on the model's own inputs: cosine quantiles, decision agreement),
``conversion`` (all of it with the checks), ``metadata`` (JSON + C header,
the calibrated decision thresholds) and ``c_array`` (firmware sources).
"""
from converters.c_array import write_c_arrays
from converters.keras_to_tflite import array_representative, corpus_crops, to_float_tflite, to_int8_tflite
from converters.lut_compression import WeightTensor, compress, compression_spec, find_weight_tensors
from converters.metadata import ModelMetadata, c_header, read_json, write_json
from converters.conversion import ConversionResult, ConvertedSizes, convert_model
from converters.parity import CheckInputs, ParityReport
from converters.tflm import arena_bytes, parity, run_tflm

__all__ = [
    "CheckInputs",
    "ConversionResult",
    "ConvertedSizes",
    "ModelMetadata",
    "ParityReport",
    "WeightTensor",
    "arena_bytes",
    "array_representative",
    "c_header",
    "compress",
    "compression_spec",
    "convert_model",
    "corpus_crops",
    "find_weight_tensors",
    "parity",
    "read_json",
    "run_tflm",
    "to_float_tflite",
    "to_int8_tflite",
    "write_c_arrays",
    "write_json",
]
