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


def _c_type(value: object) -> str:
    """The C++ member type of a header value (:func:`_c_value`)."""
    if isinstance(value, bool):
        return "bool"
    return {int: "int", float: "float"}.get(type(value), "const char*")


def _defines(prefix: str, values: dict[str, object]) -> list[str]:
    return [f"#define {prefix}{name.upper()} {_c_value(value)}" for name, value in values.items()]


def _header_groups(metadata: ModelMetadata) -> dict[str, dict[str, object]]:
    """The header's values in groups (the macros' prefixes, the config struct's members), each group's
    keys the same for every model: ``model``, ``fbank``, ``scoring``, ``calibration``, ``thresholds``
    (zeros without thresholds: ``calibration`` says whether there are any) and ``weights``."""
    plain = to_dict(metadata)
    for key in ("feature", "scoring", "calibration", "parity", "thresholds", "bits_per_layer"):
        plain.pop(key)
    found = metadata.thresholds
    thresholds = {"eer": 0.0, "eer_percent": 0.0, "low_far": 0.0, "target_far": 0.0, "far_at_low_far": 0.0,
                  "frr_at_low_far": 0.0} if found is None else {
        "eer": found.eer_threshold, "eer_percent": found.eer_percent, "low_far": found.low_far_threshold,
        "target_far": found.target_far, "far_at_low_far": found.far_at_low_far,
        "frr_at_low_far": found.frr_at_low_far}
    bits = list(metadata.bits_per_layer.values())
    return {
        "model": {**plain, "activations_int8": metadata.activations == "int8"},
        "fbank": to_dict(metadata.feature),
        "scoring": {"window_frames": metadata.scoring.window_frames, "hop_frames": metadata.scoring.hop},
        "calibration": {"thresholds_from_device": (metadata.calibration or {}).get("embedder") == "tflm",
                        "has_thresholds": found is not None},
        "thresholds": {k: float(v) for k, v in thresholds.items()},
        "weights": {"num_quantized_layers": len(bits), "min_weight_bits": min(bits, default=0),
                    "max_weight_bits": max(bits, default=0)},
    }


# The C++ type of the config struct every model header defines (once: the guard) -- the member layout
# follows _header_groups; fbank members are typed by the firmware's FbankConfig, so every model's match.
STRUCT_GUARD = "TFADVQ_CONFIG_STRUCT_H_"
STRUCT_MEMBERS = {"model": "", "fbank": "FbankConfig fbank", "scoring": "Scoring scoring",
                  "calibration": "", "thresholds": "Thresholds threshold", "weights": ""}
STRUCT_TYPES = {"fbank": "FbankConfig", "scoring": "Scoring", "thresholds": "Thresholds"}


def _struct_type(groups: dict[str, dict[str, object]]) -> list[str]:
    """``namespace tfadvq { struct ModelConfig ... }`` with an ``==`` on front ends (``StrEq`` for strings)."""
    lines = [f"#ifndef {STRUCT_GUARD}", f"#define {STRUCT_GUARD}", "namespace tfadvq {", ""]
    typed = {**groups, "fbank": to_dict(FIRMWARE_FBANK)}
    for group, name in STRUCT_TYPES.items():
        lines += [f"struct {name} {{", *[f"  {_c_type(v)} {k};" for k, v in typed[group].items()], "};", ""]
    lines.append("struct ModelConfig {")
    for group, values in typed.items():
        member = STRUCT_MEMBERS[group]
        lines += [f"  {member};"] if member else [f"  {_c_type(v)} {k};" for k, v in values.items()]
    lines += ["};", "",
              "constexpr bool StrEq(const char* a, const char* b) {",
              "  return *a == *b && (*a == '\\0' || StrEq(a + 1, b + 1));", "}", "",
              "// Two models eat the same features when every front-end setting is equal.",
              "constexpr bool operator==(const FbankConfig& a, const FbankConfig& b) {",
              "  return " + " &&\n         ".join(
                  f"StrEq(a.{k}, b.{k})" if _c_type(v) == "const char*" else f"a.{k} == b.{k}"
                  for k, v in typed["fbank"].items()) + ";",
              "}", "", "}  // namespace tfadvq", f"#endif  // {STRUCT_GUARD}"]
    return lines


def _struct_value(groups: dict[str, dict[str, object]]) -> str:
    """The aggregate initialiser of ``tfadvq::ModelConfig`` (members in :func:`_struct_type`'s order)."""
    parts = []
    for group, values in groups.items():
        items = ", ".join(("true" if v else "false") if isinstance(v, bool) else _c_value(v) for v in values.values())
        parts.append(f"{{{items}}}" if STRUCT_MEMBERS[group] else items)
    return "{\n    " + ",\n    ".join(parts) + "}"


def config_symbol(prefix: str = "") -> str:
    """The C++ name of a model's config struct: ``tfadvq::kModelConfig`` (``..._<prefix>`` for a second one)."""
    return "tfadvq::kModelConfig" + (f"_{prefix}" if prefix else "")


def c_header(metadata: ModelMetadata, prefix: str = "") -> str:
    """``model_config.h``: the metadata as ``TFADVQ_*`` macros (C and C++ compatible) and, for C++, as one
    ``constexpr tfadvq::ModelConfig`` (:func:`config_symbol`) that the firmware reads for every model alike.

    With ``prefix`` (a second model on the same device, e.g. ``"hi"``) every macro
    is ``TFADVQ_HI_*``, the struct ``tfadvq::kModelConfig_hi`` and the guard differs, so both headers
    compile together.
    """
    p = f"TFADVQ_{prefix.upper()}_" if prefix else "TFADVQ_"
    guard = f"{p}MODEL_CONFIG_H_" if prefix else HEADER_GUARD
    groups = _header_groups(metadata)
    model = dict(groups["model"])
    int8 = model.pop("activations_int8")
    bits = metadata.bits_per_layer
    lines = [
        f"#ifndef {guard}",
        f"#define {guard}",
        "// Generated by `tfadvq convert`; do not edit. Describes the model in model_data.cc.",
        "",
        *_defines(p, model),
        f"#define {p}ACTIVATIONS_INT8 {int(int8)}",
        "",
        "// Feature extraction the model was trained with (FbankConfig; the firmware computes only its defaults).",
        *_defines(f"{p}FBANK_", groups["fbank"]),
        "",
        "// Scoring schedule (tfadvq.windows): windows of the model's input frames, this hop.",
        *_defines(f"{p}SCORING_", groups["scoring"]),
        "",
        "// Cosine-score decision thresholds (accept if score >= threshold), calibrated on the",
        f"// scores this converted model gives under TFLM when {p}THRESHOLDS_FROM_DEVICE is 1.",
        *_defines(p, groups["calibration"]),
        *(_defines(f"{p}THRESHOLD_", groups["thresholds"]) if metadata.thresholds is not None else []),
        "",
        *_defines(p, groups["weights"]),
        "// Weight bits per layer:",
        *[f"//   {name}: {b}" for name, b in bits.items()],
        "",
        "#ifdef __cplusplus",
        "// The same values as one struct: a reader takes any model's fields by name, the second model's too.",
        *_struct_type(groups),
        "namespace tfadvq {",
        f"constexpr ModelConfig {config_symbol(prefix).split('::')[1]}{_struct_value(groups)};",
        "}  // namespace tfadvq",
        "#endif  // __cplusplus",
        "",
        f"#endif  // {guard}",
        "",
    ]
    return "\n".join(lines)
