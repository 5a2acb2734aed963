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


def test_c_kept_frames_are_tfadvq_int16_frames_on_speech(fbank_tool, tmp_path):
    """What the device's windows read (int16 kept frames, the mean of the codes) is tfadvq.features with
    ``int16_frames`` -- the features the Python TFLM scorer feeds -- to the C++ front end's own parity: a code
    differs only where the float log-mel straddles a rounding boundary; and within 2**-10 of the float features."""
    from tfadvq.compat import tf
    from tfadvq.features import FbankConfig, fbank

    wav = parity_tool.speech("Frames kept as sixteen bit codes until the mean is known.", tmp_path / "s.wav")
    pcm = parity_tool.read_pcm(wav)
    out = tmp_path / "kept.f32"
    subprocess.run([str(fbank_tool), str(wav), str(out), "--kept"], check=True, capture_output=True)
    device = np.fromfile(out, np.float32).reshape(-1, 80)
    python = np.asarray(fbank(tf.constant(pcm / 32768.0, tf.float32), FbankConfig(int16_frames=True)))
    floats = parity_tool.python_fbank(pcm)
    assert device.shape == python.shape == floats.shape and device.shape[0] > 200
    assert np.abs(device - python).max() < MAX_ABS_TOLERANCE
    assert np.abs(device - python).mean() < MEAN_ABS_TOLERANCE
    # A code differs by a whole step where the float front ends disagree across a rounding boundary: rarely.
    assert np.mean(np.abs(device - python) > 0.5 / 1024) < 0.02
    grid = python * 1024 - (python * 1024)[:1]  # codes minus the first frame's: whole numbers
    assert np.abs(grid - np.round(grid)).max() < 1e-2
    assert 0.4 / 1024 < np.abs(python - floats).max() < 1.0 / 1024
    assert np.abs(python.astype(np.float64).mean(axis=0)).max() < 1e-4  # mean-free up to float32 rounding


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


FIRMWARE = TOOLS.parent


@pytest.fixture(scope="module")
def lut_models():
    """Two small LUT models (different widths, different op sets) converted for TFLM, with metadata."""
    from converters import convert_model
    from converters.device_files import describe, with_thresholds
    from tfadvq.fbank_config import FbankConfig
    from tfadvq.metrics import Thresholds
    from tfadvq.windows import ScoringConfig

    out = []
    for filters, depthwise in ((4, False), (6, True)):
        keras.utils.set_random_seed(filters)
        inputs = keras.Input((16, 80))
        x = keras.layers.Reshape((16, 80, 1))(inputs)
        x = keras.layers.Conv2D(filters, 3, strides=2, name="conv")(x)
        if depthwise:
            x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(8, name="emb")(x))
        conv = model.get_layer("conv")
        kernel, bias = conv.get_weights()
        codebook = np.array([-0.2, -0.05, 0.05, 0.2], np.float32)
        conv.set_weights([codebook[np.abs(kernel[..., None] - codebook).argmin(-1)], bias])
        result = convert_model(model, {"conv": 2}, frames=16, check_examples=2)
        metadata = describe(result, FbankConfig(), ScoringConfig(window_frames=16))
        thresholds = Thresholds(eer_threshold=0.5, eer_percent=10.0, low_far_threshold=0.7, target_far=0.01,
                                far_at_low_far=0.01, frr_at_low_far=0.3)
        out.append((result, with_thresholds(metadata, thresholds, {"embedder": "given"})))
    return out


def test_c_arrays_include_the_op_list(tmp_path, lut_models):
    from converters.c_array import model_ops, write_c_arrays

    result, metadata = lut_models[0]
    files = write_c_arrays(result.model, metadata, tmp_path)
    assert sorted(p.name for p in files) == ["model_config.h", "model_data.cc", "model_data.h", "model_ops.h"]
    ops = model_ops(result.model)
    assert {"Conv2D", "Decode", "FullyConnected", "Reshape"} <= ops and "DepthwiseConv2D" not in ops
    header = (tmp_path / "model_ops.h").read_text()
    assert f"#define TFADVQ_MODEL_NUM_OPS {len(ops)}" in header
    assert header.count("OP(") == len(ops)
    assert "DepthwiseConv2D" in model_ops(lut_models[1][0].model)
    with pytest.raises(Exception, match="TFL3"):
        model_ops(b"\0" * 64)


