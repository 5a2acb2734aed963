"""Files as small as planned (issue 22, item 2): LUT file vs plan vs n·b + tables, and ``per_channel="auto"`` time.

Two encoders, random init (sizes do not depend on training), through the
library's own path ``tfadvq.ptq`` -> ``tfadvq.strip`` -> ``converters.convert_model``
at 4 bits, per-tensor codebooks (the default):

* a 0.94 M-weight recurrent encoder without BatchNorm (LSTM 256 -> LSTM 256
  -> Dense 256 on 80 mels, float activations): one value table per tensor;
* the 80 k-parameter device model (``tfadvq/configs/mcu.yaml``, McuDFResNet,
  BatchNorm after every convolution), int8 activations calibrated on seeded
  noise: tables per channel.

Per row: ``tflite_bytes`` (the file), ``planned_bytes`` (converter plan),
``model_size_bytes`` (``tfadvq.model_size`` of the wrapped model: quantized
weights as stored + other parameters at 32 bits), ``ideal_bytes`` (indices +
tables + every other constant, no flatbuffer structure), ``nb_plus_tables``
(packed indices + value tables of the quantized weights only).  Then the time
``tfadvq.quantize(..., per_channel="auto")`` takes on the recurrent encoder at
2, 4 and 8 bits (the choice and the codebook fits), with what it chose.

Run: ``.venv/bin/python benchmarks/lut_size.py`` (about 3 minutes on 2 shared
cores); merges ``encoder_sizes`` into benchmarks/results/convert.json.
"""
from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import numpy as np
import yaml

import tfadvq
from converters import array_representative, convert_model
from tfadvq.compat import keras
from tfadvq.models import build_model
from tfadvq.quant import api

RESULTS = Path(__file__).parent / "results" / "convert.json"
FRAMES, MELS = 100, 80


def recurrent_encoder() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((FRAMES, MELS))
    x = keras.layers.LSTM(256, return_sequences=True, name="lstm1")(inputs)
    x = keras.layers.LSTM(256, name="lstm2")(x)
    return keras.Model(inputs, keras.layers.Dense(256, name="proj")(x), name="lstm_encoder")


def device_model() -> keras.Model:
    config = yaml.safe_load((Path(tfadvq.__file__).parent / "configs" / "mcu.yaml").read_text())
    keras.utils.set_random_seed(0)
    return build_model(config["model"], **config.get("model_args", {}))


def measure(name: str, model: keras.Model, int8: bool) -> dict[str, object]:
    wrapped = tfadvq.ptq(model, 4, progress=False)
    plain, records = tfadvq.strip(wrapped)
    crops = np.random.default_rng(1).normal(size=(8, FRAMES, MELS)).astype(np.float32)
    start = time.perf_counter()
    result = convert_model(plain, records.bits_by_layer(), FRAMES, int8=int8,
                           representative=array_representative(crops) if int8 else None)
    seconds = time.perf_counter() - start
    nb_tables = sum(w.cost().data + w.cost().tables for w in result.weights)
    return {"model": name, "params": int(model.count_params()), "bits": 4, "activations": result.activations,
            "tflite_bytes": len(result.model), "planned_bytes": result.planned_bytes,
            "tflite_over_planned": len(result.model) / result.planned_bytes,
            "model_size_bytes": tfadvq.model_size(wrapped).size_bytes,
            "ideal_bytes": result.ideal_bytes, "tflite_over_ideal": len(result.model) / result.ideal_bytes,
            "nb_plus_tables": nb_tables, "tflite_over_nb_plus_tables": len(result.model) / nb_tables,
            "tables": sorted({w.storage() for w in result.weights}),
            "cosine_vs_keras": result.keras_parity.min_cosine, "convert_seconds": seconds}


def auto_timing(model: keras.Model) -> list[dict[str, object]]:
    rows = []
    for bits in (2, 4, 8):
        start = time.perf_counter()
        wrapped = tfadvq.quantize(model, bits, per_channel="auto", progress=False)
        seconds = time.perf_counter() - start
        chosen = sorted(f"{w.layer.name}/{q.source.name.split('/')[-1].split(':')[0]}"
                        for w, q in api.quantized_weights(wrapped) if q.per_channel)
        rows.append({"bits": bits, "quantize_auto_seconds": seconds, "per_channel": chosen})
    return rows


def main() -> None:
    start = time.perf_counter()
    encoder = recurrent_encoder()
    rows = [measure("lstm encoder (2x LSTM 256 + Dense 256)", encoder, int8=False),
            measure("device model (McuDFResNet, mcu.yaml)", device_model(), int8=True)]
    timing = auto_timing(encoder)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results["encoder_sizes"] = {
        "date": datetime.date.today().isoformat(),
        "note": "issue 22 item 2; random init, 4-bit per-tensor k-means; before this change the converter wrote "
                "per-channel tables for every float LUT tensor and kept names, per-channel zero points and bias "
                "scales: demo device model 101,376 B (ideal 55,608), LSTM encoder 1.6x n·b + tables",
        "rows": rows, "per_channel_auto": timing, "seconds": time.perf_counter() - start,
    }
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["encoder_sizes"], indent=1))


if __name__ == "__main__":
    main()
