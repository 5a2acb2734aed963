"""Adaptive k-means weight quantization (KMQAT) as tfmot quantizers.

``kmeans1d`` fits codebooks, ``quantizers`` says *how* a weight is quantized,
``layer_rules`` *what* is quantized per layer class (the support table), ``catalog`` the quantizers by name, ``spec`` resolves bits per
layer, ``cost`` says what a tensor costs in bytes, ``api`` wraps/strips
models, ``size`` accounts bits, ``finetune`` runs quantization-aware
fine-tuning, ``adaptive_rounding`` re-chooses each weight's centroid (below or above it)
for the layer's output, ``outputs`` writes/reads a quantization run's files (pictures:
:mod:`tfadvq.plots`).  ``tfadvq.quant.finetune`` is the module: its function
is ``tfadvq.quant.finetune.finetune`` (importing the submodule rebinds the
package attribute, so one name cannot serve as both).  BatchNorm handling: see
:mod:`tfadvq.quant.api`.  Names are imported on first use, so the TF-free
modules (``cost``) load without TensorFlow.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "custom_objects": "api", "ptq": "api", "quantize": "api", "strip": "api",
    "summary": "api", "CodebookRefresh": "codebook_refresh", "FinetuneResult": "finetune",
    "FinetuneSettings": "finetune", "finetune_config": "finetune", "finetune_run": "finetune",
    "KMeansQuantizer": "quantizers", "UniformQuantizer": "quantizers",
    "QuantizedTensor": "records", "QuantizedWeights": "records", "SizeReport": "size",
    "model_size": "size", "BitsSpec": "spec", "load_spec": "spec",
    "RoundingSettings": "adaptive_rounding", "adaptive_round": "adaptive_rounding",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tfadvq.quant' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