@pytest.mark.parametrize("builtin,method", [
    ("CONV_2D", "Conv2D"), ("DEPTHWISE_CONV_2D", "DepthwiseConv2D"), ("MAX_POOL_2D", "MaxPool2D"),
    ("FULLY_CONNECTED", "FullyConnected"), ("RELU6", "Relu6"), ("L2_NORMALIZATION", "L2Normalization"),
    ("SQUARED_DIFFERENCE", "SquaredDifference"), ("BATCH_MATMUL", "BatchMatMul"),
])
def test_resolver_names_match_tflm_methods(builtin, method):
    from converters.c_array import resolver_name

    assert resolver_name(builtin) == method


# What app/main.cc does with two models' sources, without TFLM: both configs,
# both model arrays and both op lists in one program, the second registered
# only where the first lacks an op (the union).
TWO_MODEL_PROBE = r"""
#include <cstdio>
#include <cstring>
#include "model_config.h"
#include "model_data.h"
#include "model_ops.h"
#include "model_config_hi.h"
#include "model_data_hi.h"
#include "model_ops_hi.h"
#define NAME(op) #op,
static const char* first[] = {TFADVQ_MODEL_OPS(NAME)};
static const char* second[] = {TFADVQ_HI_MODEL_OPS(NAME)};
static_assert(TFADVQ_MODEL_BYTES != TFADVQ_HI_MODEL_BYTES, "two different models");
static_assert(TFADVQ_INPUT_FRAMES == TFADVQ_HI_INPUT_FRAMES && TFADVQ_HI_HAS_THRESHOLDS, "config");
// each model's config struct (what app/models.h reads) says what its macros say; one struct type for both
constexpr const tfadvq::ModelConfig& lo = tfadvq::kModelConfig;
constexpr const tfadvq::ModelConfig& hi = tfadvq::kModelConfig_hi;
static_assert(lo.model_bytes == TFADVQ_MODEL_BYTES && hi.model_bytes == TFADVQ_HI_MODEL_BYTES, "struct");
static_assert(hi.has_thresholds && hi.threshold.eer == TFADVQ_HI_THRESHOLD_EER &&
              hi.scoring.hop_frames == TFADVQ_HI_SCORING_HOP_FRAMES && lo.fbank == hi.fbank &&
              tfadvq::StrEq(hi.model_sha256, TFADVQ_HI_MODEL_SHA256), "struct");
int main() {
  int added = 0;
  for (const char* op : second) {
    bool known = false;
    for (const char* f : first) known = known || std::strcmp(f, op) == 0;
    if (!known) { std::printf("%s ", op); ++added; }
  }
  std::printf("| %u %u %d\n", g_model_len, g_model_hi_len,
              TFADVQ_MODEL_NUM_OPS + added);
  return g_model_len == TFADVQ_MODEL_BYTES && g_model_hi_len == TFADVQ_HI_MODEL_BYTES ? 0 : 1;
}
"""


def _write_two_models(lut_models, root: Path) -> tuple[Path, Path]:
    from converters.c_array import write_c_arrays

    (first, first_meta), (second, second_meta) = lut_models
    write_c_arrays(first.model, first_meta, root / "lo")
    write_c_arrays(second.model, second_meta, root / "hi", symbol_prefix="hi")
    return root / "lo", root / "hi"


def test_second_model_sources_compile_beside_the_first(tmp_path, lut_models):
    from converters.c_array import model_ops

    lo, hi = _write_two_models(lut_models, tmp_path)
    assert sorted(p.name for p in hi.iterdir()) == [
        "model_config_hi.h", "model_data_hi.cc", "model_data_hi.h", "model_ops_hi.h"]
    assert "g_model_hi[]" in (hi / "model_data_hi.cc").read_text()
    assert "#define TFADVQ_MODEL" not in (hi / "model_config_hi.h").read_text()
    (tmp_path / "probe.cc").write_text(TWO_MODEL_PROBE)
    exe = tmp_path / "probe"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", f"-I{lo}", f"-I{hi}", "-o", str(exe),
                    str(tmp_path / "probe.cc"), str(lo / "model_data.cc"), str(hi / "model_data_hi.cc")],
                   check=True)
    run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    union = model_ops(lut_models[0][0].model) | model_ops(lut_models[1][0].model)
    extra, sizes = run.stdout.split("|")
    assert extra.split() == ["DepthwiseConv2D"]
    assert int(sizes.split()[2]) == len(union)
    assert [int(v) for v in sizes.split()[:2]] == [len(m.model) for m, _ in lut_models]


