"""tfadvq: adaptive (k-means codebook) weight quantization of speaker-verification
networks, converted for TFLite Micro.

The public API is re-exported here; modules below hold one concept each and read
top-down along the data path: audio -> features -> models -> quantizers ->
training -> evaluation -> conversion.
"""
from tfadvq import compat as _compat  # noqa: F401  (chooses tf_keras before anything imports TF)
from tfadvq.errors import (
    AudioError,
    ConfigError,
    ConversionError,
    DataError,
    QuantizationError,
    TfadvqError,
)

__version__ = "0.1.0"

__all__ = [
    "AudioError",
    "ConfigError",
    "ConversionError",
    "DataError",
    "QuantizationError",
    "TfadvqError",
    "__version__",
]
