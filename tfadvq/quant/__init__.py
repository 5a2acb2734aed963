"""Adaptive k-means weight quantization (KMQAT) as tfmot quantizers.

``kmeans1d`` fits codebooks, ``quantizers`` says *how* a weight is quantized,
``registry`` *what* is quantized per layer class, ``spec`` resolves bits per
layer, ``api`` wraps/strips models, ``size`` accounts bits, ``plots`` draws
codebooks over weight histograms, ``finetune`` runs quantization-aware
fine-tuning, ``outputs`` writes/reads a quantization run's files.  BatchNorm handling: see :mod:`tfadvq.quant.api`.
"""
from tfadvq.quant.api import custom_objects, load_model, ptq, quantize, strip, summary
from tfadvq.quant.codebook_refresh import CodebookRefresh
from tfadvq.quant.finetune import FinetuneResult, FinetuneSettings, finetune, finetune_config, finetune_run
from tfadvq.quant.quantizers import KMeansQuantizer, UniformQuantizer
from tfadvq.quant.records import QuantizedTensor, QuantizedWeights
from tfadvq.quant.size import SizeReport, model_size
from tfadvq.quant.spec import BitsSpec, load_spec

__all__ = ["BitsSpec", "CodebookRefresh", "FinetuneResult", "FinetuneSettings", "KMeansQuantizer",
           "QuantizedTensor", "QuantizedWeights", "SizeReport", "UniformQuantizer", "custom_objects",
           "finetune", "finetune_config", "finetune_run", "load_model", "load_spec", "model_size", "ptq", "quantize", "strip", "summary"]
