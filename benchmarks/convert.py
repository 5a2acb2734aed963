"""What LUT compression buys on device: file size (planned vs written), arena, TFLM latency, parity.

For the demo model (``build_model`` with demo.yaml's ``model``/``model_args``)
and a full-size :func:`tfadvq.models.ResNet34` (random init: sizes and latency
do not depend on training), quantized through the library's own path --
``tfadvq.ptq`` (k-means codebooks) -> ``tfadvq.strip`` -> ``converters.convert_model``
with the bits per layer read from the ``QuantizedWeights`` record -- at every
width 1..8 for every supported layer (the demo model; ResNet34 at 4 bits only,
the target row, to keep the run near 10 minutes), plus one per-layer-bits demo
model through the ``bits={layer: b}`` API (first and last quantizable layers at
8 bits, the rest alternating 2 and 4 bits).  Conversion uses int8 activations
and records:

* ``tflite_bytes`` (LUT model to flash) vs ``planned_bytes`` (the cost model,
  :mod:`tfadvq.quant.cost`, applied to the converter's plain int8 file before
  compressing), ``ideal_bytes`` (packed indices + tables + every other
  constant as stored, no flatbuffer structure), ``int8_tflite_bytes`` (plain
  int8 twin) and ``float_tflite_bytes``;
* ``latency_ratio``: median TFLM host invoke time of the LUT model / the plain
  int8 model, same process, same input, invokes interleaved (so load from
  other processes on a shared machine hits both alike);
* ``arena_bytes`` of the LUT model (TFLM's recording allocator) and of the
  plain int8 one (DECODE outputs need arena room for the largest decoded
  weight tensor).

Then one small model per layer family of the support table (conv, depthwise,
dense, Conv1D, LSTM, GRU) at 4 bits, with float and with int8 activations:
``tflm_max_abs_diff`` is the largest |TFLM LUT output - Keras| on held-out
inputs (``keras_max_abs`` for scale), ``storage`` how the family's layer was
stored (under int8 a layer whose LUT would not be smaller stays int8: a 3x3
depthwise kernel has 9 weights a channel, fewer than 4-bit indices plus a
16-entry int8 table), or the row says why the family is refused (GRU with
int8 activations).

Targets (full-size ResNet34, 4 bits): tflite <= 1.15 x ideal, <= 0.55 x int8;
latency ratio <= 1.3; every row: tflite within 2 % of planned.

Run: ``.venv/bin/python benchmarks/convert.py`` (about 5 minutes on 2 shared
cores); writes benchmarks/results/convert.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import tfadvq
from converters import array_representative, convert_model, run_tflm
from converters.tflm import arena_bytes, invoke_seconds
from tfadvq.compat import keras
from tfadvq.errors import TfadvqError
from tfadvq.models import ResNet34, build_model
from tfadvq.quant.records import QuantizedWeights
from tfadvq.quant.spec import resolve
from tfadvq.report import machine_description, print_table
from tfadvq.train_config import load_config, packaged_config

RESULTS = Path(__file__).parent / "results" / "convert.json"
TARGETS = {"tflite_over_ideal": 1.15, "tflite_over_int8": 0.55, "latency_ratio": 1.3}
PLANNED_TOLERANCE = 0.02  # |tflite / planned - 1| on every row


def demo_model() -> keras.Model:
    """The demo model exactly as ``tfadvq demo`` builds it (demo.yaml's model and model_args)."""
    config = load_config(packaged_config("demo"))
    return build_model(config.model, **config.model_args)


MODELS: dict[str, Callable[[], keras.Model]] = {"demo": demo_model, "resnet34": ResNet34}


def mixed_bits(model: keras.Model) -> dict[str, int]:
    """``{layer: b}`` over the quantizable layers: ends at 8 bits, the inner ones alternating 2/4."""
    names = [name for name, b in resolve(model, 8).items() if b is not None]
    inner = {name: (4 if i % 2 else 2) for i, name in enumerate(names[1:-1])}
    return {names[0]: 8, **inner, names[-1]: 8}


def average_bits(records: QuantizedWeights) -> float:
    """Weight-count-weighted mean bits of the quantized tensors (the mixed model's 'bits')."""
    sizes = np.array([t.indices.size for t in records.tensors])
    return float(np.dot([t.bits for t in records.tensors], sizes) / sizes.sum())


def measure(name: str, bits_label: str, frames: int, crops: int, repeats: int) -> dict[str, object]:
    """Quantize (ptq) -> strip -> convert one model at one bit setting; sizes, arena, latency."""
    keras.utils.set_random_seed(0)
    model = MODELS[name]()
    bits = mixed_bits(model) if bits_label == "mixed" else int(bits_label)
    start = time.perf_counter()
    plain, records = tfadvq.strip(tfadvq.ptq(model, bits, progress=False))
    ptq_seconds = time.perf_counter() - start
    crops = np.random.default_rng(1).normal(size=(crops, frames, plain.input_shape[-1])).astype(np.float32)
    start = time.perf_counter()
    result = convert_model(plain, records.bits_by_layer(), frames, int8=True,
                           representative=array_representative(crops), check_examples=1)
    convert_seconds = time.perf_counter() - start
    shape = (1, frames, result.mels)
    lut_s, int8_s = invoke_seconds([result.model, result.twin], shape, repeats)
    return {
        "model": f"{name} ({model.name})",
        "bits": average_bits(records) if bits_label == "mixed" else int(bits_label),
        "method": "kmqat_ptq_lut_int8" + ("_mixed" if bits_label == "mixed" else ""),
        "params": int(model.count_params()),
        "size_bytes": float(tfadvq.model_size((plain, records), activations="int8").size_bytes),
        "tflite_bytes": len(result.model),
        "planned_bytes": result.planned_bytes,
        "tflite_over_planned": len(result.model) / result.planned_bytes,
        "ideal_bytes": int(result.ideal_bytes),
        "int8_tflite_bytes": len(result.twin),
        "float_tflite_bytes": len(result.float_model),
        "tflite_over_ideal": len(result.model) / result.ideal_bytes,
        "tflite_over_int8": len(result.model) / len(result.twin),
        "lut_ms": 1000 * lut_s,
        "int8_ms": 1000 * int8_s,
        "latency_ratio": lut_s / int8_s,
        "arena_bytes": result.arena_bytes,
        "int8_arena_bytes": arena_bytes(result.twin, shape),
        "cosine_vs_keras": result.keras_parity.min_cosine,
        "ptq_seconds": ptq_seconds,
        "convert_seconds": convert_seconds,
    }


FAMILY_FRAMES, FAMILY_MELS = 50, 40
FAMILIES: dict[str, Callable[[], list[keras.layers.Layer]]] = {
    "conv": lambda: [keras.layers.Reshape((FAMILY_FRAMES, FAMILY_MELS, 1)), keras.layers.Conv2D(16, 3),
                     keras.layers.Conv2D(32, 3, name="q"), keras.layers.BatchNormalization(), keras.layers.ReLU(),
                     keras.layers.GlobalAveragePooling2D()],
    "depthwise": lambda: [keras.layers.Reshape((FAMILY_FRAMES, FAMILY_MELS, 1)), keras.layers.Conv2D(16, 3),
                          keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="q"),
                          keras.layers.BatchNormalization(), keras.layers.GlobalAveragePooling2D()],
    "dense": lambda: [keras.layers.Dense(64, name="q"), keras.layers.GlobalAveragePooling1D()],
    "conv1d": lambda: [keras.layers.Conv1D(64, 5, name="q"), keras.layers.GlobalAveragePooling1D()],
    "lstm": lambda: [keras.layers.LSTM(64, name="q")],
    "gru": lambda: [keras.layers.GRU(64, name="q")],
}


