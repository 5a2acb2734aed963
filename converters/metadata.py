"""What the firmware needs besides the model bytes, as JSON and as a C header.

The device computes fbank features itself, so it must use exactly the feature
configuration the model was trained with, feed exactly ``input_frames`` frames,
cut utterances into windows by the one scoring schedule (:mod:`tfadvq.windows`),
compare the cosine score against a threshold calibrated offline on what the
converted model computes, and reserve the arena TFLM measured.  One :class:`ModelMetadata` carries all of that; the
JSON is for tools and the header (``model_config.h``) is compiled in.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from converters.parity import ParityReport
from tfadvq import rundir
from tfadvq.config import from_dict, to_dict
from tfadvq.errors import ConversionError
from tfadvq.fbank_config import FbankConfig
from tfadvq.frontend import differences
from tfadvq.metrics import Thresholds
from tfadvq.windows import ScoringConfig

HEADER_GUARD = "TFADVQ_MODEL_CONFIG_H_"
# The one front end the firmware computes (tflm_firmware/lib/fbank.h, the C++ twin of tfadvq.features'
# defaults); its app/main.cc static_asserts every TFADVQ_FBANK_* macro against it.
FIRMWARE_FBANK = FbankConfig()


@dataclasses.dataclass
class ModelMetadata:
    """Everything the firmware checks or configures for one converted model."""

    model_version: int
    model_sha256: str
    model_bytes: int
    input_frames: int
    num_mel_bins: int
    embed_dim: int
    activations: str  # "float32" or "int8"
    arena_bytes: int
    bits_per_layer: dict[str, int]
    feature: FbankConfig = dataclasses.field(default_factory=FbankConfig)
    scoring: ScoringConfig = dataclasses.field(default_factory=ScoringConfig)
    thresholds: Thresholds | None = None
    # where the thresholds come from: embedder ("tflm"), trial list, trial count, ...
    calibration: dict[str, object] | None = None
    # how the converted model verifies like Keras (converters.parity); None: not checked (--no-check)
    parity: ParityReport | None = None


def write_json(metadata: ModelMetadata, path: str | Path) -> None:
    rundir.atomic_write(path, json.dumps(to_dict(metadata), indent=2) + "\n")


def read_json(path: str | Path) -> ModelMetadata:
    """Read ``model.json``; one written before EERs were percent everywhere (``thresholds.eer_rate``, a
    fraction) is read as ``eer_percent``."""
    path = Path(path)
    data = rundir.read_json(path)
    thresholds = data.get("thresholds") if isinstance(data, dict) else None
    if isinstance(thresholds, dict) and "eer_rate" in thresholds and "eer_percent" not in thresholds:
        thresholds["eer_percent"] = 100.0 * thresholds.pop("eer_rate")
    return from_dict(ModelMetadata, data, where=str(path))


def firmware_mismatches(feature: FbankConfig) -> list[str]:
    """How ``feature`` differs from what the firmware computes (``field: firmware -> model``); empty if it
    computes exactly these features."""
    return differences(FIRMWARE_FBANK, feature)


def check_firmware_frontend(feature: FbankConfig, model: str = "the model") -> None:
    """Refuse firmware sources for a model whose features the firmware's front end does not compute.

    The firmware computes one fbank; fed to a model trained on other
    features it would run without error and verify nobody, so the sources
    are refused here, naming what differs (the firmware's ``static_assert``s
    are the second line of defence, at compile time).
    """
    mismatches = firmware_mismatches(feature)
    if mismatches:
        raise ConversionError(
            f"{model} eats {feature.describe()}, but the firmware computes only {FIRMWARE_FBANK.describe()} "
            f"(tflm_firmware/lib/fbank.h; differs in {'; '.join(mismatches)}): its C sources would feed it wrong "
            "features. Convert without --c-array and compute its features on the host, or use a model trained "
            "on the firmware's front end")


def _c_value(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return f"{value}"
    if isinstance(value, float):
        return f"{value!r}f" if math.isfinite(value) else "0.0f"
    return json.dumps(str(value))  # a C string literal


def _defines(prefix: str, values: dict[str, object]) -> list[str]:
    return [f"#define {prefix}{name.upper()} {_c_value(value)}" for name, value in values.items()]


def c_header(metadata: ModelMetadata, prefix: str = "") -> str:
    """``model_config.h``: the metadata as ``TFADVQ_*`` macros (C and C++ compatible).

    With ``prefix`` (a second model on the same device, e.g. ``"hi"``) every macro
    is ``TFADVQ_HI_*`` and the guard differs, so both headers compile together.
    """
    p = f"TFADVQ_{prefix.upper()}_" if prefix else "TFADVQ_"
    guard = f"{p}MODEL_CONFIG_H_" if prefix else HEADER_GUARD
    plain = to_dict(metadata)
    feature = plain.pop("feature")
    plain.pop("scoring")
    plain.pop("calibration")
    plain.pop("parity")
    found = metadata.thresholds
    thresholds = {} if found is None else {
        "eer": found.eer_threshold, "eer_percent": found.eer_percent, "low_far": found.low_far_threshold,
        "target_far": found.target_far, "far_at_low_far": found.far_at_low_far,
        "frr_at_low_far": found.frr_at_low_far}
    plain.pop("thresholds")
    bits = plain.pop("bits_per_layer")
    bit_values = list(bits.values())
    lines = [
        f"#ifndef {guard}",
        f"#define {guard}",
        "// Generated by `tfadvq convert`; do not edit. Describes the model in model_data.cc.",
        "",
        *_defines(p, plain),
        f"#define {p}ACTIVATIONS_INT8 {int(metadata.activations == 'int8')}",
        "",
        "// Feature extraction the model was trained with (FbankConfig; the firmware computes only its defaults).",
        *_defines(f"{p}FBANK_", feature),
        "",
        "// Scoring schedule (tfadvq.windows): windows of the model's input frames, this hop.",
        f"#define {p}SCORING_WINDOW_FRAMES {metadata.scoring.window_frames}",
        f"#define {p}SCORING_HOP_FRAMES {metadata.scoring.hop}",
        "",
        "// Cosine-score decision thresholds (accept if score >= threshold), calibrated on the",
        f"// scores this converted model gives under TFLM when {p}THRESHOLDS_FROM_DEVICE is 1.",
        f"#define {p}THRESHOLDS_FROM_DEVICE {int((metadata.calibration or {}).get('embedder') == 'tflm')}",
        f"#define {p}HAS_THRESHOLDS {int(bool(thresholds))}",
        *_defines(f"{p}THRESHOLD_", thresholds),
        "",
        f"#define {p}NUM_QUANTIZED_LAYERS {len(bits)}",
        f"#define {p}MIN_WEIGHT_BITS {min(bit_values, default=0)}",
        f"#define {p}MAX_WEIGHT_BITS {max(bit_values, default=0)}",
        "// Weight bits per layer:",
        *[f"//   {name}: {b}" for name, b in bits.items()],
        "",
        f"#endif  // {guard}",
        "",
    ]
    return "\n".join(lines)
