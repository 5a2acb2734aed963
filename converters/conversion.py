"""One call from a Keras model (quantized or FP32) to verified .tflite files.

``convert_model`` builds the plain float model, the plain int8 model (when
asked and possible), stores the quantized weights of the one matching the
chosen activations (8-bit layers as int8 -> the uncompressed *twin*; 1-7 bit
layers LUT-compressed -> the model to flash), and before returning proves
under the TFLM interpreter that the compressed model decodes exactly its
twin's weights (outputs equal to rounding) and that it verifies speakers like
Keras (:mod:`converters.parity`: cosine quantiles and decision agreement on
the model's own inputs).  A conversion that silently changed the embeddings
(the per-tensor LUT trap, a wrong axis, LSTM state leaking between check
inputs) therefore never leaves this function.  A model with no quantized
layer (``bits_per_layer`` empty: an FP32 model) converts to a plain float or
int8-activation ``.tflite`` without LUT, checked the same way.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
from collections.abc import Mapping

import numpy as np
from tflite_micro.tensorflow.lite.micro.compression import model_editor

from converters.keras_to_tflite import (
    RepresentativeData,
    feature_dim,
    refusals,
    to_float_tflite,
    to_int8_tflite,
)
from converters.lut_compression import (
    WeightTensor,
    compress,
    find_weight_tensors,
    ideal_bytes,
    planned_bytes,
    store_int8,
)
from converters.parity import CheckInputs, ParityReport, measure
from converters.tflm import Parity, arena_bytes, parity, run_tflm
from tfadvq.compat import keras
from tfadvq.errors import ConversionError

# A LUT model decodes exactly the twin's weights, so outputs agree to rounding.
LUT_TWIN_MIN_COSINE = 0.99999
# Check inputs taken from the representative crops when no others are given.
CHECK_EXAMPLES = 16


@dataclasses.dataclass
class ConversionResult:
    """The converted models and what was measured on them."""

    model: bytes  # the LUT-compressed model to flash
    twin: bytes  # the same model without LUT compression (8-bit layers already int8)
    float_model: bytes
    int8_model: bytes | None
    planned_bytes: int  # len(model) as planned from the cost model, before compressing
    weights: list[WeightTensor]
    activations: str  # "float32" or "int8"
    frames: int
    mels: int
    embed_dim: int
    arena_bytes: int
    keras_parity: ParityReport | None  # None: not checked (``check=False``, ``--no-check``)
    twin_parity: Parity | None  # None: not checked, or nothing LUT-compressed (the twin is the model)

    @property
    def quantized(self) -> bool:
        """False for an FP32 model: no quantized layer, weights as the TFLite converter wrote them."""
        return bool(self.weights)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model).hexdigest()

    @property
    def plain(self) -> bytes:
        """The converter's own output the weights were stored into (float32 or int8)."""
        return self.int8_model if self.activations == "int8" else self.float_model

    @property
    def ideal_bytes(self) -> int:
        return ideal_bytes(self.plain, self.weights)

    def bits_per_layer(self) -> dict[str, int]:
        return {w.layer: w.bits for w in self.weights}

    def layer_rows(self) -> list[dict[str, object]]:
        """One summary row per stored weight tensor: where it went and how it is stored."""
        return [
            {
                "layer": w.layer,
                "weight": w.weight,
                "op": w.op,
                "shape": "x".join(map(str, w.shape)),
                "dtype": w.dtype,
                "bits": w.bits,
                "storage": w.storage(),
                "max_values": w.max_distinct,
                "plain_bytes": w.plain_bytes(),
                "planned_bytes": w.cost().total,
            }
            for w in self.weights
        ]

    def op_rows(self) -> list[dict[str, object]]:
        """Operator counts of the flashed model, every subgraph (what the firmware's op resolver must register)."""
        subgraphs = model_editor.read(self.model).subgraphs
        counts = collections.Counter(op.opcode_name for subgraph in subgraphs for op in subgraph.operators)
        return [{"op": name, "count": n} for name, n in sorted(counts.items())]

    def size_rows(self) -> list[dict[str, object]]:
        rows = [
            {"model": "lut (flashed)" if self.quantized else "flashed (no quantized layer: no LUT)",
             "bytes": len(self.model)},
            {"model": f"{self.activations} twin", "bytes": len(self.twin)},
            {"model": "float32", "bytes": len(self.float_model)},
            {"model": "planned (cost model)", "bytes": self.planned_bytes},
            {"model": "ideal payload", "bytes": self.ideal_bytes},
            {"model": "arena (TFLM)", "bytes": self.arena_bytes},
        ]
        if self.int8_model is not None:
            rows.insert(3, {"model": "int8", "bytes": len(self.int8_model)})
        return rows


