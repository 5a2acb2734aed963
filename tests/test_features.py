"""Fbank front end: golden agreement with kaldi-native-fbank, graph/Keras use, config round-trips."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tfadvq.audio import SAMPLE_RATE, load_audio
from tfadvq.compat import keras, tf
from tfadvq.config import dump_yaml, load_yaml
from tfadvq.errors import ConfigError
from tfadvq.features import Fbank, FbankConfig, Window, fbank, mel_filterbank, num_frames

knf = pytest.importorskip("kaldi_native_fbank")


def _espeak_speech(tmp_path) -> np.ndarray:
    """Real TTS speech: espeak-ng writes 22.05 kHz, load_audio resamples to 16 kHz."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    path = tmp_path / "speech.wav"
    text = "The quick brown fox jumps over the lazy dog while seven speakers read."
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
    return load_audio(path)


def _synthetic_vowel(_tmp_path) -> np.ndarray:
    """Voiced audio: a 120 Hz glottal pulse train shaped by three formant resonators, in noise."""
    rng = np.random.default_rng(0)
    n = 2 * SAMPLE_RATE
    f0 = 120 * (1 + 0.05 * np.sin(2 * np.pi * 3 * np.arange(n) / SAMPLE_RATE))
    phase = np.cumsum(f0 / SAMPLE_RATE) % 1.0
    x = (phase[1:] < phase[:-1]).astype(np.float64)  # one pulse per period
    spectrum = np.fft.rfft(x, n)
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    for formant, width in [(700, 110), (1200, 120), (2600, 160)]:
        spectrum *= 1 + 8 / (1 + ((freqs - formant) / width) ** 2)
    y = np.fft.irfft(spectrum, n) + 1e-3 * rng.standard_normal(n)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def _kaldi_fbank(x: np.ndarray, bins: int = 80) -> np.ndarray:
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = bins
    online = knf.OnlineFbank(opts)
    online.accept_waveform(SAMPLE_RATE, (x * 32768).tolist())
    online.input_finished()
    return np.array([online.get_frame(i) for i in range(online.num_frames_ready)])


@pytest.mark.parametrize("make_audio", [_espeak_speech, _synthetic_vowel])
def test_matches_kaldi_native_fbank(tmp_path, make_audio):
    """Log-mel energies (before mean normalisation) agree with kaldi-native-fbank.

    Tolerance and why: both compute in float32 but with different FFTs
    (TF/Eigen vs knf's own), different summation orders and (for TF) a
    ``tensordot`` instead of a loop.  Float32 rounding gives each power-spectrum
    value an absolute error of roughly 1e-7 times the frame's *total* energy, so
    the relative (= log-domain) error of one mel energy grows as that energy
    falls below the frame's peak.  Where the mel energy is above 1 (log > 0,
    int16 units -- i.e. everything but near-digital-silence) we require
    max |diff| <= 5e-3 nats (0.02 dB; measured ~1e-3); over all bins, including
    those 60-100 dB below the frame peak, max |diff| <= 0.05 nats (measured ~7e-3);
    frame counts must be identical.
    """
    x = make_audio(tmp_path)
    reference = _kaldi_fbank(x)
    ours = fbank(x, FbankConfig(mean_norm=False)).numpy()
    assert ours.shape == reference.shape == (num_frames(len(x)), 80)
    diff = np.abs(ours - reference)
    audible = reference > 0.0
    assert audible.mean() > 0.5  # the comparison covers most of the signal
    assert diff[audible].max() <= 5e-3
    assert diff.max() <= 0.05


def test_other_bin_counts_and_windows_follow_kaldi(tmp_path):
    x = _synthetic_vowel(tmp_path)[:8000]
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = "hamming"
    opts.mel_opts.num_bins = 40
    online = knf.OnlineFbank(opts)
    online.accept_waveform(SAMPLE_RATE, (x * 32768).tolist())
    online.input_finished()
    reference = np.array([online.get_frame(i) for i in range(online.num_frames_ready)])
    ours = fbank(x, FbankConfig(num_mel_bins=40, window=Window.HAMMING, mean_norm=False))
    np.testing.assert_allclose(ours.numpy(), reference, atol=5e-3)


@pytest.mark.parametrize("samples", [0, 399, 400, 559, 560, 16000, 32123])
def test_num_frames_matches_output(samples):
    features = fbank(tf.zeros([samples]))
    assert features.shape == (num_frames(samples), 80)


def test_mean_norm_subtracts_the_utterance_mean(tmp_path):
    x = _synthetic_vowel(tmp_path)
    raw = fbank(x, FbankConfig(mean_norm=False)).numpy()
    normed = fbank(x).numpy()
    np.testing.assert_allclose(normed, raw - raw.mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(normed.mean(axis=0), 0.0, atol=1e-4)


def test_int16_frames_are_the_firmware_codes_minus_their_exact_mean(tmp_path):
    """Step 10b: log mel rounded to int16 codes of 2**-10 (half away from zero, the sum |q| + 0.5 in float32 as
    the firmware's), minus the codes' mean summed in integers -- computed here independently in numpy from the raw
    features; batched equals one by one."""
    x = _synthetic_vowel(tmp_path)
    raw = fbank(x, FbankConfig(mean_norm=False)).numpy()
    scaled = raw * np.float32(1024)
    codes = np.clip(np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5)) - 16384, -32768, 32767)
    mean = np.float32(codes.astype(np.int64).sum(axis=0)) / np.float32(len(codes))
    expected = (codes.astype(np.float32) - mean) / np.float32(1024)
    kept = fbank(x, FbankConfig(int16_frames=True)).numpy()
    np.testing.assert_array_equal(kept, expected)
    assert 0.3 / 1024 < np.abs(kept - fbank(x).numpy()).max() < 1 / 1024  # rounded to the grid, not beyond
    unnormalised = fbank(x, FbankConfig(int16_frames=True, mean_norm=False)).numpy()
    np.testing.assert_array_equal(unnormalised, (codes + 16384).astype(np.float32) / 1024)
    batch = fbank(np.stack([x[:16000], x[8000:24000]]), FbankConfig(int16_frames=True)).numpy()
    np.testing.assert_array_equal(batch[1], fbank(x[8000:24000], FbankConfig(int16_frames=True)).numpy())


