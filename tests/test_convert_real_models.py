"""``tfadvq convert`` takes real models: an FP32 LSTM encoder with its own 40-band log-mel power front end,
its quantize folder and its 4-bit ``model.h5``, each checked under TFLM on the model's own inputs.

The encoder is built here (random weights: what matters is what TFLM computes against Keras on its
inputs, not how well it verifies); its front end is the ``tf.signal`` pipeline of notebook 04, stated
as an :class:`~tfadvq.fbank_config.FbankConfig` beside it.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from converters import read_json, run_tflm
from converters.parity import MIN_DECISION_AGREEMENT, CheckInputs, measure
from tfadvq import frontend, rundir
from tfadvq.cli import main
from tfadvq.compat import keras
from tfadvq.config import dump_yaml, load_yaml
from tfadvq.errors import ConversionError
from tfadvq.fbank_config import FbankConfig

MELS, FRAMES, SPEAKERS = 40, 20, 6
# notebook 04's front end: |STFT|^2 (hann, 400/160/512) -> tf.signal mel 20..7600 Hz -> ln(x + 1e-6) -> mean norm
FRONT = FbankConfig(num_mel_bins=MELS, high_freq=7600.0, preemph_coeff=0.0, remove_dc_offset=False,
                    window="hann_periodic", waveform_scale=1.0, log_offset=1e-6)


def _speaker_inputs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel-like sequences ``[n, 24 frames, 40]``: a spectral envelope per speaker plus noise."""
    rng = np.random.default_rng(seed)
    envelopes = rng.normal(0, 2.0, (SPEAKERS, 1, MELS))
    speakers = np.arange(n) % SPEAKERS
    return (envelopes[speakers] + rng.normal(0, 1.0, (n, 24, MELS))).astype(np.float32), speakers


def _encoder() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, MELS), name="log_mel")
    x = keras.layers.LSTM(16, return_sequences=True, name="lstm1")(inputs)
    x = keras.layers.LSTM(16, name="lstm2")(x)
    return keras.Model(inputs, keras.layers.Dense(16, name="proj")(x), name="lstm_encoder")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """encoder/encoder.keras with its front end recorded beside it, inputs x.npy with speakers spk.npy."""
    root = tmp_path_factory.mktemp("convert_real")
    (root / "encoder").mkdir()
    _encoder().save(root / "encoder" / "encoder.keras")
    frontend.record(root / "encoder", FRONT)
    features, speakers = _speaker_inputs(30, seed=1)
    np.save(root / "x.npy", features)
    np.save(root / "spk.npy", speakers)
    return root


def _convert(model, out, *extra) -> list[str]:
    return ["convert", "--model", str(model), "--out", str(out), "--frames", str(FRAMES), *extra]


def _ops(tflite: bytes) -> set[str]:
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    return {op.opcode_name for g in model_editor.read(tflite).subgraphs for op in g.operators}


def test_an_fp32_encoder_converts_without_lut_checked_on_its_inputs(work, capsys):
    out = work / "fp32" / "model.tflite"
    inputs = ["--inputs", str(work / "x.npy"), "--input-speakers", str(work / "spk.npy")]
    assert main(_convert(work / "encoder" / "encoder.keras", out, *inputs)) == 0
    printed = capsys.readouterr().out
    assert "FP32 model: no quantized layer, no LUT" in printed and "EER threshold of the Keras scores" in printed
    metadata = read_json(out.with_suffix(".json"))
    assert metadata.bits_per_layer == {} and metadata.feature == FRONT and metadata.activations == "float32"
    assert "TFLM_DECODE" not in _ops(out.read_bytes())
    parity = metadata.parity
    assert parity.examples == 30 and parity.pairs == 30 * 29 // 2 and "--inputs" in parity.inputs
    assert parity.threshold_from.startswith("EER threshold") and parity.min_cosine > 0.9999
    assert parity.decision_agreement >= 0.99
    assert json.loads(out.with_suffix(".json").read_text())["parity"]["median_cosine"] > 0.9999
    features = np.load(work / "x.npy")[:3, :FRAMES]
    keras_model = keras.models.load_model(work / "encoder" / "encoder.keras")
    np.testing.assert_allclose(run_tflm(out.read_bytes(), features), keras_model(features).numpy(), atol=1e-4)

    # int8 activations, calibrated on the same inputs: the parity figures say what int8 costs.
    out8 = work / "fp32_int8" / "model.tflite"
    assert main(_convert(work / "encoder" / "encoder.keras", out8, "--int8", *inputs)) == 0
    int8 = read_json(out8.with_suffix(".json"))
    assert int8.activations == "int8" and int8.bits_per_layer == {}
    assert int8.parity.decision_agreement >= MIN_DECISION_AGREEMENT and int8.parity.median_cosine > 0.95


