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
from tfadvq.audio import SAMPLE_RATE, load_audio, save_wav, validate_files
from tfadvq.features import Fbank, FbankConfig, fbank, num_frames
from tfadvq.pipeline import PipelineConfig, eval_dataset, train_dataset
from tfadvq.voxceleb import Trials, Utterance, load_corpus, read_trials
from tfadvq.models import build_model
from tfadvq.heads import AAMSoftmax
from tfadvq.metrics import compute_eer, compute_min_dcf
from tfadvq.training import TrainConfig, fit_embedding_model, load_config, train, training_data
from tfadvq.evaluation import evaluate, load_embedding_model, verify
from tfadvq.quant import model_size, ptq, quantize, strip

__version__ = "0.1.0"

__all__ = [
    "AudioError",
    "Fbank",
    "FbankConfig",
    "PipelineConfig",
    "SAMPLE_RATE",
    "Trials",
    "Utterance",
    "eval_dataset",
    "fbank",
    "load_audio",
    "load_corpus",
    "num_frames",
    "read_trials",
    "save_wav",
    "train_dataset",
    "validate_files",
    "AAMSoftmax",
    "build_model",
    "compute_eer",
    "compute_min_dcf",
    "TrainConfig",
    "evaluate",
    "fit_embedding_model",
    "load_config",
    "load_embedding_model",
    "train",
    "training_data",
    "verify",
    "ConfigError",
    "ConversionError",
    "DataError",
    "QuantizationError",
    "TfadvqError",
    "__version__",
    "model_size",
    "ptq",
    "quantize",
    "strip",
]