def test_symbol_prefix_is_checked_before_converting(tmp_path, capsys):
    from converters.c_array import check_symbol_prefix
    from tfadvq.cli import main

    for bad in ("verify", "Hi", "9x", "a" * 16, "h-i"):
        with pytest.raises(Exception, match="symbol-prefix"):
            check_symbol_prefix(bad)
    assert check_symbol_prefix("hi_4bit") == "hi_4bit"
    args = ["convert", "--model", str(tmp_path / "missing.keras"), "--out", str(tmp_path / "m.tflite")]
    assert main([*args, "--symbol-prefix", "hi"]) == 2
    assert "--c-array" in capsys.readouterr().err
    assert main([*args, "--c-array", str(tmp_path / "fw"), "--symbol-prefix", "list"]) == 2
    assert "command word" in capsys.readouterr().err


def _tflm() -> tuple[Path, Path]:
    """The TFLM the firmware is built with and its Cortex-M4 CMSIS-NN microlite, or a skip naming what is missing."""
    from converters.firmware import FirmwareError, find_tflm

    try:
        tflm = find_tflm()
        return tflm.root, tflm.library("cortex-m4")
    except FirmwareError as exc:
        pytest.skip(f"{exc}; the TFLM-free part is test_second_model_sources_compile_beside_the_first")


def test_find_tflm_takes_the_build_script_record_or_tflm_dir_and_names_what_is_missing(tmp_path, monkeypatch):
    from converters.firmware import FirmwareError, find_tflm

    monkeypatch.delenv("TFLM_DIR", raising=False)
    monkeypatch.delenv("TFLM_LIB_M4", raising=False)
    monkeypatch.delenv("TFLM_LIB_M55", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(FirmwareError, match="build_tflm.sh"):
        find_tflm()
    tree = tmp_path / "tflite-micro"
    (tree / "tensorflow" / "lite" / "micro").mkdir(parents=True)
    lib = tree / "gen" / "m4" / "libtensorflow-microlite.a"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"!<arch>\n")
    record = tmp_path / "cache" / "tfadvq" / "tflm" / "tflm.env"
    record.parent.mkdir(parents=True)
    record.write_text(f"TFLM_DIR={tree}\nTFLM_LIB_M4={lib}\n")  # what build_tflm.sh writes
    found = find_tflm()
    assert found.root == tree.resolve() and found.library("cortex-m4") == lib
    with pytest.raises(FirmwareError, match="no microlite for cortex-m55.*--cores m55"):
        found.library("cortex-m55")  # TFLM's own gen/ layout, not built
    with pytest.raises(FirmwareError, match="not a tflite-micro source tree"):
        find_tflm(tmp_path)
    monkeypatch.setenv("TFLM_DIR", str(tree))  # $TFLM_DIR wins over the record; libraries in TFLM's layout
    assert find_tflm().libraries["cortex-m4"].name == "libtensorflow-microlite.a"
    assert "cortex_m_generic_cortex-m4+fp_default_cmsis_nn_gcc" in str(find_tflm().libraries["cortex-m4"])


def test_two_model_firmware_builds_and_keeps_a_store_per_model(tmp_path, lut_models):
    tflm_dir, lib = _tflm()
    lo, hi = _write_two_models(lut_models, tmp_path)
    build = tmp_path / "build"
    subprocess.run(["make", "-s", "-C", str(FIRMWARE), "firmware-m4", f"BUILD={build}", f"TFLM_DIR={tflm_dir}",
                    f"TFLM_LIB={lib}", f"MODEL_DIR={lo}", f"MODEL2_DIR={hi}", "MODEL2_PREFIX=hi",
                    "SV_MAX_SECONDS=1"], check=True, capture_output=True)
    speech = parity_tool.speech("Two models on one device.", tmp_path / "a.wav")
    commands = (f"format\nhi format\nenroll alice {speech}\nhi enroll bob {speech}\nlist\nhi list\n"
                f"hi verify bob {speech}\nverify bob {speech}\n")
    run = subprocess.run(["timeout", "120", "qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4",
                          "-nographic", "-monitor", "none", "-semihosting-config", "enable=on,target=native",
                          "-kernel", str(build / "cortex-m4" / "fw" / "firmware_2models.elf")],
                         input=commands, capture_output=True, text=True, cwd=tmp_path)
    lines = [line.rsplit(" instructions=", 1)[0] for line in run.stdout.splitlines()]
    assert lines[0].startswith("READY model_version=1") and lines[1].startswith("READY hi ")
    assert lines[2:8] == ["OK formatted", "hi OK formatted", "OK enrolled alice utterances=1",
                          "hi OK enrolled bob utterances=1", "OK 1 alice:1", "hi OK 1 bob:1"]
    assert lines[8].startswith("hi OK ACCEPT bob score=") and lines[9] == "ERR UNKNOWN_SPEAKER"
    assert (tmp_path / "sv_store.bin").is_file() and (tmp_path / "sv_store_2.bin").is_file()