def test_batched_in_tf_data_graph_mode_equals_eager(tmp_path):
    x = _synthetic_vowel(tmp_path)
    batch = np.stack([x[:16000], x[8000:24000], x[16000:32000]])
    dataset = tf.data.Dataset.from_tensor_slices(batch).batch(3).map(fbank)
    (graph,) = list(dataset)
    assert graph.shape == (3, 98, 80)
    for row, waveform in zip(graph.numpy(), batch):
        np.testing.assert_allclose(row, fbank(waveform).numpy(), atol=1e-4)


def test_fbank_layer_in_a_keras_model_saves_and_reloads(tmp_path):
    config = FbankConfig(num_mel_bins=40, low_freq=40.0)
    inputs = keras.Input([16000])
    features = Fbank(config, name="fbank")(inputs)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(features))
    model = keras.Model(inputs, outputs)
    assert model.get_layer("fbank").output_shape == (None, 98, 40)
    waves = _synthetic_vowel(tmp_path)[:32000].reshape(2, 16000)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert reloaded.get_layer("fbank").config == config
    np.testing.assert_allclose(reloaded.predict(waves, verbose=0),
                               model.predict(waves, verbose=0), atol=1e-5)


def test_layer_config_round_trip():
    layer = Fbank(FbankConfig(num_mel_bins=64, window="hanning"), name="fe")
    clone = Fbank.from_config(layer.get_config())
    assert clone.config == layer.config and clone.name == "fe"


def test_config_yaml_round_trip_and_validation(tmp_path):
    config = FbankConfig(num_mel_bins=64, window=Window.HAMMING, high_freq=-400.0)
    dump_yaml(config, tmp_path / "fbank.yaml")
    assert load_yaml(FbankConfig, tmp_path / "fbank.yaml") == config
    with pytest.raises(ConfigError, match="low_freq"):
        FbankConfig(low_freq=9000.0)
    with pytest.raises(ConfigError, match="unknown key"):
        Fbank({"num_mel_bins": 80, "dither": 1.0})


def test_mel_filterbank_shape_and_edges():
    weights = mel_filterbank()
    assert weights.shape == (257, 80)
    assert not weights[256].any()  # Kaldi ignores the Nyquist bin
    assert not weights[0].any()  # 0 Hz lies below low_freq
    assert (weights.max(axis=0) > 0).all() and weights.max() <= 1.0  # no empty mel bin


def _tf_signal_log_mel(x: np.ndarray, bins: int, magnitude: bool, log10: bool) -> np.ndarray:
    """A front end as users write it with tf.signal (notebook 04): STFT 400/160/512 (periodic Hann), mel
    matrix 20..7600 Hz, log(x + 1e-6), no mean normalisation."""
    spectrum = tf.abs(tf.signal.stft(x, 400, 160, 512))
    spectrum = spectrum if magnitude else spectrum ** 2
    mel = tf.tensordot(spectrum, tf.signal.linear_to_mel_weight_matrix(bins, 257, SAMPLE_RATE, 20.0, 7600.0), 1)
    return (10 * np.log10(mel.numpy() + 1e-6)) if log10 else np.log(mel.numpy() + 1e-6)


@pytest.mark.parametrize("spectrum, log", [("power", "natural"), ("magnitude", "db")])
def test_a_tf_signal_log_mel_front_end_is_an_fbank_config(spectrum, log):
    """40-band log-mel power (or dB magnitude) of tf.signal, stated as FbankConfig fields, computed alike."""
    config = FbankConfig(num_mel_bins=40, high_freq=7600.0, preemph_coeff=0.0, remove_dc_offset=False,
                         window="hann_periodic", waveform_scale=1.0, log_offset=1e-6, mean_norm=False,
                         spectrum=spectrum, log=log)
    x = _synthetic_vowel(None)
    ours = fbank(x, config).numpy()
    theirs = _tf_signal_log_mel(x, 40, spectrum == "magnitude", log == "db")
    assert ours.shape == theirs.shape == (num_frames(len(x), config), 40)
    scale = 10 / np.log(10) if log == "db" else 1.0
    np.testing.assert_allclose(ours, theirs, atol=2e-3 * scale)
    assert np.abs(ours - fbank(x, FbankConfig(num_mel_bins=40)).numpy()).max() > 1.0  # not Kaldi's fbank


def test_host_features_are_refused_by_the_fbank_and_new_fields_round_trip(tmp_path):
    config = FbankConfig(num_mel_bins=40, features="host", spectrum="magnitude", log="log10", log_offset=1e-3)
    dump_yaml(config, tmp_path / "fbank.yaml")
    assert load_yaml(FbankConfig, tmp_path / "fbank.yaml") == config
    with pytest.raises(ConfigError, match="computed by the host .*--inputs X.npy"):
        fbank(np.zeros(SAMPLE_RATE, np.float32), config)
    (tmp_path / "bad.yaml").write_text("spectrum: amplitude\n")
    with pytest.raises(ConfigError, match="'power', 'magnitude'"):
        load_yaml(FbankConfig, tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="log_offset"):
        FbankConfig(log_offset=-1.0)
