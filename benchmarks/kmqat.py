"""KMQAT benchmark, parts measured here: codebook-fit speed/error and the ResNet34 4-bit size.

Part A (size): a full-size WeSpeaker-style ResNet34 (base width 32, 80 mel,
embed 256; tfadvq.models.ResNet34 when available, else the same layer shapes
built here) quantized to 4 bits with KMQAT; ``model_size`` compression.
Part B (codebook fit): every quantized weight of that ResNet34 (random init),
k = 16, ours (kmeans1d) vs sklearn KMeans (k-means++, n_init=1): seconds and
total squared error.

Usage: ``python benchmarks/kmqat.py``; writes benchmarks/results/kmqat.json.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from tqdm import tqdm

import tfadvq
from tfadvq.compat import keras
from tfadvq.quant import api, kmeans1d
from tfadvq.report import print_table


def resnet34_shaped(feat_dim: int = 80, embed_dim: int = 256, width: int = 32) -> keras.Model:
    """WeSpeaker ResNet34 layer shapes (basic blocks [3, 4, 6, 3]) when tfadvq.models is absent."""
    try:
        from tfadvq.models import ResNet34

        return ResNet34(feat_dim=feat_dim, embed_dim=embed_dim, base_width=width)
    except ImportError:
        pass
    inputs = keras.Input((200, feat_dim))
    x = keras.layers.Reshape((200, feat_dim, 1))(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)))
    for stage, (blocks, mult) in enumerate(zip([3, 4, 6, 3], [1, 2, 4, 8])):
        for b in range(blocks):
            stride = 2 if (b == 0 and stage > 0) else 1
            y = keras.layers.Conv2D(width * mult, 3, stride, padding="same", use_bias=False)(x)
            y = keras.layers.ReLU()(keras.layers.BatchNormalization()(y))
            y = keras.layers.BatchNormalization()(keras.layers.Conv2D(width * mult, 3, padding="same", use_bias=False)(y))
            if stride != 1 or x.shape[-1] != width * mult:
                x = keras.layers.BatchNormalization()(keras.layers.Conv2D(width * mult, 1, stride, use_bias=False)(x))
            x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.Reshape((-1, x.shape[2] * x.shape[3]))(x)
    mean, std = keras.layers.GlobalAveragePooling1D()(x), keras.layers.GlobalMaxPooling1D()(x)
    x = keras.layers.Concatenate()([mean, std])
    return keras.Model(inputs, keras.layers.Dense(embed_dim)(x), name="resnet34_shaped")


def fit_timing(model: keras.Model, bits: int) -> list[dict]:
    weights = [v.numpy() for layer in model.layers if type(layer).__name__ in ("Conv2D", "Dense")
               for v in layer.weights if "kernel" in v.name]
    k = 2 ** bits
    start = time.perf_counter()
    ours = [kmeans1d.fit(w, k) for w in weights]
    ours_s = time.perf_counter() - start
    ours_err = sum(kmeans1d.squared_error(w, c) for w, c in zip(weights, ours))
    start = time.perf_counter()
    theirs = [np.sort(KMeans(k, n_init=1, random_state=0).fit(w.reshape(-1, 1)).cluster_centers_.ravel())
              for w in tqdm(weights, desc="sklearn KMeans")]
    sk_s = time.perf_counter() - start
    sk_err = sum(kmeans1d.squared_error(w, c) for w, c in zip(weights, theirs))
    n = int(sum(w.size for w in weights))
    return [{"model": "resnet34", "method": "kmeans1d", "bits": bits, "tensors": len(weights), "values": n,
             "seconds": ours_s, "sq_error": ours_err, "speedup_vs_sklearn": sk_s / ours_s},
            {"model": "resnet34", "method": "sklearn_kmeans", "bits": bits, "tensors": len(weights), "values": n,
             "seconds": sk_s, "sq_error": sk_err, "speedup_vs_sklearn": 1.0}]


def main() -> None:
    keras.utils.set_random_seed(0)
    model = resnet34_shaped()
    start = time.perf_counter()
    quantized = tfadvq.quantize(model, 4)
    wrap_s = time.perf_counter() - start
    size = tfadvq.model_size(quantized)
    rows = [{"model": "resnet34", "method": "kmqat", "bits": 4, "size_bytes": size.size_bytes,
             "fp32_bytes": size.fp32_bytes, "compression": size.compression, "seconds": wrap_s,
             "quantized_layers": len(api.quantized_weights(quantized))}]
    rows += fit_timing(model, 4)
    print_table(rows, title="KMQAT benchmark (size and codebook fitting)")
    result = {"benchmark": "kmqat", "date": datetime.date.today().isoformat(),
              "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
              "config": {"model": model.name, "params": int(model.count_params()), "seed": 0,
                         "sklearn": "KMeans(k, n_init=1, k-means++)",
                         "not_run": "EER rows (kmqat_ptq/kmqat/tfmot_cluster*/uniform*/int8_qat at 8/6/4/3/2 "
                                    "bits) are not measured yet"},
              "rows": rows}
    out = Path(__file__).parent / "results" / "kmqat.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