def test_the_quantize_folder_and_its_models_convert_with_their_bits(work, capsys):
    q = rundir.QuantDir(work / "q4")
    assert main(["quantize", "--model", str(work / "encoder" / "encoder.keras"), "--bits", "4", "--weighted",
                 "--inputs", str(work / "x.npy"), "--out", str(q.path)]) == 0
    assert load_yaml(FbankConfig, q.frontend) == FRONT  # inherited from the encoder's record
    bits = {"lstm1": 4, "lstm2": 4, "proj": 4}
    for given, name in ((q.path, "folder"), (q.wrapped, "wrapped"), (q.plain, "plain")):
        out = q.path / name / "model.tflite"  # the README's form: the output inside the quantize folder
        assert main(_convert(given, out, "--inputs", str(work / "x.npy"))) == 0, name
        metadata = read_json(out.with_suffix(".json"))
        assert metadata.bits_per_layer == bits and "TFLM_DECODE" in _ops(out.read_bytes()), name
        assert metadata.parity.threshold_from.startswith("median Keras score")  # no speakers given
        assert metadata.parity.median_cosine > 0.999 and metadata.parity.decision_agreement >= 0.99
    assert "LUT per tensor" in capsys.readouterr().out  # no BatchNorm folds into an LSTM or Dense: one table each


def test_parity_compares_decisions_on_pairs_and_flags_a_different_model(work):
    features, speakers = _speaker_inputs(24, seed=2)
    model = _encoder()
    reference = model(features).numpy()
    labelled = measure(reference, reference * 3.0, CheckInputs(features, "test", speakers))
    assert labelled.decision_agreement == 1.0 and labelled.median_cosine == pytest.approx(1.0)
    assert labelled.threshold_from.startswith("EER threshold") and labelled.failure() is None
    unlabelled = measure(reference, reference, CheckInputs(features, "test"))
    scores = np.array([a @ b / np.linalg.norm(a) / np.linalg.norm(b)
                       for i, a in enumerate(reference) for b in reference[i + 1:]])
    median = np.median(scores)  # the threshold sits between it and the next lower score: no pair lies on it
    assert scores[scores < median].max() < unlabelled.threshold < median and not np.isin(unlabelled.threshold, scores)
    assert unlabelled.threshold_from == "median Keras score (inputs without speakers)"
    other = _encoder()
    kernel, bias = model.get_layer("proj").get_weights()
    other.get_layer("proj").set_weights([kernel[::-1], bias])  # the projection read from the wrong end
    broken = measure(reference, other(features).numpy(), CheckInputs(features, "test", speakers))
    assert broken.median_cosine < 0.9  # easy pairs (one envelope per speaker) may still be decided alike
    assert "median cosine to Keras" in broken.failure() and broken.verdict().startswith("refused: ")
    # an embedding squeezed around one direction (an untrained model): decisions flip on a 1e-3 jitter while
    # every embedding stays within cosine 0.99 of Keras -- reported, not refused
    rng = np.random.default_rng(0)
    squeezed = 1.0 + 1e-3 * rng.normal(size=(24, 16))
    jittered = measure(squeezed, squeezed + 1e-3 * rng.normal(size=(24, 16)), CheckInputs(features, "t", speakers))
    assert jittered.decisions_flip and jittered.p05_cosine > 0.99 and jittered.failure() is None
    assert "scores lie too close together" in jittered.verdict()
    nan = reference.copy()
    nan[3, 0] = np.nan
    assert "non-finite" in measure(reference, nan, CheckInputs(features, "test")).failure()


def _scramble_dense(tflite: bytes, weights) -> bytes:
    """A conversion bug: the FULLY_CONNECTED weights' output channels reversed in the flatbuffer."""
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    edited = model_editor.read(tflite)
    for op in edited.subgraphs[0].operators:
        if op.opcode_name == "FULLY_CONNECTED":
            tensor = op.inputs[1]
            tensor.buffer = model_editor.Buffer(data=np.ascontiguousarray(tensor.array[::-1]).tobytes())
    return bytes(edited.build())


