"""tfadvq: adaptive (k-means codebook) weight quantization of speaker-verification
networks, converted for TFLite Micro.

The public API is re-exported here, lazily: ``import tfadvq.metrics`` or
``import tfadvq.config`` must not pay for (or be broken by) TensorFlow, so a
name is imported from its owning module on first use (PEP 562).  Modules hold
one concept each and read top-down along the data path: audio -> features ->
models -> quantizers -> training -> evaluation -> conversion.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any

# Keras 2 (tf_keras) must be chosen before TensorFlow is first imported; tfadvq.compat checks it.
if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"

# public name -> owning module
_EXPORTS = {
    "AudioError": "tfadvq.errors",
    "ConfigError": "tfadvq.errors",
    "ConversionError": "tfadvq.errors",
    "DataError": "tfadvq.errors",
    "QuantizationError": "tfadvq.errors",
    "TfadvqError": "tfadvq.errors",
    "SAMPLE_RATE": "tfadvq.audio_limits",
    "MIN_SECONDS": "tfadvq.audio_limits",
    "AudioLimits": "tfadvq.audio_limits",
    "check_file": "tfadvq.audio",
    "check_utterances": "tfadvq.pipeline",
    "load_audio": "tfadvq.audio",
    "save_wav": "tfadvq.audio",
    "validate_files": "tfadvq.audio",
    "Fbank": "tfadvq.features",
    "FbankConfig": "tfadvq.fbank_config",
    "fbank": "tfadvq.features",
    "num_frames": "tfadvq.fbank_config",
    "PipelineConfig": "tfadvq.train_config",
    "eval_dataset": "tfadvq.pipeline",
    "train_dataset": "tfadvq.pipeline",
    "Trials": "tfadvq.voxceleb",
    "Utterance": "tfadvq.voxceleb",
    "load_corpus": "tfadvq.voxceleb",
    "read_trials": "tfadvq.voxceleb",
    "build_model": "tfadvq.models",
    "AAMSoftmax": "tfadvq.heads",
    "compute_eer": "tfadvq.metrics",
    "compute_min_dcf": "tfadvq.metrics",
    "TrainConfig": "tfadvq.train_config",
    "load_config": "tfadvq.train_config",
    "fit_embedding_model": "tfadvq.training",
    "train": "tfadvq.training",
    "training_data": "tfadvq.training",
    "ScoringConfig": "tfadvq.windows",
    "evaluate": "tfadvq.evaluation",
    "verify": "tfadvq.evaluation",
    "LoadedModel": "tfadvq.model_io",
    "ModelLoadError": "tfadvq.model_io",
    "load_model": "tfadvq.model_io",
    "open_model": "tfadvq.model_io",
    "model_size": "tfadvq.quant",
    "ptq": "tfadvq.quant",
    "quantize": "tfadvq.quant",
    "strip": "tfadvq.quant",
    "Recipe": "tfadvq.recipe",
    "load_recipe": "tfadvq.recipe",
    "run_recipe": "tfadvq.recipe",
    "register_stage": "tfadvq.recipe",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tfadvq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
