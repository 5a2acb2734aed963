"""The files one quantization run leaves in its output directory, written and read back in one place.

``model.h5``                the tfmot-wrapped model (reload with :func:`tfadvq.quant.load_model`;
                            tfmot wrappers reload from ``.h5``, not ``.keras``)
``plain.keras``             the stripped, centroid-valued plain Keras model (what converters take)
``quantized_weights.npz``   per-layer tables and indices (:class:`~tfadvq.quant.records.QuantizedWeights`)
``summary.json``            per-layer rows, size accounting, and whatever the caller adds
                            (fine-tune row, settings used to decide whether outputs can be reused)

``tfadvq quantize`` and the ``quantize`` stage of ``tfadvq demo`` both write through :func:`save`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from tfadvq.compat import keras
from tfadvq.quant import api
from tfadvq.quant.records import QuantizedWeights
from tfadvq.quant.size import SizeReport, model_size

WRAPPED_FILE = "model.h5"
PLAIN_FILE = "plain.keras"
WEIGHTS_FILE = "quantized_weights.npz"
SUMMARY_FILE = "summary.json"


@dataclasses.dataclass
class QuantizationOutputs:
    """A quantized model with everything derived from it: stripped twin, records, rows, size."""

    wrapped: keras.Model
    plain: keras.Model
    records: QuantizedWeights
    rows: list[dict[str, Any]]
    size: SizeReport


def derive(wrapped: keras.Model) -> QuantizationOutputs:
    """Strip ``wrapped`` and account its size (no files)."""
    plain, records = api.strip(wrapped)
    return QuantizationOutputs(wrapped, plain, records, api.summary(wrapped), model_size(wrapped))


def save(wrapped: keras.Model, out: str | os.PathLike, **extra: Any) -> QuantizationOutputs:
    """Write the files of the module doc into ``out``; ``extra`` goes into ``summary.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    outputs = derive(wrapped)
    wrapped.save(out / WRAPPED_FILE)
    outputs.plain.save(out / PLAIN_FILE)
    outputs.records.save(out / WEIGHTS_FILE)
    (out / SUMMARY_FILE).write_text(json.dumps(
        {"layers": outputs.rows, "size_bytes": outputs.size.size_bytes,
         "fp32_bytes": outputs.size.fp32_bytes, "compression": outputs.size.compression, **extra},
        indent=1))
    return outputs


def load(out: str | os.PathLike) -> tuple[QuantizationOutputs, dict[str, Any]]:
    """Read back what :func:`save` wrote: the derived outputs and the ``summary.json`` dict."""
    out = Path(out)
    outputs = derive(api.load_model(out / WRAPPED_FILE))
    return outputs, json.loads((out / SUMMARY_FILE).read_text())