def test_board_firmware_serves_the_uart_without_semihosting(tmp_path, lut_models):
    """PLATFORM=board on QEMU: console on the CMSDK UART (-serial), no semihosting linked in,
    no host files (audio only from @buffer), cycles counted, exit reported then a reset."""
    tflm_dir, lib = _tflm()
    lo, _ = _write_two_models(lut_models, tmp_path)
    build = tmp_path / "build"
    subprocess.run(["make", "-s", "-C", str(FIRMWARE), "firmware-m4", "PLATFORM=board", f"BUILD={build}",
                    f"TFLM_DIR={tflm_dir}", f"TFLM_LIB={lib}", f"MODEL_DIR={lo}", "SV_MAX_SECONDS=2"],
                   check=True, capture_output=True)
    elf = build / "cortex-m4" / "fw" / "firmware_board.elf"
    symbols = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    assert "initialise_monitor_handles" not in symbols and "_swiwrite" not in symbols
    run = subprocess.run(["timeout", "60", "qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4",
                          "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
                          "-kernel", str(elf)],
                         input="list\nenroll alice a.wav\nenroll alice @buffer\nquit\n",
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr  # the reset request ended QEMU, not the timeout
    lines = [line.rsplit(" cycles=", 1)[0] for line in run.stdout.splitlines()]
    assert lines[0].startswith("READY ") and lines[0].endswith("counter=cycles")
    assert lines[1:4] == ["OK 0", "ERR IO_ERROR", "ERR AUDIO_TOO_SHORT"]
    assert lines[4].startswith("BYE stack_used=") and lines[5] == "HALT status=2"  # 2: commands failed


def test_a_file_fed_build_scores_files_longer_than_its_pcm_buffer(tmp_path, lut_models):
    """SV_CAPTURE_SECONDS=0: no capture, one window of frames kept (RAM no longer grows with the utterance), yet a
    file of several seconds (two fbank passes) scores exactly as in a build that keeps all its frames (one pass),
    and as in a file-fed build keeping SV_KEPT_FRAMES of them (160 B each, int16 codes; the rest computed again)."""
    from converters.firmware import build_firmware, fields, find_tflm, run_session, score, section_sizes
    from tfadvq.audio import load_audio
    from tfadvq.fbank_config import num_frames

    _tflm()
    tflm = find_tflm()
    lo, _ = _write_two_models(lut_models, tmp_path)
    long = parity_tool.speech("A sentence long enough to last several seconds, well beyond one chunk of "
                              "audio, for the file-fed firmware.", tmp_path / "long.wav")
    commands = f"enroll alice {long}\nverify alice {long}\nverify alice @buffer\n"
    replies, sizes = {}, {}
    for capture, kept in ((0, 0), (8, 0), (0, 200)):  # SV_KEPT_FRAMES=200: a file-fed build keeping 2 s
        options = {"SV_MAX_SECONDS": 8, "SV_CAPTURE_SECONDS": capture, "SV_KEPT_FRAMES": kept}
        build = f"{capture}_{kept}"
        board = section_sizes(build_firmware("cortex-m4", tflm, lo, tmp_path / f"b{build}", "board", options))
        sizes[capture, kept] = board[".data"] + board[".bss"]
        elf = build_firmware("cortex-m4", tflm, lo, tmp_path / f"s{build}", "semihosting", options)
        replies[capture, kept] = run_session("cortex-m4", elf, commands, cwd=tmp_path / f"s{build}", timeout=600)
    assert 4.0 * 16000 < load_audio(long).size <= 8 * 16000
    ready = fields(next(x for x in replies[0, 0] if x.startswith("READY")))
    # The frames kept beyond one network window (160 B each: int16 codes), and nothing else, are gone.
    assert sizes[8, 0] - sizes[0, 0] == (num_frames(8 * 16000) - int(ready["window"])) * 160
    assert sizes[0, 200] - sizes[0, 0] == (200 - int(ready["window"])) * 160
    assert fields(next(x for x in replies[0, 200] if x.startswith("READY")))["kept_frames"] == "200"
    zero, full, kept = ([x for x in r if x.startswith(("OK", "ERR"))] for r in replies.values())
    assert ready["capture_seconds"] == "0"
    assert zero[0].startswith("OK enrolled alice") and score(zero[1]) == score(full[1]) == score(kept[1]) is not None
    assert zero[2].startswith("ERR AUDIO_TOO_SHORT") and kept[2].startswith("ERR AUDIO_TOO_SHORT")  # no capture

