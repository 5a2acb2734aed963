"""Python-side checks of the firmware: C++ fbank parity on real speech, golden vector, op list.

The C++ unit tests themselves run with ``make -C tflm_firmware test`` (host and
QEMU Cortex-M4); these tests cover what needs Python: the references the
front end must match, and the tools that feed the firmware build.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfadvq.compat import keras

TOOLS = Path(__file__).resolve().parents[1] / "tflm_firmware" / "tools"
# Stated parity of the C++ front end (log-mel units, float32 on both sides).
MAX_ABS_TOLERANCE = 1e-2
MEAN_ABS_TOLERANCE = 1e-4


def _tool(name: str):
    """Import tflm_firmware/tools/<name>.py (a script directory, not a package)."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


parity_tool = _tool("fbank_parity")


@pytest.fixture(scope="module")
def fbank_tool() -> Path:
    parity_tool.make("build/host/fbank_tool")
    return parity_tool.FBANK_TOOL


@pytest.mark.parametrize("voice,text", [
    ("en", "The quick brown fox jumps over the lazy dog near the river bank."),
    ("de", "Guten Morgen, heute pruefen wir die Sprechererkennung auf dem Mikrocontroller."),
])
def test_c_fbank_matches_tfadvq_and_kaldi_on_speech(fbank_tool, tmp_path, voice, text):
    wav = parity_tool.speech(text, tmp_path / "speech.wav", voice=voice)
    errors = parity_tool.parity(wav)
    assert errors["frames"] > 200
    assert errors["max_abs_err_vs_tfadvq"] < MAX_ABS_TOLERANCE
    assert errors["mean_abs_err_vs_tfadvq"] < MEAN_ABS_TOLERANCE
    assert errors["max_abs_err_vs_kaldi"] < MAX_ABS_TOLERANCE
    assert errors["mean_abs_err_vs_kaldi"] < MEAN_ABS_TOLERANCE


def test_c_fbank_differs_when_audio_differs(fbank_tool, tmp_path):
    """Guards the parity test: a one-sample shift must not pass as a match."""
    wav = parity_tool.speech("Shifted by one sample.", tmp_path / "a.wav")
    pcm = parity_tool.read_pcm(wav)
    reference = parity_tool.python_fbank(pcm[1:])
    c = parity_tool.c_fbank(wav)[: len(reference)]
    assert np.abs(c - reference).max() > 10 * MAX_ABS_TOLERANCE


# The golden header prints float32 log-mel values with 7 significant digits
# and was generated on one machine.  Regenerating it elsewhere gives slightly
# different digits: TF's FFT and log use CPU-dispatched (SIMD width, FMA)
# kernels, so the same float32 front end differs by a few ulp between x86 CPUs
# (seen: 1.358755 vs 1.358756, Intel vs AMD).  The golden values span about
# -35 .. 13 log-mel units, so 7-digit printing alone is off by up to ~2e-5 and
# cross-CPU rounding by ~1e-6; kaldi-native-fbank, an independent float32
# implementation, agrees with tfadvq.features within 7e-5 on this excerpt.
# 1e-4 absolute covers all of that, is 100x tighter than the C++ parity
# tolerance the header feeds (kParityTolerance = 1e-2 in tests/test_fbank.cc),
# and is far below what any change to the front end moves: a one-sample shift
# of the audio moves the features by ~0.3.
GOLDEN_ATOL = 1e-4


def test_golden_vector_matches_current_front_end():
    """The C++ unit tests' golden fbank must still be what tfadvq.features computes."""
    golden = _tool("make_golden")
    stale = "tflm_firmware/tests/golden_fbank.h is stale: run tflm_firmware/tools/make_golden.py"
    frames, pcm, features = golden.parse_header(golden.OUT.read_text())
    assert pcm.size == golden.SAMPLES and features.shape == (frames, parity_tool.MELS), stale
    # The header's fbank is tfadvq.features of the header's own PCM ...
    current = golden.python_fbank(pcm)
    assert current.shape == features.shape, stale
    error = float(np.abs(current - features).max())
    assert np.allclose(current, features, rtol=0.0, atol=GOLDEN_ATOL), f"{stale} (max err {error:.3g})"
    # ... and the tolerance still tells a different input apart.
    shifted = golden.python_fbank(pcm[1:])
    assert not np.allclose(shifted, features[: shifted.shape[0]], rtol=0.0, atol=GOLDEN_ATOL)
    # The PCM is still the excerpt of TEXT that espeak-ng + sox give.  sox's
    # resampler computes in floating point, so allow a rounding flip of one
    # int16 step; a changed text, voice or offset differs by thousands.
    speech = golden.golden_pcm()
    assert speech.shape == pcm.shape, stale
    assert np.abs(speech.astype(np.int32) - pcm).max() <= 1, stale


def test_fbank_tool_reports_bad_audio(fbank_tool, tmp_path):
    good = parity_tool.speech("Too short.", tmp_path / "good.wav").read_bytes()
    cases = {"truncated.wav": good[:30], "short.wav": good[:44] + good[44:44 + 600]}
    expected = {"truncated.wav": "BAD_WAV", "short.wav": "BAD_WAV"}
    # A header that announces fewer bytes than a frame: valid WAV, too little audio.
    short = bytearray(good[:44] + good[44:44 + 600])
    short[4:8] = (36 + 600).to_bytes(4, "little")
    short[40:44] = (600).to_bytes(4, "little")
    cases["short.wav"] = bytes(short)
    expected["short.wav"] = "AUDIO_TOO_SHORT"
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        run = subprocess.run([str(fbank_tool), str(path), str(tmp_path / "out.f32")],
                             capture_output=True, text=True)
        assert run.returncode == 1 and expected[name] in run.stderr, (name, run.stderr)


def test_model_ops_header_lists_a_lut_models_ops(tmp_path):
    from converters import convert_model

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 80))
    x = keras.layers.Reshape((16, 80, 1))(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(8, name="emb")(x))
    conv = model.get_layer("conv")
    kernel, bias = conv.get_weights()
    codebook = np.array([-0.2, -0.05, 0.05, 0.2], np.float32)
    conv.set_weights([codebook[np.abs(kernel[..., None] - codebook).argmin(-1)], bias])
    result = convert_model(model, {"conv": 2}, frames=16, check_examples=2)
    path = tmp_path / "m.tflite"
    path.write_bytes(result.model)
    ops_tool = _tool("model_ops")
    ops = ops_tool.model_ops(path)
    assert {"Conv2D", "Decode", "FullyConnected", "Reshape"} <= ops
    header = ops_tool.header(ops, [path])
    assert f"#define TFADVQ_MODEL_NUM_OPS {len(ops)}" in header
    assert header.count("OP(") == len(ops)
    path.write_bytes(b"\0" * 64)
    with pytest.raises(Exception, match="TFL3"):
        ops_tool.model_ops(path)


@pytest.mark.parametrize("builtin,method", [
    ("CONV_2D", "Conv2D"), ("DEPTHWISE_CONV_2D", "DepthwiseConv2D"), ("MAX_POOL_2D", "MaxPool2D"),
    ("FULLY_CONNECTED", "FullyConnected"), ("RELU6", "Relu6"), ("L2_NORMALIZATION", "L2Normalization"),
    ("SQUARED_DIFFERENCE", "SquaredDifference"), ("BATCH_MATMUL", "BatchMatMul"),
])
def test_resolver_names_match_tflm_methods(builtin, method):
    assert _tool("model_ops").resolver_name(builtin) == method
