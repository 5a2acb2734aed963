"""A quantization run's files (:class:`tfadvq.rundir.QuantDir`), written and read back in one place.

The tfmot-wrapped model (``.h5``: tfmot wrappers reload from it, not from
``.keras``), the stripped centroid-valued plain Keras model (what converters
take), the per-layer tables and indices (:class:`~tfadvq.quant.records.QuantizedWeights`)
and a summary: per-layer rows, size accounting and whatever the caller adds
(the source model, settings, the fine-tune row), and the front end the model
eats (inherited from its source).  ``tfadvq quantize`` and the recipe stages
both write through :func:`save`.
"""
from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from tfadvq import frontend, model_io, rundir
from tfadvq.compat import keras
from tfadvq.quant import api
from tfadvq.quant.records import QuantizedWeights
from tfadvq.quant.size import SizeReport, model_size

if TYPE_CHECKING:
    from tfadvq.quant.finetune import FinetuneResult


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


def save(wrapped: keras.Model, out: rundir.QuantDir | str | os.PathLike, *,
         front_end: frontend.FrontEnd | None = None, finetuned: FinetuneResult | None = None,
         **extra: Any) -> QuantizationOutputs:
    """Write the files of the module doc into ``out``; ``extra`` goes into the summary.

    ``front_end`` is the source model's (:mod:`tfadvq.frontend`), recorded as this
    model's (``frontend.yaml``): a quantized model eats what its source ate; None
    for a model that takes no fbank frames.  ``finetuned``: the fine-tune that made
    ``wrapped`` (``tfadvq quantize --finetune-epochs`` and the ``finetune`` stage alike): its row
    goes into the summary (``finetune``), and what a later fine-tune follows is handed on, the
    training config it followed (``train.yaml``) and its AAM head.  The summary is written last:
    its presence means the other files are complete.
    """
    out = out if isinstance(out, rundir.QuantDir) else rundir.QuantDir(out)
    outputs = derive(wrapped)
    rundir.atomic_save_model(wrapped, out.wrapped)
    rundir.atomic_save_model(outputs.plain, out.plain)
    rundir.atomic_save_with(out.weights, outputs.records.save)
    frontend.record(out.path, None if front_end is None else front_end.fbank)
    if finetuned is not None:
        from tfadvq.config import dump_yaml

        rundir.atomic_save_with(out.train_config, lambda tmp: dump_yaml(finetuned.config, tmp))
        if finetuned.head_weights is not None:
            rundir.TrainDir(out.path).save_head(finetuned.head_weights)
        extra["finetune"] = finetuned.row
    rundir.write_json(out.summary, {"layers": outputs.rows, "size_bytes": outputs.size.size_bytes,
                                    "fp32_bytes": outputs.size.fp32_bytes,
                                    "compression": outputs.size.compression, **extra})
    return outputs


def load(out: rundir.QuantDir | str | os.PathLike) -> tuple[QuantizationOutputs, dict[str, Any]]:
    """Read back what :func:`save` wrote: the derived outputs and the summary dict."""
    out = out if isinstance(out, rundir.QuantDir) else rundir.QuantDir(out)
    outputs = derive(model_io.load_model(out.wrapped))
    return outputs, rundir.read_json(out.summary)