def test_a_broken_conversion_is_refused_and_no_check_keeps_it(work, monkeypatch):
    from converters import conversion

    model = _encoder()
    features, speakers = _speaker_inputs(24, seed=3)
    check = CheckInputs(features[:, :FRAMES], "test inputs", speakers)
    assert conversion.convert_model(model, {}, FRAMES, check_inputs=check).keras_parity.failure() is None
    monkeypatch.setattr(conversion, "store_int8", _scramble_dense)
    with pytest.raises(ConversionError, match="does not verify like Keras: .*--no-check"):
        conversion.convert_model(model, {}, FRAMES, check_inputs=check)
    assert conversion.convert_model(model, {}, FRAMES, check_inputs=check, check=False).keras_parity is None


def test_no_check_is_loud_and_stored(work, capsys):
    out = work / "nocheck" / "model.tflite"
    assert main(_convert(work / "encoder" / "encoder.keras", out, "--no-check")) == 0
    captured = capsys.readouterr()
    assert "WARNING: --no-check" in captured.err and "NOT RUN (--no-check)" in captured.out
    assert read_json(out.with_suffix(".json")).parity is None


def test_without_inputs_the_check_says_it_ran_on_noise(work, capsys):
    out = work / "noise" / "model.tflite"
    assert main(_convert(work / "encoder" / "encoder.keras", out)) == 0
    assert "seeded noise" in read_json(out.with_suffix(".json")).parity.inputs
    assert "not inputs the model ever sees" in capsys.readouterr().out


def test_host_features_are_stated_and_never_computed(work, tiny_corpus, capsys):
    host = FbankConfig(num_mel_bins=MELS, features="host")
    dump_yaml(host, work / "host.yaml")
    assert load_yaml(FbankConfig, work / "host.yaml") == host
    model = work / "bare" / "encoder.keras"
    model.parent.mkdir()
    _encoder().save(model)
    # corpus crops would need tfadvq to compute the features: refused, saying what to give instead
    assert main(_convert(model, work / "h1" / "m.tflite", "--feature-config", str(work / "host.yaml"),
                         "--corpus", str(tiny_corpus))) == 2
    assert "computed by the host" in capsys.readouterr().err
    out = work / "h2" / "m.tflite"
    assert main(_convert(model, out, "--feature-config", str(work / "host.yaml"), "--inputs", str(work / "x.npy"))) == 0
    assert read_json(out.with_suffix(".json")).feature == host
    assert "computed by the host" in capsys.readouterr().out


def test_a_model_the_firmware_cannot_feed_gets_no_firmware_sources(work, capsys):
    from converters.metadata import ModelMetadata, c_header, check_firmware_frontend

    out = work / "fw" / "model.tflite"
    assert main(_convert(work / "encoder" / "encoder.keras", out, "--c-array", str(work / "fw" / "c"))) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfadvq: error: ") and "num_mel_bins: 80 -> 40" in err and "window: 'povey'" in err
    assert not out.exists() and not (work / "fw" / "c").exists()  # refused before converting
    with pytest.raises(ConversionError, match="features: 'fbank' -> 'host'"):
        check_firmware_frontend(FbankConfig(features="host"))
    with pytest.raises(ConversionError, match="spectrum: 'power' -> 'magnitude'; log: 'natural' -> 'db'"):
        check_firmware_frontend(FbankConfig(spectrum="magnitude", log="db"))
    check_firmware_frontend(FbankConfig())  # what the firmware computes
    header = c_header(ModelMetadata(model_version=1, model_sha256="0", model_bytes=1, input_frames=FRAMES,
                                    num_mel_bins=80, embed_dim=16, activations="float32", arena_bytes=1,
                                    bits_per_layer={}))
    assert '#define TFADVQ_FBANK_SPECTRUM "power"' in header and '#define TFADVQ_FBANK_FEATURES "fbank"' in header


@pytest.mark.parametrize("extra, message", [
    (["--input-speakers", "{spk}"], "--input-speakers labels the rows of --inputs"),
    (["--inputs", "{x}", "--input-speakers", "{short}"], "need one label per row of --inputs (30)"),
    (["--inputs", "{flat}"], "need an array [N, frames, features]"),
    (["--int8"], "--int8 needs representative inputs"),
])
def test_bad_check_inputs_are_user_errors(work, capsys, extra, message):
    np.save(work / "short.npy", np.arange(3))
    np.save(work / "flat.npy", np.zeros((4, MELS), np.float32))
    names = {"spk": work / "spk.npy", "x": work / "x.npy", "short": work / "short.npy", "flat": work / "flat.npy"}
    argv = _convert(work / "encoder" / "encoder.keras", work / "bad" / "m.tflite",
                    *[a.format(**names) for a in extra])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfadvq: error: ") and message in err