def measure_family(family: str, activations: str, bits: int, crops: int) -> dict[str, object]:
    """One small model of ``family`` (its layer + a Dense head at ``bits``): sizes and TFLM parity, or the refusal."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((FAMILY_FRAMES, FAMILY_MELS))
    x = inputs
    for layer in FAMILIES[family]():
        x = layer(x)
    model = keras.Model(inputs, keras.layers.Dense(32, name="head")(x), name=family)
    row: dict[str, object] = {"model": f"family {family}", "bits": bits, "method": f"kmqat_ptq_lut_{activations}",
                              "activations": activations, "params": int(model.count_params())}
    rng = np.random.default_rng(1)
    crops = rng.normal(size=(crops, FAMILY_FRAMES, FAMILY_MELS)).astype(np.float32)
    held_out = rng.normal(size=(4, FAMILY_FRAMES, FAMILY_MELS)).astype(np.float32)
    try:
        plain, records = tfadvq.strip(tfadvq.ptq(model, {"q": bits, "head": bits}, progress=False))
        result = convert_model(plain, records.bits_by_layer(), FAMILY_FRAMES, int8=activations == "int8",
                               representative=array_representative(crops))
    except TfadvqError as exc:
        return {**row, "refused": str(exc)}
    mine = [w for w in result.weights if w.layer == "q"]
    reference = plain(held_out).numpy()
    return {**row, "tflite_ops": sorted({w.op for w in mine}), "storage": sorted({w.storage() for w in mine}),
            "tflite_tensors": len(mine), "tflite_bytes": len(result.model), "planned_bytes": result.planned_bytes,
            "tflite_over_planned": len(result.model) / result.planned_bytes,
            "float_tflite_bytes": len(result.float_model),
            "tflm_max_abs_diff": float(np.max(np.abs(run_tflm(result.model, held_out) - reference))),
            "keras_max_abs": float(np.max(np.abs(reference))),
            "cosine_vs_keras": result.keras_parity.min_cosine}


def target_misses(rows: list[dict[str, object]]) -> list[str]:
    """The issue's targets for the full-size ResNet34 at 4 bits, and planned-size agreement, that a row misses."""
    misses = []
    for row in rows:
        if "resnet34" in str(row["model"]).lower() and row["bits"] == 4:
            misses += [f"{row['model']} 4-bit {key} = {row[key]:.3f} > {limit}"
                       for key, limit in TARGETS.items() if row[key] > limit]
        if "tflite_over_planned" in row and abs(row["tflite_over_planned"] - 1) > PLANNED_TOLERANCE:
            misses.append(f"{row['model']} {row['bits']}-bit tflite/planned = {row['tflite_over_planned']:.4f}")
    return misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="input frames (200 = 2 s, the firmware window)")
    parser.add_argument("--crops", type=int, default=8, help="representative crops for the int8 activation ranges")
    parser.add_argument("--repeats", type=int, default=5, help="timed, interleaved invokes per model (median)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--bits", nargs="+", default=["1", "2", "3", "4", "5", "6", "7", "8", "mixed"],
                        help="bit settings of the demo model")
    parser.add_argument("--resnet-bits", nargs="+", default=["4"], help="bit settings of ResNet34 (slow: ~3 min each)")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    args = parser.parse_args()
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = []
    for name in args.models:
        for bits in args.resnet_bits if name == "resnet34" else args.bits:
            rows.append(measure(name, bits, args.frames, args.crops, args.repeats))
            print_table(rows[-1:], f"{name} {bits}")
    keep = ["model", "bits", "tflite_bytes", "planned_bytes", "tflite_over_planned", "ideal_bytes",
            "int8_tflite_bytes", "tflite_over_ideal", "tflite_over_int8", "latency_ratio", "arena_bytes"]
    print_table([{k: r[k] for k in keep} for r in rows], "LUT conversion (int8 activations, TFLM host)")
    families = [measure_family(f, act, 4, args.crops) for f in args.families for act in ("float32", "int8")]
    print_table([{k: r.get(k, "-") for k in ("model", "activations", "tflite_ops", "storage", "tflite_bytes",
                                             "planned_bytes", "tflm_max_abs_diff", "refused")} for r in families],
                "Layer families at 4 bits (TFLM vs Keras on held-out inputs)")
    rows += families
    misses = target_misses(rows)
    print("targets: " + ("; ".join(misses) if misses else "all met"))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "convert",
        "date": datetime.date.today().isoformat(),
        "machine": machine_description(),
        "config": {"frames": args.frames, "representative_crops": args.crops, "repeats": args.repeats,
                   "activations": "int8 (model rows); float32 and int8 (family rows)",
                   "bits": {"demo": args.bits, "resnet34": args.resnet_bits, "families": 4},
                   "reduced": "ResNet34 only at the target's 4 bits (each ResNet34 setting takes ~3 min "
                              "on 2 shared cores); the demo model covers bits 1..8 and mixed",
                   "weights": "random init, tfadvq.ptq k-means codebooks (per tensor) -> tfadvq.strip",
                   "representative_data": "seeded standard-normal fbank-shaped crops",
                   "families": {"frames": FAMILY_FRAMES, "mels": FAMILY_MELS, "bits": 4,
                                "tflm_max_abs_diff": "max |TFLM LUT - Keras (stripped)| over 4 held-out inputs"},
                   "planned_tolerance": PLANNED_TOLERANCE,
                   "seconds": round(time.perf_counter() - started, 1),
                   "load_average_1_5_15": {"start": [round(x, 2) for x in load_before],
                                           "end": [round(x, 2) for x in os.getloadavg()]},
                   "timing_note": "shared 2-core machine; latency only as LUT/int8 ratio, invokes interleaved",
                   "target_misses": misses},
        "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