def default_check_inputs(representative: RepresentativeData | None, frames: int, mels: int,
                         count: int = CHECK_EXAMPLES) -> CheckInputs:
    """The first ``count`` representative crops (unlabelled) if given, else seeded noise (said so)."""
    if representative is not None:
        batch = zip(range(count), representative())
        examples = [np.asarray(x, np.float32).reshape(frames, mels) for _, x in batch]
        if examples:
            return CheckInputs(np.stack(examples), "representative (int8 activation range) crops")
    return CheckInputs.noise(count, frames, mels)


def _checked(model: keras.Model, twin: bytes, lut_model: bytes, compressed: bool,
             inputs: CheckInputs) -> tuple[ParityReport, Parity | None]:
    """Run the check inputs through Keras, the twin and the LUT model; refuse a clearly broken conversion."""
    reference = model(inputs.features, training=False).numpy()
    lut_out = run_tflm(lut_model, inputs.features)
    report = measure(reference, lut_out, inputs)
    failure = report.failure()
    if failure is not None:
        raise ConversionError(f"the converted model does not verify like Keras: {failure} ({report.describe()}); "
                              "check the inputs are the model's own (--inputs, --corpus), or convert with "
                              "--no-check to keep it anyway")
    twin_parity = None
    if compressed:
        twin_parity = parity(run_tflm(twin, inputs.features), lut_out)
        twin_parity.check(LUT_TWIN_MIN_COSINE, "LUT model vs its uncompressed twin")
    return report, twin_parity


def convert_model(
    model: keras.Model,
    bits_per_layer: Mapping[str, int],
    frames: int,
    int8: bool = False,
    representative: RepresentativeData | None = None,
    check_examples: int = CHECK_EXAMPLES,
    check_inputs: CheckInputs | None = None,
    check: bool = True,
) -> ConversionResult:
    """Convert, LUT-compress and verify ``model`` (see module doc).

    ``bits_per_layer`` names each quantized layer (a class of
    :data:`tfadvq.quant.layer_rules.RULES`) and its weight bits (1-7: LUT; 8:
    int8); empty for an FP32 model (nothing stored, no LUT).  ``int8`` selects
    full-integer activations, ranges measured on ``representative`` (required
    then; with float activations it is built too when the model allows, for
    comparison).  ``check_inputs`` (the model's own inputs, with speakers if
    known) are run through Keras, the twin and the LUT model; without them
    the first ``check_examples`` representative crops, else seeded noise.
    ``check=False`` skips both checks (the result's parities are None).
    Raises ConversionError when any step or check fails.
    """
    mels = feature_dim(model)
    if int8 and representative is None:
        raise ConversionError("int8 conversion needs representative fbank crops (--corpus or features)")
    float_model = to_float_tflite(model, frames)
    int8_model = None
    if int8 or (representative is not None and not refusals(model, int8=True)):
        int8_model = to_int8_tflite(model, frames, representative)
    plain = int8_model if int8 else float_model
    weights = find_weight_tensors(plain, model, bits_per_layer) if bits_per_layer else []
    twin = store_int8(plain, weights)
    lut_model = compress(twin, weights)

    keras_parity, twin_parity = None, None
    if check:
        inputs = check_inputs or default_check_inputs(representative, frames, mels, check_examples)
        if inputs.features.shape[1:] != (frames, mels):
            raise ConversionError(f"check inputs ({inputs.source}) have shape {inputs.features.shape[1:]}, the "
                                  f"converted model takes [{frames}, {mels}]")
        keras_parity, twin_parity = _checked(model, twin, lut_model, lut_model != twin, inputs)
    return ConversionResult(
        model=lut_model,
        twin=twin,
        float_model=float_model,
        int8_model=int8_model,
        planned_bytes=planned_bytes(plain, weights),
        weights=weights,
        activations="int8" if int8 else "float32",
        frames=frames,
        mels=mels,
        embed_dim=int(model.output_shape[-1]),
        arena_bytes=arena_bytes(lut_model, (1, frames, mels)),
        keras_parity=keras_parity,
        twin_parity=twin_parity,
    )


@dataclasses.dataclass(frozen=True)
class ConvertedSizes:
    """Bytes of what a model converts to at ``frames`` input frames (:class:`tfadvq.quant.mixed_run.ConvertedSizes`).

    Mixed precision budgets the converted file; the library asks this for
    the sizes instead of importing the converter, a layer above it.
    """

    frames: int

    def float_bytes(self, model) -> int:
        """The float file as the writer stores it (what the flashed file's fixed part is measured against)."""
        from converters import tflite_writer

        return len(tflite_writer.write(model_editor.read(to_float_tflite(model, self.frames))))

    def lut_bytes(self, wrapped) -> int:
        from tfadvq.quant import api

        plain, records = api.strip(wrapped)
        return len(convert_model(plain, records.bits_by_layer(), self.frames).model)
