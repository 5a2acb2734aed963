"""``tfadvq demo`` end to end on the tiny corpus: train -> KMQAT 4-bit -> LUT .tflite -> TFLM.

The model is barely trained (one epoch of one step), so only what holds for
any model is asserted: every stage ran and wrote its files, the quantized
model's EER and the device scores are finite, the converted model really is
4-bit LUT-compressed, and the TFLM interpreter reproduces the Keras
embeddings of the quantized model.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def demo_run(tiny_corpus, tmp_path_factory):
    from tfadvq.cli import main

    workdir = tmp_path_factory.mktemp("demo")
    rc = main(["demo", "--workdir", str(workdir), "--corpus", str(tiny_corpus), "--epochs", "1",
               "--batch-size", "16", "--steps-per-epoch", "1", "--finetune-epochs", "1",
               "--frames", "100"])
    return rc, workdir


def test_demo_quantizes_with_finetune_and_reports_eer(demo_run):
    rc, workdir = demo_run
    assert rc == 0
    quant = workdir / "quant"
    for name in ("model.h5", "plain.keras", "quantized_weights.npz"):
        assert (quant / name).is_file()
    summary = json.loads((quant / "summary.json").read_text())
    assert summary["settings"]["bits"] == 4
    assert summary["finetune"]["objective"] == "aam" and summary["finetune"]["steps"] == 1
    assert math.isfinite(summary["finetune"]["last_loss"])
    assert summary["compression"] > 1
    assert all(row["bits"] == 4 for row in summary["layers"] if isinstance(row["bits"], int))
    evaluation = json.loads((workdir / "quant_eval" / "summary.json").read_text())
    assert 0 <= evaluation["eer"] <= 100
    assert (workdir / "det_fp32_vs_quant.png").stat().st_size > 0


def test_demo_converts_to_a_4bit_lut_tflite_with_metadata(demo_run):
    from converters.metadata import read_json

    _, workdir = demo_run
    tflite = workdir / "tflite" / "model.tflite"
    metadata = read_json(tflite.with_suffix(".json"))
    assert metadata.model_bytes == tflite.stat().st_size
    assert metadata.bits_per_layer and set(metadata.bits_per_layer.values()) == {4}
    assert metadata.activations == "float32" and metadata.arena_bytes > 0
    assert metadata.input_frames == 100
    assert tflite.stat().st_size < tflite.with_suffix(".float.tflite").stat().st_size
    assert math.isfinite(metadata.thresholds.eer)
    assert (workdir / "tflite" / "c_array" / "model_data.cc").is_file()


def test_demo_verifies_a_speaker_under_tflm(demo_run):
    _, workdir = demo_run
    outcome = json.loads((workdir / "device_verify.json").read_text())
    assert outcome["tflm_keras_cosine"] >= 0.999
    scores = np.asarray(outcome["scores"])
    assert scores.shape == (2,) and np.isfinite(scores).all() and (np.abs(scores) <= 1 + 1e-6).all()
    assert outcome["decisions"] == ["accept" if s >= outcome["threshold"] else "reject" for s in scores]
