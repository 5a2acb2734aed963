"""What LUT compression buys on device: file size, arena and TFLM latency.

For the demo model (TinyResNet, demo.yaml sizes) and a full-size ResNet34
(random init: sizes and latency do not depend on training) with every
Conv2D/DepthwiseConv2D/Dense kernel snapped to 2^b quantile centroids at
8/4/3/2 bits, plus one per-layer-bits model (``bits={layer: b}``: first conv
and embedding layer at 8 bits, the rest alternating 4 and 2 bits), converts
with int8 activations and records:

* ``tflite_bytes`` (LUT model to flash) vs ``ideal_bytes`` (packed indices +
  per-channel tables + every other constant as stored) vs
  ``int8_tflite_bytes`` (plain int8 twin) and ``float_tflite_bytes``;
* ``latency_ratio``: median TFLM host invoke time of the LUT model / the plain
  int8 model, same process, same input, invokes interleaved;
* ``arena_bytes`` of the LUT model (TFLM's recording allocator) and of the
  plain int8 one (DECODE outputs need arena room for the largest decoded
  weight tensor).

Targets (full-size ResNet34, 4 bits): tflite <= 1.15 x ideal, <= 0.55 x int8;
latency ratio <= 1.3.  Models come from ``tfadvq.models`` when it exists, else
from the stand-in builder below (same block structure).

Run: ``.venv/bin/python benchmarks/convert.py`` (about 15 minutes on 2 cores);
writes benchmarks/results/convert.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from converters import array_representative, convert_model
from converters.lut_compression import WeightTensor, uniform_bits
from converters.verify import arena_bytes, invoke_seconds
from tfadvq.compat import keras
from tfadvq.report import print_table

RESULTS = Path(__file__).parent / "results" / "convert.json"
MELS = 80
MODELS = {
    "demo_tinyresnet": ("TinyResNet", {"feat_dim": MELS, "embed_dim": 128, "base_width": 16}, (1, 1, 1, 1)),
    "resnet34": ("ResNet34", {"feat_dim": MELS, "embed_dim": 256, "base_width": 32}, (3, 4, 6, 3)),
}


def _stand_in(blocks: tuple[int, ...], feat_dim: int, embed_dim: int, base_width: int) -> keras.Model:
    """WeSpeaker-style ResNet (BasicBlocks, stride-2 stages, stats pooling) for when tfadvq.models is absent."""
    inputs = keras.Input((None, feat_dim))
    x = keras.layers.Reshape((-1, feat_dim, 1))(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(
        keras.layers.Conv2D(base_width, 3, padding="same", use_bias=False, name="stem")(x)))
    for stage, count in enumerate(blocks):
        width = base_width * 2**stage
        for block in range(count):
            stride = 2 if stage > 0 and block == 0 else 1
            name = f"s{stage}b{block}"
            y = keras.layers.Conv2D(width, 3, stride, "same", use_bias=False, name=f"{name}_conv1")(x)
            y = keras.layers.ReLU()(keras.layers.BatchNormalization()(y))
            y = keras.layers.Conv2D(width, 3, 1, "same", use_bias=False, name=f"{name}_conv2")(y)
            y = keras.layers.BatchNormalization()(y)
            if stride != 1 or x.shape[-1] != width:
                x = keras.layers.BatchNormalization()(
                    keras.layers.Conv2D(width, 1, stride, use_bias=False, name=f"{name}_short")(x))
            x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.Reshape((-1, x.shape[2] * x.shape[3]))(x)
    mean = keras.layers.GlobalAveragePooling1D()(x)
    std = keras.layers.Lambda(lambda t: keras.backend.sqrt(keras.backend.var(t, axis=1) + 1e-5))(x)
    x = keras.layers.Concatenate()([mean, std])
    return keras.Model(inputs, keras.layers.Dense(embed_dim, name="embedding")(x))


def build(name: str) -> tuple[keras.Model, str]:
    factory, args, blocks = MODELS[name]
    try:
        from tfadvq.models import build_model
    except ImportError:
        return _stand_in(blocks, **args), "stand-in"
    return build_model(factory, **args), "tfadvq.models"


def snap(model: keras.Model, bits: dict[str, int]) -> None:
    """Snap each named layer's kernel to 2^b quantile centroids (per tensor, like k-means init)."""
    for name, b in bits.items():
        layer = model.get_layer(name)
        weights = layer.get_weights()
        kernel = weights[0]
        centroids = np.quantile(kernel, (np.arange(2**b) + 0.5) / 2**b)
        edges = (centroids[1:] + centroids[:-1]) / 2
        weights[0] = centroids[np.searchsorted(edges, kernel)].astype(np.float32)
        layer.set_weights(weights)


def mixed_bits(model: keras.Model) -> dict[str, int]:
    names = list(uniform_bits(model, 8))
    inner = {name: (4 if i % 2 else 2) for i, name in enumerate(names[1:-1])}
    return {names[0]: 8, **inner, names[-1]: 8}


def average_bits(weights: list[WeightTensor]) -> float:
    """Weight-count-weighted mean bits of the quantized tensors (the mixed model's 'bits')."""
    sizes = np.array([w.size for w in weights])
    return float(np.dot([w.bits for w in weights], sizes) / sizes.sum())


def measure(name: str, bits_label: str, frames: int, calibration: int, repeats: int) -> dict[str, object]:
    keras.utils.set_random_seed(0)
    model, source = build(name)
    bits = mixed_bits(model) if bits_label == "mixed" else uniform_bits(model, int(bits_label))
    snap(model, bits)
    crops = np.random.default_rng(1).normal(size=(calibration, frames, MELS)).astype(np.float32)
    start = time.perf_counter()
    result = convert_model(model, bits, frames, int8=True, representative=array_representative(crops),
                           check_examples=1)
    convert_seconds = time.perf_counter() - start
    shape = (1, frames, MELS)
    lut_s, int8_s = invoke_seconds([result.model, result.twin], shape, repeats)
    return {
        "model": name,
        "source": source,
        "bits": average_bits(result.weights) if bits_label == "mixed" else int(bits_label),
        "method": "lut_int8" if bits_label != "mixed" else "lut_int8_mixed",
        "params": int(model.count_params()),
        "tflite_bytes": len(result.model),
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
        "convert_seconds": convert_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="input frames (200 = 2 s, the firmware window)")
    parser.add_argument("--calibration", type=int, default=8, help="int8 calibration crops")
    parser.add_argument("--repeats", type=int, default=5, help="timed, interleaved invokes per model (median)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--bits", nargs="+", default=["8", "4", "3", "2", "mixed"])
    args = parser.parse_args()
    rows = []
    for name in args.models:
        for bits in args.bits:
            rows.append(measure(name, bits, args.frames, args.calibration, args.repeats))
            print_table(rows[-1:], f"{name} {bits}")
    keep = ["model", "bits", "tflite_bytes", "ideal_bytes", "int8_tflite_bytes", "float_tflite_bytes",
            "tflite_over_ideal", "tflite_over_int8", "latency_ratio", "lut_ms", "arena_bytes", "int8_arena_bytes"]
    print_table([{k: r[k] for k in keep} for r in rows], "LUT conversion (int8 activations, TFLM host)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "convert",
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "config": {"frames": args.frames, "calibration_crops": args.calibration, "repeats": args.repeats,
                   "activations": "int8", "weights": "random init snapped to 2^b quantile centroids"},
        "rows": rows,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
